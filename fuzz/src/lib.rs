//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! The protocol targets feed the fuzzer's bytes through the server's real
//! [`Conn`] (line reading, over-long lines, literals, dot-stuffed DATA) over a
//! Unix socket pair, and drive the real sans-IO session with a small loop
//! that mirrors the protocol's shell. Only the store and the password check
//! are stand-ins: a fixed maildrop and a fixed password, so one run costs
//! microseconds and leaves nothing behind.

use std::future::Future;
use std::time::Duration;

use letterbox::net::{Conn, Peer, Stream};
use smol::io::AsyncWriteExt;
use smol::net::unix::UnixStream;

/// Call once per process (the targets' `init`). libFuzzer's `main` is not
/// Rust's, so SIGPIPE is not ignored as it is in the server, and a session
/// that stops reading would kill the process when the feeding side writes on.
pub fn init() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Runs `drive` on a [`Conn`] whose peer sends `input` and then closes, as
/// a client would. The peer is a Unix socket, so it counts as local (passwords
/// allowed in plaintext); replies are not written to the socket at all, since
/// nobody reads them: `drive` checks them itself.
pub fn over_conn<F, Fut>(input: &[u8], drive: F)
where
    F: FnOnce(Conn) -> Fut,
    Fut: Future<Output = ()>,
{
    smol::block_on(async {
        let (mut client, server) = UnixStream::pair().expect("socketpair");
        let peer = Peer {
            id: 0,
            addr: None,
            tls: false,
        };
        // Never reached: all input is on its way and then the peer closes.
        let conn = Conn::new(Stream::Unix(server), peer, Duration::from_secs(3600));
        let feed = async move {
            // Fails (EPIPE) only when the session stopped reading first.
            let _ = client.write_all(input).await;
            drop(client);
        };
        smol::future::zip(feed, drive(conn)).await;
    });
}

/// A reply must be whole lines: every LF after a CR and every CR before an
/// LF, ending in CRLF. A lone CR or LF inside a reply is text the client
/// would read as a line end of its own: a reply injection.
pub fn assert_crlf_lines(reply: &[u8]) {
    assert!(reply.ends_with(b"\r\n"), "reply not ended by CRLF: {:?}", lossy(reply));
    for (i, &b) in reply.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(reply.get(i + 1), Some(&b'\n'), "lone CR in reply: {:?}", lossy(reply)),
            b'\n' => assert!(i > 0 && reply[i - 1] == b'\r', "lone LF in reply: {:?}", lossy(reply)),
            _ => {}
        }
    }
}

/// Text that goes into one reply line: no line ends, no NUL.
pub fn assert_one_line(text: &str) {
    assert!(
        !text.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0),
        "line break or NUL inside a reply line: {text:?}"
    );
}

pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
