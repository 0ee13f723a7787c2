//! SentencePiece `tokenizer.model`: the `ModelProto` protobuf, read by hand
//! (the few fields a vocabulary needs; protobuf's wire format is small).

use std::path::Path;

use super::HfError;

pub struct Piece {
    pub piece: String,
    pub score: f32,
    /// SentencePiece's type numbers are GGUF's token types (1 normal .. 6 byte).
    pub kind: i32,
}

pub struct SpmVocab {
    pub pieces: Vec<Piece>,
    pub unk_id: Option<u32>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub pad_id: Option<u32>,
    pub add_dummy_prefix: bool,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// A field's value on the wire.
enum Field<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64,
    Bytes(&'a [u8]),
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or("truncated field")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed64
            }
            2 => {
                let n = self.varint()? as usize;
                Field::Bytes(self.take(n)?)
            }
            5 => Field::Fixed32(u32::from_le_bytes(
                self.take(4)?.try_into().expect("4 bytes"),
            )),
            w => return Err(format!("unsupported protobuf wire type {w}")),
        };
        Ok(Some((key >> 3, field)))
    }
}

pub fn read(path: &Path) -> Result<SpmVocab, HfError> {
    let buf = std::fs::read(path).map_err(|e| HfError::file(path, format!("cannot read: {e}")))?;
    parse(&buf).map_err(|e| HfError::file(path, format!("not a SentencePiece model: {e}")))
}

pub fn parse(buf: &[u8]) -> Result<SpmVocab, String> {
    let mut v = SpmVocab {
        pieces: Vec::new(),
        unk_id: Some(0),
        bos_id: Some(1),
        eos_id: Some(2),
        pad_id: None,
        add_dummy_prefix: true,
    };
    let mut model_type = 1u64;
    let mut r = Reader { buf, pos: 0 };
    while let Some((field, value)) = r.next()? {
        match (field, value) {
            // repeated SentencePiece pieces = 1
            (1, Field::Bytes(b)) => {
                let mut p = Piece {
                    piece: String::new(),
                    score: 0.0,
                    kind: 1,
                };
                let mut pr = Reader { buf: b, pos: 0 };
                while let Some((f, val)) = pr.next()? {
                    match (f, val) {
                        (1, Field::Bytes(s)) => {
                            p.piece =
                                String::from_utf8(s.to_vec()).map_err(|_| "a piece is not UTF-8")?
                        }
                        (2, Field::Fixed32(x)) => p.score = f32::from_bits(x),
                        (3, Field::Varint(k)) => p.kind = k as i32,
                        _ => {}
                    }
                }
                v.pieces.push(p);
            }
            // TrainerSpec trainer_spec = 2
            (2, Field::Bytes(b)) => {
                let mut tr = Reader { buf: b, pos: 0 };
                let id = |x: u64| (x as i64 >= 0).then_some(x as u32);
                while let Some((f, val)) = tr.next()? {
                    match (f, val) {
                        (3, Field::Varint(t)) => model_type = t,
                        // int32 -1 ("none") is a 10-byte varint of 2^64 - 1.
                        (40, Field::Varint(x)) => v.unk_id = id(x),
                        (41, Field::Varint(x)) => v.bos_id = id(x),
                        (42, Field::Varint(x)) => v.eos_id = id(x),
                        (43, Field::Varint(x)) => v.pad_id = id(x),
                        _ => {}
                    }
                }
            }
            // NormalizerSpec normalizer_spec = 3
            (3, Field::Bytes(b)) => {
                let mut nr = Reader { buf: b, pos: 0 };
                while let Some((f, val)) = nr.next()? {
                    if let (3, Field::Varint(x)) = (f, val) {
                        v.add_dummy_prefix = x != 0;
                    }
                }
            }
            _ => {}
        }
    }
    if v.pieces.is_empty() {
        return Err("no pieces".into());
    }
    // llama.cpp's SentencePiece tokenizer merges by score, which is BPE's rule.
    if model_type != 2 {
        return Err(format!(
            "model type {} is not supported (BPE models only, as Llama's)",
            match model_type {
                1 => "UNIGRAM".to_string(),
                3 => "WORD".into(),
                4 => "CHAR".into(),
                t => t.to_string(),
            }
        ));
    }
    let n = v.pieces.len() as u32;
    for id in [&mut v.unk_id, &mut v.bos_id, &mut v.eos_id, &mut v.pad_id] {
        if id.is_some_and(|i| i >= n) {
            *id = None;
        }
    }
    Ok(v)
}
