//! COMPRESS=DEFLATE (RFC 4978): raw deflate (RFC 1951) both ways, as a layer
//! under [`super::Conn`]'s buffers. Sans-IO: bytes in, bytes out; the
//! connection decides when a burst ends and when the session is idle.
//!
//! What it costs, and why it is shaped so (miniz_oxide, through flate2's
//! pure-Rust default backend):
//! - Inflating needs the client's whole 32 KiB window: a client may refer
//!   back that far at any time, so the inflater (43 KiB) lives as long as
//!   the connection.
//! - The deflater is the expensive half: 320 KiB, in allocations of fixed
//!   size whatever the level (a 32 KiB window and its hash chains, 64 KiB
//!   of hash heads, a 64 KiB code buffer, an 83 KiB output buffer). It is
//!   made when there is output and given back once the session has been
//!   idle for [`RELEASE_AFTER`]. That is valid in the middle of one stream:
//!   every burst ends with a sync flush, which ends the block without
//!   BFINAL and byte-aligns the stream, so a fresh raw deflater simply
//!   starts the next block. The client's inflater keeps its window; the new
//!   deflater only never refers back to what the old one sent (what a full
//!   flush would also give up). An idle compressed connection then holds
//!   the inflater and small buffers, not the deflater (see
//!   [`note_released`] for getting that memory back from the allocator).
//! - Level 1, miniz_oxide's fast path: on a 10 MB FETCH of mail text it
//!   cost the server no more CPU than sending it plain (fewer bytes to
//!   write) and sent 4 % of the bytes, against 3.5 % at level 6 for twice
//!   the CPU; on a base64 attachment the two levels shrink it the same
//!   (to 76 %), and level 6 took 2.5 times the CPU of level 1. A board
//!   serving phones is short of CPU before it is short of bandwidth.

use std::io;
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// How long a session may sit without input before its deflater is given
/// back. Long enough that a client working through commands keeps its
/// dictionary (and the compression ratio it brings), short enough that idle
/// connections do not hold it.
pub const RELEASE_AFTER: Duration = Duration::from_secs(2);
/// Buffers shrink back to this once empty, as the plain ones do.
const BUFFER_KEEP: usize = 4096;
const LEVEL: u32 = 1;

/// What one deflater holds (miniz_oxide 0.9: window and hash chains,
/// hash heads, code buffer, output buffer, Huffman tables).
const DEFLATER_BYTES: usize = 320 * 1024;
/// Deflater bytes given back after which the allocator is asked to return
/// free pages to the system.
const TRIM_AFTER: usize = 4 * 1024 * 1024;

thread_local! {
    /// Deflater bytes given back since the last trim, on this thread (the
    /// event loop's).
    static RELEASED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts a deflater given back, and now and then returns free memory to
/// the system. Why: a deflater is a few allocations of 4 to 85 KiB, below
/// glibc's mmap threshold, so they come from the heap. When many sessions
/// worked at once (a burst of logins, a client with many connections) and
/// then go idle together, their deflaters leave holes in the middle of the
/// heap that `free` never gives back: measured, 1,000 idle compressed
/// connections kept 235 KiB each of RSS, all of it free heap.
/// `malloc_trim` hands those pages back (glibc 2.8 and later release free
/// pages anywhere in the heap, not only at its top). musl's allocator
/// returns such memory by itself.
fn note_released() {
    RELEASED.with(|released| {
        let total = released.get() + DEFLATER_BYTES;
        if total < TRIM_AFTER {
            released.set(total);
            return;
        }
        released.set(0);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only walks the allocator's own free lists;
        // it has no preconditions and may be called at any time.
        unsafe {
            libc::malloc_trim(0);
        }
    });
}

pub struct Deflate {
    /// None while idle (see the module comment).
    compressor: Option<Box<Compress>>,
    /// Input given to the deflater that a sync flush has not yet pushed out.
    unflushed: bool,
    decompressor: Decompress,
    /// Compressed bytes from the client not yet inflated: the first
    /// `input_len` bytes of `input`. What lies past them is room for a read
    /// that may yet be cancelled (IDLE drops a pending read when a change
    /// arrives), so it never counts as data.
    input: Vec<u8>,
    input_len: usize,
    /// Set once the client ended its stream (a final block): nothing more
    /// can follow.
    ended: bool,
    /// Compressed bytes for the client, not yet sent.
    pub output: Vec<u8>,
}

/// The client's deflate stream could not be decoded.
pub fn invalid_stream(detail: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("invalid COMPRESS=DEFLATE data from the client: {detail}"),
    )
}

