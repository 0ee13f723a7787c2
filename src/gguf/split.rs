//! Split GGUF file names, as llama.cpp's `gguf-split` writes them:
//! `NAME-00001-of-00003.gguf`, each part carrying `split.no` and `split.count`.

/// A split GGUF part, `NAME-00001-of-00003.gguf` (llama.cpp's `gguf-split` naming).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitPart {
    /// The name without `-0000k-of-0000n.gguf`.
    pub stem: String,
    /// 1-based.
    pub index: u32,
    pub count: u32,
}

pub fn split_part(file: &str) -> Option<SplitPart> {
    let lower = file.to_ascii_lowercase();
    let base = lower.strip_suffix(".gguf")?;
    // "-00001-of-00003" is 15 bytes.
    if base.len() < 15 {
        return None;
    }
    let (stem, suffix) = file.split_at(base.len() - 15);
    let s = suffix.as_bytes();
    let digits = |r: std::ops::Range<usize>| s[r].iter().all(u8::is_ascii_digit);
    if s[0] != b'-' || !digits(1..6) || &suffix[6..10] != "-of-" || !digits(10..15) {
        return None;
    }
    let index: u32 = suffix[1..6].parse().ok()?;
    let count: u32 = suffix[10..15].parse().ok()?;
    if index == 0 || count == 0 || index > count {
        return None;
    }
    Some(SplitPart {
        stem: stem.to_string(),
        index,
        count,
    })
}

/// The file name of part `index` of a split model whose stem is `stem`.
pub fn split_name(stem: &str, index: u32, count: u32) -> String {
    format!("{stem}-{index:05}-of-{count:05}.gguf")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_parts_are_recognised() {
        let p = split_part("m-Q4_0-00002-of-00003.gguf").unwrap();
        assert_eq!((p.stem.as_str(), p.index, p.count), ("m-Q4_0", 2, 3));
        assert_eq!(split_name("m-Q4_0", 1, 3), "m-Q4_0-00001-of-00003.gguf");
        assert_eq!(split_part("m-Q4_0.gguf"), None);
        assert_eq!(split_part("m-00004-of-00003.gguf"), None);
        assert_eq!(split_part("m-0000a-of-00003.gguf"), None);
    }
}
