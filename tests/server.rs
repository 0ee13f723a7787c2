//! `llama-wgpu serve` over real HTTP on loopback: one server process with
//! SmolLM2 on lavapipe (`--parallel 4`), started once and shared by every
//! test; a second, tiny one (`--parallel 1 --queue-size 0`) for the
//! queue-full answer. Generations stay short (decode is ~2.5 tokens/s for
//! one sequence on lavapipe).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
const KEY: &str = "test-key-123";
const ALIAS: &str = "smol";

struct Server {
    addr: String,
    /// Kept so the server lives as long as the test process; it exits when
    /// the process does (the wrapper shell sees stdin close).
    child: Mutex<Child>,
    log: std::sync::Arc<Mutex<String>>,
}

/// Starts `serve` under a shell that stops it with SIGTERM when our stdin
/// pipe closes, i.e. when this test process exits, however it exits.
fn start(args: &[&str]) -> Server {
    std::env::set_var("XDG_RUNTIME_DIR", "/tmp/xdg-runtime-0");
    let _ = std::fs::create_dir_all("/tmp/xdg-runtime-0");
    let script = r#""$0" "$@" & pid=$!; read _; kill -TERM $pid 2>/dev/null; wait $pid"#;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_llama-wgpu"))
        .arg("serve")
        .args(["-m", MODEL, "--port", "0"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the server");
    let stderr = child.stderr.take().unwrap();
    let log = std::sync::Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let log2 = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("listening on http://") {
                let _ = tx.send(a.to_string());
            }
            let mut l = log2.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("server did not listen: {}", log.lock().unwrap()));
    let s = Server {
        addr,
        child: Mutex::new(child),
        log,
    };
    // /health is 503 while the model loads, then 200.
    let t0 = Instant::now();
    loop {
        let r = s.get("/health", None);
        match r.status {
            200 => break,
            503 => assert_eq!(r.json()["error"]["code"], "model_loading"),
            other => panic!("/health: {other}"),
        }
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "model not loaded: {}",
            s.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    s
}

fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        start(&[
            "--parallel",
            "4",
            "-c",
            "512",
            "--api-key",
            KEY,
            "--alias",
            ALIAS,
        ])
    })
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A response whose body is read as it arrives.
struct Stream {
    status: u16,
    headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    chunked: bool,
    /// Bytes left in the current chunk.
    left: usize,
    done: bool,
}

impl Stream {
    /// The next piece of body, or None at its end.
    fn next_bytes(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        if !self.chunked {
            let mut buf = vec![0; 4096];
            let n = self.reader.read(&mut buf).ok()?;
            if n == 0 {
                self.done = true;
                return None;
            }
            buf.truncate(n);
            return Some(buf);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.reader.read_line(&mut line).ok()?;
            let size = usize::from_str_radix(line.trim(), 16).ok()?;
            if size == 0 {
                self.done = true;
                return None;
            }
            self.left = size;
        }
        let mut buf = vec![0; self.left];
        self.reader.read_exact(&mut buf).ok()?;
        self.left = 0;
        let mut crlf = [0; 2];
        self.reader.read_exact(&mut crlf).ok()?;
        Some(buf)
    }

    fn rest(mut self) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(b) = self.next_bytes() {
            all.extend(b);
        }
        all
    }

    /// The next SSE `data:` payload (one event per chunk is not assumed).
    fn lines(self) -> LineReader {
        LineReader {
            s: self,
            buf: Vec::new(),
        }
    }
}

struct LineReader {
    s: Stream,
    buf: Vec<u8>,
}

impl LineReader {
    /// Next non-empty line of the body.
    fn next_line(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=at).collect();
                let line = String::from_utf8(line).expect("UTF-8 body");
                let line = line.trim_end();
                if line.is_empty() {
                    continue;
                }
                return Some(line.to_string());
            }
            let more = self.s.next_bytes()?;
            self.buf.extend(more);
        }
    }
}

fn open(addr: &str, method: &str, path: &str, key: Option<&str>, body: Option<&[u8]>) -> Stream {
    let mut sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(240)))
        .unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(k) = key {
        req.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    sock.write_all(req.as_bytes()).unwrap();
    if let Some(b) = body {
        // A body over the limit may be refused before it is all sent.
        let _ = sock.write_all(b);
    }
    let mut reader = BufReader::new(sock);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    Stream {
        status,
        headers,
        reader,
        chunked,
        left: 0,
        done: false,
    }
}

impl Server {
    fn raw(&self, method: &str, path: &str, key: Option<&str>, body: Option<&[u8]>) -> Response {
        let s = open(&self.addr, method, path, key, body);
        let (status, headers) = (s.status, s.headers.clone());
        Response {
            status,
            headers,
            body: s.rest(),
        }
    }
    fn get(&self, path: &str, key: Option<&str>) -> Response {
        self.raw("GET", path, key, None)
    }
    fn post(&self, path: &str, body: &Value) -> Response {
        self.raw("POST", path, Some(KEY), Some(body.to_string().as_bytes()))
    }
    /// A request that must succeed; its JSON body.
    fn ok(&self, path: &str, body: &Value) -> Value {
        let r = self.post(path, body);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        r.json()
    }
    fn stream(&self, path: &str, body: &Value) -> LineReader {
        let s = open(
            &self.addr,
            "POST",
            path,
            Some(KEY),
            Some(body.to_string().as_bytes()),
        );
        assert_eq!(s.status, 200, "{path}");
        s.lines()
    }
    /// Every SSE payload up to `[DONE]` (which must come last).
    fn sse(&self, path: &str, body: &Value) -> Vec<Value> {
        let mut lines = self.stream(path, body);
        let mut out = Vec::new();
        while let Some(l) = lines.next_line() {
            let data = l
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not SSE: {l}"));
            if data == "[DONE]" {
                assert!(lines.next_line().is_none(), "events after [DONE]");
                return out;
            }
            out.push(serde_json::from_str(data).unwrap());
        }
        panic!("stream ended without [DONE]: {out:?}");
    }
    fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics", Some(KEY)).text();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("llama_wgpu_{name} ")))
            .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
            .parse()
            .unwrap()
    }
}

fn chat_body(user: &str, max_tokens: u32) -> Value {
    json!({
        "model": ALIAS,
        "messages": [{"role": "user", "content": user}],
        "temperature": 0,
        "max_tokens": max_tokens,
    })
}

fn content(v: &Value) -> &str {
    v["choices"][0]["message"]["content"].as_str().unwrap()
}

#[test]
fn health_models_tags_show_version() {
    let s = server();
    assert_eq!(s.get("/health", None).status, 200);
    let m = s.get("/v1/models", Some(KEY)).json();
    assert_eq!(m["object"], "list");
    assert_eq!(m["data"][0]["id"], ALIAS);
    assert_eq!(m["data"][0]["meta"]["n_ctx_per_slot"], 512);
    let t = s.get("/api/tags", Some(KEY)).json();
    assert_eq!(t["models"][0]["name"], ALIAS);
    assert_eq!(t["models"][0]["details"]["quantization_level"], "Q4_1");
    assert_eq!(t["models"][0]["details"]["family"], "llama");
    let ps = s.get("/api/ps", Some(KEY)).json();
    let loaded = &ps["models"][0];
    assert_eq!(loaded["name"], ALIAS);
    assert_eq!(loaded["context_length"], 512);
    // Weights (93 MB file) plus 4 slots x 512 positions of f16 KV: more than the file.
    let vram = loaded["size_vram"].as_u64().unwrap();
    assert!(
        vram > 93_000_000 && vram == loaded["size"].as_u64().unwrap(),
        "{ps}"
    );
    // llama-server's /slots: every slot; one is busy while a stream of ours is open.
    let slots = s.get("/slots", Some(KEY)).json();
    let list = slots.as_array().unwrap();
    assert_eq!(list.len(), 4, "{slots}");
    for (i, sl) in list.iter().enumerate() {
        assert_eq!(
            (sl["id"].as_u64(), sl["n_ctx"].as_u64()),
            (Some(i as u64), Some(512))
        );
        assert_eq!(
            sl["is_processing"],
            sl["id_task"].as_i64() != Some(-1),
            "{sl}"
        );
    }
    let mut open = s.stream(
        "/v1/chat/completions",
        &json!({"model": ALIAS, "stream": true, "max_tokens": 64, "temperature": 0,
                "messages": [{"role": "user", "content": "Count to twenty."}]}),
    );
    // The role chunk, then two tokens: the step that made the first is counted by now.
    for _ in 0..3 {
        assert!(open.next_line().is_some());
    }
    let busy = s.get("/slots", Some(KEY)).json();
    assert!(
        busy.as_array()
            .unwrap()
            .iter()
            .any(|sl| sl["is_processing"] == true
                && sl["n_prompt_tokens"].as_u64() > Some(5)
                && sl["n_past"].as_u64() >= sl["n_prompt_tokens"].as_u64()),
        "{busy}"
    );
    drop(open);
    let show = s.ok("/api/show", &json!({"model": ALIAS}));
    assert!(show["template"].as_str().unwrap().contains("im_start"));
    assert_eq!(show["model_info"]["general.architecture"], "llama");
    let v = s.get("/api/version", Some(KEY)).json();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let page = s.get("/", None);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<title>llama-wgpu chat</title>"));
}