impl Default for Deflate {
    fn default() -> Self {
        Deflate::new()
    }
}

impl Deflate {
    pub fn new() -> Deflate {
        Deflate {
            compressor: None,
            unflushed: false,
            decompressor: Decompress::new(false),
            input: Vec::new(),
            input_len: 0,
            ended: false,
            output: Vec::new(),
        }
    }

    /// Compresses `data` onto [`Deflate::output`]. With `end_of_burst`, ends
    /// with a sync flush so the client can decode everything sent so far at
    /// once (IDLE pushes, pipelined replies).
    pub fn compress(&mut self, mut data: &[u8], end_of_burst: bool) -> io::Result<()> {
        if data.is_empty() && !(end_of_burst && self.unflushed) {
            return Ok(());
        }
        let compressor = self
            .compressor
            .get_or_insert_with(|| Box::new(Compress::new(Compression::new(LEVEL), false)));
        let mode = if end_of_burst {
            FlushCompress::Sync
        } else {
            FlushCompress::None
        };
        loop {
            // Room for the whole input if it does not compress, plus the
            // flush marker; more is asked for below if that was not enough.
            let want = data.len() / 2 + 64;
            if self.output.capacity() - self.output.len() < want {
                self.output.reserve(want);
            }
            let room = self.output.capacity() - self.output.len();
            let before = compressor.total_in();
            compressor
                .compress_vec(data, &mut self.output, mode)
                .map_err(io::Error::other)?;
            let used = (compressor.total_in() - before) as usize;
            data = &data[used..];
            let filled = self.output.capacity() - self.output.len() == 0;
            // Done when all input is in and the deflater did not stop for
            // want of room (then it may hold more of the flush).
            if data.is_empty() && !filled && room > 0 {
                break;
            }
        }
        self.unflushed = !end_of_burst;
        Ok(())
    }

    /// Whether the deflater holds input that no sync flush has sent yet.
    pub fn has_unflushed(&self) -> bool {
        self.unflushed
    }

    /// Gives the deflater back while the session is idle (see the module
    /// comment). Only after a sync flush, so the stream stays whole.
    pub fn release(&mut self) {
        if !self.unflushed && self.compressor.take().is_some() {
            note_released();
        }
        if self.output.is_empty() && self.output.capacity() > BUFFER_KEEP {
            self.output = Vec::new();
        }
    }

    /// Whether the deflater is held (for tests and figures).
    pub fn holds_compressor(&self) -> bool {
        self.compressor.is_some()
    }

