//! IMAP extensions against the real binary: COMPRESS=DEFLATE (RFC 4978),
//! METADATA (RFC 5464) and CREATE-SPECIAL-USE (RFC 6154 §3). The COMPRESS
//! client is Python's zlib with raw deflate (wbits -15) both ways.

mod common;

use common::imap_client::*;
use common::*;

/// Runs a Python script and checks that it ends by printing "ok".
fn python_ok(server: &Server, script: &str) -> String {
    let out = python(server, script);
    let stdout = out.stdout_text();
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "python failed ({}):\n{stdout}\n{}",
        out.status,
        out.stderr_text()
    );
    stdout
}

/// A small IMAP client in Python that turns on COMPRESS=DEFLATE; the tests
/// append their steps to it.
const PY_DEFLATE_CLIENT: &str = r#"
import os, socket, zlib, smtplib, time

class Z:
    def __init__(self, port, tls=False):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=20)
        if tls:
            import ssl
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.s = ctx.wrap_socket(self.s)
        self.buf = b""
        self.z = None
        self.raw_total = 0
        self.plain_total = 0
    def recv(self):
        data = self.s.recv(65536)
        if not data:
            raise EOFError("server closed the connection")
        self.raw_total += len(data)
        if self.z:
            data = self.inflater.decompress(data)
        self.plain_total += len(data)
        self.buf += data
    def line(self):
        while b"\r\n" not in self.buf:
            self.recv()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line
    def read_exact(self, n):
        while len(self.buf) < n:
            self.recv()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data
    def send(self, data):
        if self.z:
            data = self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
        self.s.sendall(data)
    def reply(self, tag):
        lines = []
        while True:
            line = self.line()
            # A literal: read it whole, then the rest of its line.
            while line.endswith(b"}") and b"{" in line:
                n = int(line[line.rindex(b"{") + 1:-1])
                lit = self.read_exact(n)
                lines.append((line, lit))
                line = self.line()
            if line.startswith(tag + b" "):
                return lines, line
            lines.append(line)
    def cmd(self, tag, text):
        self.send(tag + b" " + text + b"\r\n")
        return self.reply(tag)
    def start(self):
        self.z = True
        self.deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflater = zlib.decompressobj(-15)

TLS = globals().get("TLS", False)
c = Z(int(os.environ["IMAPS_PORT" if TLS else "IMAP_PORT"]), TLS)
assert c.line().startswith(b"* OK")
_, t = c.cmd(b"a1", b"LOGIN alice pw-alice")
assert t.startswith(b"a1 OK"), t
_, t = c.cmd(b"a2", b"COMPRESS DEFLATE")
assert t == b"a2 OK DEFLATE active", t
c.start()
"#;