#[test]
fn tokenize_detokenize_and_metrics() {
    let s = server();
    let t = s.ok("/tokenize", &json!({"content": "Hello world"}));
    let ids: Vec<u64> = t["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(!ids.is_empty());
    let d = s.ok("/detokenize", &json!({"tokens": ids}));
    assert_eq!(d["content"], "Hello world");
    let p = s.ok("/tokenize", &json!({"content": "Hi", "with_pieces": true}));
    assert_eq!(p["tokens"][0]["piece"], "Hi");
    let metrics = s.get("/metrics", Some(KEY));
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let text = metrics.text();
    for name in [
        "requests_total",
        "prompt_tokens_total",
        "tokens_predicted_total",
        "requests_processing",
        "requests_deferred",
        "predicted_tokens_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE llama_wgpu_{name} ")),
            "{name}"
        );
    }
    assert_eq!(s.metric("slots"), 4.0);
}

/// Non-streaming chat: text, finish reason, usage, llama-server timings;
/// then the same greedy request streamed gives the same text in OpenAI's
/// chunk format.
#[test]
fn chat_completion_streaming_and_not() {
    let s = server();
    let body = chat_body("What is the capital of France?", 6);
    let r = s.ok("/v1/chat/completions", &body);
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(r["model"], ALIAS);
    assert!(r["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let text = content(&r).to_string();
    assert!(!text.is_empty());
    let usage = &r["usage"];
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!((1..=6).contains(&completion), "{usage}");
    let reason = r["choices"][0]["finish_reason"].as_str().unwrap();
    assert_eq!(reason == "length", completion == 6, "{r}");
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + completion
    );
    assert_eq!(r["timings"]["predicted_n"], usage["completion_tokens"]);
    // Another chat may have left the same system prompt in this slot.
    let cached = usage["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert_eq!(r["timings"]["cache_n"], cached);
    assert_eq!(
        r["timings"]["prompt_n"].as_u64().unwrap() + cached,
        usage["prompt_tokens"].as_u64().unwrap()
    );
    // The prompt is the rendered template: its tokens, counted by /tokenize, match usage.
    let rendered = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
    let toks = s.ok(
        "/tokenize",
        &json!({"content": rendered, "add_special": true}),
    );
    assert_eq!(
        toks["tokens"].as_array().unwrap().len() as u64,
        usage["prompt_tokens"].as_u64().unwrap()
    );

    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let events = s.sse("/v1/chat/completions", &sbody);
    let id = events[0]["id"].as_str().unwrap();
    assert!(events.iter().all(|e| e["id"] == id), "one id across chunks");
    assert!(events
        .iter()
        .all(|e| e["object"] == "chat.completion.chunk"));
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, text, "greedy: streamed text = non-streamed text");
    let n = events.len();
    assert_eq!(events[n - 2]["choices"][0]["finish_reason"], reason);
    // include_usage: a last chunk with no choices and the usage.
    assert_eq!(events[n - 1]["choices"], json!([]));
    // (The same prompt again may come from the slot's cache: only the counts must agree.)
    for k in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(events[n - 1]["usage"][k], usage[k], "{k}");
    }
    assert!(events[n - 1]["usage"]["prompt_tokens_details"]["cached_tokens"].is_u64());
    assert!(events[..n - 1].iter().all(|e| e["usage"].is_null()));
}

/// Completions from text and from the same prompt as token ids agree.
#[test]
fn completions_text_and_token_ids() {
    let s = server();
    let prompt = "The three primary colors are";
    let r = s.ok(
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 5, "temperature": 0}),
    );
    assert_eq!(r["object"], "text_completion");
    let text = r["choices"][0]["text"].as_str().unwrap().to_string();
    assert_eq!(r["usage"]["completion_tokens"], 5);
    assert_eq!(r["choices"][0]["finish_reason"], "length");
    let ids = s.ok(
        "/tokenize",
        &json!({"content": prompt, "add_special": true}),
    )["tokens"]
        .clone();
    assert_eq!(r["usage"]["prompt_tokens"], ids.as_array().unwrap().len());
    let r2 = s.ok(
        "/v1/completions",
        &json!({"prompt": ids, "max_tokens": 5, "temperature": 0}),
    );
    assert_eq!(r2["choices"][0]["text"], text.as_str());
    let events = s.sse(
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 5, "temperature": 0, "stream": true}),
    );
    let streamed: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(streamed, text);
    assert_eq!(
        events.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
}

/// A stop string cuts the text before it (never sent) with finish "stop";
/// max_tokens gives exactly that many tokens with finish "length".
#[test]
fn stop_strings_and_max_tokens() {
    let s = server();
    let prompt = "1, 2, 3, 4, 5,";
    let full = s.ok(
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 8, "temperature": 0}),
    );
    let text = full["choices"][0]["text"].as_str().unwrap().to_string();
    assert_eq!(full["usage"]["completion_tokens"], 8);
    // Stop at the second comma of the continuation.
    let stop = ",";
    let cut = text.find(stop).expect("the count goes on with commas");
    let r = s.ok(
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 8, "temperature": 0, "stop": [stop, "never"]}),
    );
    assert_eq!(r["choices"][0]["text"], &text[..cut], "{text:?}");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert!(r["usage"]["completion_tokens"].as_u64().unwrap() < 8);
    // As a single string too, streamed.
    let events = s.sse(
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 8, "temperature": 0, "stop": stop, "stream": true}),
    );
    let streamed: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(streamed, &text[..cut]);
    let r = s.ok(
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 3, "temperature": 0}),
    );
    assert_eq!(r["usage"]["completion_tokens"], 3);
    assert_eq!(r["choices"][0]["finish_reason"], "length");
}

