//! Arbitrary bytes into the GGUF reader. A parse error is fine; a panic, an
//! out-of-bounds read or an allocation blow-up is a bug. When a file parses,
//! everything a caller may touch afterwards is exercised too, since the reader
//! promises that its checks make those accesses safe.

#![no_main]

use libfuzzer_sys::fuzz_target;
use llama_wgpu::gguf::{Gguf, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(g) = Gguf::from_bytes(data.to_vec()) else {
        return;
    };
    for (key, value) in &g.metadata {
        touch(value);
        assert!(g.get(key).is_some(), "key '{key}' not indexed");
        let _ = g.get_u64(key);
        let _ = g.get_f32(key);
        let _ = g.get_str(key);
        let _ = g.get_bool(key);
        let _ = g.get_array(key);
    }
    let mut total = 0u64;
    for t in &g.tensors {
        let bytes = g.tensor_data(t);
        assert_eq!(bytes.len() as u64, t.n_bytes);
        // Not `data_offset + total <= file_len`: with no tensors the (aligned)
        // data offset may lie past a file that was never padded.
        assert!(g.data_offset + t.offset + t.n_bytes <= g.file_len());
        assert!(
            g.tensor(&t.name).is_some(),
            "tensor '{}' not indexed",
            t.name
        );
        // Touch the first and last byte so a bad slice cannot go unnoticed.
        std::hint::black_box((bytes.first(), bytes.last()));
        let _ = t.tensor_type();
        let _ = t.n_elements();
        total += t.n_bytes;
    }
    assert_eq!(total, g.tensor_bytes_total());
});

fn touch(v: &Value) {
    std::hint::black_box(v.to_string());
    std::hint::black_box((v.as_u64(), v.as_i64(), v.as_f32(), v.as_bool(), v.as_str()));
    if let Some(items) = v.as_array() {
        assert_eq!(items.iter().count(), items.len());
        for item in items.iter() {
            assert_eq!(item.tag(), items.elem_tag());
            touch(&item);
        }
    }
}
