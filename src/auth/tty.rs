//! Reading a new password for `letterbox passwd`, from the terminal without
//! echo or from standard input for scripts.

use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::io::{AsRawFd, RawFd};

use super::sasl::MAX_FIELD_LEN;

/// Prompts on the controlling terminal and reads one line with echo off.
/// Works even when stdin/stdout are redirected, as `sudo` and scripts do.
pub fn read_password(prompt: &str) -> io::Result<String> {
    let opened = OpenOptions::new().read(true).write(true).open("/dev/tty");
    let mut tty = opened.map_err(|e| io::Error::new(e.kind(), format!("/dev/tty: {e}")))?;
    let fd = tty.as_raw_fd();
    // SAFETY: termios is plain old data; tcgetattr fills it in before use.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open for the life of `tty`, and `saved` is a valid termios.
    if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut quiet = saved;
    // ECHONL still shows the final newline, so the next output starts on a
    // fresh line.
    quiet.c_lflag &= !libc::ECHO;
    quiet.c_lflag |= libc::ECHONL;
    // SAFETY: as above; `quiet` is a copy of a termios the kernel gave us.
    if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // Declared after `tty` and `tty` is only borrowed below, so echo comes
    // back before the descriptor closes, on every path out of here.
    let _restore = RestoreEcho { fd, saved };
    tty.write_all(prompt.as_bytes())?;
    tty.flush()?;
    read_line(BufReader::new(&tty))
}

/// Reads one line from stdin, for `echo pw | letterbox passwd --stdin`.
pub fn read_password_stdin() -> io::Result<String> {
    read_line(io::stdin().lock())
}

struct RestoreEcho {
    fd: RawFd,
    saved: libc::termios,
}

impl Drop for RestoreEcho {
    fn drop(&mut self) {
        // SAFETY: the descriptor is still open (see read_password) and
        // `saved` came from tcgetattr. Nothing useful can be done on failure.
        unsafe { libc::tcsetattr(self.fd, libc::TCSAFLUSH, &self.saved) };
    }
}

/// Only the line ending is removed: spaces may be part of a password.
/// Passwords longer than SASL accepts are refused here, where the admin can
/// see why, rather than at every login.
fn read_line(reader: impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    // A longer line is cut short, but then still too long once its ending
    // is stripped, so the check below catches it.
    reader.take(MAX_FIELD_LEN as u64 + 2).read_line(&mut line)?;
    let pw = line.strip_suffix('\n').unwrap_or(&line);
    let pw = pw.strip_suffix('\r').unwrap_or(pw);
    let invalid = |msg: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
    if pw.len() > MAX_FIELD_LEN {
        return invalid("password is longer than 1024 bytes");
    }
    if pw.is_empty() {
        return invalid("empty password");
    }
    Ok(pw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: impl AsRef<[u8]>) -> Option<String> {
        read_line(input.as_ref()).ok()
    }

    #[test]
    fn strips_only_the_line_ending() {
        assert_eq!(read(" pass word \n").as_deref(), Some(" pass word "));
        assert_eq!(read("pw\r\nnext line\n").as_deref(), Some("pw"));
        assert_eq!(read("no-newline").as_deref(), Some("no-newline"));
    }

    #[test]
    fn rejects_empty_long_and_binary() {
        for bad in [&b""[..], b"\n", b"\r\n", b"\xff\xfe\n"] {
            assert_eq!(read(bad), None, "{bad:?}");
        }
        let e = read_line(&b"\n"[..]).expect_err("empty");
        assert!(e.to_string().contains("empty password"));
        let max = "x".repeat(MAX_FIELD_LEN);
        assert_eq!(read(format!("{max}\r\n")), Some(max.clone()));
        assert_eq!(read(format!("{max}x\n")), None);
        assert_eq!(read(format!("{max}\rx")), None);
    }
}
