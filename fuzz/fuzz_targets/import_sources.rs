//! What `letterbox import` reads from another server's files
//! (src/import/): dovecot-uidlist, subscriptions, mbox status headers and
//! From lines, the import items on the control socket. The first byte picks
//! the parser.
#![no_main]

use letterbox::import::{self, maildir, mbox, wire};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match pick % 6 {
        0 => {
            let mut lines = 0;
            if let Some(list) = maildir::parse_uidlist(&text, &mut |_, _| lines += 1) {
                // Every UID named is a real one, and UIDNEXT is above them all.
                assert!(list.files.values().all(|&u| u > 0 && u < list.uids.uid_next));
            }
        }
        1 => {
            for name in maildir::parse_subscriptions(&text, pick & 0x80 != 0) {
                assert!(import::valid_mailbox_name(&name), "{name:?}");
            }
        }
        2 => {
            let (out, status) = mbox::strip_status_headers(rest);
            assert!(out.len() <= rest.len());
            assert!(status.keywords.iter().all(|k| import::valid_keyword(k)));
            assert!(status.uid.is_none_or(|u| u > 0));
            assert!(status.base.is_none_or(|b| b.uid_validity > 0));
        }
        3 => {
            let _ = mbox::from_line_date(rest);
        }
        4 => {
            let out = import::to_crlf(rest.to_vec());
            for (i, &b) in out.iter().enumerate() {
                assert!(b != b'\n' || (i > 0 && out[i - 1] == b'\r'), "bare LF at {i}");
            }
            let _ = import::Identity::of(&out, out.len() as u64);
            let _ = import::looks_like_message(rest);
        }
        _ => {
            // What parses writes back to the same line.
            if let Ok(wire::Header::Item(item)) = wire::parse_header(&text) {
                let mut again = Vec::new();
                wire::write_item(&mut again, &item).unwrap();
                let again = String::from_utf8(again).unwrap();
                assert_eq!(wire::parse_header(&again), Ok(wire::Header::Item(item)));
            }
        }
    }
});
