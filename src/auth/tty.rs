//! Reading a new password for `letterbox passwd`, from the terminal without
//! echo or from standard input for scripts.

use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

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
    // Declared after `tty` and `tty` is only borrowed below, so echo comes
    // back before the descriptor closes, on every path out of here. Made
    // before echo goes off, so that no Ctrl-C can fall in between.
    let _restore = RestoreEcho::new(fd, saved);
    // SAFETY: as above; `quiet` is a copy of a termios the kernel gave us.
    if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) } != 0 {
        return Err(io::Error::last_os_error());
    }
    tty.write_all(prompt.as_bytes())?;
    tty.flush()?;
    read_line(BufReader::new(&tty))
}

/// Reads one line from stdin, for `echo pw | letterbox passwd --stdin`.
pub fn read_password_stdin() -> io::Result<String> {
    read_line(io::stdin().lock())
}

/// Turns echo back on when the prompt is over, however it ends: normally
/// (on drop), or by a signal such as Ctrl-C, which would otherwise leave the
/// user's shell typing blind.
struct RestoreEcho {
    fd: RawFd,
    saved: libc::termios,
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

/// Signals that end the process while it waits at the prompt: their
/// default action would leave echo off.
const ENDING_SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// What the signal handler restores. A signal handler may only read plain
/// memory and make async-signal-safe calls (tcsetattr is one), so the
/// settings live in a static, written before the handler is installed and
/// published by `SAVED_FD` (-1: nothing to restore).
struct SavedTermios(std::cell::UnsafeCell<std::mem::MaybeUninit<libc::termios>>);
// SAFETY: written only by read_password's thread before SAVED_FD publishes
// it, and only read after SAVED_FD says it is there.
unsafe impl Sync for SavedTermios {}
static SAVED_TERMIOS: SavedTermios =
    SavedTermios(std::cell::UnsafeCell::new(std::mem::MaybeUninit::uninit()));
static SAVED_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn restore_and_die(signal: libc::c_int) {
    let fd = SAVED_FD.load(Ordering::Acquire);
    if fd >= 0 {
        // SAFETY: SAVED_FD >= 0 means SAVED_TERMIOS holds the settings
        // tcgetattr gave us for `fd`, which is still open.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, (*SAVED_TERMIOS.0.get()).as_ptr()) };
    }
    // End the way the signal would have: the shell then sees "killed by
    // SIGINT" (exit status 130), not an ordinary exit.
    // SAFETY: signal and raise are async-signal-safe.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

impl RestoreEcho {
    fn new(fd: RawFd, saved: libc::termios) -> RestoreEcho {
        // SAFETY: no handler reads SAVED_TERMIOS until SAVED_FD is set.
        unsafe { (*SAVED_TERMIOS.0.get()).write(saved) };
        SAVED_FD.store(fd, Ordering::Release);
        let mut previous = Vec::new();
        for signal in ENDING_SIGNALS {
            // SAFETY: sigaction structs are plain old data; the handler is
            // an extern "C" fn of the right type for sa_sigaction without
            // SA_SIGINFO.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = restore_and_die as extern "C" fn(libc::c_int) as usize;
                libc::sigemptyset(&mut action.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, &action, &mut old) == 0 {
                    previous.push((signal, old));
                }
            }
        }
        RestoreEcho {
            fd,
            saved,
            previous,
        }
    }
}

impl Drop for RestoreEcho {
    fn drop(&mut self) {
        for (signal, old) in &self.previous {
            // SAFETY: `old` is what sigaction reported for this signal.
            unsafe { libc::sigaction(*signal, old, std::ptr::null_mut()) };
        }
        SAVED_FD.store(-1, Ordering::Release);
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