#[test]
fn compress_deflate_select_fetch_idle_and_logout() {
    let server = started("compress-flow", &["alice"]);
    let body = "compressible line of text\r\n".repeat(20_000);
    deliver(&server, "alice", "big one", &body);
    let script = format!(
        r#"{PY_DEFLATE_CLIENT}
lines, t = c.cmd(b"b1", b"SELECT INBOX")
assert t.startswith(b"b1 OK [READ-WRITE]"), t
assert b"* 1 EXISTS" in lines, lines
lines, t = c.cmd(b"b2", b"FETCH 1 (BODY[TEXT])")
assert t == b"b2 OK FETCH completed", t
head, text = lines[0]
assert head.startswith(b"* 1 FETCH (BODY[TEXT] {{"), head
assert text == b"compressible line of text\r\n" * 20000 + b"\r\n", len(text)
# The server really compressed: what came over the wire is far smaller.
assert c.raw_total * 5 < c.plain_total, (c.raw_total, c.plain_total)
# Pipelined commands in one compressed burst get both replies at once.
c.send(b"p1 NOOP\r\np2 NOOP\r\n")
assert c.reply(b"p1")[1] == b"p1 OK NOOP completed"
assert c.reply(b"p2")[1] == b"p2 OK NOOP completed"
# IDLE: a delivery is pushed through the compressed stream at once (the
# server sync-flushes each burst), not held in the deflater.
c.send(b"b3 IDLE\r\n")
assert c.line().startswith(b"+ "), "no continuation"
# Longer than the server's 2 s before it gives back its deflater: the push
# then comes from a fresh one, in the same stream.
time.sleep(3)
lmtp = smtplib.LMTP("127.0.0.1", int(os.environ["LMTP_PORT"]))
lmtp.sendmail("bob@example.org", ["alice"], b"Subject: pushed\r\n\r\nhello\r\n")
lmtp.quit()
pushed = c.line()
assert pushed == b"* 2 EXISTS", pushed
c.send(b"DONE\r\n")
lines, t = c.reply(b"b3")
assert t == b"b3 OK IDLE terminated", t
lines, t = c.cmd(b"b4", b"FETCH 2 (BODY[HEADER.FIELDS (SUBJECT)])")
assert lines[0][1] == b"Subject: pushed\r\n\r\n", lines
lines, t = c.cmd(b"b5", b"LOGOUT")
assert lines == [b"* BYE Logging out"], lines
assert t == b"b5 OK LOGOUT completed", t
print("ok")
"#
    );
    python_ok(&server, &script);
}

#[test]
fn append_through_compress_small_and_spooled_literals() {
    let server = started("compress-append", &["alice"]);
    let script = format!(
        r#"{PY_DEFLATE_CLIENT}
small = b"Subject: small\r\n\r\nhello\r\n"
c.send(b"b1 APPEND INBOX {{%d}}\r\n" % len(small))
assert c.line().startswith(b"+ "), "no continuation"
c.send(small + b"\r\n")
lines, t = c.reply(b"b1")
assert t.startswith(b"b1 OK [APPENDUID"), t
# Large enough to go to the spool, sent as LITERAL+ in one burst with the
# command after it.
big = b"Subject: big\r\n\r\n" + b"0123456789abcdef" * 200000 + b"\r\n"
c.send(b"b2 APPEND INBOX {{%d+}}\r\n" % len(big) + big + b"\r\nb3 NOOP\r\n")
lines, t = c.reply(b"b2")
assert t.startswith(b"b2 OK [APPENDUID"), t
lines, t = c.reply(b"b3")
assert t == b"b3 OK NOOP completed", t
c.cmd(b"b4", b"SELECT INBOX")
lines, t = c.cmd(b"b5", b"FETCH 2 (RFC822.SIZE BODY[])")
assert lines[0][1] == big, len(lines[0][1])
print("ok")
"#
    );
    python_ok(&server, &script);
}

#[test]
fn compress_over_implicit_tls() {
    let server = started("compress-tls", &["alice"]);
    deliver(
        &server,
        "alice",
        "over tls",
        &"text over TLS\r\n".repeat(5000),
    );
    let script = format!(
        r#"TLS = True
{PY_DEFLATE_CLIENT}
lines, t = c.cmd(b"b1", b"SELECT INBOX")
assert t.startswith(b"b1 OK"), t
lines, t = c.cmd(b"b2", b"FETCH 1 (BODY[TEXT])")
assert lines[0][1] == b"text over TLS\r\n" * 5000 + b"\r\n", lines[0][0]
lines, t = c.cmd(b"b3", b"LOGOUT")
assert t == b"b3 OK LOGOUT completed", t
print("ok")
"#
    );
    python_ok(&server, &script);
}

#[test]
fn second_compress_is_refused_and_the_session_goes_on() {
    let server = started("compress-twice", &["alice"]);
    let script = format!(
        r#"{PY_DEFLATE_CLIENT}
lines, t = c.cmd(b"b1", b"COMPRESS DEFLATE")
assert t.startswith(b"b1 NO [COMPRESSIONACTIVE]"), t
lines, t = c.cmd(b"b2", b"CAPABILITY")
assert b"COMPRESS=DEFLATE" in lines[0], lines
assert t == b"b2 OK CAPABILITY completed", t
print("ok")
"#
    );
    python_ok(&server, &script);
}

