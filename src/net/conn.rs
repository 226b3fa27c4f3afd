//! A client connection as the protocol shells see it: a buffered line reader
//! with limits, a dot-stuffed data reader, a write buffer, idle timeouts, and
//! the STARTTLS upgrade. Sessions never touch the socket themselves.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_rustls::server::TlsStream;
use futures_rustls::TlsAcceptor;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::net::unix::UnixStream;
use smol::net::TcpStream;
use smol::Timer;

use super::compress::{self, Deflate};

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// A client that stops reading our replies for this long is dropped, so it
/// cannot pin a session (and its buffers) forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(300);
/// Buffers grow for a long line or a large reply, then shrink back to this,
/// so an idle connection costs little memory.
const BUFFER_KEEP: usize = 4096;
/// Queued output is sent once it reaches this size, even mid-reply.
const WRITE_CHUNK: usize = 32 * 1024;
/// While a message body arrives, this long without a byte is a stall: the
/// connection ends, and with it what the body holds of the memory budget.
const BODY_STALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How much of an over-long line's start and end is kept.
const OVERLONG_HEAD: usize = 64;
const OVERLONG_TAIL: usize = 32;

pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_close(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
            Stream::Unix(s) => Pin::new(s).poll_close(cx),
        }
    }
}

/// Who is on the other end, for logs, limits and the plaintext-auth rule.
#[derive(Clone, Debug)]
pub struct Peer {
    /// A per-process connection number, for log lines.
    pub id: u64,
    /// None for a unix socket.
    pub addr: Option<SocketAddr>,
    pub tls: bool,
}

impl Peer {
    /// Loopback and unix-socket peers are on this machine: no network to
    /// sniff a plaintext password on.
    pub fn is_local(&self) -> bool {
        self.addr.is_none_or(|a| a.ip().is_loopback())
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.addr {
            Some(addr) => write!(f, "conn {} from {}", self.id, addr),
            None => write!(f, "conn {} from unix socket", self.id),
        }
    }
}

#[derive(Debug)]
pub enum ReadError {
    /// The client closed the connection.
    Closed,
    /// Nothing arrived within the idle timeout.
    Timeout,
    /// A line was longer than the limit; it has been skipped up to its end.
    LineTooLong,
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// How dot-stuffed data (LMTP DATA) ended.
#[derive(Debug)]
pub enum DataError {
    /// The data went past the size limit; it was read to its end and dropped.
    TooBig,
    /// The spool could not take the data (disk full); it was read to its
    /// end and dropped.
    Spool(io::Error),
    Read(ReadError),
}

pub struct Conn {
    stream: Option<Stream>,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    /// Bytes of the last line handed out, consumed at the next read.
    consumed: usize,
    wbuf: Vec<u8>,
    /// Head and tail of the latest over-long line (see `read_line`).
    overlong: (Vec<u8>, Vec<u8>),
    /// Whether the last line read ended in a bare LF rather than CRLF.
    bare_lf: bool,
    pub peer: Peer,
    pub idle_timeout: Duration,
    /// When set, reading and writing fail with a timeout from then on,
    /// whatever the client does (the time allowed to log in).
    deadline: Option<Instant>,
    /// COMPRESS=DEFLATE, once started: every byte both ways goes through it.
    /// Boxed, so a connection without it costs one pointer more.
    deflate: Option<Box<Deflate>>,
}

impl Conn {
    pub fn new(stream: Stream, peer: Peer, idle_timeout: Duration) -> Conn {
        Conn {
            stream: Some(stream),
            rbuf: Vec::new(),
            rstart: 0,
            rend: 0,
            consumed: 0,
            wbuf: Vec::new(),
            overlong: (Vec::new(), Vec::new()),
            bare_lf: false,
            peer,
            idle_timeout,
            deadline: None,
            deflate: None,
        }
    }