    /// Adds compressed bytes from the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.input.truncate(self.input_len);
        self.input.extend_from_slice(bytes);
        self.input_len = self.input.len();
    }

    /// A buffer to read compressed bytes into: `room` bytes after the data.
    /// Call [`Deflate::filled`] with how many arrived; if the read is
    /// cancelled instead, nothing of the buffer counts.
    pub fn read_buffer(&mut self, room: usize) -> &mut [u8] {
        let len = self.input_len;
        self.input.resize(len + room, 0);
        &mut self.input[len..]
    }

    /// `n` bytes of the last [`Deflate::read_buffer`] hold data.
    pub fn filled(&mut self, n: usize) {
        self.input_len = (self.input_len + n).min(self.input.len());
        self.input.truncate(self.input_len);
    }

    /// Inflates what has arrived into `out`; returns how many bytes were
    /// written there (0: more input is needed). An error means the stream
    /// is broken for good.
    pub fn inflate(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        self.input.truncate(self.input_len);
        if self.ended {
            return if self.input.is_empty() {
                Ok(0)
            } else {
                Err(invalid_stream("data after the end of the stream"))
            };
        }
        let (before_in, before_out) = (self.decompressor.total_in(), self.decompressor.total_out());
        let status = self
            .decompressor
            .decompress(&self.input, out, FlushDecompress::None)
            .map_err(invalid_stream)?;
        let used = (self.decompressor.total_in() - before_in) as usize;
        let produced = (self.decompressor.total_out() - before_out) as usize;
        self.input.drain(..used);
        self.input_len = self.input.len();
        if self.input.is_empty() && self.input.capacity() > BUFFER_KEEP {
            self.input = Vec::new();
        }
        if status == Status::StreamEnd {
            self.ended = true;
        }
        Ok(produced)
    }

    /// Whether the client ended its compressed stream (a final block).
    pub fn input_ended(&self) -> bool {
        self.ended && self.input_len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_inflate(d: &mut Decompress, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() * 20 + 1024);
        d.decompress_vec(data, &mut out, FlushDecompress::Sync)
            .expect("valid stream");
        out
    }

    fn client_deflate(c: &mut Compress, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 1024);
        c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
        out
    }

    #[test]
    fn each_burst_decodes_at_once_and_release_keeps_the_stream_whole() {
        let mut server = Deflate::new();
        let mut client = Decompress::new(false);
        let mut seen = Vec::new();
        for round in 0..5 {
            let reply = format!("* {round} FETCH (FLAGS (\\Seen))\r\na{round} OK done\r\n");
            server.compress(reply.as_bytes(), true).unwrap();
            let sent = std::mem::take(&mut server.output);
            // Everything of the burst is decodable without more bytes.
            seen.extend(client_inflate(&mut client, &sent));
            assert!(seen.ends_with(reply.as_bytes()), "round {round}");
            if round % 2 == 0 {
                server.release();
                assert!(!server.holds_compressor());
            }
        }
    }

    #[test]
    fn large_output_in_pieces_then_flushed() {
        let mut server = Deflate::new();
        let mut client = Decompress::new(false);
        let body: Vec<u8> = (0..300_000u32)
            .flat_map(|i| format!("line {i} of text\r\n").into_bytes())
            .collect();
        let mut got = Vec::new();
        for piece in body.chunks(32 * 1024) {
            server.compress(piece, false).unwrap();
            assert!(server.has_unflushed());
            got.extend(client_inflate(
                &mut client,
                &std::mem::take(&mut server.output),
            ));
        }
        server.release();
        assert!(
            server.holds_compressor(),
            "unflushed data must not be dropped"
        );
        server.compress(b"", true).unwrap();
        got.extend(client_inflate(
            &mut client,
            &std::mem::take(&mut server.output),
        ));
        assert_eq!(got, body);
    }

    #[test]
    fn inflates_split_anywhere_into_small_buffers() {
        let mut client = Compress::new(Compression::new(6), false);
        let text = b"a1 SELECT INBOX\r\na2 FETCH 1:* (FLAGS)\r\n".repeat(50);
        let stream = client_deflate(&mut client, &text);
        for split in [1, 7, stream.len() / 2, stream.len() - 1] {
            let mut server = Deflate::new();
            let mut got = Vec::new();
            let mut buf = [0u8; 100];
            for part in [&stream[..split], &stream[split..]] {
                server.feed(part);
                loop {
                    let n = server.inflate(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
            }
            assert_eq!(got, text, "split at {split}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut server = Deflate::new();
        // Block type 3 is reserved: invalid from the first byte.
        server.feed(&[0xff; 64]);
        let mut buf = [0u8; 256];
        let e = server.inflate(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn read_buffer_keeps_only_what_arrived_even_if_a_read_is_cancelled() {
        let mut client = Compress::new(Compression::new(6), false);
        let stream = client_deflate(&mut client, b"a1 NOOP\r\n");
        let mut server = Deflate::new();
        let buf = server.read_buffer(100);
        buf[..3].copy_from_slice(&stream[..3]);
        server.filled(3);
        // A read that never completed leaves its room behind.
        server.read_buffer(100).fill(0xff);
        let buf = server.read_buffer(100);
        buf[..stream.len() - 3].copy_from_slice(&stream[3..]);
        server.filled(stream.len() - 3);
        let mut out = [0u8; 64];
        let n = server.inflate(&mut out).unwrap();
        assert_eq!(&out[..n], b"a1 NOOP\r\n");
    }
}
