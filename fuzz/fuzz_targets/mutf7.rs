//! Modified UTF-7 mailbox names (src/imap/mutf7.rs). Decoding is strict, so
//! a name that decodes has exactly one spelling: encoding it again must give
//! the same bytes. Any Unicode name must encode to printable ASCII and decode
//! back to itself.
#![no_main]

use letterbox::imap::mutf7::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(name) = decode(&text) {
        assert_eq!(encode(&name), text, "{name:?} has a second spelling");
    }
    let encoded = encode(&text);
    assert!(
        encoded.bytes().all(|b| (b' '..=b'~').contains(&b)),
        "{encoded:?}"
    );
    assert_eq!(decode(&encoded).as_deref(), Some(&*text), "{encoded:?}");
});