#[test]
fn garbage_in_the_deflate_stream_closes_cleanly_with_bye() {
    let server = started("compress-garbage", &["alice"]);
    let script = format!(
        r#"{PY_DEFLATE_CLIENT}
lines, t = c.cmd(b"b1", b"NOOP")
assert t == b"b1 OK NOOP completed", t
# Block type 3 is reserved in deflate: no inflater can take this.
c.s.sendall(b"\xff" * 64)
assert c.line() == b"* BYE Invalid compressed data; closing the connection"
try:
    c.line()
    raise SystemExit("the connection stayed open")
except EOFError:
    pass
print("ok")
"#
    );
    python_ok(&server, &script);
    // The server is still there for everyone else.
    let mut other = Client::login(server.ports.imap, "alice");
    assert!(other.call("NOOP").is_ok());
}

#[test]
fn compress_before_login_and_unknown_mechanisms() {
    let server = started("compress-refused", &["alice"]);
    let mut c = Client::connect(server.ports.imap);
    let reply = c.call("COMPRESS DEFLATE");
    assert!(reply.tagged.starts_with("BAD "), "{reply:?}");
    let caps = c.call("CAPABILITY");
    assert!(!caps.lines[0].contains("COMPRESS"), "{caps:?}");
    assert!(c.call("LOGIN alice pw-alice").is_ok());
    let reply = c.call("COMPRESS GZIP");
    assert!(reply.tagged.starts_with("NO "), "{reply:?}");
    let reply = c.call("COMPRESS");
    assert!(reply.tagged.starts_with("BAD "), "{reply:?}");
    // Still uncompressed and working.
    assert!(c.call("NOOP").is_ok());
}

/// The tagged reply's text, checking there were no untagged lines.
fn tagged(c: &mut Client, command: &str) -> String {
    c.only_tagged(command)
}