    fn stream(&mut self) -> io::Result<&mut Stream> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "connection lost in TLS"))
    }

    /// True when a whole line is already buffered, so a pipelined command can
    /// be answered without first flushing the replies before it.
    pub fn has_buffered_line(&self) -> bool {
        let start = self.rstart + self.consumed;
        self.rbuf[start..self.rend].contains(&b'\n')
    }

    fn consume_last_line(&mut self) {
        self.rstart += self.consumed;
        self.consumed = 0;
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
            if self.rbuf.len() > BUFFER_KEEP {
                self.rbuf = Vec::new();
            }
        }
    }

    /// Sets or clears the deadline (see the field).
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// Whether the deadline has passed, to tell it from an idle timeout.
    pub fn deadline_passed(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// How long the next read or write may wait: the given limit, cut short
    /// by the deadline. None once the deadline has passed.
    fn time_left(&self, limit: Duration) -> Option<Duration> {
        match self.deadline {
            None => Some(limit),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                (!left.is_zero()).then(|| left.min(limit))
            }
        }
    }

    /// Reads more bytes into the buffer, waiting at most the idle timeout.
    /// Pending output is flushed first: the client may be waiting for it.
    async fn fill(&mut self, want_room: usize) -> Result<(), ReadError> {
        // Past the deadline, say so before trying to flush: the shell then
        // clears it and sends its goodbye after what is queued.
        if self.time_left(self.idle_timeout).is_none() {
            return Err(ReadError::Timeout);
        }
        if self.has_output() {
            self.flush().await?;
        }
        if self.rstart > 0 {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        let room = want_room.clamp(1024, 64 * 1024);
        if self.rbuf.len() - self.rend < room {
            self.rbuf.resize(self.rend + room, 0);
        }
        let timeout = self
            .time_left(self.idle_timeout)
            .ok_or(ReadError::Timeout)?;
        if self.deflate.is_some() {
            return self.fill_inflated(room, timeout).await;
        }
        let end = self.rend;
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "connection lost in TLS"))?;
        let read = stream.read(&mut self.rbuf[end..]);
        let n = smol::future::or(async { read.await.map_err(ReadError::Io) }, async {
            Timer::after(timeout).await;
            Err(ReadError::Timeout)
        })
        .await?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        self.rend += n;
        Ok(())
    }

    /// [`Conn::fill`] under COMPRESS: inflates what has arrived, reading
    /// more compressed bytes as needed. The deflater is given back once the
    /// client has been quiet for [`compress::RELEASE_AFTER`].
    async fn fill_inflated(&mut self, room: usize, timeout: Duration) -> Result<(), ReadError> {
        let started = Instant::now();
        loop {
            let Some(deflate) = self.deflate.as_mut() else {
                return Err(ReadError::Closed);
            };
            let end = self.rend;
            let produced = deflate.inflate(&mut self.rbuf[end..])?;
            if produced > 0 {
                self.rend += produced;
                return Ok(());
            }
            if deflate.input_ended() {
                return Err(ReadError::Closed);
            }
            let holding = deflate.holds_compressor() && !deflate.has_unflushed();
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(ReadError::Timeout);
            }
            let wait = if holding {
                left.min(compress::RELEASE_AFTER)
            } else {
                left
            };
            let chunk = room.min(16 * 1024);
            let (stream, deflate) = match (self.stream.as_mut(), self.deflate.as_mut()) {
                (Some(stream), Some(deflate)) => (stream, deflate),
                _ => {
                    return Err(ReadError::Io(io::Error::new(
                        io::ErrorKind::NotConnected,
                        "connection lost",
                    )))
                }
            };
            let buf = deflate.read_buffer(chunk);
            let read = stream.read(buf);
            let got = smol::future::or(async { Some(read.await) }, async {
                Timer::after(wait).await;
                None
            })
            .await;
            match got {
                Some(Ok(0)) => {
                    deflate.filled(0);
                    return Err(ReadError::Closed);
                }
                Some(Ok(n)) => deflate.filled(n),
                Some(Err(e)) => {
                    deflate.filled(0);
                    return Err(ReadError::Io(e));
                }
                None => {
                    deflate.filled(0);
                    if !holding {
                        return Err(ReadError::Timeout);
                    }
                    deflate.release();
                }
            }
        }
    }

    /// Reads one line of at most `max` bytes, without its line end (CRLF or a
    /// bare LF). An over-long line is skipped up to its end and reported as
    /// [`ReadError::LineTooLong`], so the next read starts on a fresh line and
    /// memory stays bounded by `max`.
    pub async fn read_line(&mut self, max: usize) -> Result<&[u8], ReadError> {
        self.consume_last_line();
        let mut scanned = 0;
        let mut too_long = false;
        loop {
            let window = &self.rbuf[self.rstart + scanned..self.rend];
            if let Some(pos) = window.iter().position(|&b| b == b'\n') {
                let lf = self.rstart + scanned + pos;
                if too_long || lf - self.rstart > max + 1 {
                    if !too_long {
                        self.overlong.0 =
                            self.rbuf[self.rstart..lf.min(self.rstart + OVERLONG_HEAD)].to_vec();
                        self.overlong.1.clear();
                    }
                    let mut end = &self.rbuf[self.rstart..lf];
                    if let [rest @ .., b'\r'] = end {
                        end = rest;
                    }
                    let tail = &mut self.overlong.1;
                    tail.extend_from_slice(end);
                    let excess = tail.len().saturating_sub(OVERLONG_TAIL);
                    tail.drain(..excess);
                    self.rstart = lf + 1;
                    return Err(ReadError::LineTooLong);
                }
                self.consumed = lf + 1 - self.rstart;
                let mut line = &self.rbuf[self.rstart..lf];
                self.bare_lf = true;
                if let [rest @ .., b'\r'] = line {
                    line = rest;
                    self.bare_lf = false;
                }
                return Ok(line);
            }
            scanned = self.rend - self.rstart;
            if scanned > max + 1 {
                // Drop what we have of the over-long line and keep looking
                // for its end; keep its start and its latest bytes, which is
                // all an IMAP shell needs to answer it (the tag, and whether
                // a literal follows).
                let dropped = &self.rbuf[self.rstart..self.rend];
                if !too_long {
                    self.overlong.0 = dropped[..OVERLONG_HEAD.min(dropped.len())].to_vec();
                    self.overlong.1.clear();
                }
                let keep = &dropped[dropped.len().saturating_sub(OVERLONG_TAIL)..];
                self.overlong.1.clear();
                self.overlong.1.extend_from_slice(keep);
                too_long = true;
                self.rstart = 0;
                self.rend = 0;
                scanned = 0;
            }
            // Room for what is likely, not for `max`: an idle connection waits here.
            self.fill((max.saturating_sub(scanned) + 2).min(BUFFER_KEEP))
                .await?;
        }
    }

    /// [`Conn::read_line`], also saying whether the line ended in a bare LF
    /// rather than CRLF, for protocols that insist on CRLF (LMTP).
    pub async fn read_line_with_ending(&mut self, max: usize) -> Result<(&[u8], bool), ReadError> {
        let len = self.read_line(max).await?.len();
        Ok((&self.rbuf[self.rstart..self.rstart + len], self.bare_lf))
    }

    /// The start and the last bytes of the latest over-long line.
    pub fn overlong_line(&self) -> (&[u8], &[u8]) {
        (&self.overlong.0, &self.overlong.1)
    }

    /// Reads and throws away `n` bytes (a literal that was refused).
    pub async fn skip_exact(&mut self, n: u64) -> Result<(), ReadError> {
        self.consume_last_line();
        let mut left = n;
        while left > 0 {
            if self.rstart == self.rend {
                self.fill(left.min(64 * 1024) as usize).await?;
            }
            let take = left.min((self.rend - self.rstart) as u64) as usize;
            self.rstart += take;
            left -= take as u64;
        }
        Ok(())
    }

    /// Reads exactly `n` bytes (an IMAP literal) into `out`. A client that
    /// stops sending mid-literal for [`BODY_STALL_TIMEOUT`] is cut off.
    pub async fn read_exact_into(&mut self, n: usize, out: &mut Vec<u8>) -> Result<(), ReadError> {
        self.consume_last_line();
        let idle = self.idle_timeout;
        self.idle_timeout = idle.min(BODY_STALL_TIMEOUT);
        let mut left = n;
        let result = async {
            while left > 0 {
                if self.rstart == self.rend {
                    self.fill(left).await?;
                }
                let take = left.min(self.rend - self.rstart);
                out.extend_from_slice(&self.rbuf[self.rstart..self.rstart + take]);
                self.rstart += take;
                left -= take;
            }
            Ok(())
        }
        .await;
        self.idle_timeout = idle;
        result
    }

    /// Reads exactly `n` bytes (a large IMAP literal) into `spool`, which
    /// keeps little in memory. A client that stops sending for
    /// [`BODY_STALL_TIMEOUT`] is cut off.
    pub async fn read_exact_to_spool(
        &mut self,
        n: u64,
        spool: &mut super::spool::Spool,
    ) -> Result<(), ReadError> {
        self.consume_last_line();
        let idle = self.idle_timeout;
        self.idle_timeout = idle.min(BODY_STALL_TIMEOUT);
        let mut left = n;
        let result = async {
            while left > 0 {
                if self.rstart == self.rend {
                    self.fill(left.min(64 * 1024) as usize).await?;
                }
                let take = left.min((self.rend - self.rstart) as u64) as usize;
                spool
                    .write(&self.rbuf[self.rstart..self.rstart + take])
                    .await?;
                self.rstart += take;
                left -= take as u64;
            }
            Ok(())
        }
        .await;
        self.idle_timeout = idle;
        result
    }

    /// Reads one BDAT chunk of exactly `n` bytes into `spool` (RFC 3030:
    /// the bytes are the message, with no dot-stuffing). If the spool fails
    /// (a full disk), the rest of the chunk is still read, so the next
    /// command is found where the client put it. A sender that stalls for
    /// [`BODY_STALL_TIMEOUT`] is cut off.
    pub async fn read_chunk(
        &mut self,
        n: u64,
        spool: &mut super::spool::Spool,
    ) -> Result<(), DataError> {
        self.consume_last_line();
        let idle = self.idle_timeout;
        self.idle_timeout = idle.min(BODY_STALL_TIMEOUT);
        let mut left = n;
        let mut spool_error = None;
        let result = async {
            while left > 0 {
                if self.rstart == self.rend {
                    self.fill(left.min(64 * 1024) as usize).await?;
                }
                let take = left.min((self.rend - self.rstart) as u64) as usize;
                if spool_error.is_none() {
                    let piece = &self.rbuf[self.rstart..self.rstart + take];
                    if let Err(e) = spool.write(piece).await {
                        spool_error = Some(e);
                    }
                }
                self.rstart += take;
                left -= take as u64;
            }
            Ok(())
        }
        .await;
        self.idle_timeout = idle;
        result.map_err(DataError::Read)?;
        spool_error.map_or(Ok(()), |e| Err(DataError::Spool(e)))
    }

    /// Reads SMTP-style data up to the lone "." line into `spool`: removes
    /// dot-stuffing and turns bare LF line ends into CRLF, so stored mail
    /// always has CRLF. Lines may be of any length; the whole is limited to
    /// `max` bytes. A sender that stalls for [`BODY_STALL_TIMEOUT`] is cut off.
    pub async fn read_dot_data(
        &mut self,
        max: usize,
        spool: &mut super::spool::Spool,
    ) -> Result<(), DataError> {
        self.consume_last_line();
        let idle = self.idle_timeout;
        self.idle_timeout = idle.min(BODY_STALL_TIMEOUT);
        let mut decoder = DotDecoder::new(max);
        let result = loop {
            let chunk = &self.rbuf[self.rstart..self.rend];
            let (used, done) = decoder.feed(chunk);
            self.rstart += used;
            decoder.drain_into(spool).await;
            if done {
                break decoder.finish().map(drop);
            }
            if let Err(e) = self.fill(64 * 1024).await {
                break Err(DataError::Read(e));
            }
        };
        self.idle_timeout = idle;
        result
    }

    /// Queues bytes to send; they go out at the next flush or read, or once
    /// enough has queued up.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.wbuf.extend_from_slice(bytes);
        if self.wbuf.len() >= WRITE_CHUNK {
            self.send(false).await?;
        }
        Ok(())
    }

    /// Whether anything queued waits to be sent (or, under COMPRESS, to be
    /// flushed out of the deflater).
    fn has_output(&self) -> bool {
        !self.wbuf.is_empty()
            || self
                .deflate
                .as_ref()
                .is_some_and(|d| d.has_unflushed() || !d.output.is_empty())
    }

    /// Sends what is queued: the end of a burst of replies, so under
    /// COMPRESS the deflater is sync-flushed and the client can decode all
    /// of it at once.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.send(true).await
    }

    /// Sends what is queued. `end_of_burst` matters only under COMPRESS:
    /// mid-reply, the deflater keeps what it is working on.
    async fn send(&mut self, end_of_burst: bool) -> io::Result<()> {
        if !self.has_output() {
            return Ok(());
        }
        let timeout = self
            .time_left(WRITE_TIMEOUT)
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "time to log in is over"))?;
        let compressed = self.deflate.is_some();
        let buf = match self.deflate.as_mut() {
            Some(deflate) => {
                deflate.compress(&self.wbuf, end_of_burst)?;
                self.wbuf.clear();
                if self.wbuf.capacity() > BUFFER_KEEP * 4 {
                    self.wbuf = Vec::new();
                }
                std::mem::take(&mut deflate.output)
            }
            None => std::mem::take(&mut self.wbuf),
        };
        if buf.is_empty() {
            if let Some(deflate) = self.deflate.as_mut() {
                deflate.output = buf;
            }
            return Ok(());
        }
        let stream = self.stream()?;
        let send = async {
            stream.write_all(&buf).await?;
            stream.flush().await
        };
        smol::future::or(send, async {
            Timer::after(timeout).await;
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client stopped reading",
            ))
        })
        .await?;
        let mut buf = buf;
        buf.clear();
        if buf.capacity() <= BUFFER_KEEP * 4 {
            match self.deflate.as_mut() {
                Some(deflate) if compressed => deflate.output = buf,
                _ => self.wbuf = buf,
            }
        }
        Ok(())
    }

    /// Starts COMPRESS=DEFLATE (RFC 4978) after its tagged OK, which goes
    /// out uncompressed first. Whatever the client sent after the command
    /// is already compressed and is kept for the inflater.
    pub async fn start_compression(&mut self) -> io::Result<()> {
        if self.deflate.is_some() {
            return Err(io::Error::other("compression is already active"));
        }
        self.flush().await?;
        self.consume_last_line();
        let mut deflate = Box::new(Deflate::new());
        deflate.feed(&self.rbuf[self.rstart..self.rend]);
        self.rstart = 0;
        self.rend = 0;
        self.deflate = Some(deflate);
        Ok(())
    }

    /// Whether COMPRESS is active.
    pub fn compressed(&self) -> bool {
        self.deflate.is_some()
    }

    /// Upgrades a plain TCP connection to TLS (STARTTLS, STLS). Anything the
    /// client sent after the STARTTLS command but before the handshake is
    /// thrown away: it was sent in plaintext and must not be obeyed as if it
    /// came over TLS (the command-injection attack of CVE-2011-0411).
    pub async fn start_tls(&mut self, acceptor: &TlsAcceptor) -> io::Result<()> {
        self.flush().await?;
        self.consume_last_line();
        self.rstart = 0;
        self.rend = 0;
        let tcp = match self.stream.take() {
            Some(Stream::Tcp(tcp)) => tcp,
            other => {
                self.stream = other;
                return Err(io::Error::other("TLS is already active"));
            }
        };
        let tls = accept_tls(acceptor, tcp).await?;
        self.stream = Some(Stream::Tls(Box::new(tls)));
        self.peer.tls = true;
        Ok(())
    }

    /// Sends what is queued and closes the connection politely.
    pub async fn close(&mut self) {
        let _ = self.flush().await;
        if let Ok(stream) = self.stream() {
            let _ = stream.close().await;
        }
    }
}

