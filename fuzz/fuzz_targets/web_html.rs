//! The message-HTML rewriter (src/web/api/html.rs), the second line of
//! defence behind the sandboxed frame and its CSP. Any input: no panic,
//! and the output holds only markup the rewriter writes: every `<` opens a
//! tag or end tag with a plain name, no dropped element appears, and no
//! tag carries an event handler, srcdoc or http-equiv attribute.
#![no_main]

use letterbox::web::api::html::sanitize;
use libfuzzer_sys::fuzz_target;

const DROPPED: &[&str] = &[
    "script", "iframe", "object", "embed", "applet", "frame", "frameset", "svg", "math",
    "meta", "link", "base", "form", "input", "button", "textarea", "select", "template",
];

fuzz_target!(|data: &[u8]| {
    let html = String::from_utf8_lossy(data);
    let out = sanitize(&html, "/api/folders/1/messages/2/cid/");
    let prefix = "<!DOCTYPE html><meta charset=\"utf-8\"><base target=\"_blank\">";
    let body = out.strip_prefix(prefix).expect("the document starts with its head");
    let mut rest = body;
    while let Some(at) = rest.find('<') {
        rest = &rest[at + 1..];
        let tag_end = rest.find('>').expect("every tag written is closed");
        let tag = &rest[..tag_end];
        let tag = tag.strip_prefix('/').unwrap_or(tag);
        let name = tag.split(' ').next().unwrap_or_default();
        assert!(
            !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "a bare < or odd tag name: {tag:?}"
        );
        assert!(!DROPPED.contains(&name), "{name} survived");
        // Values are double-quoted with ", < and > escaped: splitting on
        // quotes finds every attribute name.
        for (i, piece) in tag.split('"').enumerate() {
            if i % 2 == 0 {
                for word in piece.split(' ').skip(usize::from(i == 0)) {
                    let attribute = word.trim_end_matches('=');
                    assert!(
                        !attribute.starts_with("on")
                            && attribute != "srcdoc"
                            && attribute != "http-equiv",
                        "{attribute} survived in {tag:?}"
                    );
                }
            } else {
                assert!(!piece.contains(['<', '>']), "raw markup in a value: {piece:?}");
            }
        }
        rest = &rest[tag_end + 1..];
    }
});
