//! MIME analysis of an arbitrary message, as done once at delivery:
//! `MessageInfo::parse` must accept anything, give sections FETCH can slice
//! without panicking, and survive the encode/decode round trip through the
//! store's `parsed` table.
#![no_main]

use letterbox::mime::{MessageInfo, PartKind};
use libfuzzer_sys::fuzz_target;

/// mail-parser has `debug_assert!`s on odd input. `MessageInfo::parse` runs
/// it under `catch_unwind` for that reason (and release builds compile the
/// asserts out), but libFuzzer's panic hook aborts before any unwinding. So
/// panics raised inside mail-parser are left to unwind to that
/// `catch_unwind`; every other panic aborts as usual. A mail-parser panic
/// that escaped letterbox would still reach libfuzzer-sys's own catch and
/// abort there.
fn let_mail_parser_panics_unwind() {
    let abort = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_mail_parser = info
            .location()
            .is_some_and(|l| l.file().contains("/mail-parser-"));
        if !in_mail_parser {
            abort(info);
        }
    }));
}

fuzz_target!(init: let_mail_parser_panics_unwind(), |raw: &[u8]| {
    let info = MessageInfo::parse(raw);

    let root = info.parts.first().expect("a root part");
    assert!(root.section.is_empty());
    assert_eq!(root.header_start, 0);
    assert!(info.parts.len() <= 2 * letterbox::mime::MAX_PARTS + 2);
    assert!(info.parts.iter().all(|p| p.section.len() <= letterbox::mime::MAX_DEPTH as usize + 1));
    for pair in info.parts.windows(2) {
        assert!(pair[0].section < pair[1].section, "parts out of order: {:?}", info.parts);
    }
    for p in &info.parts {
        assert!(p.header_start <= p.body_start, "{p:?}");
        assert!(p.body_start <= p.inner_body_start, "{p:?}");
        assert!(p.inner_body_start <= p.body_end, "{p:?}");
        assert!(p.body_end as usize <= raw.len(), "{p:?}");
        assert!(p.kind == PartKind::Message || p.inner_body_start == p.body_start, "{p:?}");
        // Every range FETCH may ask for slices the message.
        let ranges = [
            info.body_range(&p.section),
            info.mime_range(&p.section),
            info.header_range(&p.section),
            info.text_range(&p.section),
        ];
        for r in ranges.into_iter().flatten() {
            assert!(raw.get(r.clone()).is_some(), "{r:?} of {} bytes", raw.len());
        }
        assert_eq!(info.part(&p.section), Some(p));
    }
    for list in [&info.envelope, &info.bodystructure, &info.body] {
        assert!(list.starts_with(b"(") && list.ends_with(b")"), "{}", String::from_utf8_lossy(list));
    }

    let stored = info.encode();
    assert_eq!(MessageInfo::decode(&stored).as_ref(), Some(&info));
});
