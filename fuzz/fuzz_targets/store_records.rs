//! The store's record decoders: bytes read back from the database file are
//! checked, not trusted, so any bytes must decode to a record or a clear
//! `Corrupt` error, and a record that decodes must encode and decode again
//! to the same record. The first byte picks the table; the rest is the value.
//! (A new record kind gets a new selector here.)
#![no_main]

use letterbox::mime::MessageInfo;
use letterbox::store::{
    chunk_of, decode_uids, encode_uids, ChunkRef, MailboxRecord, MessageRecord, StoreError,
    CHUNK_UIDS,
};
use libfuzzer_sys::fuzz_target;

fn corrupt<T: std::fmt::Debug>(r: &Result<T, StoreError>) {
    if let Err(e) = r {
        assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&table, bytes)) = data.split_first() else {
        return;
    };
    match table % 5 {
        // `mailboxes`
        0 => {
            let r = MailboxRecord::decode(bytes);
            corrupt(&r);
            if let Ok(record) = r {
                assert_eq!(MailboxRecord::decode(&record.encode()), Ok(record));
            }
        }
        // `messages`
        1 => {
            let r = MessageRecord::decode(bytes);
            corrupt(&r);
            if let Ok(record) = r {
                assert_eq!(MessageRecord::decode(&record.encode()), Ok(record));
            }
        }
        // `expunged`
        2 => {
            let r = decode_uids(bytes);
            corrupt(&r);
            if let Ok(uids) = r {
                assert_eq!(encode_uids(&uids), bytes);
            }
        }
        // `message_index`: the chunk number is the key, the next byte here.
        3 => {
            let Some((&number, bytes)) = bytes.split_first() else {
                return;
            };
            let number = u32::from(number);
            let r = ChunkRef::parse(number, bytes);
            if let Err(e) = &r {
                assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
            }
            let Ok(chunk) = r else {
                return;
            };
            assert_eq!(chunk.number, number);
            let uids: Vec<u32> = chunk.uids().collect();
            assert_eq!(uids.len(), chunk.len());
            assert_eq!(chunk.modseqs().count(), chunk.len());
            assert_eq!(chunk.flags().count(), chunk.len());
            assert!(uids.len() <= CHUNK_UIDS as usize);
            assert!(uids.windows(2).all(|w| w[0] < w[1]), "{uids:?}");
            assert!(uids.iter().all(|&u| chunk_of(u) == number), "{uids:?}");
            let keywords = chunk.keywords();
            corrupt(&keywords);
            if let Ok(keywords) = &keywords {
                assert!(keywords.iter().all(|(i, _)| *i < chunk.len()));
            }
            let edit = chunk.to_chunk();
            corrupt(&edit);
            if let Ok(edit) = edit {
                let again = edit.encode();
                let reread = ChunkRef::parse(number, &again).and_then(|c| c.to_chunk());
                assert_eq!(reread, Ok(edit));
            }
        }
        // `parsed`
        _ => {
            if let Some(info) = MessageInfo::decode(bytes) {
                assert_eq!(MessageInfo::decode(&info.encode()).as_ref(), Some(&info));
            }
        }
    }
});