/// logprobs: one entry per generated token, `top_logprobs` alternatives
/// each, all <= 0, best first; greedy picks the best.
#[test]
fn logprobs_chat_and_completions() {
    let s = server();
    let mut body = chat_body("Say hello.", 4);
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(3);
    let r = s.ok("/v1/chat/completions", &body);
    let entries = r["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(
        entries.len() as u64,
        r["usage"]["completion_tokens"].as_u64().unwrap()
    );
    let mut joined = String::new();
    for e in entries {
        let lp = e["logprob"].as_f64().unwrap();
        assert!(lp <= 0.0);
        let top = e["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert_eq!(top[0]["token"], e["token"], "greedy takes the best token");
        assert!((top[0]["logprob"].as_f64().unwrap() - lp).abs() < 1e-6);
        assert!(top
            .windows(2)
            .all(|w| w[0]["logprob"].as_f64() >= w[1]["logprob"].as_f64()));
        let bytes: Vec<u8> = e["bytes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        joined.push_str(&String::from_utf8_lossy(&bytes));
    }
    assert_eq!(joined, content(&r));
    let r = s.ok(
        "/v1/completions",
        &json!({"prompt": "Once upon a time", "max_tokens": 4, "temperature": 0, "logprobs": 2}),
    );
    let lp = &r["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"].as_array().unwrap().len(), 4);
    assert_eq!(lp["token_logprobs"].as_array().unwrap().len(), 4);
    assert_eq!(lp["top_logprobs"][0].as_object().unwrap().len(), 2);
    assert_eq!(lp["text_offset"][0], 0);
}

/// JSON mode: OpenAI's `response_format` json_object and Ollama's
/// `format: "json"` give one JSON object and end when it closes (greedy:
/// "stop"); sampled, every reply is a JSON object or, cut off by
/// max_tokens, the start of one. JSON schemas are refused with a 400.
#[test]
fn json_mode_replies_are_json_objects() {
    use llama_wgpu::engine::json_output::{JsonState, Schema, SchemaState};
    let s = server();
    let ask = "Reply with a JSON object with one key \"answer\": what is 2+2?";
    let mut body = chat_body(ask, 48);
    body["response_format"] = json!({"type": "json_object"});
    let r = s.ok("/v1/chat/completions", &body);
    let text = content(&r);
    assert_eq!(r["choices"][0]["finish_reason"], "stop", "{text:?}");
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert!(v.is_object(), "{text:?}");
    // The same conversation without JSON mode is not a bare object (this
    // model wraps it in a Markdown fence): the constraint did the work.
    body["response_format"] = json!({"type": "text"});
    let plain = s.ok("/v1/chat/completions", &body);
    assert!(
        serde_json::from_str::<Value>(content(&plain)).is_err(),
        "{plain}"
    );

    let ollama = s.ok(
        "/api/chat",
        &json!({"model": ALIAS, "stream": false, "format": "json",
                "messages": [{"role": "user", "content": ask}],
                "options": {"temperature": 0, "num_predict": 48}}),
    );
    let text = ollama["message"]["content"].as_str().unwrap();
    assert_eq!(ollama["done_reason"], "stop", "{text:?}");
    assert!(serde_json::from_str::<Value>(text).unwrap().is_object());
    for seed in [1, 2] {
        let g = s.ok(
            "/api/generate",
            &json!({"model": ALIAS, "stream": false, "format": "json", "prompt": ask,
                    "options": {"temperature": 1.0, "seed": seed, "num_predict": 32}}),
        );
        let text = g["response"].as_str().unwrap();
        let state = JsonState::new()
            .after(text.as_bytes())
            .unwrap_or_else(|| panic!("seed {seed}: not JSON: {text:?}"));
        assert_eq!(state.is_done(), g["done_reason"] == "stop", "{text:?}");
    }

    // A schema: exactly the one integer property it asks for.
    let schema = json!({"type": "object", "properties": {"answer": {"type": "integer"}},
                        "required": ["answer"], "additionalProperties": false});
    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "sum", "strict": true, "schema": schema}});
    let r = s.ok("/v1/chat/completions", &body);
    let text = content(&r);
    assert_eq!(r["choices"][0]["finish_reason"], "stop", "{text:?}");
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["answer"], "{text:?}");
    assert!(v["answer"].is_i64(), "{text:?}");
    // Sampled replies follow it too: each is a prefix the schema allows,
    // and a whole object exactly when the reply says it stopped.
    let compiled = Schema::compile(&schema).unwrap();
    for seed in [1, 2, 3] {
        let g = s.ok(
            "/api/generate",
            &json!({"model": ALIAS, "stream": false, "format": schema, "prompt": ask,
                    "options": {"temperature": 1.0, "seed": seed, "num_predict": 24}}),
        );
        let text = g["response"].as_str().unwrap();
        let state = SchemaState::new(&compiled)
            .after(&compiled, text.as_bytes())
            .unwrap_or_else(|| panic!("seed {seed}: not the schema: {text:?}"));
        assert_eq!(state.is_done(), g["done_reason"] == "stop", "{text:?}");
    }

    // What a schema cannot have is named in a 400.
    for (format, says) in [
        (
            json!({"type": "json_schema", "json_schema": {"name": "x"}}),
            "json_schema.schema: missing",
        ),
        (
            json!({"type": "json_schema", "json_schema": {"schema": {"type": "object",
                   "properties": {"id": {"type": "integer", "multipleOf": 5}}}}}),
            "keyword 'multipleOf' is not supported",
        ),
    ] {
        body["response_format"] = format;
        let e = s.post("/v1/chat/completions", &body);
        assert_eq!(e.status, 400);
        assert!(e.text().contains(says), "{}", e.text());
    }
    let e = s.post(
        "/api/generate",
        &json!({"model": ALIAS, "prompt": "hi", "format": {"type": "number"}}),
    );
    assert_eq!(e.status, 400);
    assert!(
        e.text().contains("root must be an object or an array"),
        "{}",
        e.text()
    );
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}
    }}, {"type": "function", "function": {
        "name": "get_time", "description": "Current time in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}
    }}])
}

/// A one-slot server of its own with a real model's chat template from
/// tests/fixtures/tokenizer/tools.json, and the folder the template is in.
fn with_fixture_template(key: &str) -> (Server, std::path::PathBuf) {
    let f: Value = serde_json::from_str(
        &std::fs::read_to_string("tests/fixtures/tokenizer/tools.json").unwrap(),
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("llama-wgpu-{key}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let template = dir.join(format!("{key}.jinja"));
    std::fs::write(&template, f["templates"][key]["source"].as_str().unwrap()).unwrap();
    let s = start(&[
        "--parallel",
        "1",
        "-c",
        "1024",
        "--chat-template",
        template.to_str().unwrap(),
    ]);
    (s, dir)
}

/// The turn after a `get_weather` call `id` and its result: the template
/// renders the pair, and the model answers or calls again.
fn turn_after_result(s: &Server, body: &mut Value, id: &str, args: &Value) {
    body["messages"] = json!([
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function",
            "function": {"name": "get_weather", "arguments": args.to_string()}}]},
        {"role": "tool", "tool_call_id": id, "content": "18 C and sunny"},
    ]);
    let r = s.ok("/v1/chat/completions", body);
    let m = &r["choices"][0]["message"];
    assert!(
        m["content"].is_string() || m["tool_calls"].is_array(),
        "{r}"
    );
}

/// One OpenAI tool call: its id, name and arguments (an object, from its
/// JSON string). Ids look like OpenAI's (`call_...`), but in Mistral's
/// syntax, whose template takes only 9 letters and digits.
fn openai_call(c: &Value) -> (String, String, Value) {
    assert_eq!(c["type"], "function", "{c}");
    let id = c["id"].as_str().unwrap().to_string();
    let mistral = id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric());
    assert!(id.starts_with("call_") || mistral, "{c}");
    let args = c["function"]["arguments"].as_str().unwrap();
    let args: Value = serde_json::from_str(args).unwrap_or_else(|e| panic!("{e}: {c}"));
    assert!(args.is_object(), "{c}");
    (
        id,
        c["function"]["name"].as_str().unwrap().to_string(),
        args,
    )
}