/// Runs a server-side TLS handshake, bounded in time.
pub async fn accept_tls(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
) -> io::Result<TlsStream<TcpStream>> {
    smol::future::or(acceptor.accept(tcp), async {
        Timer::after(HANDSHAKE_TIMEOUT).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "TLS handshake timed out",
        ))
    })
    .await
}

/// The dot-unstuffing state machine behind [`Conn::read_dot_data`], separate
/// so it can be tested on byte strings split anywhere.
///
/// The data ends only at CRLF "." CRLF (RFC 5321 §4.1.1.4). A bare LF is
/// content, never part of the end: if one hop ended the data at `LF . LF`
/// and another did not, the text after it would run as commands on one of
/// them (SMTP smuggling). Bare LFs in content are turned into CRLF, as
/// Postfix's `smtpd_forbid_bare_newline = normalize` does, so stored mail
/// always has CRLF: once the end is strict, normalising cannot make one
/// DATA into two messages, and refusing would bounce mail that a sloppy but
/// honest sender (a script, `nc`) produced.
struct DotDecoder {
    /// Decoded bytes not yet handed to the spool.
    out: Vec<u8>,
    /// Decoded bytes handed to the spool.
    drained: usize,
    spool_error: Option<io::Error>,
    max: usize,
    too_big: bool,
    state: DotState,
}

