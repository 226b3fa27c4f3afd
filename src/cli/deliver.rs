//! `letterbox deliver USER...`: hands the message on stdin to the running
//! server over LMTP, for Postfix's mailbox_command, fetchmail's mda and
//! procmail-style pipelines. Exit codes follow sysexits.h, which is what
//! those programs read.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;

const EX_OK: i32 = 0;
const EX_USAGE: i32 = 64;
const EX_DATAERR: i32 = 65;
const EX_NOINPUT: i32 = 66;
const EX_NOUSER: i32 = 67;
const EX_UNAVAILABLE: i32 = 69;
const EX_TEMPFAIL: i32 = 75;

/// deliver the message on stdin to users, through the running server
#[derive(FromArgs)]
#[argh(subcommand, name = "deliver")]
pub struct DeliverArgs {
    /// the recipients: user names, or user+folder to deliver into a folder
    #[argh(positional, greedy)]
    users: Vec<String>,
    /// data directory whose lmtp.sock to use (default /var/lib/letterbox)
    #[argh(option)]
    data: Option<PathBuf>,
    /// the server's LMTP unix socket (default DATA/lmtp.sock)
    #[argh(option)]
    socket: Option<PathBuf>,
    /// the server's LMTP TCP address, host:port, instead of the socket
    #[argh(option)]
    lmtp: Option<String>,
    /// the envelope sender (default $SENDER as Postfix sets it, else none)
    #[argh(option, short = 'f')]
    from: Option<String>,
}

pub fn run(args: DeliverArgs) -> i32 {
    if args.users.is_empty() {
        eprintln!("letterbox deliver: name at least one user");
        return EX_USAGE;
    }
    let mut message = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut message) {
        eprintln!("letterbox deliver: cannot read the message from stdin: {e}");
        return EX_NOINPUT;
    }
    if message.is_empty() {
        eprintln!("letterbox deliver: the message on stdin is empty");
        return EX_NOINPUT;
    }
    let from = args
        .from
        .or_else(|| std::env::var("SENDER").ok())
        .unwrap_or_default();
    let stream: Box<dyn ReadWrite> = match connect(&args.lmtp, args.socket, args.data) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("letterbox deliver: {e}");
            return EX_TEMPFAIL;
        }
    };
    match send(stream, &from, &args.users, &message) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("letterbox deliver: the server failed mid-delivery: {e}");
            EX_TEMPFAIL
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn connect(
    lmtp: &Option<String>,
    socket: Option<PathBuf>,
    data: Option<PathBuf>,
) -> Result<Box<dyn ReadWrite>, String> {
    let timeout = Some(Duration::from_secs(300));
    if let Some(addr) = lmtp {
        let tcp = std::net::TcpStream::connect(addr)
            .map_err(|e| format!("cannot reach the LMTP server at {addr}: {e} (is letterbox serve running with --lmtp {addr}?)"))?;
        let _ = tcp.set_read_timeout(timeout);
        return Ok(Box::new(tcp));
    }
    let path = socket.unwrap_or_else(|| super::data_dir(data).join("lmtp.sock"));
    let unix = UnixStream::connect(&path).map_err(|e| {
        format!("cannot reach the server's socket {}: {e} (is letterbox serve running? give --data or --socket)", path.display())
    })?;
    let _ = unix.set_read_timeout(timeout);
    Ok(Box::new(unix))
}

/// One LMTP reply: its code and the text of its lines.
fn read_reply(reader: &mut impl BufRead) -> std::io::Result<(u16, String)> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let code = line.get(..3).and_then(|c| c.parse().ok()).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad reply {line:?}"),
            )
        })?;
        text.push_str(line.get(4..).unwrap_or("").trim_end());
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, text));
        }
        text.push(' ');
    }
}

fn expect(reader: &mut impl BufRead, what: &str) -> std::io::Result<Result<(), i32>> {
    let (code, text) = read_reply(reader)?;
    if (200..400).contains(&code) {
        return Ok(Ok(()));
    }
    eprintln!("letterbox deliver: {what}: {code} {text}");
    Ok(Err(if code >= 500 {
        EX_UNAVAILABLE
    } else {
        EX_TEMPFAIL
    }))
}

fn send(
    stream: Box<dyn ReadWrite>,
    from: &str,
    users: &[String],
    message: &[u8],
) -> std::io::Result<i32> {
    let mut reader = BufReader::new(stream);
    macro_rules! step {
        ($what:expr) => {
            if let Err(code) = expect(&mut reader, $what)? {
                return Ok(code);
            }
        };
    }
    step!("greeting");
    reader.get_mut().write_all(b"LHLO localhost\r\n")?;
    step!("LHLO");
    write!(reader.get_mut(), "MAIL FROM:<{from}>\r\n")?;
    step!("MAIL FROM");
    let mut accepted = Vec::new();
    let mut worst = EX_OK;
    for user in users {
        write!(reader.get_mut(), "RCPT TO:<{user}>\r\n")?;
        let (code, text) = read_reply(&mut reader)?;
        match code {
            200..=299 => accepted.push(user),
            550 | 551 | 553 => {
                eprintln!("letterbox deliver: {user}: {code} {text}");
                worst = worst.max(EX_NOUSER);
            }
            _ => {
                eprintln!("letterbox deliver: {user}: {code} {text}");
                worst = worst.max(if code >= 500 {
                    EX_UNAVAILABLE
                } else {
                    EX_TEMPFAIL
                });
            }
        }
    }
    if accepted.is_empty() {
        let _ = reader.get_mut().write_all(b"QUIT\r\n");
        return Ok(worst);
    }
    reader.get_mut().write_all(b"DATA\r\n")?;
    step!("DATA");
    reader.get_mut().write_all(&dot_stuff(message))?;
    for user in accepted {
        let (code, text) = read_reply(&mut reader)?;
        if code >= 300 {
            eprintln!("letterbox deliver: {user}: {code} {text}");
            worst = worst.max(match code {
                // A full mailbox (--quota-full bounce) is no fault of the data.
                552 if text.starts_with("5.2.2") => EX_UNAVAILABLE,
                552 => EX_DATAERR,
                500.. => EX_UNAVAILABLE,
                _ => EX_TEMPFAIL,
            });
        }
    }
    let _ = reader.get_mut().write_all(b"QUIT\r\n");
    // The more final outcome wins when users fared differently: a temporary
    // failure makes the MTA retry, which is what the unstored copy needs.
    Ok(worst)
}

/// CRLF line ends, leading dots doubled, and the terminating "." line.
fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 32 + 8);
    for line in message.split_inclusive(|&b| b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if body.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffs_dots_and_fixes_line_ends() {
        assert_eq!(dot_stuff(b"a\n.b\r\nc"), b"a\r\n..b\r\nc\r\n.\r\n");
        assert_eq!(dot_stuff(b"x\n"), b"x\r\n.\r\n");
    }

    #[test]
    fn reads_multiline_replies() {
        let mut input: &[u8] = b"250-one\r\n250 two\r\n";
        assert_eq!(read_reply(&mut input).unwrap(), (250, "one two".into()));
        let mut bad: &[u8] = b"xyz\r\n";
        assert!(read_reply(&mut bad).is_err());
    }
}