/// Tool calling in the generic syntax (SmolLM2's template has no tools):
/// the reply is constrained to a call of an offered tool with arguments
/// that follow its schema, or to an answer, and read back as OpenAI's and
/// Ollama's `tool_calls`.
#[test]
fn tool_calls_in_the_generic_syntax() {
    let s = server();
    let mut body = chat_body("What is the weather in Paris?", 48);
    body["tools"] = weather_tools();
    body["tool_choice"] = json!("required");
    let r = s.ok("/v1/chat/completions", &body);
    let choice = &r["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{r}");
    assert!(choice["message"]["content"].is_null(), "{r}");
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{r}");
    let (id, name, args) = openai_call(&calls[0]);
    assert!(name == "get_weather" || name == "get_time", "{r}");
    if name == "get_weather" {
        assert!(args["city"].is_string(), "{r}");
    }
    let keys: Vec<&String> = args.as_object().unwrap().keys().collect();
    assert!(
        keys.iter().all(|k| *k == "city"),
        "only the schema's property: {r}"
    );

    // A named tool is the one called; streamed, the call comes as one delta.
    body["tool_choice"] = json!({"type": "function", "function": {"name": "get_time"}});
    body["stream"] = json!(true);
    let events = s.sse("/v1/chat/completions", &body);
    let deltas: Vec<&Value> = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert_eq!(deltas.len(), 1, "{events:?}");
    assert_eq!(deltas[0]["index"], 0);
    assert_eq!(openai_call(deltas[0]).1, "get_time");
    let n = events.len();
    assert_eq!(events[n - 1]["choices"][0]["finish_reason"], "tool_calls");

    // The call and its result sent back: the next turn is an answer or a
    // call again, whichever the model writes, and well-formed either way.
    let mut body = chat_body("What is the weather in Paris?", 48);
    body["tools"] = weather_tools();
    body["messages"] = json!([
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": id, "content": "18 C and sunny"},
    ]);
    let r = s.ok("/v1/chat/completions", &body);
    let m = &r["choices"][0]["message"];
    match m["tool_calls"].as_array() {
        Some(calls) => {
            assert_eq!(r["choices"][0]["finish_reason"], "tool_calls", "{r}");
            calls.iter().for_each(|c| drop(openai_call(c)));
        }
        None => {
            let text = m["content"].as_str().unwrap();
            assert!(!text.is_empty() && !text.contains("\"response\""), "{r}");
        }
    }

    // Ollama: calls with arguments as objects.
    let o = s.ok(
        "/api/chat",
        &json!({"model": ALIAS, "stream": false, "tools": weather_tools(),
                "messages": [{"role": "user", "content": "What is the weather in Oslo?"}],
                "options": {"temperature": 0, "num_predict": 48}}),
    );
    let calls = o["message"]["tool_calls"]
        .as_array()
        .unwrap_or_else(|| panic!("{o}"));
    assert_eq!(calls[0]["function"]["name"], "get_weather", "{o}");
    assert_eq!(calls[0]["function"]["arguments"]["city"], "Oslo", "{o}");
    assert_eq!(o["done_reason"], "stop");

    // What cannot be honoured is a 400 that names it.
    let mut bad = chat_body("hi", 4);
    for (tools, choice, extra, says) in [
        (
            json!([{"type": "function", "function": {"name": "a b"}}]),
            json!(null),
            json!(null),
            "tools[0].function.name",
        ),
        (
            weather_tools(),
            json!({"type": "function", "function": {"name": "nope"}}),
            json!(null),
            "'nope' is not one of the tools",
        ),
        (
            json!([]),
            json!("required"),
            json!(null),
            "no tools are offered",
        ),
        (
            weather_tools(),
            json!(null),
            json!({"type": "json_object"}),
            "cannot be combined with response_format",
        ),
        (
            json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
            "properties": {"n": {"type": "string", "format": "email"}}}}}]),
            json!(null),
            json!(null),
            "tools[0].function.parameters ('f')",
        ),
    ] {
        bad["tools"] = tools;
        bad["tool_choice"] = choice;
        bad["response_format"] = extra;
        let e = s.post("/v1/chat/completions", &bad);
        assert_eq!(e.status, 400, "{says}: {}", e.text());
        assert!(e.text().contains(says), "{says}: {}", e.text());
    }
    bad["tools"] = json!(null);
    bad["tool_choice"] = json!(null);
    bad["response_format"] = json!(null);
    bad["messages"] = json!([{"role": "assistant", "content": null, "tool_calls": [
        {"id": "x", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]);
    let e = s.post("/v1/chat/completions", &bad);
    assert_eq!(e.status, 400);
    assert!(
        e.text()
            .contains("messages[0].tool_calls[0].function.arguments"),
        "{}",
        e.text()
    );
}

/// Tool calling in the Hermes syntax: SmolLM2 served with Qwen 2.5's chat
/// template (tests/fixtures/tokenizer/tools.json), which describes the
/// tools itself; with `tool_choice` required the reply opens inside a
/// `<tool_call>` block and its call object is constrained.
#[test]
fn tool_calls_in_the_hermes_syntax() {
    let (s, dir) = with_fixture_template("qwen2.5");
    let mut body = chat_body("What is the weather in Paris?", 48);
    body["tools"] = weather_tools();
    body["tool_choice"] = json!("required");
    let r = s.ok("/v1/chat/completions", &body);
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls", "{r}");
    let calls = r["choices"][0]["message"]["tool_calls"].as_array().unwrap();
    let (id, name, args) = openai_call(&calls[0]);
    assert_eq!(name, "get_weather", "{r}");
    assert!(args["city"].is_string(), "{r}");
    // The prompt is the template's, tools included: more tokens than without them.
    let plain = s.ok(
        "/v1/chat/completions",
        &chat_body("What is the weather in Paris?", 1),
    );
    assert!(
        r["usage"]["prompt_tokens"].as_u64().unwrap()
            > plain["usage"]["prompt_tokens"].as_u64().unwrap() + 100,
        "{r} {plain}"
    );
    // A turn after the result renders through the template's own tool turns.
    body["tool_choice"] = json!("auto");
    body["max_tokens"] = json!(16);
    turn_after_result(&s, &mut body, &id, &args);
    // Closing the wrapper's stdin stops this server now rather than at exit.
    drop(s.child.lock().unwrap().stdin.take());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Mistral's syntax (`[TOOL_CALLS][{...}]`, 9-character call ids) with
/// Mistral Nemo's own template. SmolLM2's vocabulary has no `[TOOL_CALLS]`
/// token, so here the marker is plain text (a control token of its own is
/// covered by tests/constraints.rs and tests/tokenizer.rs).
#[test]
fn tool_calls_in_the_mistral_syntax() {
    mistral_tool_calls("mistral-nemo");
}

/// Mistral's `[ARGS]` syntax (`[TOOL_CALLS]name[ARGS]{...}`) with Mistral
/// Small 3.2's own template; its markers are plain text here too (a
/// control token that spells `[ARGS]`: tests/constraints.rs).
#[test]
fn tool_calls_in_the_mistral_args_syntax() {
    mistral_tool_calls("mistral-small3.2");
}

fn mistral_tool_calls(template: &str) {
    let (s, dir) = with_fixture_template(template);
    let mut body = chat_body("What is the weather in Paris?", 64);
    body["tools"] = weather_tools();
    body["tool_choice"] = json!("required");
    let r = s.ok("/v1/chat/completions", &body);
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls", "{r}");
    let calls = r["choices"][0]["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{r}");
    let (id, name, args) = openai_call(&calls[0]);
    assert_eq!(name, "get_weather", "{r}");
    assert!(args["city"].is_string(), "{r}");
    assert!(
        !id.starts_with("call_"),
        "Mistral's ids are 9 letters and digits: {r}"
    );
    // The template refuses other ids: the call and its result, under our id
    // and under another server's, still render as one pair.
    body["tool_choice"] = json!("auto");
    body["max_tokens"] = json!(8);
    for id in [id.as_str(), "call_f3a9c2d1e0b84f6a"] {
        turn_after_result(&s, &mut body, id, &args);
    }
    drop(s.child.lock().unwrap().stdin.take());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reasoning in `<think>`, returned apart (`serve`'s default
/// `--reasoning-format deepseek`): SmolLM2 behind a ChatML template whose
/// generation prompt opens `<think>`, as DeepSeek R1's does. It does not
/// close it (it ends, or stops at 12 tokens): all of the reply is
/// reasoning, the same whether
/// streamed or not, through OpenAI's `reasoning_content` and Ollama's
/// `thinking`.
#[test]
fn reasoning_is_returned_apart() {
    let dir = std::env::temp_dir().join(format!("llama-wgpu-think-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let template = dir.join("think.jinja");
    std::fs::write(
        &template,
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
         {% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}",
    )
    .unwrap();
    let s = start(&[
        "--parallel",
        "1",
        "-c",
        "512",
        "--chat-template",
        template.to_str().unwrap(),
    ]);
    let body = chat_body("What is the capital of France?", 12);
    let r = s.ok("/v1/chat/completions", &body);
    let m = &r["choices"][0]["message"];
    let thought = m["reasoning_content"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"));
    assert!(!thought.is_empty() && !thought.contains("<think>"), "{r}");
    assert_eq!(m["content"], "", "{r}");
    let finish = r["choices"][0]["finish_reason"].as_str().unwrap();
    assert!(finish == "stop" || finish == "length", "{r}");
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let events = s.sse("/v1/chat/completions", &sbody);
    let streamed: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert_eq!(streamed.trim_end(), thought);
    let content: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "");
    let o = s.ok(
        "/api/chat",
        &json!({"model": ALIAS, "stream": false,
                "messages": [{"role": "user", "content": "What is the capital of France?"}],
                "options": {"temperature": 0, "num_predict": 12, "repeat_penalty": 1.0}}),
    );
    assert_eq!(o["message"]["thinking"], thought, "{o}");
    assert_eq!(o["message"]["content"], "");
    // A reply format binds the answer after `</think>`, not the reasoning:
    // greedy, the reasoning begins as it did without one (JSON mode from
    // the first byte would have forced `{`), and may not end the reply
    // before the answer is written (the free reply above stopped after the
    // thought).
    let mut jbody = body.clone();
    jbody["response_format"] = json!({"type": "json_object"});
    let r = s.ok("/v1/chat/completions", &jbody);
    let bound = r["choices"][0]["message"]["reasoning_content"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_string();
    assert!(
        bound.starts_with(thought) && bound.len() > thought.len(),
        "{r}"
    );
    assert_eq!(r["choices"][0]["finish_reason"], "length", "{r}");
    let o = s.ok(
        "/api/chat",
        &json!({"model": ALIAS, "stream": false, "format": "json",
                "messages": [{"role": "user", "content": "What is the capital of France?"}],
                "options": {"temperature": 0, "num_predict": 12, "repeat_penalty": 1.0}}),
    );
    assert_eq!(o["message"]["thinking"], bound.as_str(), "{o}");
    drop(s.child.lock().unwrap().stdin.take());
    let _ = std::fs::remove_dir_all(&dir);
}

fn floats(v: &Value) -> Vec<f32> {
    serde_json::from_value(v.clone()).expect("a list of numbers")
}

fn unit_length(v: &[f32]) -> bool {
    (v.iter().map(|x| x * x).sum::<f32>().sqrt() - 1.0).abs() < 1e-5
}

/// Same text, other requests' rows maybe in the same steps (other kernel
/// widths): unit vectors within float32 rounding of each other.
fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4)
}

#[test]
fn embeddings_openai_and_ollama() {
    use base64::Engine as _;
    let s = server();
    let texts = ["The capital of France is Paris.", "Bonjour"];
    let v = s.ok("/v1/embeddings", &json!({"model": ALIAS, "input": texts}));
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], ALIAS);
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let mut oa = Vec::new();
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["object"], "embedding");
        assert_eq!(d["index"], i);
        let e = floats(&d["embedding"]);
        assert_eq!(e.len(), 576, "SmolLM2's width");
        assert!(unit_length(&e), "normalized");
        oa.push(e);
    }
    assert!(!close(&oa[0], &oa[1]), "two texts, two vectors");
    let n_tokens: usize = texts
        .iter()
        .map(|t| {
            s.ok("/tokenize", &json!({"content": t}))["tokens"]
                .as_array()
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(v["usage"]["prompt_tokens"], n_tokens);
    assert_eq!(v["usage"]["total_tokens"], n_tokens);

    // base64: little-endian f32s of the same vector.
    let b = s.ok(
        "/v1/embeddings",
        &json!({"input": texts[0], "encoding_format": "base64"}),
    );
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert!(
        close(&decoded, &oa[0]),
        "base64 decodes to the float vector"
    );
    // dimensions: the first d components, normalized again.
    let d = s.ok(
        "/v1/embeddings",
        &json!({"input": texts[0], "dimensions": 64}),
    );
    let cut = floats(&d["data"][0]["embedding"]);
    assert_eq!(cut.len(), 64);
    assert!(unit_length(&cut));
    let norm: f32 = oa[0][..64].iter().map(|x| x * x).sum::<f32>().sqrt();
    let want: Vec<f32> = oa[0][..64].iter().map(|x| x / norm).collect();
    assert!(close(&cut, &want), "dimensions cut then renormalize");
    // Token ids are a text too.
    let ids = s.ok("/tokenize", &json!({"content": texts[0]}))["tokens"].clone();
    let t = s.ok("/v1/embeddings", &json!({"input": ids}));
    assert!(close(&floats(&t["data"][0]["embedding"]), &oa[0]));

    // Ollama: the same normalized vectors; the older endpoint's are raw.
    let o = s.ok("/api/embed", &json!({"model": ALIAS, "input": texts}));
    assert_eq!(o["model"], ALIAS);
    let embs = o["embeddings"].as_array().unwrap();
    assert_eq!(embs.len(), 2);
    for (e, want) in embs.iter().zip(&oa) {
        assert!(close(&floats(e), want), "/api/embed equals /v1/embeddings");
    }
    assert_eq!(o["prompt_eval_count"], n_tokens);
    assert!(o["total_duration"].as_u64().unwrap() > 0);
    let one = s.ok("/api/embed", &json!({"input": texts[1]}));
    assert!(close(&floats(&one["embeddings"][0]), &oa[1]));
    let none = s.ok("/api/embed", &json!({"model": ALIAS, "input": []}));
    assert_eq!(none["embeddings"], json!([]));
    let raw = floats(&s.ok("/api/embeddings", &json!({"prompt": texts[1]}))["embedding"]);
    let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(
        (norm - 1.0).abs() > 0.1,
        "/api/embeddings is not normalized: {norm}"
    );
    let normed: Vec<f32> = raw.iter().map(|x| x / norm).collect();
    assert!(close(&normed, &oa[1]));
    assert_eq!(
        s.ok("/api/embeddings", &json!({"prompt": ""}))["embedding"],
        json!([])
    );

    // Refusals name what is wrong, and nothing is computed.
    let long = "word ".repeat(600);
    for (path, body, want) in [
        (
            "/v1/embeddings",
            json!({"input": texts[0], "encoding_format": "hex"}),
            "encoding_format",
        ),
        (
            "/v1/embeddings",
            json!({"input": texts[0], "dimensions": 0}),
            "dimensions",
        ),
        (
            "/v1/embeddings",
            json!({"input": texts[0], "dimensions": 577}),
            "between 1 and 576",
        ),
        (
            "/v1/embeddings",
            json!({"input": []}),
            "input must not be empty",
        ),
        (
            "/v1/embeddings",
            json!({"input": ["a", ""]}),
            "input[1] is empty",
        ),
        (
            "/v1/embeddings",
            json!({"input": [49152]}),
            "outside the vocabulary",
        ),
        (
            "/v1/embeddings",
            json!({"input": long}),
            "the context holds 512",
        ),
        ("/v1/embeddings", json!({"input": 5}), "input"),
        ("/api/embed", json!({"input": 5}), "invalid input type"),
        (
            "/api/embed",
            json!({"input": ["a", 1]}),
            "invalid input type",
        ),
        (
            "/api/embed",
            json!({"input": long, "truncate": false}),
            "exceeds the context length",
        ),
        (
            "/api/embeddings",
            json!({"prompt": long}),
            "the context holds 512",
        ),
    ] {
        let r = s.post(path, &body);
        assert_eq!(r.status, 400, "{path} {body}: {}", r.text());
        let msg = match path {
            "/v1/embeddings" => r.json()["error"]["message"].as_str().unwrap().to_string(),
            _ => r.json()["error"].as_str().unwrap().to_string(),
        };
        assert!(msg.contains(want), "{path} {body}: {msg}");
    }
    let r = s.post("/v1/embeddings", &json!({"input": long}));
    assert_eq!(r.json()["error"]["code"], "context_length_exceeded");
}

#[test]
fn llama_server_native_endpoints() {
    let s = server();
    let prompt = "Once upon a time";
    let body = json!({"prompt": prompt, "n_predict": 8, "temperature": 0,
                      "return_tokens": true, "n_probs": 2});
    let c = s.ok("/completion", &body);
    assert_eq!(c["stop"], true);
    assert_eq!(c["model"], ALIAS);
    assert_eq!(c["tokens_predicted"], 8);
    assert_eq!(c["stop_type"], "limit");
    assert_eq!(c["prompt"], prompt);
    assert_eq!(c["generation_settings"]["n_predict"], 8);
    assert_eq!(c["timings"]["predicted_n"], 8);
    let n_prompt = s.ok("/tokenize", &json!({"content": prompt}))["tokens"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(c["tokens_evaluated"], n_prompt);
    let content = c["content"].as_str().unwrap().to_string();
    let ids = c["tokens"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 8);
    assert_eq!(
        s.ok("/detokenize", &json!({"tokens": ids}))["content"],
        content
    );
    let probs = c["completion_probabilities"].as_array().unwrap();
    assert_eq!(probs.len(), 8);
    for (p, id) in probs.iter().zip(&ids) {
        assert_eq!(&p["id"], id);
        assert!(p["logprob"].as_f64().unwrap() <= 0.0);
        let top = p["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 2);
        // Greedy: the chosen token is the most likely one.
        assert_eq!(&top[0]["id"], id);
    }
    let o = s.ok(
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 8, "temperature": 0}),
    );
    assert_eq!(
        o["choices"][0]["text"], content,
        "same text as /v1/completions"
    );

    // The stream: partial results, then the final one; no [DONE] (llama-server's framing).
    let mut lines = s.stream(
        "/completion",
        &json!({"prompt": prompt, "n_predict": 8, "temperature": 0, "stream": true}),
    );
    let mut events = Vec::new();
    while let Some(l) = lines.next_line() {
        let data = l
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("not SSE: {l}"));
        assert_ne!(data, "[DONE]");
        events.push(serde_json::from_str::<Value>(data).unwrap());
    }
    let last = events.pop().unwrap();
    assert_eq!(last["stop"], true);
    assert_eq!(last["stop_type"], "limit");
    assert!(events.iter().all(|e| e["stop"] == false));
    let streamed: String = events
        .iter()
        .map(|e| e["content"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, content);

    // A stop string the greedy text contains ends it there, and is named.
    let word: String = content.chars().skip(3).take(2).collect();
    let w = s.ok(
        "/completion",
        &json!({"prompt": prompt, "n_predict": 8, "temperature": 0, "stop": [word]}),
    );
    assert_eq!(w["stop_type"], "word");
    assert_eq!(w["stopping_word"], word);
    assert!(content.starts_with(w["content"].as_str().unwrap()));

    // json_schema constrains as response_format does.
    let schema =
        json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
    let j = s.ok(
        "/completion",
        &json!({"prompt": "A number as JSON:", "n_predict": 24, "temperature": 0, "json_schema": schema}),
    );
    let text = j["content"].as_str().unwrap();
    if j["stop_type"] == "eos" {
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert!(v["n"].is_i64(), "{text}");
    } else {
        assert!(text.trim_start().starts_with('{'), "{text}");
    }

    // A GBNF grammar: the reply is one of its strings, and ends with it.
    let yes_no = r#"root ::= ("yes" | "no") "." "#;
    let g = s.ok(
        "/completion",
        &json!({"prompt": "Is Paris in France? Answer:", "n_predict": 8, "temperature": 0, "grammar": yes_no}),
    );
    assert!(
        ["yes.", "no."].contains(&g["content"].as_str().unwrap()),
        "{g}"
    );
    assert_eq!(g["stop_type"], "eos");
    // The same through the OpenAI API (llama-server's extension), sampled.
    let c = s.ok(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Pick a digit."}], "max_tokens": 8,
                "temperature": 1.0, "seed": 3, "grammar": "root ::= [0-9] [0-9]?"}),
    );
    let digits = c["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        (1..=2).contains(&digits.len()) && digits.chars().all(|ch| ch.is_ascii_digit()),
        "{digits:?}"
    );
    let r = s.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "x"}], "grammar": "root ::= \"a\"",
                "response_format": {"type": "json_object"}}),
    );
    assert_eq!(r.status, 400, "{}", r.text());

    let p = s.get("/props", Some(KEY)).json();
    assert_eq!(p["default_generation_settings"]["n_ctx"], 512);
    assert_eq!(p["total_slots"], 4);
    assert_eq!(p["model_alias"], ALIAS);
    assert!(p["chat_template"].as_str().unwrap().contains("im_start"));

    // /embedding: llama-server's shape, the same vector as /v1/embeddings.
    let e = s.ok("/embedding", &json!({"content": "Bonjour"}));
    assert_eq!(e[0]["index"], 0);
    let native = floats(&e[0]["embedding"][0]);
    let oa = s.ok("/v1/embeddings", &json!({"input": "Bonjour"}));
    assert!(close(&native, &floats(&oa["data"][0]["embedding"])));
    let raw = s.ok(
        "/embedding",
        &json!({"content": "Bonjour", "embd_normalize": -1}),
    );
    let legacy = s.ok("/api/embeddings", &json!({"prompt": "Bonjour"}));
    let (a, b) = (
        floats(&raw[0]["embedding"][0]),
        floats(&legacy["embedding"]),
    );
    assert!(a
        .iter()
        .zip(&b)
        .all(|(x, y)| (x - y).abs() <= 1e-4 * y.abs().max(1.0)));

    for (body, want) in [
        (
            json!({"prompt": "a", "grammar": "root ::= answer"}),
            "rule 'answer' is used but never defined",
        ),
        (json!({"prompt": "a", "mirostat": 2}), "mirostat"),
        (json!({"prompt": "a", "n_predict": -5}), "n_predict"),
        (
            json!({"prompt": "a", "json_schema": {"type": "object", "properties": {"a": {"pattern": "x"}}}}),
            "pattern",
        ),
    ] {
        let r = s.post("/completion", &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains(want), "{body}: {msg}");
    }
}

