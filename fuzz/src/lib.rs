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

use std::io::{self, Write};
use std::net::Shutdown;

use letterbox::net::{Conn, Peer, Stream};
use smol::net::unix::UnixStream;
use smol::Async;

/// Call once per process (the targets' `init`). libFuzzer's `main` is not
/// Rust's, so SIGPIPE is not ignored as it is in the server, and a session
/// that stops reading would kill the process when the feeding side writes on.
pub fn init() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Runs `drive` on a [`Conn`] whose peer sends `input` and then closes its
/// side, as a client would. The peer is a Unix socket, so it counts as local
/// (passwords allowed in plaintext); replies are not written to the socket,
/// since nobody reads them: `drive` checks them itself.
///
/// The input is written before the session starts, and the peer shuts down
/// only its sending side, so reads never wait and the reactor thread is never
/// woken: a run costs no thread switch. Input beyond the socket buffer goes
/// through a writer thread.
pub fn over_conn<F, Fut>(input: &[u8], drive: F)
where
    F: FnOnce(Conn) -> Fut,
    Fut: Future<Output = ()>,
{
    let (client, server) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    client.set_nonblocking(true).expect("nonblocking");
    let mut sent = 0;
    while sent < input.len() {
        match (&client).write(&input[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    // Closing the peer whole (not just its sending side) would wake the
    // reactor with a hang-up; it stays open until the session is done.
    let mut client = Some(client);
    let writer = if sent < input.len() {
        let client = client.take().expect("peer");
        client.set_nonblocking(false).expect("blocking");
        let rest = input[sent..].to_vec();
        Some(std::thread::spawn(move || {
            // Fails (EPIPE) only when the session stopped reading first.
            let _ = (&client).write_all(&rest);
            let _ = client.shutdown(Shutdown::Write);
        }))
    } else {
        if let Some(client) = &client {
            let _ = client.shutdown(Shutdown::Write);
        }
        None
    };
    let peer = Peer {
        id: 0,
        addr: None,
        tls: false,
    };
    let server = Async::new(server).expect("register socket");
    // Never reached: all input is on its way and then the peer's side ends.
    let conn = Conn::new(
        Stream::Unix(UnixStream::from(server)),
        peer,
        Duration::from_secs(3600),
    );
    smol::block_on(drive(conn));
    drop(client);
    if let Some(writer) = writer {
        let _ = writer.join();
    }
}

/// A reply must be whole lines: every LF after a CR and every CR before an
/// LF, ending in CRLF. A lone CR or LF inside a reply is text the client
/// would read as a line end of its own: a reply injection.
pub fn assert_crlf_lines(reply: &[u8]) {
    assert!(
        reply.ends_with(b"\r\n"),
        "reply not ended by CRLF: {:?}",
        lossy(reply)
    );
    for (i, &b) in reply.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(
                reply.get(i + 1),
                Some(&b'\n'),
                "lone CR in reply: {:?}",
                lossy(reply)
            ),
            b'\n' => assert!(
                i > 0 && reply[i - 1] == b'\r',
                "lone LF in reply: {:?}",
                lossy(reply)
            ),
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
