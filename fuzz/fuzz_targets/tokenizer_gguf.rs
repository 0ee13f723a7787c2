//! A vocabulary built from the input, written as GGUF metadata and loaded as
//! a tokenizer (SentencePiece or byte-level BPE), then used to encode and
//! decode the rest of the input. A load error is fine; a panic, a hang or a
//! memory blow-up (libFuzzer's -timeout and -rss_limit_mb) is a bug.
//!
//! Layout: byte 0 picks the model (even: llama, odd: gpt2) and whether
//! scores and token types are written; the rest up to the first 0xFF byte is
//! the token list, one token per 0x00-separated piece (lossy UTF-8); for
//! gpt2, every adjacent pair of tokens whose concatenation is also a token
//! becomes a merge; what follows 0xFF is the text to encode.

#![no_main]

use libfuzzer_sys::fuzz_target;
use llama_wgpu::gguf::{string_array, tag, Gguf, GgufWriter, Value};
use llama_wgpu::tokenizer::Tokenizer;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (vocab, text) = match rest.iter().position(|&b| b == 0xFF) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let tokens: Vec<String> = vocab
        .split(|&b| b == 0)
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect();
    let n = tokens.len();
    let mut w = GgufWriter::new();
    let gpt2 = mode & 1 == 1;
    w.kv(
        "tokenizer.ggml.model",
        Value::String(if gpt2 { "gpt2" } else { "llama" }.into()),
    )
    .kv("tokenizer.ggml.tokens", string_array(&tokens));
    if mode & 2 == 0 {
        let scores = (0..n).map(|i| Value::F32(-(i as f32))).collect();
        w.kv("tokenizer.ggml.scores", Value::array(tag::F32, scores));
    }
    if mode & 4 == 0 {
        // Types cycle through normal, unknown, control, user-defined, unused, byte.
        let types = (0..n).map(|i| Value::I32((i % 6) as i32 + 1)).collect();
        w.kv("tokenizer.ggml.token_type", Value::array(tag::I32, types));
    }
    if gpt2 {
        let set: std::collections::HashSet<&str> = tokens.iter().map(String::as_str).collect();
        let merges: Vec<String> = tokens
            .windows(2)
            .filter(|p| set.contains(format!("{}{}", p[0], p[1]).as_str()))
            .map(|p| format!("{} {}", p[0], p[1]))
            .collect();
        w.kv("tokenizer.ggml.merges", string_array(&merges))
            .kv("tokenizer.ggml.pre", Value::String("gpt-2".into()));
    }
    if mode & 8 == 0 {
        w.kv("tokenizer.ggml.add_bos_token", Value::Bool(mode & 16 == 0));
    }
    let g = Gguf::from_bytes(w.to_bytes()).expect("the writer's output parses");
    let Ok(tok) = Tokenizer::from_gguf(&g) else {
        return;
    };
    let text = String::from_utf8_lossy(text);
    for parse_special in [false, true] {
        if let Ok(ids) = tok.encode(&text, true, parse_special) {
            assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
            std::hint::black_box(tok.decode(&ids));
        }
    }
});