#[test]
fn ollama_chat_and_generate() {
    let s = server();
    let body = json!({
        "model": ALIAS,
        "messages": [{"role": "user", "content": "What is 2 + 2?"}],
        "stream": false,
        "options": {"temperature": 0, "num_predict": 5},
    });
    let r = s.ok("/api/chat", &body);
    assert_eq!(r["done"], true);
    assert_eq!(r["model"], ALIAS);
    assert_eq!(r["message"]["role"], "assistant");
    let text = r["message"]["content"].as_str().unwrap().to_string();
    assert!(r["eval_count"].as_u64().unwrap() <= 5);
    assert!(r["prompt_eval_count"].as_u64().unwrap() > 5);
    assert!(r["eval_duration"].as_u64().unwrap() > 0);
    assert!(r["total_duration"].as_u64().unwrap() >= r["eval_duration"].as_u64().unwrap());
    assert!(["stop", "length"].contains(&r["done_reason"].as_str().unwrap()));
    assert!(r["created_at"].as_str().unwrap().ends_with('Z'));

    // Streaming (the default): NDJSON, the same text, a final object with the counts.
    let mut sbody = body.clone();
    sbody.as_object_mut().unwrap().remove("stream");
    let mut lines = s.stream("/api/chat", &sbody);
    let mut streamed = String::new();
    let mut last = Value::Null;
    while let Some(l) = lines.next_line() {
        let v: Value = serde_json::from_str(&l).unwrap();
        streamed.push_str(v["message"]["content"].as_str().unwrap());
        last = v;
    }
    assert_eq!(streamed, text);
    assert_eq!(last["done"], true);
    assert_eq!(last["eval_count"], r["eval_count"]);

    let g = s.ok(
        "/api/generate",
        &json!({"model": ALIAS, "prompt": "Why is the sky blue?", "stream": false,
                "options": {"temperature": 0, "num_predict": 4}}),
    );
    assert_eq!(g["done"], true);
    assert!(!g["response"].as_str().unwrap().is_empty());
    assert_eq!(
        g["context"].as_array().unwrap().len() as u64,
        g["prompt_eval_count"].as_u64().unwrap() + g["eval_count"].as_u64().unwrap()
    );
    // raw: the prompt as it is, streamed.
    let mut lines = s.stream(
        "/api/generate",
        &json!({"model": ALIAS, "prompt": "Once upon a time", "raw": true,
                "options": {"temperature": 0, "num_predict": 4}}),
    );
    let mut raw = String::new();
    let mut done = false;
    while let Some(l) = lines.next_line() {
        let v: Value = serde_json::from_str(&l).unwrap();
        raw.push_str(v["response"].as_str().unwrap());
        done = v["done"] == true;
    }
    assert!(done);
    let c = s.ok(
        "/v1/completions",
        &json!({"prompt": "Once upon a time", "max_tokens": 4, "temperature": 0}),
    );
    assert_eq!(
        raw,
        c["choices"][0]["text"].as_str().unwrap(),
        "raw generate = completions"
    );
    // An empty prompt only "loads" the model.
    let l = s.ok("/api/generate", &json!({"model": ALIAS, "prompt": ""}));
    assert_eq!(l["done_reason"], "load");
}

