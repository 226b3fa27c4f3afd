//! The compose form's multipart/form-data parser (src/web/api/multipart.rs).
//! Any body: no panic, no hang; the fields it finds are pieces of the body,
//! in order, each named, and never more than the part limit.
#![no_main]

use letterbox::web::api::multipart::{parse, MAX_PARTS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first line, if short, is the boundary: the fuzzer can match it.
    let (boundary, body) = match data.iter().position(|&b| b == b'\n') {
        Some(n) if n <= 70 => (String::from_utf8_lossy(&data[..n]).into_owned(), &data[n + 1..]),
        _ => ("xyz".to_string(), data),
    };
    let content_type = format!("multipart/form-data; boundary=\"{boundary}\"");
    let Ok(fields) = parse(&content_type, body) else {
        return;
    };
    assert!(fields.len() <= MAX_PARTS);
    let start = body.as_ptr() as usize;
    let mut last_end = start;
    for field in &fields {
        let at = field.data.as_ptr() as usize;
        assert!(at >= last_end && at + field.data.len() <= start + body.len());
        last_end = at + field.data.len();
    }
});
