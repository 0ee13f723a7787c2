//! Tiny runnable GGUF models for the fake hub: random weights
//! (`model::synthetic`) with a small SentencePiece vocabulary, whole or split
//! as llama.cpp's `gguf-split` splits them.

use llama_wgpu::gguf::{string_array, Gguf, GgufWriter, Value};
use llama_wgpu::model::synthetic::{synthetic_gguf, LlamaShape};
use llama_wgpu::quant::TensorType;

/// A runnable tiny model (`LlamaShape::tiny`, vocabulary of 1000 tokens).
pub fn tiny_model(ty: TensorType, seed: u64) -> Vec<u8> {
    let shape = LlamaShape::tiny();
    let g = Gguf::from_bytes(synthetic_gguf(&shape, ty, seed).unwrap()).unwrap();
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    tokens.push("▁".into());
    tokens.extend(('a'..='z').map(|c| c.to_string()));
    let mut i = 0;
    while tokens.len() < shape.n_vocab {
        tokens.push(format!("▁w{i}"));
        i += 1;
    }
    let n = tokens.len();
    let scores = (0..n).map(|i| Value::F32(-(i as f32))).collect();
    let types = (0..n)
        .map(|i| {
            Value::I32(match i {
                0 => 2,
                1 | 2 => 3,
                3..=258 => 6,
                _ => 1,
            })
        })
        .collect();
    let mut w = GgufWriter::new();
    for (k, v) in &g.metadata {
        w.kv(k, v.clone());
    }
    w.kv("tokenizer.ggml.model", Value::String("llama".into()))
        .kv("tokenizer.ggml.tokens", string_array(&tokens))
        .kv("tokenizer.ggml.scores", Value::array(6, scores))
        .kv("tokenizer.ggml.token_type", Value::array(5, types))
        .kv("tokenizer.ggml.bos_token_id", Value::U32(1))
        .kv("tokenizer.ggml.eos_token_id", Value::U32(2));
    for t in &g.tensors {
        w.tensor(
            &t.name,
            &t.dims,
            t.tensor_type().unwrap(),
            g.tensor_data(t).to_vec(),
        );
    }
    w.to_bytes()
}

/// `model` in `n` parts: the first with all metadata, each with `split.no`,
/// `split.count`, `split.tensors.count` and its share of the tensors.
pub fn split(model: &[u8], n: usize) -> Vec<Vec<u8>> {
    let g = Gguf::from_bytes(model.to_vec()).unwrap();
    let per = g.tensors.len().div_ceil(n);
    (0..n)
        .map(|i| {
            let mut w = GgufWriter::new();
            if i == 0 {
                for (k, v) in &g.metadata {
                    w.kv(k, v.clone());
                }
            }
            w.kv("split.no", Value::U16(i as u16))
                .kv("split.count", Value::U16(n as u16))
                .kv("split.tensors.count", Value::I32(g.tensors.len() as i32));
            for t in g.tensors.iter().skip(i * per).take(per) {
                w.tensor(
                    &t.name,
                    &t.dims,
                    t.tensor_type().unwrap(),
                    g.tensor_data(t).to_vec(),
                );
            }
            w.to_bytes()
        })
        .collect()
}

/// The standard fake repositories: `test/tiny-GGUF` (Q4_K_M and Q8_0 files)
/// and `test/tiny-split-GGUF` (the same Q8_0 model in three parts).
pub struct TinyRepos {
    pub q4k: Vec<u8>,
    pub q8: Vec<u8>,
    pub q8_parts: Vec<Vec<u8>>,
}

pub const TINY: &str = "test/tiny-GGUF";
pub const SPLIT: &str = "test/tiny-split-GGUF";

impl TinyRepos {
    pub fn new() -> TinyRepos {
        let q8 = tiny_model(TensorType::Q8_0, 2);
        TinyRepos {
            q4k: tiny_model(TensorType::Q4_K, 1),
            q8_parts: split(&q8, 3),
            q8,
        }
    }

    pub fn tiny(&self) -> super::FakeRepo {
        use super::FakeFile;
        super::FakeRepo::new(
            TINY,
            vec![
                FakeFile::git(
                    ".gitattributes",
                    b"*.gguf filter=lfs diff=lfs merge=lfs -text\n",
                ),
                FakeFile::git("README.md", b"# tiny\n"),
                FakeFile::lfs("tiny.Q4_K_M.gguf", self.q4k.clone()),
                FakeFile::lfs("tiny.Q8_0.gguf", self.q8.clone()),
            ],
        )
    }

    pub fn split(&self) -> super::FakeRepo {
        let files = self
            .q8_parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                super::FakeFile::lfs(
                    &format!("Q8_0/tiny-Q8_0-{:05}-of-00003.gguf", i + 1),
                    p.clone(),
                )
            })
            .collect();
        super::FakeRepo::new(SPLIT, files)
    }
}