#[test]
fn auth_required_and_refused() {
    let s = server();
    let body = chat_body("hi", 1).to_string();
    for key in [
        None,
        Some("wrong"),
        Some("test-key-12"),
        Some("test-key-1234"),
    ] {
        for path in ["/v1/chat/completions", "/api/chat", "/tokenize"] {
            let r = s.raw("POST", path, key, Some(body.as_bytes()));
            assert_eq!(r.status, 401, "{path} with {key:?}");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
            assert!(r.json()["error"].is_object() || r.json()["error"].is_string());
        }
        let r = s.get("/v1/models", key);
        assert_eq!(r.status, 401);
        assert_eq!(r.json()["error"]["code"], "invalid_api_key");
        assert_eq!(s.get("/metrics", key).status, 401);
    }
    assert_eq!(s.get("/v1/models", Some(KEY)).status, 200);
    assert_eq!(s.get("/health", None).status, 200);
}

/// Each malformed request gets a 4xx with an error object, and the server
/// still answers afterwards.
#[test]
fn malformed_requests_get_4xx_error_objects() {
    let s = server();
    let msg = |c: &str| json!([{"role": "user", "content": c}]);
    let long = "word ".repeat(700);
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        (
            "bad JSON",
            "/v1/chat/completions",
            b"{\"messages\": [".to_vec(),
            400,
        ),
        (
            "not an object",
            "/v1/chat/completions",
            b"[1, 2]".to_vec(),
            400,
        ),
        ("empty body", "/v1/chat/completions", b"".to_vec(), 400),
        (
            "messages missing",
            "/v1/chat/completions",
            json!({"model": "x"}).to_string().into(),
            400,
        ),
        (
            "wrong type: temperature",
            "/v1/chat/completions",
            json!({"messages": msg("hi"), "temperature": "hot"})
                .to_string()
                .into(),
            400,
        ),
        (
            "wrong type: messages",
            "/v1/chat/completions",
            json!({"messages": "hi"}).to_string().into(),
            400,
        ),
        (
            "unknown role",
            "/v1/chat/completions",
            json!({"messages": [{"role": "wizard", "content": "hi"}]})
                .to_string()
                .into(),
            400,
        ),
        (
            "message without content",
            "/v1/chat/completions",
            json!({"messages": [{"role": "user"}]}).to_string().into(),
            400,
        ),
        (
            "empty messages",
            "/v1/chat/completions",
            json!({"messages": []}).to_string().into(),
            400,
        ),
        (
            "negative max_tokens",
            "/v1/chat/completions",
            json!({"messages": msg("hi"), "max_tokens": -5})
                .to_string()
                .into(),
            400,
        ),
        (
            "huge max_tokens",
            "/v1/chat/completions",
            json!({"messages": msg("hi"), "max_tokens": 1_000_000_000_000u64})
                .to_string()
                .into(),
            400,
        ),
        (
            "max_tokens beyond u64",
            "/v1/completions",
            br#"{"prompt": "a", "max_tokens": 1e30}"#.to_vec(),
            400,
        ),
        (
            "prompt longer than the context",
            "/v1/chat/completions",
            json!({"messages": msg(&long)}).to_string().into(),
            400,
        ),
        (
            "invalid UTF-8",
            "/v1/chat/completions",
            b"{\"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}".to_vec(),
            400,
        ),
        (
            "body over the limit",
            "/v1/chat/completions",
            vec![b' '; 9 << 20],
            413,
        ),
        (
            "top_p out of range",
            "/v1/chat/completions",
            json!({"messages": msg("hi"), "top_p": 7})
                .to_string()
                .into(),
            400,
        ),
        (
            "top_logprobs too many",
            "/v1/chat/completions",
            json!({"messages": msg("hi"), "logprobs": true, "top_logprobs": 50})
                .to_string()
                .into(),
            400,
        ),
        (
            "n > 1",
            "/v1/chat/completions",
            json!({"messages": msg("hi"), "n": 3}).to_string().into(),
            400,
        ),
        (
            "token id outside the vocabulary",
            "/v1/completions",
            json!({"prompt": [1, 99999999]}).to_string().into(),
            400,
        ),
        (
            "completions without prompt",
            "/v1/completions",
            json!({"max_tokens": 2}).to_string().into(),
            400,
        ),
        ("ollama bad JSON", "/api/chat", b"{nope".to_vec(), 400),
        (
            "ollama unknown role",
            "/api/chat",
            json!({"model": "m", "messages": [{"role": "bot", "content": "x"}]})
                .to_string()
                .into(),
            400,
        ),
        (
            "ollama negative num_predict",
            "/api/generate",
            json!({"model": "m", "prompt": "x", "options": {"num_predict": -7}})
                .to_string()
                .into(),
            400,
        ),
        (
            "ollama wrong type: options",
            "/api/generate",
            json!({"model": "m", "prompt": "x", "options": 3})
                .to_string()
                .into(),
            400,
        ),
        (
            "detokenize bad id",
            "/detokenize",
            json!({"tokens": [4000000000u32]}).to_string().into(),
            400,
        ),
        ("unknown endpoint", "/v1/nothing", b"{}".to_vec(), 404),
    ];
    assert!(cases.len() >= 12);
    for (what, path, body, status) in &cases {
        let r = s.raw("POST", path, Some(KEY), Some(body));
        assert_eq!(r.status, *status, "{what}: {}", r.text());
        let v = r.json();
        if path.starts_with("/api/") {
            assert!(
                v["error"].as_str().is_some_and(|m| !m.is_empty()),
                "{what}: {v}"
            );
        } else {
            let e = &v["error"];
            assert!(
                e["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{what}: {v}"
            );
            assert!(e["type"].is_string(), "{what}: {v}");
            assert!(e.get("code").is_some(), "{what}: {v}");
        }
    }
    // Wrong method: 405, still an error object.
    let r = s.get("/v1/chat/completions", Some(KEY));
    assert_eq!(r.status, 405);
    assert!(r.json()["error"]["message"].is_string());
    // The prompt-too-long case names the context.
    let r = s.post("/v1/chat/completions", &json!({"messages": msg(&long)}));
    assert_eq!(r.json()["error"]["code"], "context_length_exceeded");
    // Still up and answering.
    let ok = s.ok(
        "/v1/completions",
        &json!({"prompt": "Hi", "max_tokens": 1, "temperature": 0}),
    );
    assert_eq!(ok["usage"]["completion_tokens"], 1);
}

