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
#[argh(
    subcommand,
    name = "deliver",
    note = "Given several users, the exit code is 0 only if every one got the message, else the most serious failure: 75, then 69, 67, 65. stderr names who got it and who did not.",
    error_code(64, "no user named (EX_USAGE)"),
    error_code(65, "message too big (EX_DATAERR)"),
    error_code(66, "no message on stdin (EX_NOINPUT)"),
    error_code(67, "unknown user (EX_NOUSER)"),
    error_code(69, "other permanent refusal (EX_UNAVAILABLE)"),
    error_code(
        75,
        "server unreachable or temporary failure: retry later (EX_TEMPFAIL)"
    )
)]
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
    // A UTF-8 address needs SMTPUTF8 (RFC 6531), which the server offers.
    let utf8 = if from.is_ascii() && users.iter().all(|u| u.is_ascii()) {
        ""
    } else {
        " SMTPUTF8"
    };
    write!(reader.get_mut(), "MAIL FROM:<{from}>{utf8}\r\n")?;
    step!("MAIL FROM");
    let mut accepted = Vec::new();
    let mut failed = Vec::new();
    for user in users {
        write!(reader.get_mut(), "RCPT TO:<{user}>\r\n")?;
        let (code, text) = read_reply(&mut reader)?;
        if (200..300).contains(&code) {
            accepted.push(user);
            continue;
        }
        eprintln!("letterbox deliver: {user}: {code} {text}");
        let exit = match code {
            550 | 551 | 553 => EX_NOUSER,
            500.. => EX_UNAVAILABLE,
            _ => EX_TEMPFAIL,
        };
        failed.push((user, exit));
    }
    if accepted.is_empty() {
        let _ = reader.get_mut().write_all(b"QUIT\r\n");
        return Ok(outcome(&[], &failed));
    }
    reader.get_mut().write_all(b"DATA\r\n")?;
    if let Err(exit) = expect(&mut reader, "DATA")? {
        // Refused for the whole transaction: every accepted user failed.
        let _ = reader.get_mut().write_all(b"QUIT\r\n");
        failed.extend(accepted.into_iter().map(|user| (user, exit)));
        return Ok(outcome(&[], &failed));
    }
    reader.get_mut().write_all(&dot_stuff(message))?;
    let mut delivered = Vec::new();
    for user in accepted {
        let (code, text) = read_reply(&mut reader)?;
        if code < 300 {
            delivered.push(user);
            continue;
        }
        eprintln!("letterbox deliver: {user}: {code} {text}");
        let exit = match code {
            // A full mailbox (--quota-full bounce) is no fault of the data.
            552 if text.starts_with("5.2.2") => EX_UNAVAILABLE,
            552 => EX_DATAERR,
            500.. => EX_UNAVAILABLE,
            _ => EX_TEMPFAIL,
        };
        failed.push((user, exit));
    }
    let _ = reader.get_mut().write_all(b"QUIT\r\n");
    Ok(outcome(&delivered, &failed))
}

/// How serious a failure is, for choosing the one exit code of a delivery
/// to several recipients, most serious highest. A temporary failure ranks
/// first: the MTA then keeps the message and retries, so the recipient who
/// did not get it still will (the others may get it twice, which is better
/// than never). Among the permanent ones, a refusal of the server's own
/// comes before an unknown user, and that before a message too big.
fn severity(exit: i32) -> u8 {
    match exit {
        EX_TEMPFAIL => 4,
        EX_UNAVAILABLE => 3,
        EX_NOUSER => 2,
        EX_DATAERR => 1,
        _ => 0,
    }
}

/// sendmail's rule for a delivery to several recipients: 0 when every one
/// got the message, else the most serious failure's code. The recipients
/// that failed are named on stderr, and so are those that got it, so that
/// whoever reads the bounce or the log knows where the message is.
fn outcome(delivered: &[&String], failed: &[(&String, i32)]) -> i32 {
    let Some(worst) = failed
        .iter()
        .map(|&(_, exit)| exit)
        .max_by_key(|&e| severity(e))
    else {
        return EX_OK;
    };
    let names = |list: &mut dyn Iterator<Item = &String>| {
        list.map(String::as_str).collect::<Vec<_>>().join(", ")
    };
    let not = names(&mut failed.iter().map(|&(u, _)| u));
    if delivered.is_empty() {
        eprintln!("letterbox deliver: not delivered to {not}; exit {worst}");
    } else {
        let got = names(&mut delivered.iter().copied());
        eprintln!("letterbox deliver: delivered to {got}; not delivered to {not}; exit {worst}");
    }
    worst
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
    fn several_recipients_exit_with_the_most_serious_failure() {
        let (a, b, c) = ("a".to_string(), "b".to_string(), "c".to_string());
        assert_eq!(outcome(&[&a, &b], &[]), EX_OK);
        assert_eq!(outcome(&[&a], &[(&b, EX_NOUSER)]), EX_NOUSER);
        assert_eq!(
            outcome(&[], &[(&a, EX_TEMPFAIL), (&b, EX_NOUSER), (&c, EX_DATAERR)]),
            EX_TEMPFAIL
        );
        assert_eq!(
            outcome(&[&a], &[(&b, EX_DATAERR), (&c, EX_NOUSER)]),
            EX_NOUSER
        );
        assert_eq!(
            outcome(&[], &[(&b, EX_NOUSER), (&c, EX_UNAVAILABLE)]),
            EX_UNAVAILABLE
        );
    }

    #[test]
    fn reads_multiline_replies() {
        let mut input: &[u8] = b"250-one\r\n250 two\r\n";
        assert_eq!(read_reply(&mut input).unwrap(), (250, "one two".into()));
        let mut bad: &[u8] = b"xyz\r\n";
        assert!(read_reply(&mut bad).is_err());
    }
}
