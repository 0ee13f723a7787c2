//! Tokenizer tests against references this crate did not produce:
//! llama.cpp's own test vectors, and fixtures from Hugging Face `transformers`
//! cross-checked with llama.cpp (tests/scripts/tok_*.py).

mod common;

use common::{test_model_path as model_path, testdata};
use std::path::Path;

use llama_wgpu::gguf::{string_array, Gguf, GgufWriter, Value};
use llama_wgpu::tokenizer::{DecodeOptions, StreamDecoder, Tokenizer, TokenizerError};
use serde_json::Value as Json;

fn crate_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> Json {
    let p = crate_root().join("tests/fixtures/tokenizer").join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

fn load(path: &Path) -> Tokenizer {
    let g = Gguf::open(path).unwrap();
    Tokenizer::from_gguf(&g).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn smollm2() -> Tokenizer {
    load(&model_path())
}

fn ids(v: &Json) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// llama.cpp's test-tokenizer-0 format: inputs separated by a marker line,
/// the file ending with one; one line of space-separated ids per input.
fn vectors(vocab: &str) -> Vec<(String, Vec<u32>)> {
    let inp = std::fs::read_to_string(testdata(&format!("{vocab}.inp"))).unwrap();
    let out = std::fs::read_to_string(testdata(&format!("{vocab}.out"))).unwrap();
    const SEP: &str = "\n__ggml_vocab_test__\n";
    let body = inp
        .strip_suffix(SEP)
        .expect("the .inp file ends with the marker");
    let inputs: Vec<&str> = body.split(SEP).collect();
    let outputs: Vec<&str> = out.lines().collect();
    assert_eq!(
        inputs.len(),
        outputs.len(),
        "{vocab}: inputs and outputs do not pair up"
    );
    assert!(inputs.len() > 40, "{vocab}: only {} vectors", inputs.len());
    inputs
        .into_iter()
        .zip(outputs)
        .map(|(i, o)| {
            (
                i.to_owned(),
                o.split_whitespace().map(|x| x.parse().unwrap()).collect(),
            )
        })
        .collect()
}

/// Every vector, all failures reported at once.
fn check_vectors(vocab: &str) {
    let tok = load(&testdata(vocab));
    let mut failures = Vec::new();
    let cases = vectors(vocab);
    for (text, want) in &cases {
        // test-tokenizer-0 tokenizes with add_special = false, parse_special = false.
        let got = tok.encode(text, false, false).unwrap();
        if &got != want {
            failures.push(format!("{text:?}\n   want {want:?}\n    got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{vocab}: {}/{} vectors differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn llama_spm_vectors() {
    check_vectors("ggml-vocab-llama-spm.gguf");
}

#[test]
fn gpt2_vectors() {
    check_vectors("ggml-vocab-gpt-2.gguf");
}

fn stream_all(tok: &Tokenizer, ids: &[u32], opts: DecodeOptions) -> (Vec<String>, String) {
    let mut s = StreamDecoder::with_options(tok, opts);
    let mut chunks: Vec<String> = ids.iter().map(|&id| s.push(id)).collect();
    chunks.push(s.finish());
    let whole = chunks.concat();
    (chunks, whole)
}

/// Round trip and streaming over the llama.cpp inputs: decoding what was
/// encoded gives the text back (the SentencePiece leading space removed as
/// llama.cpp's detokenizer removes it), and streaming gives the same text
/// without ever emitting a broken character.
fn check_round_trip_and_stream(vocab: &str) {
    let tok = load(&testdata(vocab));
    for (text, _) in vectors(vocab) {
        let ids = tok.encode(&text, false, false).unwrap();
        assert_eq!(
            tok.decode(&ids),
            text,
            "{vocab}: round trip of {text:?} ({ids:?})"
        );
        let (chunks, whole) = stream_all(&tok, &ids, DecodeOptions::default());
        assert_eq!(whole, text, "{vocab}: stream of {text:?}");
        for c in &chunks {
            assert!(
                !c.contains('\u{FFFD}'),
                "{vocab}: stream of {text:?} emitted a broken character: {chunks:?}"
            );
        }
    }
}

#[test]
fn llama_spm_round_trip_and_stream() {
    check_round_trip_and_stream("ggml-vocab-llama-spm.gguf");
}

#[test]
fn gpt2_round_trip_and_stream() {
    check_round_trip_and_stream("ggml-vocab-gpt-2.gguf");
}

#[test]
fn spm_byte_fallback_streams_whole_characters() {
    let tok = load(&testdata("ggml-vocab-llama-spm.gguf"));
    // Characters the Llama vocabulary lacks: each is several <0x..> tokens.
    for text in ["🦙", "x 🦙🦙 y", "កាន់តែ", "𝔘𝔫𝔦"] {
        let ids = tok.encode(text, false, false).unwrap();
        let bytes = ids
            .iter()
            .filter(|&&id| tok.token_text(id).unwrap().starts_with("<0x"))
            .count();
        assert!(
            bytes >= 4,
            "{text:?} should need byte fallback, got {ids:?}"
        );
        let (chunks, whole) = stream_all(&tok, &ids, DecodeOptions::default());
        assert_eq!(whole, text);
        assert_eq!(whole, tok.decode(&ids));
        // A 4-byte character arrives as 4 tokens: the first three emit nothing.
        assert!(
            chunks.iter().filter(|c| c.is_empty()).count() >= 3,
            "{chunks:?}"
        );
        assert!(chunks.iter().all(|c| !c.contains('\u{FFFD}')), "{chunks:?}");
    }
}

#[test]
fn stream_matches_decode_on_invalid_utf8() {
    let tok = load(&testdata("ggml-vocab-llama-spm.gguf"));
    let byte = |b: u8| tok.token_id(&format!("<0x{b:02X}>")).unwrap();
    let hello = tok.encode("Hello", false, false).unwrap();
    // A lead byte followed by text, a stray continuation byte, a truncated end.
    let seqs = [
        [vec![byte(0xF0)], hello.clone()].concat(),
        [hello.clone(), vec![byte(0x80), byte(0x41)]].concat(),
        [hello.clone(), vec![byte(0xE4), byte(0xBD)]].concat(),
    ];
    for ids in seqs {
        let whole = tok.decode(&ids);
        assert!(
            whole.contains('\u{FFFD}'),
            "{ids:?} should decode lossily: {whole:?}"
        );
        assert_eq!(
            stream_all(&tok, &ids, DecodeOptions::default()).1,
            whole,
            "{ids:?}"
        );
    }
}

#[test]
fn spm_special_tokens_and_bos() {
    let tok = load(&testdata("ggml-vocab-llama-spm.gguf"));
    let hello = &vectors("ggml-vocab-llama-spm.gguf")
        .into_iter()
        .find(|(t, _)| t == "Hello")
        .unwrap()
        .1;
    let bos = tok.bos_id().unwrap();
    assert_eq!(tok.token_text(bos), Some("<s>"));
    assert!(tok.adds_bos());
    assert_eq!(
        tok.encode("Hello", true, false).unwrap(),
        [&[bos][..], hello].concat()
    );
    // llama.cpp prefixes a space to text that follows a special token.
    assert_eq!(
        tok.encode("<s>Hello", false, true).unwrap(),
        [&[bos][..], hello].concat()
    );
    let plain = tok.encode("<s>Hello", false, false).unwrap();
    assert!(
        !plain.contains(&bos),
        "<s> in plain text became BOS: {plain:?}"
    );
    assert_eq!(tok.decode(&plain), "<s>Hello");
    // Control tokens print nothing unless asked; the end of text is EOG.
    let eos = tok.eos_id().unwrap();
    assert!(tok.is_end_of_generation(eos));
    assert!(!tok.is_end_of_generation(bos));
    let ids = [bos, hello[0], eos];
    assert_eq!(
        tok.decode_with(
            &ids,
            DecodeOptions {
                render_special: true,
                strip_leading_space: false
            }
        ),
        "<s> Hello</s>"
    );
    // llama_detokenize spends its one-space strip on the first token even when
    // that token prints nothing, so the space after a hidden BOS stays.
    assert_eq!(tok.decode(&ids), " Hello");
    assert_eq!(tok.decode(&hello[..]), "Hello");
    let mut cont = StreamDecoder::continuation(&tok);
    assert_eq!(
        cont.push(hello[0]),
        " Hello",
        "a continuation keeps the space"
    );
}

/// SmolLM2's tokenizer against the fixture from transformers (SmolLM2's
/// pre-tokenizer over the GGUF-converted vocabulary), which the fixture script
/// also required llama.cpp b9190 to reproduce.
fn check_smollm2_cases(tok: &Tokenizer, what: &str) {
    let f = fixture("smollm2.json");
    let cases = f["cases"].as_array().unwrap();
    assert!(cases.len() > 40);
    let render = DecodeOptions {
        render_special: true,
        ..DecodeOptions::default()
    };
    let mut failures = Vec::new();
    for c in cases {
        let text = c["text"].as_str().unwrap();
        for (key, parse) in [("ids_special", true), ("ids_plain", false)] {
            let want = ids(&c[key]);
            let got = tok.encode(text, false, parse).unwrap();
            if got != want {
                failures.push(format!(
                    "{what} {text:?} parse_special={parse}\n   want {want:?}\n    got {got:?}"
                ));
                continue;
            }
            // Round trip: special tokens shown where they were parsed.
            let back = tok.decode_with(&got, render);
            if back != text {
                failures.push(format!(
                    "{what} round trip {text:?} parse_special={parse}: {back:?}"
                ));
            }
            if stream_all(tok, &got, render).1 != back {
                failures.push(format!("{what} stream {text:?} parse_special={parse}"));
            }
            if stream_all(tok, &got, DecodeOptions::default()).1 != tok.decode(&got) {
                failures.push(format!(
                    "{what} stream (control hidden) {text:?} parse_special={parse}"
                ));
            }
        }
        let hf = c["hf_decoded"].as_str().unwrap();
        let mine = tok.decode_with(&ids(&c["ids_special"]), render);
        if mine != hf {
            failures.push(format!(
                "{what} decode {text:?}: Hugging Face {hf:?}, ours {mine:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn smollm2_matches_hugging_face() {
    check_smollm2_cases(&smollm2(), "gguf");
}

#[test]
fn smollm2_tokenizer_json_matches_hugging_face() {
    let path = crate_root().join("tests/fixtures/tokenizer/smollm2-tokenizer.json");
    let tok = Tokenizer::from_tokenizer_json(&path).unwrap();
    assert_eq!(tok.vocab_size(), smollm2().vocab_size());
    check_smollm2_cases(&tok, "tokenizer.json");
}

#[test]
fn smollm2_special_ids_match_llama_cpp() {
    let tok = smollm2();
    let f = fixture("smollm2.json");
    assert_eq!(
        tok.bos_id(),
        Some(f["llama_cpp_bos"].as_u64().unwrap() as u32)
    );
    assert_eq!(
        tok.eos_id(),
        Some(f["llama_cpp_eos"].as_u64().unwrap() as u32)
    );
    let eog: Vec<u32> = tok.end_of_generation_ids().collect();
    assert_eq!(eog, ids(&f["llama_cpp_eog_ids"]));
    assert!(tok.is_end_of_generation(tok.token_id("<|im_end|>").unwrap()));
    assert!(!tok.is_end_of_generation(tok.token_id("<|im_start|>").unwrap()));
    // SmolLM2 says add_bos_token = false.
    assert!(!tok.adds_bos());
    assert_eq!(
        tok.encode("Hi", true, true).unwrap(),
        tok.encode("Hi", false, true).unwrap()
    );
}

#[test]
fn smollm2_pieces_match_llama_cpp() {
    let tok = smollm2();
    let f = fixture("smollm2.json");
    let pieces = f["llama_cpp_pieces"].as_object().unwrap();
    assert!(pieces.len() > 500);
    let hidden = DecodeOptions {
        render_special: false,
        strip_leading_space: false,
    };
    for (id, want) in pieces {
        let id: u32 = id.parse().unwrap();
        assert_eq!(
            tok.token_piece(id),
            want[0].as_str().unwrap(),
            "piece of {id}"
        );
        assert_eq!(
            tok.decode_with(&[id], hidden),
            want[1].as_str().unwrap(),
            "unrendered piece of {id}"
        );
    }
}

// --- malformed vocabularies -------------------------------------------------

fn spm_writer() -> GgufWriter {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    tokens.extend(["▁", "a", "b", "▁a", "ab", "▁ab"].map(String::from));
    let n = tokens.len();
    let scores: Vec<Value> = (0..n).map(|i| Value::F32(-(i as f32))).collect();
    let types: Vec<Value> = (0..n)
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
    w.kv("tokenizer.ggml.model", Value::String("llama".into()))
        .kv("tokenizer.ggml.tokens", string_array(&tokens))
        .kv("tokenizer.ggml.scores", Value::array(6, scores))
        .kv("tokenizer.ggml.token_type", Value::array(5, types))
        .kv("tokenizer.ggml.bos_token_id", Value::U32(1))
        .kv("tokenizer.ggml.eos_token_id", Value::U32(2));
    w
}

fn gpt2_writer() -> GgufWriter {
    // The byte-level alphabet for "ab", a space ("Ġ"), and their merges.
    let tokens = ["a", "b", "Ġ", "ab", "Ġab", "<|endoftext|>"];
    let mut w = GgufWriter::new();
    w.kv("tokenizer.ggml.model", Value::String("gpt2".into()))
        .kv("tokenizer.ggml.pre", Value::String("gpt-2".into()))
        .kv("tokenizer.ggml.tokens", string_array(&tokens))
        .kv("tokenizer.ggml.merges", string_array(&["a b", "Ġ ab"]))
        .kv("tokenizer.ggml.bos_token_id", Value::U32(5))
        .kv("tokenizer.ggml.eos_token_id", Value::U32(5));
    w
}

/// Rebuilds `base` with each key replaced, added, or removed (None).
fn edit(base: &GgufWriter, changes: &[(&str, Option<Value>)]) -> Result<Tokenizer, TokenizerError> {
    let g = Gguf::from_bytes(base.to_bytes()).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in &g.metadata {
        match changes.iter().find(|(key, _)| key == k) {
            Some((_, Some(new))) => {
                w.kv(k, new.clone());
            }
            Some((_, None)) => {}
            None => {
                w.kv(k, v.clone());
            }
        }
    }
    for (key, v) in changes {
        if let (None, Some(v)) = (g.get(key), v) {
            w.kv(key, v.clone());
        }
    }
    Tokenizer::from_gguf(&Gguf::from_bytes(w.to_bytes()).unwrap())
}

fn with(base: &GgufWriter, key: &str, value: Option<Value>) -> Result<Tokenizer, TokenizerError> {
    edit(base, &[(key, value)])
}

fn expect_error(r: Result<Tokenizer, TokenizerError>, key: &str, also: &str) {
    match r {
        Ok(_) => panic!("expected an error naming {key}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(key) && msg.contains(also),
                "error should name {key} ({also}): {msg}"
            );
            assert!(!msg.contains('\n'), "one-line error: {msg}");
        }
    }
}

#[test]
fn well_formed_tiny_vocabularies_load() {
    let spm = edit(&spm_writer(), &[]).unwrap();
    // "ab" is "▁ab" once the SentencePiece space prefix is added.
    assert_eq!(
        spm.encode("ab", true, false).unwrap(),
        [1, spm.token_id("▁ab").unwrap()]
    );
    let bpe = edit(&gpt2_writer(), &[]).unwrap();
    assert_eq!(
        bpe.encode(" ab", false, false).unwrap(),
        [bpe.token_id("Ġab").unwrap()]
    );
    assert_eq!(bpe.encode("<|endoftext|>", false, true).unwrap(), [5]);
}

#[test]
fn missing_keys_are_named() {
    for key in [
        "tokenizer.ggml.model",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.scores",
    ] {
        expect_error(with(&spm_writer(), key, None), key, "");
    }
    expect_error(
        with(&gpt2_writer(), "tokenizer.ggml.merges", None),
        "tokenizer.ggml.merges",
        "missing",
    );
}

#[test]
fn mismatched_array_lengths_are_named() {
    let short = |tag, v: Value| Value::array(tag, vec![v; 10]);
    expect_error(
        with(
            &spm_writer(),
            "tokenizer.ggml.scores",
            Some(short(6, Value::F32(0.0))),
        ),
        "tokenizer.ggml.scores",
        "10 entries",
    );
    expect_error(
        with(
            &spm_writer(),
            "tokenizer.ggml.token_type",
            Some(short(5, Value::I32(1))),
        ),
        "tokenizer.ggml.token_type",
        "10 entries",
    );
}

#[test]
fn bad_values_are_named() {
    expect_error(
        with(
            &gpt2_writer(),
            "tokenizer.ggml.merges",
            Some(string_array(&["a b", "ab"])),
        ),
        "tokenizer.ggml.merges[1]",
        "'ab'",
    );
    expect_error(
        with(
            &gpt2_writer(),
            "tokenizer.ggml.merges",
            Some(string_array(&["a x"])),
        ),
        "tokenizer.ggml.merges[0]",
        "'x'",
    );
    expect_error(
        with(
            &spm_writer(),
            "tokenizer.ggml.model",
            Some(Value::String("bert2".into())),
        ),
        "tokenizer.ggml.model",
        "bert2",
    );
    expect_error(
        with(
            &gpt2_writer(),
            "tokenizer.ggml.pre",
            Some(Value::String("no-such-pre".into())),
        ),
        "tokenizer.ggml.pre",
        "no-such-pre",
    );
    expect_error(
        with(
            &spm_writer(),
            "tokenizer.ggml.bos_token_id",
            Some(Value::U32(100_000)),
        ),
        "tokenizer.ggml.bos_token_id",
        "100000",
    );
    expect_error(
        with(
            &gpt2_writer(),
            "tokenizer.ggml.eos_token_id",
            Some(Value::U32(6)),
        ),
        "tokenizer.ggml.eos_token_id",
        "out of range",
    );
    expect_error(
        with(
            &spm_writer(),
            "tokenizer.ggml.tokens",
            Some(Value::array(4, vec![Value::U32(1)])),
        ),
        "tokenizer.ggml.tokens",
        "string",
    );
    expect_error(
        with(
            &gpt2_writer(),
            "tokenizer.ggml.tokens",
            Some(string_array(&["a", "b", "a"])),
        ),
        "tokenizer.ggml.tokens",
        "duplicate",
    );
    // Without a BOS id (gpt2's llama.cpp default, 11, is outside this vocabulary).
    expect_error(
        edit(
            &gpt2_writer(),
            &[
                ("tokenizer.ggml.bos_token_id", None),
                ("tokenizer.ggml.add_bos_token", Some(Value::Bool(true))),
            ],
        ),
        "tokenizer.ggml.add_bos_token",
        "tokenizer.ggml.bos_token_id",
    );
}

#[test]
fn tokenizer_json_errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("llama-wgpu-tok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("tokenizer.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let err = Tokenizer::from_tokenizer_json(&bad)
        .err()
        .expect("garbage must not load")
        .to_string();
    assert!(err.contains(&bad.display().to_string()), "{err}");
    let missing = dir.join("missing.json");
    let err = Tokenizer::from_tokenizer_json(&missing)
        .err()
        .expect("missing file")
        .to_string();
    assert!(err.contains("missing.json"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Our pre-tokenizer regexes (llama.cpp's spelling) against the models' own
/// tokenizer.json pre-tokenizers run by Hugging Face `tokenizers`.
#[test]
fn pre_tokenizers_split_like_hugging_face() {
    let f = fixture("pretok.json");
    let cases = f["cases"].as_array().unwrap();
    let mut failures = Vec::new();
    for (pre, rows) in f["splits"].as_object().unwrap() {
        for (text, want) in cases.iter().zip(rows.as_array().unwrap()) {
            let text = text.as_str().unwrap();
            let want: Vec<&str> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect();
            let got = llama_wgpu::tokenizer::pre_tokenize(pre, text).unwrap();
            if got != want {
                failures.push(format!("{pre} {text:?}\n   want {want:?}\n    got {got:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(llama_wgpu::tokenizer::pre_tokenize("no-such-pre", "x").is_err());
}

/// The Llama 2 shape of tokenizer.json (Prepend/Replace normalizer, ByteFallback
/// and Strip decoder), converted by transformers from llama.cpp's vocabulary.
#[test]
fn llama_spm_tokenizer_json_matches_vectors_and_gguf() {
    let path = crate_root().join("tests/fixtures/tokenizer/llama-spm-tokenizer.json");
    let json = Tokenizer::from_tokenizer_json(&path).unwrap();
    let gguf = load(&testdata("ggml-vocab-llama-spm.gguf"));
    assert_eq!(json.vocab_size(), gguf.vocab_size());
    let mut failures = Vec::new();
    for (text, want) in vectors("ggml-vocab-llama-spm.gguf") {
        let got = json.encode(&text, false, false).unwrap();
        if got != want {
            failures.push(format!("{text:?}\n   want {want:?}\n    got {got:?}"));
            continue;
        }
        if json.decode(&got) != text {
            failures.push(format!("round trip {text:?}: {:?}", json.decode(&got)));
        }
        if stream_all(&json, &got, DecodeOptions::default()).1 != text {
            failures.push(format!("stream {text:?}"));
        }
    }
    // Hugging Face's pipeline and ours agree on special tokens and BOS too.
    for text in ["<s>Hello", "Hello</s> world<s>", "<unk> 🦙 x", " <s> "] {
        for parse in [true, false] {
            for bos in [true, false] {
                let (a, b) = (
                    json.encode(text, bos, parse).unwrap(),
                    gguf.encode(text, bos, parse).unwrap(),
                );
                if a != b {
                    failures.push(format!(
                        "{text:?} bos={bos} parse={parse}: tokenizer.json {a:?}, gguf {b:?}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Control tokens print nothing in generated text, but those a reply is
/// read for (Mistral's `[TOOL_CALLS]`) can be kept as their text.
#[test]
fn a_stream_can_show_chosen_control_tokens() {
    let tok = smollm2();
    let ids = tok.encode("<|im_start|>Hi<|im_end|>", false, true).unwrap();
    let (start, end) = (ids[0], *ids.last().unwrap());
    assert!(tok.is_control(start) && tok.is_control(end));
    let run = |mut s: StreamDecoder| {
        let mut out: String = ids.iter().map(|&i| s.push(i)).collect();
        out.push_str(&s.finish());
        out
    };
    assert_eq!(run(StreamDecoder::continuation(&tok)), "Hi");
    assert_eq!(
        run(StreamDecoder::continuation(&tok).showing(vec![start])),
        "<|im_start|>Hi"
    );
}