/// Greedy text is the same whether a request runs alone or with three others.
#[test]
fn greedy_alone_equals_four_at_a_time() {
    let s = server();
    let prompts = [
        "The capital of Italy is",
        "def fibonacci(n):",
        "My favourite fruit is",
        "Water boils at",
    ];
    let body = |p: &str| json!({"prompt": p, "max_tokens": 6, "temperature": 0});
    let alone: Vec<String> = prompts
        .iter()
        .map(|p| {
            s.ok("/v1/completions", &body(p))["choices"][0]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let together: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = prompts
            .iter()
            .map(|p| {
                sc.spawn(move || {
                    s.ok("/v1/completions", &body(p))["choices"][0]["text"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(alone, together);
}

/// The same seed gives the same sampled text; penalties are accepted.
#[test]
fn seeded_sampling_repeats() {
    let s = server();
    let body = json!({"prompt": "Once upon a time", "max_tokens": 6, "temperature": 1.0,
                      "seed": 1234, "top_k": 0, "presence_penalty": 0.5, "frequency_penalty": 0.5});
    let a = s.ok("/v1/completions", &body);
    let b = s.ok("/v1/completions", &body);
    assert_eq!(a["choices"][0]["text"], b["choices"][0]["text"]);
}

/// A second instance with one slot and no queue (`--parallel 1
/// --queue-size 0`), where a busy slot shows as 503 at once:
/// - a client that disconnects mid-stream frees the slot at once: the next
///   request is accepted within seconds, where the abandoned one had 200
///   tokens (~80 s on lavapipe) to go;
/// - a request while the slot is busy gets 503 with Retry-After;
/// - SIGTERM lets the stream in flight finish, then the server exits 0.
#[test]
fn one_slot_disconnect_queue_full_and_sigterm() {
    let s = start(&["--parallel", "1", "--queue-size", "0", "-c", "256"]);
    let mut lines = open(
        &s.addr,
        "POST",
        "/v1/completions",
        None,
        Some(
            json!({"prompt": "Tell me a long story about a dragon", "max_tokens": 200,
                   "temperature": 0, "stream": true})
            .to_string()
            .as_bytes(),
        ),
    )
    .lines();
    let mut got = 0;
    while got < 2 {
        let l = lines.next_line().expect("tokens before the disconnect");
        if l.contains("\"text\":\"") && !l.contains("\"text\":\"\"") {
            got += 1;
        }
    }
    drop(lines);
    let t0 = Instant::now();
    let small = json!({"prompt": "Hi", "max_tokens": 2, "temperature": 0}).to_string();
    let hi = loop {
        let r = s.raw("POST", "/v1/completions", None, Some(small.as_bytes()));
        if r.status == 200 {
            assert_eq!(r.json()["usage"]["completion_tokens"], 2);
            break r.json();
        }
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the slot is still busy {:?} after the client left",
            t0.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // The one slot still holds "Hi" and the reply's first token: the same
    // request again processes only the prompt's last token (llama-server's
    // cache_prompt) and answers the same; with cache_prompt off, all of it.
    let n_prompt = hi["usage"]["prompt_tokens"].as_u64().unwrap();
    let again = s.ok("/v1/completions", &serde_json::from_str(&small).unwrap());
    assert_eq!(again["choices"][0]["text"], hi["choices"][0]["text"]);
    assert_eq!(again["usage"]["prompt_tokens"], n_prompt);
    assert_eq!(
        again["usage"]["prompt_tokens_details"]["cached_tokens"],
        n_prompt - 1
    );
    assert_eq!(again["timings"]["cache_n"], n_prompt - 1);
    assert_eq!(again["timings"]["prompt_n"], 1);
    let fresh = s.ok(
        "/v1/completions",
        &json!({"prompt": "Hi", "max_tokens": 2, "temperature": 0, "cache_prompt": false}),
    );
    assert_eq!(fresh["choices"][0]["text"], hi["choices"][0]["text"]);
    assert_eq!(fresh["timings"]["cache_n"], 0);
    assert_eq!(fresh["timings"]["prompt_n"], n_prompt);

    let mut first = open(
        &s.addr,
        "POST",
        "/v1/completions",
        None,
        Some(
            json!({"prompt": "Count: 1, 2, 3,", "max_tokens": 24, "temperature": 0, "stream": true})
                .to_string()
                .as_bytes(),
        ),
    )
    .lines();
    first.next_line().expect("the first request is running");
    let r = s.raw(
        "POST",
        "/v1/completions",
        None,
        Some(
            json!({"prompt": "Hi", "max_tokens": 1})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json()["error"]["code"], "queue_full");
    // No key on this instance: the loopback-only default needs none, and warns of nothing.
    assert!(!s.log.lock().unwrap().contains("warning"));
    // SIGTERM (the wrapper sends it when its stdin closes) lets the stream
    // in flight finish, then the server exits 0.
    let mut child = s.child.lock().unwrap();
    drop(child.stdin.take());
    let mut tokens = 0;
    let mut last = String::new();
    while let Some(l) = first.next_line() {
        tokens +=
            usize::from(l.contains("\"text\":\"") && !l.contains("\"finish_reason\":\"length\""));
        last = l;
    }
    assert_eq!(last, "data: [DONE]", "the stream was cut by the shutdown");
    assert!(tokens > 10, "{tokens} tokens");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {}", s.log.lock().unwrap());
    assert!(s.log.lock().unwrap().contains("shutting down"));
}

/// The official `openai` and `ollama` Python packages, streaming and not
/// (tests/scripts/server_clients.py; scripts/test.sh installs them).
#[test]
fn official_python_clients() {
    let s = server();
    let out = Command::new("python3")
        .arg("tests/scripts/server_clients.py")
        .arg(format!("http://{}", s.addr))
        .arg(KEY)
        .arg(ALIAS)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for check in [
        "openai chat",
        "openai chat stream",
        "openai completions",
        "openai models",
        "openai embeddings",
        "ollama chat",
        "ollama chat stream",
        "ollama generate",
        "ollama list",
        "ollama embed",
        "ollama ps",
        "ollama show",
        "openai tools",
        "ollama tools",
    ] {
        assert!(
            stdout.contains(&format!("ok {check}\n")),
            "{check}: {stdout}"
        );
    }
}

/// Headless Chromium loads the page, sends a message and sees a streamed
/// reply appear (tests/browser/chat.mjs; scripts/test.sh installs chromium
/// and playwright-core). Writes docs/server-page.png.
#[test]
fn browser_chat_page() {
    let s = server();
    let out = Command::new("node")
        .arg("tests/browser/chat.mjs")
        .arg(format!("http://{}", s.addr))
        .arg(KEY)
        .arg(std::env::var("SERVER_SCREENSHOT").unwrap_or_else(|_| {
            std::env::temp_dir()
                .join("llama-wgpu-server-page.png")
                .display()
                .to_string()
        }))
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("streamed reply:"), "{stdout}");
}

/// Bad command lines: one-line errors, non-zero exit, before any model load.
#[test]
fn bad_command_lines_fail_with_one_line() {
    let s = server();
    let port = s.addr.rsplit(':').next().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["-m", "models/nope.gguf"], "no such model file"),
        (&["-m", MODEL, "--pooling", "avg"], "--pooling must be"),
        (&["-m", MODEL, "--pooling", "none"], "one vector per token"),
        (&["-m", MODEL, "--parallel", "0"], "--parallel"),
        (&["-m", MODEL, "--port", port], "cannot listen on 127.0.0.1"),
        (&["-m", MODEL, "--host", "not a host"], "cannot listen on"),
    ];
    for (args, want) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_llama-wgpu"))
            .arg("serve")
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.contains("wgpu_hal")).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(want),
            "{args:?}: {err}"
        );
    }
}
