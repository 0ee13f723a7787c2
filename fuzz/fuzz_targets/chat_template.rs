//! Arbitrary chat templates rendered over a short conversation. A compile or
//! render error is fine; a panic, a hang or a memory blow-up is a bug (the
//! renderer promises fuel and output budgets).
//!
//! Layout: the input up to the first 0x00 byte is the template; the rest is
//! the content of the user message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use llama_wgpu::tokenizer::{ChatMessage, ChatTemplate};

fuzz_target!(|data: &[u8]| {
    let (src, content) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let src = String::from_utf8_lossy(src);
    let Ok(t) = ChatTemplate::new(src.into_owned(), "fuzz") else {
        return;
    };
    let t = t.with_special_tokens("<s>", "</s>");
    let messages = [
        ChatMessage::new("system", "You are helpful."),
        ChatMessage::new("user", String::from_utf8_lossy(content)),
        ChatMessage::new("assistant", "Hi."),
    ];
    for add_generation_prompt in [false, true] {
        if let Ok(out) = t.render(&messages, add_generation_prompt) {
            std::hint::black_box(out);
        }
    }
});
