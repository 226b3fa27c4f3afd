//! SORT and THREAD's inputs: the sort keys read from a message header at
//! delivery, the stored record decoder, and both thread algorithms. The
//! input is split at NUL bytes into messages. Every header must give keys
//! that encode and decode to themselves; any bytes must decode to keys or
//! None; threading must name every message exactly once, without panics.
#![no_main]

use letterbox::imap::thread::{ordered_subject, references, ThreadKeys, ThreadMessage};
use letterbox::mime::SortKeys;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys: Vec<(i64, ThreadKeys)> = data
        .split(|&b| b == 0)
        .take(200)
        .map(|raw| {
            let _ = SortKeys::decode(raw);
            let keys = SortKeys::parse(raw);
            assert_eq!(SortKeys::decode(&keys.encode()).as_ref(), Some(&keys));
            (keys.date.unwrap_or(0), keys.into())
        })
        .collect();
    let messages: Vec<ThreadMessage<'_>> = keys
        .iter()
        .enumerate()
        .map(|(i, (date, keys))| ThreadMessage {
            number: i as u32 + 1,
            date: *date,
            keys,
        })
        .collect();
    for out in [references(&messages), ordered_subject(&messages)] {
        let mut seen: Vec<u32> = out
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (1..=messages.len() as u32).collect::<Vec<_>>(), "{out}");
    }
});
