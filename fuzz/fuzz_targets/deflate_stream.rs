//! COMPRESS=DEFLATE (src/net/compress.rs). Any bytes from a client, fed in
//! pieces and inflated into small buffers, give output or a clean error,
//! never a panic or an endless loop. And whatever the server compresses,
//! in two bursts with the deflater given back between them (as when a
//! session goes idle), a standard raw inflater decodes to the same bytes.
#![no_main]

use flate2::{Decompress, FlushDecompress};
use letterbox::net::compress::Deflate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, rest)) = data.split_first() else {
        return;
    };
    let out_size = usize::from(knobs % 64) + 1;
    let piece = usize::from(knobs / 64) * 7 + 1;

    // Client to server: arbitrary bytes as a compressed stream.
    let mut server = Deflate::new();
    let mut out = vec![0u8; out_size];
    let mut produced = 0usize;
    'feed: for chunk in rest.chunks(piece) {
        server.feed(chunk);
        loop {
            match server.inflate(&mut out) {
                Ok(0) => break,
                Ok(n) => {
                    produced += n;
                    // Deflate expands at most 1032:1.
                    assert!(produced <= rest.len() * 1032 + 1024);
                }
                Err(_) => break 'feed,
            }
        }
    }

    // Server to client: two bursts around a release.
    let split = rest.len() / 2;
    let mut server = Deflate::new();
    server.compress(&rest[..split], true).unwrap();
    server.release();
    server.compress(&rest[split..], false).unwrap();
    server.compress(b"", true).unwrap();
    let mut client = Decompress::new(false);
    let mut decoded = Vec::with_capacity(rest.len() + 64);
    client
        .decompress_vec(&server.output, &mut decoded, FlushDecompress::Sync)
        .unwrap();
    assert_eq!(decoded, rest);
});