#[test]
fn metadata_set_get_depth_and_maxsize() {
    let server = started("metadata", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    assert_eq!(
        tagged(
            &mut c,
            "SETMETADATA \"\" (/private/comment \"hello\" /shared/vendor/x/a \"1\" /shared/vendor/x/a/b \"2\")"
        ),
        "OK SETMETADATA completed"
    );
    assert_eq!(
        c.ok("GETMETADATA \"\" /private/comment"),
        ["* METADATA \"\" (/private/comment \"hello\")"]
    );
    // Names are case-insensitive; an entry without a value is NIL.
    assert_eq!(
        c.ok("GETMETADATA \"\" (/PRIVATE/Comment /private/missing)"),
        ["* METADATA \"\" (/private/comment \"hello\" /private/missing NIL)"]
    );
    assert_eq!(
        c.ok("GETMETADATA (DEPTH 1) \"\" /shared/vendor/x"),
        ["* METADATA \"\" (/shared/vendor/x NIL /shared/vendor/x/a \"1\")"]
    );
    assert_eq!(
        c.ok("GETMETADATA (DEPTH infinity) \"\" /shared"),
        ["* METADATA \"\" (/shared/vendor/x/a \"1\" /shared/vendor/x/a/b \"2\")"]
    );
    // MAXSIZE leaves out longer values and says how long the longest was.
    let long = "v".repeat(100);
    c.ok(&format!("SETMETADATA \"\" (/private/long \"{long}\")"));
    let reply = c.call("GETMETADATA (MAXSIZE 10 DEPTH infinity) \"\" /private");
    assert_eq!(
        reply.lines,
        ["* METADATA \"\" (/private/comment \"hello\")"]
    );
    assert_eq!(
        reply.tagged,
        "OK [METADATA LONGENTRIES 100] GETMETADATA completed"
    );
    // Mailbox entries, a literal value with a line break, and removal.
    c.ok("SETMETADATA INBOX (/private/comment {9+}\r\nline\r\nend)");
    assert_eq!(
        c.ok("GETMETADATA INBOX /private/comment"),
        ["* METADATA \"INBOX\" (/private/comment {9}\r\nline\r\nend)"]
    );
    c.ok("SETMETADATA \"\" (/private/comment NIL)");
    assert_eq!(
        c.ok("GETMETADATA \"\" /private/comment"),
        ["* METADATA \"\" (/private/comment NIL)"]
    );
    // The server's entries and INBOX's are apart.
    assert_eq!(
        c.ok("GETMETADATA (DEPTH infinity) INBOX /shared"),
        Vec::<String>::new()
    );
}

#[test]
fn metadata_follows_rename_goes_with_delete_and_survives_a_restart() {
    let mut server = started("metadata-rename", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    c.ok("CREATE Projects/Old");
    c.ok("SETMETADATA Projects/Old (/private/color \"red\" /shared/note \"n\")");
    c.ok("SETMETADATA Projects (/private/color \"blue\")");
    c.ok("RENAME Projects Work");
    // The children moved with their parent, and their entries with them.
    assert_eq!(
        c.ok("GETMETADATA Work/Old (/private/color /shared/note)"),
        ["* METADATA \"Work/Old\" (/private/color \"red\" /shared/note \"n\")"]
    );
    assert_eq!(
        c.ok("GETMETADATA Work /private/color"),
        ["* METADATA \"Work\" (/private/color \"blue\")"]
    );
    assert_eq!(
        c.only_tagged("GETMETADATA Projects/Old /private/color"),
        "NO [NONEXISTENT] No such mailbox"
    );
    c.ok("DELETE Work/Old");
    c.ok("CREATE Work/Old");
    assert_eq!(
        c.ok("GETMETADATA (DEPTH infinity) Work/Old (/private /shared)"),
        Vec::<String>::new()
    );
    drop(c);
    server.stop();
    start(&mut server);
    let mut c = Client::login(server.ports.imap, "alice");
    assert_eq!(
        c.ok("GETMETADATA Work /private/color"),
        ["* METADATA \"Work\" (/private/color \"blue\")"]
    );
}

#[test]
fn metadata_is_each_users_own_even_shared() {
    let server = started("metadata-users", &["alice", "bob"]);
    let mut alice = Client::login(server.ports.imap, "alice");
    alice.ok("SETMETADATA \"\" (/shared/admin \"alice's\" /private/x \"1\")");
    alice.ok("SETMETADATA INBOX (/shared/comment \"alice inbox\")");
    let mut bob = Client::login(server.ports.imap, "bob");
    assert_eq!(
        bob.ok("GETMETADATA (DEPTH infinity) \"\" (/shared /private)"),
        Vec::<String>::new()
    );
    assert_eq!(
        bob.ok("GETMETADATA INBOX /shared/comment"),
        ["* METADATA \"INBOX\" (/shared/comment NIL)"]
    );
    bob.ok("SETMETADATA \"\" (/shared/admin \"bob's\")");
    assert_eq!(
        alice.ok("GETMETADATA \"\" /shared/admin"),
        ["* METADATA \"\" (/shared/admin \"alice's\")"]
    );
}

#[test]
fn metadata_bad_input_gets_clear_errors_and_the_session_goes_on() {
    let server = started("metadata-bad", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    for (command, expected) in [
        (
            "GETMETADATA (DEPTH 99999999999999999999) \"\" /private",
            "BAD DEPTH must be 0, 1 or infinity",
        ),
        (
            "GETMETADATA (DEPTH 2) \"\" /private",
            "BAD DEPTH must be 0, 1 or infinity",
        ),
        (
            "GETMETADATA (DEPTH 1 DEPTH 1) \"\" /private",
            "BAD DEPTH given twice",
        ),
        ("GETMETADATA (MAXSIZE 99999999999) \"\" /private", "BAD "),
        (
            "GETMETADATA (COLOR 1) \"\" /private",
            "BAD unknown GETMETADATA option",
        ),
        ("GETMETADATA \"\" /private/*", "BAD entry name"),
        ("GETMETADATA \"\" \"/private/%\"", "BAD entry name"),
        (
            "GETMETADATA \"\" /private/../../etc",
            "BAD entry name /private/../../etc has",
        ),
        ("GETMETADATA \"\" /private//x", "BAD entry name"),
        (
            "GETMETADATA \"\" /other/x",
            "BAD entry name /other/x must start with",
        ),
        ("GETMETADATA \"\" ()", "BAD empty entry names"),
        (
            "SETMETADATA \"\" (/private \"x\")",
            "BAD entry name /private names a whole namespace",
        ),
        ("SETMETADATA \"\" (/private/x)", "BAD "),
        ("SETMETADATA \"\" (/private/x \"1\"", "BAD "),
        ("GETMETADATA Nowhere /private/x", "NO [NONEXISTENT]"),
        ("SETMETADATA Nowhere (/private/x \"1\")", "NO [NONEXISTENT]"),
    ] {
        let reply = c.only_tagged(command);
        assert!(reply.starts_with(expected), "{command}: {reply}");
    }
    // A value over the limit, in a literal the command limit still takes.
    let tag = c.tag();
    c.send(format!("{tag} SETMETADATA \"\" (/private/big {{40000}}\r\n").as_bytes());
    assert!(c.line().starts_with("+ "));
    c.send(&vec![b'x'; 40000]);
    c.send(b")\r\n");
    let reply = c.reply(&tag);
    assert!(
        reply.tagged.starts_with("NO [METADATA MAXSIZE 32768]"),
        "{reply:?}"
    );
    // A literal over the command limit is declined before it is sent.
    let tag = c.tag();
    c.send(format!("{tag} SETMETADATA \"\" (/private/big {{200000}}\r\n").as_bytes());
    let reply = c.reply(&tag);
    assert!(reply.tagged.starts_with("NO [TOOBIG]"), "{reply:?}");
    // A huge non-synchronizing one is read past and refused.
    let tag = c.tag();
    c.send(format!("{tag} SETMETADATA \"\" (/private/big {{100000+}}\r\n").as_bytes());
    c.send(&vec![b'x'; 100000]);
    c.send(b")\r\n");
    let reply = c.reply(&tag);
    assert!(reply.tagged.starts_with("BAD [TOOBIG]"), "{reply:?}");
    assert_eq!(
        c.ok("GETMETADATA \"\" /private/big"),
        ["* METADATA \"\" (/private/big NIL)"]
    );
    assert!(c.call("NOOP").is_ok());
}

#[test]
fn metadata_too_many_entries_per_user() {
    let server = started("metadata-toomany", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    for batch in 0..3 {
        let count = if batch < 2 { 100 } else { 56 };
        let entries: Vec<String> = (0..count)
            .map(|i| format!("/private/e{batch}-{i} \"v\""))
            .collect();
        c.ok(&format!("SETMETADATA \"\" ({})", entries.join(" ")));
    }
    assert!(c
        .only_tagged("SETMETADATA INBOX (/private/one-more \"v\")")
        .starts_with("NO [METADATA TOOMANY]"));
    // Changing an entry or removing one is always possible.
    c.ok("SETMETADATA \"\" (/private/e0-0 \"changed\")");
    c.ok("SETMETADATA \"\" (/private/e0-1 NIL)");
    c.ok("SETMETADATA INBOX (/private/one-more \"v\")");
    let entries: Vec<String> = (0..101).map(|i| format!("/private/x{i} NIL")).collect();
    assert!(c
        .only_tagged(&format!("SETMETADATA \"\" ({})", entries.join(" ")))
        .starts_with("BAD more than 100 entries"));
}

#[test]
fn getmetadata_from_python_imaplib() {
    let server = started("metadata-imaplib", &["alice"]);
    python_ok(
        &server,
        r#"
import imaplib, os
# imaplib sends only the commands it knows; these are RFC 5464's.
imaplib.Commands["GETMETADATA"] = ("AUTH", "SELECTED")
imaplib.Commands["SETMETADATA"] = ("AUTH", "SELECTED")
M = imaplib.IMAP4("127.0.0.1", int(os.environ["IMAP_PORT"]))
M.login("alice", "pw-alice")
typ, data = M._simple_command("SETMETADATA", "INBOX", '(/private/vendor/deltachat/token "abc123")')
assert typ == "OK", (typ, data)
typ, data = M._simple_command("GETMETADATA", "INBOX", "/private/vendor/deltachat/token")
assert typ == "OK", (typ, data)
typ, data = M._untagged_response(typ, data, "METADATA")
assert data == [b'"INBOX" (/private/vendor/deltachat/token "abc123")'], data
M.logout()
print("ok")
"#,
    );
}

#[test]
fn create_special_use_makes_the_folder_and_refuses_a_taken_or_unknown_use() {
    let server = started("create-special-use", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    // Every use is taken by the default folders; free \Archive first.
    c.ok("DELETE Archive");
    assert_eq!(
        c.only_tagged("CREATE \"Old mail\" (USE (\\Archive))"),
        "OK CREATE completed"
    );
    assert_eq!(
        c.ok("LIST \"\" \"Old mail\""),
        ["* LIST (\\HasNoChildren \\Archive) \"/\" \"Old mail\""]
    );
    assert_eq!(
        c.only_tagged("CREATE Attic (USE (\\Archive))"),
        "NO [USEATTR] Another mailbox already has that special use"
    );
    assert!(c
        .only_tagged("CREATE Attic (USE (\\Important))")
        .starts_with("NO [USEATTR]"));
    assert!(c
        .only_tagged("CREATE Attic (USE (\\Trash \\Junk))")
        .starts_with("NO [USEATTR]"));
    assert!(c.ok("LIST \"\" Attic").is_empty());
}

/// The issue's budget: an idle compressed connection costs at most 96 KiB.
/// 400 of them, in IDLE after a SELECT (so each had a deflater once), are
/// measured once the server has given their deflaters back.
#[test]
fn idle_compressed_connections_stay_under_96_kib_each() {
    let mut server = Server::new("compress-memory", &["alice"]);
    server.extra_args = vec!["--max-connections-per-ip".into(), "1000".into()];
    start(&mut server);
    let pid = server.pid();
    let script = format!(
        r#"
import os, socket, time, zlib
N = 400
def rss():
    for line in open("/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
def session():
    s = socket.create_connection(("127.0.0.1", int(os.environ["IMAP_PORT"])), timeout=30)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"a LOGIN alice pw-alice\r\n")
    assert f.readline().startswith(b"a OK")
    s.sendall(b"b COMPRESS DEFLATE\r\n")
    assert f.readline() == b"b OK DEFLATE active\r\n"
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    d = zlib.decompressobj(-15)
    got = b""
    s.sendall(c.compress(b"c SELECT INBOX\r\ni IDLE\r\n") + c.flush(zlib.Z_SYNC_FLUSH))
    while b"+ idling\r\n" not in got:
        got += d.decompress(s.recv(65536))
    return s, c, d
time.sleep(0.5)
before = rss()
sessions = [session() for _ in range(N)]
# The server gives a deflater back after 2 s without input.
time.sleep(4)
after = rss()
print("per connection KiB", (after - before) / N)
print("ok")
"#
    );
    let out = python_ok(&server, &script);
    let per_connection: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("per connection KiB "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no figure in {out}"));
    eprintln!("{per_connection:.1} KiB per idle compressed connection");
    assert!(
        per_connection <= 96.0,
        "{per_connection:.1} KiB per idle compressed connection"
    );
}