#[derive(Clone, Copy, PartialEq)]
enum DotState {
    /// At the start of a line; true when the line before ended in CRLF
    /// (or this is the first line), which only then may be the end.
    LineStart(bool),
    InLine,
    /// A CR inside a line, which may or may not be followed by LF.
    Cr,
    /// A line that began with "."; the flag as for `LineStart`.
    Dot(bool),
    /// ".", CR.
    DotCr(bool),
}

impl DotDecoder {
    fn new(max: usize) -> DotDecoder {
        DotDecoder {
            out: Vec::with_capacity(max.min(64 * 1024)),
            drained: 0,
            spool_error: None,
            max,
            too_big: false,
            state: DotState::LineStart(true),
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.too_big {
            return;
        }
        if self.drained + self.out.len() + bytes.len() > self.max {
            self.too_big = true;
            self.out = Vec::new();
            return;
        }
        self.out.extend_from_slice(bytes);
    }

    /// Consumes input; returns how much was used and whether the end was seen.
    fn feed(&mut self, input: &[u8]) -> (usize, bool) {
        for (i, &b) in input.iter().enumerate() {
            self.state = match (self.state, b) {
                (DotState::LineStart(after_crlf), b'.') => DotState::Dot(after_crlf),
                (DotState::Dot(after_crlf), b'\r') => DotState::DotCr(after_crlf),
                (DotState::DotCr(true), b'\n') => return (i + 1, true),
                // A lone "." that cannot be the end (a bare LF before or
                // after it) is content, kept as written.
                (DotState::DotCr(false), b'\n') => {
                    self.push(b".\r\n");
                    DotState::LineStart(true)
                }
                (DotState::Dot(_), b'\n') => {
                    self.push(b".\r\n");
                    DotState::LineStart(false)
                }
                (DotState::DotCr(_), _) => {
                    // ".\rX": a stuffed dot, then a CR that is data.
                    self.push(b"\r");
                    self.byte_in_line(b)
                }
                (DotState::Cr, b'\n') => {
                    self.push(b"\n");
                    DotState::LineStart(true)
                }
                // Any other byte after a leading dot: the dot was stuffing.
                (_, _) => self.byte_in_line(b),
            };
        }
        (input.len(), false)
    }

    fn byte_in_line(&mut self, b: u8) -> DotState {
        match b {
            b'\r' => {
                self.push(b"\r");
                DotState::Cr
            }
            b'\n' => {
                self.push(b"\r\n");
                DotState::LineStart(false)
            }
            _ => {
                self.push(&[b]);
                DotState::InLine
            }
        }
    }

    /// Moves the decoded bytes to the spool, so that memory holds one
    /// read's worth. After a spool error the rest is decoded and dropped,
    /// to find the end of the data.
    async fn drain_into(&mut self, spool: &mut super::spool::Spool) {
        if !self.too_big && self.spool_error.is_none() {
            if let Err(e) = spool.write(&self.out).await {
                self.spool_error = Some(e);
            }
        }
        self.drained += self.out.len();
        self.out.clear();
    }

    fn finish(self) -> Result<Vec<u8>, DataError> {
        if self.too_big {
            Err(DataError::TooBig)
        } else if let Some(e) = self.spool_error {
            Err(DataError::Spool(e))
        } else {
            Ok(self.out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_split(input: &[u8], split: usize) -> Option<(Vec<u8>, usize)> {
        let mut d = DotDecoder::new(1 << 20);
        let (first, rest) = input.split_at(split);
        let (used, done) = d.feed(first);
        if done {
            return Some((d.finish().ok()?, used));
        }
        let (used2, done) = d.feed(rest);
        done.then(|| (d.finish().ok().unwrap(), split + used2))
    }

    #[test]
    fn unstuffs_and_normalises_line_ends_wherever_split() {
        let input = b"Subject: x\r\n\r\n..leading dot\nbare lf\r\nlone\rcr\r\n.\r\nNEXT";
        let want = b"Subject: x\r\n\r\n.leading dot\r\nbare lf\r\nlone\rcr\r\n".to_vec();
        for split in 0..input.len() {
            let (out, used) = decode_split(input, split).unwrap();
            assert_eq!(out, want, "split at {split}");
            assert_eq!(&input[used..], b"NEXT");
        }
    }

    #[test]
    fn empty_message() {
        assert_eq!(decode_split(b".\r\n", 0).unwrap().0, b"");
    }

    #[test]
    fn only_crlf_dot_crlf_ends_the_data() {
        // Each shape has a would-be end with a bare LF on one side or both,
        // then a second transaction: all of it is one message's content.
        let smuggled = b"MAIL FROM:<evil@x>\r\nRCPT TO:<bob>\r\nDATA\r\nevil\r\n";
        for (fake_end, kept) in [
            (&b"\n.\n"[..], &b"\r\n.\r\n"[..]),
            (b"\r\n.\n", b"\r\n.\r\n"),
            (b"\n.\r\n", b"\r\n.\r\n"),
            (b"\r.\r\n", b"\r.\r\n"),
            (b"\r\n.\r.\r\n", b"\r\n\r.\r\n"),
        ] {
            let mut input = b"body".to_vec();
            input.extend_from_slice(fake_end);
            input.extend_from_slice(smuggled);
            input.extend_from_slice(b".\r\nNEXT");
            let mut want = b"body".to_vec();
            want.extend_from_slice(kept);
            want.extend_from_slice(smuggled);
            for split in 0..input.len() {
                let (out, used) = decode_split(&input, split).unwrap();
                assert_eq!(out, want, "{fake_end:?} split at {split}");
                assert_eq!(&input[used..], b"NEXT");
            }
        }
        // Data that never reaches CRLF.CRLF has not ended.
        assert!(decode_split(b"a\n.\n", 1).is_none());
    }

    #[test]
    fn too_big_reads_to_the_end_then_fails() {
        let mut d = DotDecoder::new(10);
        let (used, done) = d.feed(b"0123456789abcdef\r\n.\r\nX");
        assert!(done);
        assert_eq!(used, 21);
        assert!(matches!(d.finish(), Err(DataError::TooBig)));
    }
}
