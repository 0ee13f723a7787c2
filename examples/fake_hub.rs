//! The loopback fake Hugging Face Hub of the tests (tests/fake_hub), as a
//! server, to try `pull`, `-m ORG/NAME:QUANT` and `-hf` without the network:
//!
//! ```sh
//! cargo run --release --example fake_hub -- 8765 &
//! export HF_ENDPOINT=http://127.0.0.1:8765 HF_HUB_CACHE=/tmp/hf-demo
//! llama-wgpu pull test/tiny-GGUF:Q8_0
//! ```
//!
//! It serves `test/tiny-GGUF` (tiny random models, Q4_K_M and Q8_0) and
//! `test/tiny-split-GGUF` (the Q8_0 one in three parts) until killed.

#[path = "../tests/fake_hub/mod.rs"]
mod fake_hub;

use fake_hub::models::TinyRepos;
use fake_hub::FakeHub;

fn main() {
    let port = match std::env::args().nth(1).map(|p| p.parse::<u16>()) {
        None => 0,
        Some(Ok(p)) => p,
        Some(Err(_)) => {
            eprintln!("usage: fake_hub [PORT]");
            std::process::exit(2);
        }
    };
    let repos = TinyRepos::new();
    let hub = FakeHub::start_on(port, vec![repos.tiny(), repos.split()]);
    println!("{}", hub.url);
    loop {
        std::thread::park();
    }
}
