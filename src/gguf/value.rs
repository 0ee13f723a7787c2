//! GGUF metadata values.

use serde::Serialize;

/// Metadata value type ids as stored in the file.
pub mod tag {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;

    /// Name of a value type id; `?` for ids the reader rejects anyway.
    pub fn name(tag: u32) -> &'static str {
        match tag {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            BOOL => "bool",
            STRING => "string",
            ARRAY => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
            _ => "?",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Array),
}

/// A homogeneous array, stored by element type: a numeric array takes the
/// bytes it took in the file (a `Vec<Value>` would take 32 per element, so a
/// 4 MB file of u8 arrays would ask for 128 MB). The variant is the element
/// type, so an empty array is reproduced exactly by a writer.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    String(Vec<String>),
    /// Arrays of arrays; each inner array has its own element type.
    Array(Vec<Array>),
}

impl Array {
    /// The element type id (see [`tag`]).
    pub fn elem_tag(&self) -> u32 {
        match self {
            Array::U8(_) => tag::U8,
            Array::I8(_) => tag::I8,
            Array::U16(_) => tag::U16,
            Array::I16(_) => tag::I16,
            Array::U32(_) => tag::U32,
            Array::I32(_) => tag::I32,
            Array::U64(_) => tag::U64,
            Array::I64(_) => tag::I64,
            Array::F32(_) => tag::F32,
            Array::F64(_) => tag::F64,
            Array::Bool(_) => tag::BOOL,
            Array::String(_) => tag::STRING,
            Array::Array(_) => tag::ARRAY,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::F64(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::Array(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as a [`Value`] (strings and inner arrays are cloned).
    pub fn get(&self, i: usize) -> Option<Value> {
        Some(match self {
            Array::U8(v) => Value::U8(*v.get(i)?),
            Array::I8(v) => Value::I8(*v.get(i)?),
            Array::U16(v) => Value::U16(*v.get(i)?),
            Array::I16(v) => Value::I16(*v.get(i)?),
            Array::U32(v) => Value::U32(*v.get(i)?),
            Array::I32(v) => Value::I32(*v.get(i)?),
            Array::U64(v) => Value::U64(*v.get(i)?),
            Array::I64(v) => Value::I64(*v.get(i)?),
            Array::F32(v) => Value::F32(*v.get(i)?),
            Array::F64(v) => Value::F64(*v.get(i)?),
            Array::Bool(v) => Value::Bool(*v.get(i)?),
            Array::String(v) => Value::String(v.get(i)?.clone()),
            Array::Array(v) => Value::Array(v.get(i)?.clone()),
        })
    }

    /// The elements as [`Value`]s, one at a time.
    pub fn iter(&self) -> impl Iterator<Item = Value> + '_ {
        (0..self.len()).map(|i| self.get(i).expect("index below len"))
    }

    /// The elements of a string array, borrowed.
    pub fn as_strings(&self) -> Option<&[String]> {
        match self {
            Array::String(v) => Some(v),
            _ => None,
        }
    }

    /// Element `i` of an integer array of any width, if non-negative.
    pub fn u64_at(&self, i: usize) -> Option<u64> {
        match self {
            Array::String(_) | Array::Array(_) => None,
            _ => self.get(i)?.as_u64(),
        }
    }

    /// An array of `elem` from values of that type; `None` if one differs.
    pub fn from_values(elem: u32, items: Vec<Value>) -> Option<Array> {
        fn all<T>(items: Vec<Value>, f: impl Fn(Value) -> Option<T>) -> Option<Vec<T>> {
            items.into_iter().map(f).collect()
        }
        Some(match elem {
            tag::U8 => Array::U8(all(items, |v| match v {
                Value::U8(x) => Some(x),
                _ => None,
            })?),
            tag::I8 => Array::I8(all(items, |v| match v {
                Value::I8(x) => Some(x),
                _ => None,
            })?),
            tag::U16 => Array::U16(all(items, |v| match v {
                Value::U16(x) => Some(x),
                _ => None,
            })?),
            tag::I16 => Array::I16(all(items, |v| match v {
                Value::I16(x) => Some(x),
                _ => None,
            })?),
            tag::U32 => Array::U32(all(items, |v| match v {
                Value::U32(x) => Some(x),
                _ => None,
            })?),
            tag::I32 => Array::I32(all(items, |v| match v {
                Value::I32(x) => Some(x),
                _ => None,
            })?),
            tag::U64 => Array::U64(all(items, |v| match v {
                Value::U64(x) => Some(x),
                _ => None,
            })?),
            tag::I64 => Array::I64(all(items, |v| match v {
                Value::I64(x) => Some(x),
                _ => None,
            })?),
            tag::F32 => Array::F32(all(items, |v| match v {
                Value::F32(x) => Some(x),
                _ => None,
            })?),
            tag::F64 => Array::F64(all(items, |v| match v {
                Value::F64(x) => Some(x),
                _ => None,
            })?),
            tag::BOOL => Array::Bool(all(items, |v| match v {
                Value::Bool(x) => Some(x),
                _ => None,
            })?),
            tag::STRING => Array::String(all(items, |v| match v {
                Value::String(x) => Some(x),
                _ => None,
            })?),
            tag::ARRAY => Array::Array(all(items, |v| match v {
                Value::Array(x) => Some(x),
                _ => None,
            })?),
            _ => return None,
        })
    }
}

impl Value {
    /// The type id this value is stored with (see [`tag`]).
    pub fn tag(&self) -> u32 {
        match self {
            Value::U8(_) => tag::U8,
            Value::I8(_) => tag::I8,
            Value::U16(_) => tag::U16,
            Value::I16(_) => tag::I16,
            Value::U32(_) => tag::U32,
            Value::I32(_) => tag::I32,
            Value::U64(_) => tag::U64,
            Value::I64(_) => tag::I64,
            Value::F32(_) => tag::F32,
            Value::F64(_) => tag::F64,
            Value::Bool(_) => tag::BOOL,
            Value::String(_) => tag::STRING,
            Value::Array(_) => tag::ARRAY,
        }
    }

    pub fn type_name(&self) -> &'static str {
        tag::name(self.tag())
    }

    /// For arrays, the element type's name, known even when the array is empty.
    pub fn element_type_name(&self) -> Option<&'static str> {
        match self {
            Value::Array(a) => Some(tag::name(a.elem_tag())),
            _ => None,
        }
    }

    /// Any non-negative integer, whatever width the writer chose.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v as i64),
            Value::I16(v) => Some(v as i64),
            Value::I32(v) => Some(v as i64),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// An array value of `elem` built from `items` (files written in code:
    /// tests, synthetic models).
    ///
    /// Panics if an item is not of type `elem`, a bug in the caller.
    pub fn array(elem: u32, items: Vec<Value>) -> Value {
        Value::Array(
            Array::from_values(elem, items)
                .unwrap_or_else(|| panic!("array items must all be {}", tag::name(elem))),
        )
    }
}

impl std::fmt::Display for Value {
    /// Short human form: long arrays are summarised, long strings cut.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Debug quoting keeps the output on one line and makes control
            // characters from a hostile file harmless on a terminal.
            Value::String(s) => {
                if s.chars().count() > 80 {
                    let head: String = s.chars().take(77).collect();
                    write!(f, "{head:?}... ({} bytes)", s.len())
                } else {
                    write!(f, "{s:?}")
                }
            }
            Value::Array(items) => {
                if items.len() > 8 {
                    let elem = self.element_type_name().unwrap_or("?");
                    write!(f, "[{elem}; {}]", items.len())
                } else {
                    f.write_str("[")?;
                    for (i, v) in items.iter().enumerate() {
                        if i > 0 {
                            f.write_str(", ")?;
                        }
                        write!(f, "{v}")?;
                    }
                    f.write_str("]")
                }
            }
            Value::U8(v) => write!(f, "{v}"),
            Value::I8(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
        }
    }
}
