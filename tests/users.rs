//! `letterbox user`: names that would not round-trip, or would clash with
//! address or IMAP syntax, are refused; whatever the file holds can be
//! listed and removed.

mod common;

use common::*;

#[test]
fn user_add_refuses_names_that_clash_and_del_removes_what_old_versions_wrote() {
    let mut server = Server::new("names", &["alice"]);
    for bad in [
        "#shared", "alice+x", "*", "%", "x\"y", "{5}", "a\\b", "a b", "", "a:b", "a/b",
    ] {
        let out = server.user(&["add", bad], "pw\n");
        assert!(!out.status.success(), "{bad:?} was accepted");
        assert!(
            out.stderr_text().contains("user name"),
            "{bad:?}: {}",
            out.stderr_text()
        );
    }
    server
        .user(&["add", "bob@example.org"], "pw-bob\n")
        .assert_ok();
    let listed = server.user(&["list"], "");
    assert_eq!(names(&listed.stdout_text()), ["alice", "bob@example.org"]);
    assert_eq!(listed.stderr_text(), "");
    // What an older `user add '#shared'` wrote: read as a comment, so it
    // could neither log in nor be deleted.
    let users = server.data.join("users");
    let mut text = std::fs::read_to_string(&users).unwrap();
    let alice_hash = text
        .lines()
        .next()
        .unwrap()
        .split_once(':')
        .unwrap()
        .1
        .to_string();
    text.push_str(&format!("#shared:{alice_hash}\n"));
    std::fs::write(&users, &text).unwrap();
    let listed = server.user(&["list"], "");
    assert_eq!(names(&listed.stdout_text()), ["alice", "bob@example.org"]);
    assert!(
        listed.stderr_text().contains("\"#shared\" is written in")
            && listed
                .stderr_text()
                .contains("letterbox user del '#shared'"),
        "{}",
        listed.stderr_text()
    );
    server.user(&["del", "#shared"], "").assert_ok();
    assert!(!std::fs::read_to_string(&users).unwrap().contains("#shared"));
    assert_eq!(server.user(&["list"], "").stderr_text(), "");
    // The server knows bob by his whole address.
    server.start();
    let mut pop3 = Raw::connect(server.ports.pop3);
    pop3.line();
    pop3.cmd("USER bob@example.org");
    assert!(pop3.cmd("PASS pw-bob").starts_with("+OK"));
}

/// Ctrl-C at the password prompt ends `user add` as a SIGINT does, and the
/// terminal's echo is back on afterwards (it is off while the password is
/// typed). Run on a real pseudo-terminal.
#[test]
fn ctrl_c_at_the_password_prompt_restores_echo() {
    let server = Server::new("tty", &[]);
    let script = format!(
        r#"
import os, pty, signal, termios, time
pid, master = pty.fork()
if pid == 0:
    os.execv({bin:?}, [{bin:?}, 'user', 'add', 'bob', '--data', os.environ['DATA_DIR']])
seen = b''
deadline = time.time() + 30
while b'Password for bob: ' not in seen and time.time() < deadline:
    seen += os.read(master, 1024)
assert b'Password for bob: ' in seen, seen
echo_during = termios.tcgetattr(master)[3] & termios.ECHO
os.write(master, b'sec')
time.sleep(0.2)
os.write(master, b'\x03')
_, status = os.waitpid(pid, 0)
echo_after = termios.tcgetattr(master)[3] & termios.ECHO
print('during', bool(echo_during), 'after', bool(echo_after),
      'signal', os.WTERMSIG(status) if os.WIFSIGNALED(status) else None)
"#,
        bin = BIN
    );
    let out = python(&server, &script);
    out.assert_ok();
    assert_eq!(
        out.stdout_text().trim(),
        format!("during False after True signal {}", libc::SIGINT)
    );
    let listed = server.user(&["list"], "");
    assert_eq!(listed.stdout_text(), "", "no user was added");
}
