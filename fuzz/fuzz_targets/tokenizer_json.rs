//! Arbitrary bytes as a Hugging Face `tokenizer.json`, loaded and used to
//! encode and decode a fixed text. A load error is fine; a panic, a hang or a
//! memory blow-up is a bug.

#![no_main]

use libfuzzer_sys::fuzz_target;
use llama_wgpu::tokenizer::Tokenizer;

fuzz_target!(|data: &[u8]| {
    // One directory per process: the loader also looks for a
    // tokenizer_config.json beside the file, and there must be none.
    thread_local! {
        static DIR: std::path::PathBuf = {
            let d = std::env::temp_dir().join(format!("fuzz-tokenizer-json-{}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            d.join("tokenizer.json")
        };
    }
    let path = DIR.with(|p| p.clone());
    std::fs::write(&path, data).unwrap();
    let Ok(tok) = Tokenizer::from_tokenizer_json(&path) else {
        return;
    };
    for text in ["Hello, world! ab  a\n<s>", "\u{0416}\u{0416} 123 \u{1F600}"] {
        if let Ok(ids) = tok.encode(text, true, true) {
            assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
            std::hint::black_box(tok.decode(&ids));
        }
    }
});
