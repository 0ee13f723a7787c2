//! The schema constraint against Python's `jsonschema` (Draft 2020-12 with
//! its format checker; tests/scripts/json_schema_fixture.py): a reply the
//! constraint lets through is valid there, and a valid reply written the
//! way the constraint writes them is let through.

use llama_wgpu::engine::json_output::{Schema, SchemaState};
use serde_json::Value;

/// Every prefix of `text` continues the reply, and the whole closes it.
fn lets_through(s: &Schema, text: &str) -> bool {
    let mut st = SchemaState::new(s);
    for &b in text.as_bytes() {
        match st.after(s, &[b]) {
            Some(n) => st = n,
            None => return false,
        }
    }
    st.is_done()
}

#[test]
fn replies_agree_with_python_jsonschema() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/json_schema/verdicts.json"
    );
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for case in fixture["cases"].as_array().unwrap() {
        let schema = Schema::compile(&case["schema"]).unwrap_or_else(|e| panic!("{e}"));
        for r in case["replies"].as_array().unwrap() {
            let text = r["reply"].as_str().unwrap();
            let ours = lets_through(&schema, text);
            if r["valid"] == true {
                valid += 1;
                if r["canonical"] == true {
                    assert!(ours, "valid in jsonschema, refused here: {text}");
                }
            } else {
                invalid += 1;
                assert!(!ours, "invalid in jsonschema, let through here: {text}");
            }
        }
    }
    assert!(
        valid >= 20 && invalid >= 20,
        "{valid} valid, {invalid} invalid"
    );
}
