//! IMAP against the real binary: a raw protocol suite with exact replies,
//! Python's imaplib and curl as real clients, two sessions syncing and IDLE
//! push, bad input, the plaintext rules off loopback, and the limits.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::imap_client::*;
use common::*;

fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args(["-s", "-S", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is a test dependency (.ci/run installs it)")
}

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

const CAPS_BEFORE_LOGIN: &str =
    "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE STARTTLS AUTH=PLAIN AUTH=LOGIN";
const CAPS_AFTER_LOGIN: &str = "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE \
     UNSELECT UIDPLUS MOVE CHILDREN LIST-EXTENDED LIST-STATUS SPECIAL-USE ESEARCH SEARCHRES \
     BINARY UTF8=ACCEPT STATUS=SIZE CONDSTORE SORT SORT=DISPLAY ESORT THREAD=ORDEREDSUBJECT \
     THREAD=REFERENCES WITHIN QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE COMPRESS=DEFLATE \
     METADATA METADATA-SERVER CREATE-SPECIAL-USE APPENDLIMIT=52428800";

/// Commands that need a login, and a form of each that parses.
const AUTHENTICATED_COMMANDS: &[&str] = &[
    "SELECT INBOX",
    "EXAMINE INBOX",
    "CREATE x",
    "DELETE x",
    "RENAME x y",
    "SUBSCRIBE INBOX",
    "UNSUBSCRIBE INBOX",
    "LIST \"\" *",
    "LSUB \"\" *",
    "STATUS INBOX (MESSAGES)",
    "NAMESPACE",
    "ENABLE IMAP4rev2",
    "IDLE",
    "APPEND INBOX {1+}\r\nx",
    "GETMETADATA \"\" /private/comment",
    "SETMETADATA INBOX (/private/comment NIL)",
];

/// Commands that need a selected mailbox.
const SELECTED_COMMANDS: &[&str] = &[
    "CHECK",
    "CLOSE",
    "UNSELECT",
    "EXPUNGE",
    "SEARCH ALL",
    "FETCH 1 FLAGS",
    "STORE 1 +FLAGS (\\Seen)",
    "COPY 1 Trash",
    "MOVE 1 Trash",
    "UID SEARCH ALL",
    "UID FETCH 1 FLAGS",
    "UID STORE 1 +FLAGS (\\Seen)",
    "UID COPY 1 Trash",
    "UID MOVE 1 Trash",
    "UID EXPUNGE 1",
];

#[test]
fn greeting_capability_and_every_command_in_the_wrong_state() {
    let server = started("states", &["alice"]);
    let (mut c, greeting) = Client::connect_greeting(server.ports.imap);
    assert_eq!(
        greeting,
        format!("* OK [CAPABILITY {CAPS_BEFORE_LOGIN}] mail.test letterbox IMAP ready")
    );
    let caps = c.call("CAPABILITY");
    assert_eq!(caps.lines, [format!("* CAPABILITY {CAPS_BEFORE_LOGIN}")]);
    assert_eq!(caps.tagged, "OK CAPABILITY completed");

    // Not authenticated.
    for command in AUTHENTICATED_COMMANDS {
        assert_eq!(
            c.only_tagged(command),
            "BAD Command is only valid after login",
            "{command}"
        );
    }
    for command in SELECTED_COMMANDS {
        assert_eq!(
            c.only_tagged(command),
            "BAD Command is only valid with a mailbox selected",
            "{command}"
        );
    }
    assert_eq!(c.only_tagged("NOOP"), "OK NOOP completed");
    assert_eq!(c.ok("ID NIL"), ["* ID (\"name\" \"letterbox\")"]);

    let login = c.call("LOGIN alice pw-alice");
    assert!(login.lines.is_empty(), "{login:?}");
    assert_eq!(
        login.tagged,
        format!("OK [CAPABILITY {CAPS_AFTER_LOGIN}] Logged in")
    );

    // Authenticated.
    for command in [
        "LOGIN alice pw-alice",
        "AUTHENTICATE PLAIN AGFsaWNlAHB3LWFsaWNl",
        "AUTHENTICATE LOGIN",
        "STARTTLS",
    ] {
        assert_eq!(
            c.only_tagged(command),
            "BAD Command is only valid before login",
            "{command}"
        );
    }
    for command in SELECTED_COMMANDS {
        assert_eq!(
            c.only_tagged(command),
            "BAD Command is only valid with a mailbox selected",
            "{command}"
        );
    }
    assert_eq!(
        c.ok("CAPABILITY"),
        [format!("* CAPABILITY {CAPS_AFTER_LOGIN}")]
    );

    // Selected: login commands stay refused, the rest works.
    c.select("INBOX");
    for command in ["LOGIN alice pw-alice", "STARTTLS"] {
        assert_eq!(
            c.only_tagged(command),
            "BAD Command is only valid before login"
        );
    }
    assert_eq!(c.only_tagged("CHECK"), "OK CHECK completed");
    assert_eq!(c.only_tagged("FETCH 1:* FLAGS"), "OK FETCH completed");
    assert_eq!(c.only_tagged("UNSELECT"), "OK UNSELECT completed");
    assert_eq!(
        c.only_tagged("FETCH 1 FLAGS"),
        "BAD Command is only valid with a mailbox selected"
    );

    let bye = c.call("LOGOUT");
    assert_eq!(bye.lines, ["* BYE Logging out"]);
    assert_eq!(bye.tagged, "OK LOGOUT completed");
    assert!(c.closed());
}

#[test]
fn login_forms_and_failures() {
    let server = started("login", &["alice", "bob"]);
    let mut c = Client::connect(server.ports.imap);
    // A quoted user name and a password sent as a synchronizing literal.
    c.send(b"a1 LOGIN \"alice\" {8}\r\n");
    assert_eq!(c.line(), "+ Ready for literal data");
    c.send(b"pw-alice\r\n");
    assert!(c.reply("a1").tagged.starts_with("OK [CAPABILITY "));
    c.ok("LOGOUT");

    // Both arguments as synchronizing literals: two continuation requests.
    let mut c = Client::connect(server.ports.imap);
    c.send(b"a1 LOGIN {5}\r\n");
    assert_eq!(c.line(), "+ Ready for literal data");
    c.send(b"alice {8}\r\n");
    assert_eq!(c.line(), "+ Ready for literal data");
    c.send(b"pw-alice\r\n");
    assert!(c.reply("a1").is_ok());
    // User names are case-insensitive; the same with LITERAL+.
    let mut c = Client::connect(server.ports.imap);
    c.send(b"a1 LOGIN BOB {6+}\r\npw-bob\r\n");
    assert!(c.reply("a1").is_ok());
    c.ok("LOGOUT");

    // Three failures end the connection; the session stays usable until then.
    let mut c = Client::connect(server.ports.imap);
    let started = Instant::now();
    assert_eq!(
        c.only_tagged("LOGIN alice wrong"),
        "NO [AUTHENTICATIONFAILED] Authentication failed"
    );
    assert_eq!(
        c.only_tagged("LOGIN nobody pw-nobody"),
        "NO [AUTHENTICATIONFAILED] Authentication failed"
    );
    assert_eq!(c.only_tagged("NOOP"), "OK NOOP completed");
    let last = c.call("LOGIN alice wrong-again");
    assert_eq!(
        last.tagged,
        "NO [AUTHENTICATIONFAILED] Authentication failed"
    );
    assert_eq!(c.line(), "* BYE Too many failed logins");
    assert!(c.closed());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "failed logins are slowed down"
    );
    // A good login still works (after the back-off).
    let mut c = Client::login(server.ports.imap, "alice");
    c.ok("LOGOUT");
}

#[test]
fn authenticate_plain_and_login_with_and_without_sasl_ir() {
    let server = started("sasl", &["alice"]);
    let plain = "AGFsaWNlAHB3LWFsaWNl"; // \0alice\0pw-alice
                                        // PLAIN with SASL-IR.
    let mut c = Client::connect(server.ports.imap);
    let r = c.call(&format!("AUTHENTICATE PLAIN {plain}"));
    assert_eq!(
        r.tagged,
        format!("OK [CAPABILITY {CAPS_AFTER_LOGIN}] Logged in")
    );
    c.ok("SELECT INBOX");
    // PLAIN with an empty challenge.
    let mut c = Client::connect(server.ports.imap);
    c.send(b"a AUTHENTICATE plain\r\n");
    assert_eq!(c.line(), "+ ");
    c.send(format!("{plain}\r\n").as_bytes());
    assert!(c.reply("a").is_ok());
    // LOGIN: both challenges, then with the user name as initial response.
    let mut c = Client::connect(server.ports.imap);
    c.send(b"a AUTHENTICATE LOGIN\r\n");
    assert_eq!(c.line(), "+ VXNlcm5hbWU6");
    c.send(b"YWxpY2U=\r\n");
    assert_eq!(c.line(), "+ UGFzc3dvcmQ6");
    c.send(b"cHctYWxpY2U=\r\n");
    assert!(c.reply("a").is_ok());
    let mut c = Client::connect(server.ports.imap);
    c.send(b"a AUTHENTICATE LOGIN YWxpY2U=\r\n");
    assert_eq!(c.line(), "+ UGFzc3dvcmQ6");
    c.send(b"cHctYWxpY2U=\r\n");
    assert!(c.reply("a").is_ok());
    // Cancelled, malformed, unknown: the session goes on, still unauthenticated.
    let mut c = Client::connect(server.ports.imap);
    c.send(b"a AUTHENTICATE PLAIN\r\n");
    assert_eq!(c.line(), "+ ");
    c.send(b"*\r\n");
    assert_eq!(c.reply("a").tagged, "BAD Authentication cancelled");
    c.send(b"b AUTHENTICATE PLAIN\r\n");
    assert_eq!(c.line(), "+ ");
    c.send(b"not base64!\r\n");
    assert!(c.reply("b").tagged.starts_with("BAD "));
    assert!(c.only_tagged("AUTHENTICATE PLAIN ***").starts_with("BAD "));
    // Acting as another user (an authorization identity) is refused; the
    // same user named twice is fine.
    assert!(c
        .only_tagged("AUTHENTICATE PLAIN Ym9iAGFsaWNlAHB3LWFsaWNl")
        .starts_with("NO [AUTHORIZATIONFAILED] "));
    assert_eq!(
        c.only_tagged("AUTHENTICATE CRAM-MD5"),
        "NO Unsupported authentication mechanism (PLAIN and LOGIN are offered)"
    );
    assert_eq!(
        c.only_tagged("SELECT INBOX"),
        "BAD Command is only valid after login"
    );
    let r = c.call("AUTHENTICATE PLAIN YWxpY2UAYWxpY2UAcHctYWxpY2U=");
    assert!(r.is_ok(), "{r:?}");
}

#[test]
fn enable_id_namespace_and_rev2_mode() {
    let server = started("enable", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    let id = c.call("ID (\"name\" \"test\" \"version\" NIL)");
    assert_eq!(id.lines, ["* ID (\"name\" \"letterbox\")"]);
    assert_eq!(id.tagged, "OK ID completed");
    assert_eq!(c.ok("NAMESPACE"), ["* NAMESPACE ((\"\" \"/\")) NIL NIL"]);
    assert_eq!(c.ok("ENABLE CONDSTORE"), ["* ENABLED CONDSTORE"]);
    assert_eq!(c.ok("ENABLE X-UNKNOWN condstore"), ["* ENABLED"]);
    assert_eq!(
        c.ok("ENABLE UTF8=ACCEPT IMAP4rev2"),
        ["* ENABLED UTF8=ACCEPT IMAP4rev2"]
    );
    // Enabling again lists nothing new.
    assert_eq!(c.ok("ENABLE IMAP4rev2 utf8=accept"), ["* ENABLED"]);
    assert!(c.only_tagged("ENABLE").starts_with("BAD "));
    // rev2: no RECENT or UNSEEN in SELECT, a LIST reply, ESEARCH.
    c.append("INBOX", "", &simple_message("one", "x"));
    let select = c.select("inbox");
    assert!(!select.iter().any(|l| l.contains("RECENT")), "{select:?}");
    assert!(!select.iter().any(|l| l.contains("UNSEEN")), "{select:?}");
    assert!(select.contains(&"* LIST () \"/\" \"INBOX\"".to_string()));
    let search = c.call("SEARCH ALL");
    assert_eq!(
        search.lines,
        [format!("* ESEARCH (TAG \"t{}\") ALL 1", c.next_tag - 1)]
    );
    // UTF-8 names once enabled.
    c.ok("CREATE \"Entwürfe\"");
    assert!(c
        .ok("LIST \"\" Entw*")
        .contains(&"* LIST (\\HasNoChildren) \"/\" \"Entwürfe\"".to_string()));
    let mut rev1 = Client::login(server.ports.imap, "alice");
    assert!(rev1
        .ok("LIST \"\" Entw*")
        .contains(&"* LIST (\\HasNoChildren) \"/\" \"Entw&APw-rfe\"".to_string()));
    rev1.ok("SELECT Entw&APw-rfe");
    rev1.ok("CREATE &ZeVnLIqe-");
    assert!(c
        .ok("LIST \"\" %")
        .contains(&"* LIST (\\HasNoChildren) \"/\" \"日本語\"".to_string()));
}

#[test]
fn list_lsub_and_list_extended() {
    let server = started("list", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    // A first login makes INBOX and the special-use mailboxes.
    assert_eq!(
        c.ok("LIST \"\" *"),
        lines(&[
            "* LIST (\\HasNoChildren \\Archive) \"/\" \"Archive\"",
            "* LIST (\\HasNoChildren \\Drafts) \"/\" \"Drafts\"",
            "* LIST (\\HasNoChildren) \"/\" \"INBOX\"",
            "* LIST (\\HasNoChildren \\Junk) \"/\" \"Junk\"",
            "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"",
            "* LIST (\\HasNoChildren \\Trash) \"/\" \"Trash\"",
        ])
    );
    // The hierarchy delimiter (RFC 9051 §6.3.9).
    assert_eq!(c.ok("LIST \"\" \"\""), ["* LIST (\\Noselect) \"/\" \"\""]);
    assert_eq!(c.ok("LIST Work/ \"\""), ["* LIST (\\Noselect) \"/\" \"\""]);
    c.ok("CREATE Work/Projects/2026");
    // A trailing delimiter declares a parent; it is not part of the name.
    c.ok("CREATE Work/Old/");
    c.ok("CREATE Zeta");
    assert_eq!(
        c.ok("LIST \"\" %").last().unwrap(),
        "* LIST (\\HasNoChildren) \"/\" \"Zeta\""
    );
    assert!(c
        .ok("LIST \"\" %")
        .contains(&"* LIST (\\HasChildren) \"/\" \"Work\"".to_string()));
    let all = c.ok("LIST \"\" Work*");
    assert_eq!(
        all,
        lines(&[
            "* LIST (\\HasChildren) \"/\" \"Work\"",
            "* LIST (\\HasNoChildren) \"/\" \"Work/Old\"",
            "* LIST (\\HasChildren) \"/\" \"Work/Projects\"",
            "* LIST (\\HasNoChildren) \"/\" \"Work/Projects/2026\"",
        ])
    );
    let level = lines(&[
        "* LIST (\\HasNoChildren) \"/\" \"Work/Old\"",
        "* LIST (\\HasChildren) \"/\" \"Work/Projects\"",
    ]);
    assert_eq!(c.ok("LIST \"\" Work/%"), level);
    assert_eq!(c.ok("LIST Work/ %"), level, "reference and pattern join");
    assert_eq!(c.ok("LIST \"Work/\" \"%\""), level);
    assert_eq!(
        c.ok("LIST \"\" */2026"),
        ["* LIST (\\HasNoChildren) \"/\" \"Work/Projects/2026\""]
    );
    assert_eq!(
        c.ok("LIST \"\" %/%/%"),
        ["* LIST (\\HasNoChildren) \"/\" \"Work/Projects/2026\""]
    );
    assert!(c.ok("LIST \"\" nothing*").is_empty());
    // INBOX is case-insensitive, in names and in patterns.
    assert_eq!(
        c.ok("LIST \"\" inbox"),
        ["* LIST (\\HasNoChildren) \"/\" \"INBOX\""]
    );
    assert_eq!(
        c.ok("LIST \"\" InBoX*"),
        ["* LIST (\\HasNoChildren) \"/\" \"INBOX\""]
    );
    // Several patterns (LIST-EXTENDED).
    assert_eq!(
        c.ok("LIST \"\" (INBOX Zeta)"),
        lines(&[
            "* LIST (\\HasNoChildren) \"/\" \"INBOX\"",
            "* LIST (\\HasNoChildren) \"/\" \"Zeta\"",
        ])
    );

    // Selection: SPECIAL-USE.
    assert_eq!(
        c.ok("LIST (SPECIAL-USE) \"\" *"),
        lines(&[
            "* LIST (\\HasNoChildren \\Archive) \"/\" \"Archive\"",
            "* LIST (\\HasNoChildren \\Drafts) \"/\" \"Drafts\"",
            "* LIST (\\HasNoChildren \\Junk) \"/\" \"Junk\"",
            "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"",
            "* LIST (\\HasNoChildren \\Trash) \"/\" \"Trash\"",
        ])
    );
    // Return options: CHILDREN, SUBSCRIBED, SPECIAL-USE and STATUS.
    c.append("INBOX", "", &simple_message("one", "1"));
    c.append("INBOX", "(\\Seen)", &simple_message("two", "2"));
    c.ok("UNSUBSCRIBE Zeta");
    assert_eq!(
        c.ok("LIST \"\" (INBOX Zeta Sent) RETURN (CHILDREN SUBSCRIBED SPECIAL-USE STATUS (MESSAGES UNSEEN))"),
        lines(&[
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"INBOX\"",
            "* STATUS \"INBOX\" (MESSAGES 2 UNSEEN 1)",
            "* LIST (\\HasNoChildren \\Subscribed \\Sent) \"/\" \"Sent\"",
            "* STATUS \"Sent\" (MESSAGES 0 UNSEEN 0)",
            "* LIST (\\HasNoChildren) \"/\" \"Zeta\"",
            "* STATUS \"Zeta\" (MESSAGES 0 UNSEEN 0)",
        ])
    );
    assert!(c
        .only_tagged("LIST \"\" * RETURN (BOGUS)")
        .starts_with("BAD "));
    assert!(c.only_tagged("LIST (BOGUS) \"\" *").starts_with("BAD "));
    assert!(c
        .only_tagged("LIST (RECURSIVEMATCH) \"\" *")
        .starts_with("BAD RECURSIVEMATCH needs"));

    // SUBSCRIBE / UNSUBSCRIBE and the SUBSCRIBED selection. A mailbox a
    // client creates starts unsubscribed (only the default ones are
    // subscribed), and unsubscribing what is not subscribed is OK.
    c.ok("UNSUBSCRIBE Work");
    c.ok("SUBSCRIBE Work/Projects");
    assert_eq!(
        c.ok("LIST (SUBSCRIBED) \"\" W*"),
        ["* LIST (\\HasChildren \\Subscribed) \"/\" \"Work/Projects\""]
    );
    // RECURSIVEMATCH: a parent that is not subscribed itself, but has a
    // subscribed child, comes with CHILDINFO (RFC 5258 §3).
    assert_eq!(
        c.ok("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" W%"),
        ["* LIST (\\HasChildren) \"/\" \"Work\" (\"CHILDINFO\" (\"SUBSCRIBED\"))"]
    );
    assert_eq!(
        c.ok("LIST \"\" Work/* RETURN (SUBSCRIBED)"),
        lines(&[
            "* LIST (\\HasNoChildren) \"/\" \"Work/Old\"",
            "* LIST (\\HasChildren \\Subscribed) \"/\" \"Work/Projects\"",
            "* LIST (\\HasNoChildren) \"/\" \"Work/Projects/2026\"",
        ])
    );
    assert_eq!(
        c.only_tagged("SUBSCRIBE Nope"),
        "NO [NONEXISTENT] No such mailbox"
    );
    c.ok("SUBSCRIBE Work/Old");
    // LSUB: '%' stops at an unsubscribed parent of a subscribed mailbox and
    // shows it \Noselect (RFC 3501 §6.3.9); '*' reaches the children.
    assert_eq!(c.ok("LSUB \"\" W%"), ["* LSUB (\\Noselect) \"/\" \"Work\""]);
    assert_eq!(
        c.ok("LSUB \"\" W*"),
        lines(&[
            "* LSUB () \"/\" \"Work/Old\"",
            "* LSUB () \"/\" \"Work/Projects\"",
        ])
    );
    assert_eq!(c.ok("LSUB Work/ %"), c.ok("LSUB \"\" Work/%"));
    assert_eq!(c.ok("LSUB \"\" Zeta"), Vec::<String>::new());
    assert_eq!(c.ok("LSUB \"\" inbox"), ["* LSUB () \"/\" \"INBOX\""]);
}

#[test]
fn create_delete_and_rename_with_children_and_inbox() {
    let server = started("mailboxes", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    assert_eq!(c.only_tagged("CREATE a/b/c"), "OK CREATE completed");
    // Missing parents are made too.
    assert_eq!(
        c.ok("LIST \"\" a*"),
        lines(&[
            "* LIST (\\HasChildren) \"/\" \"a\"",
            "* LIST (\\HasChildren) \"/\" \"a/b\"",
            "* LIST (\\HasNoChildren) \"/\" \"a/b/c\"",
        ])
    );
    assert_eq!(
        c.only_tagged("CREATE a/b"),
        "NO [ALREADYEXISTS] Mailbox already exists"
    );
    assert_eq!(
        c.only_tagged("CREATE inbox"),
        "NO [ALREADYEXISTS] INBOX always exists"
    );
    for bad in ["a//x", "/lead", "x*", "x%y"] {
        assert!(
            c.only_tagged(&format!("CREATE \"{bad}\""))
                .starts_with("NO [CANNOT]"),
            "{bad}"
        );
    }
    assert!(c.only_tagged("CREATE \"\"").starts_with("NO [CANNOT]"));
    assert!(c.only_tagged("CREATE").starts_with("BAD "));
    // CREATE with a special use (RFC 6154): one mailbox per use, and Sent
    // has \Sent (tests/imap_ext.rs has the rest).
    assert!(c
        .only_tagged("CREATE Outbox (USE (\\Sent))")
        .starts_with("NO [USEATTR]"));
    assert!(c.ok("LIST \"\" Outbox").is_empty());
    assert!(c
        .only_tagged("CREATE Odd (USE (\\Flagged))")
        .starts_with("NO [USEATTR]"));
    // A mailbox created with a child inside INBOX.
    c.ok("CREATE INBOX/Child");

    // DELETE.
    assert_eq!(
        c.only_tagged("DELETE a/b"),
        "NO [HASCHILDREN] Mailbox has children; delete or move them first"
    );
    assert_eq!(
        c.only_tagged("DELETE nope"),
        "NO [NONEXISTENT] No such mailbox"
    );
    assert!(c.only_tagged("DELETE INBOX").starts_with("NO "));
    c.append("a/b/c", "", &simple_message("kept", "x"));
    assert_eq!(c.only_tagged("DELETE a/b/c"), "OK DELETE completed");
    assert_eq!(
        c.only_tagged("STATUS a/b/c (MESSAGES)"),
        "NO [NONEXISTENT] No such mailbox"
    );
    // Its name can be made again, with a new UIDVALIDITY and no messages.
    c.ok("CREATE a/b/c");
    assert_eq!(
        c.ok("STATUS a/b/c (MESSAGES UIDNEXT)"),
        ["* STATUS \"a/b/c\" (MESSAGES 0 UIDNEXT 1)"]
    );

    // RENAME takes the children along, and keeps UIDVALIDITY and messages.
    c.append("a/b/c", "", &simple_message("moved", "x"));
    let before = c.ok("STATUS a/b/c (MESSAGES UIDNEXT UIDVALIDITY)");
    assert_eq!(c.only_tagged("RENAME a z"), "OK RENAME completed");
    assert!(c.ok("LIST \"\" a*").is_empty());
    assert_eq!(
        c.ok("LIST \"\" z*"),
        lines(&[
            "* LIST (\\HasChildren) \"/\" \"z\"",
            "* LIST (\\HasChildren) \"/\" \"z/b\"",
            "* LIST (\\HasNoChildren) \"/\" \"z/b/c\"",
        ])
    );
    let after = c.ok("STATUS z/b/c (MESSAGES UIDNEXT UIDVALIDITY)");
    assert_eq!(after[0].replace("z/b/c", "a/b/c"), before[0]);
    assert_eq!(
        c.only_tagged("RENAME z Sent"),
        "NO [ALREADYEXISTS] Mailbox already exists"
    );
    assert!(c
        .only_tagged("RENAME z z/inside")
        .starts_with("NO [CANNOT]"));
    assert_eq!(
        c.only_tagged("RENAME nope other"),
        "NO [NONEXISTENT] No such mailbox"
    );
    // RENAME to a deeper name makes the levels above it (RFC 9051 §6.3.6).
    c.ok("RENAME z/b/c Deep/er/c");
    assert_eq!(
        c.ok("STATUS Deep/er/c (MESSAGES)"),
        ["* STATUS \"Deep/er/c\" (MESSAGES 1)"]
    );
    assert_eq!(
        c.ok("LIST \"\" Deep*"),
        lines(&[
            "* LIST (\\HasChildren) \"/\" \"Deep\"",
            "* LIST (\\HasChildren) \"/\" \"Deep/er\"",
            "* LIST (\\HasNoChildren) \"/\" \"Deep/er/c\"",
        ])
    );
    c.ok("SELECT Deep/er");
    for bad in ["/lead", "a//b", "x*", "%"] {
        assert!(
            c.only_tagged(&format!("RENAME z \"{bad}\""))
                .starts_with("NO [CANNOT]"),
            "{bad}"
        );
    }

    // Renaming INBOX moves its messages to the new name and leaves INBOX
    // empty; its children stay where they are (RFC 9051 §6.3.6).
    c.append("INBOX", "", &simple_message("in1", "x"));
    c.append("INBOX", "(\\Seen)", &simple_message("in2", "x"));
    let inbox_next = c.ok("STATUS INBOX (UIDNEXT)");
    assert_eq!(
        c.only_tagged("RENAME INBOX Old-Inbox"),
        "OK RENAME completed"
    );
    assert_eq!(
        c.ok("STATUS Old-Inbox (MESSAGES UNSEEN)"),
        ["* STATUS \"Old-Inbox\" (MESSAGES 2 UNSEEN 1)"]
    );
    assert_eq!(
        c.ok("STATUS INBOX (MESSAGES)"),
        ["* STATUS \"INBOX\" (MESSAGES 0)"]
    );
    assert_eq!(
        c.ok("STATUS INBOX (UIDNEXT)"),
        inbox_next,
        "UIDs are never reused"
    );
    assert_eq!(
        c.ok("LIST \"\" INBOX*"),
        lines(&[
            "* LIST (\\HasChildren) \"/\" \"INBOX\"",
            "* LIST (\\HasNoChildren) \"/\" \"INBOX/Child\"",
        ])
    );
    let mut selected = c.select("Old-Inbox");
    selected.retain(|l| l.contains("EXISTS"));
    assert_eq!(selected, ["* 2 EXISTS"]);
}

#[test]
fn status_items_follow_the_mailbox() {
    let server = started("status", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    let one = simple_message("one", "first");
    let two = simple_message("two", "second message");
    c.append("INBOX", "", &one);
    c.append("INBOX", "(\\Seen \\Deleted)", &two);
    let validity = appenduid(&{
        let r = c.call("APPEND INBOX (\\Seen) {1+}\r\nx");
        r.tagged
    })
    .0;
    let status = c.ok("STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE)");
    assert_eq!(
        status,
        [format!(
            "* STATUS \"INBOX\" (MESSAGES 3 UIDNEXT 4 UIDVALIDITY {validity} UNSEEN 1 DELETED 1 SIZE {})",
            one.len() + two.len() + 1
        )]
    );
    // No session has selected INBOX since the three arrived: all three
    // will be \Recent for the next SELECT.
    assert_eq!(
        c.ok("status inbox (recent appendlimit)"),
        ["* STATUS \"INBOX\" (RECENT 3 APPENDLIMIT 52428800)"]
    );
    assert!(c.only_tagged("STATUS INBOX ()").starts_with("BAD "));
    assert!(c.only_tagged("STATUS INBOX (BOGUS)").starts_with("BAD "));
    assert!(c.only_tagged("STATUS INBOX").starts_with("BAD "));
    assert_eq!(
        c.only_tagged("STATUS Nope (MESSAGES)"),
        "NO [NONEXISTENT] No such mailbox"
    );
    // STATUS works on the selected mailbox too, and follows EXPUNGE.
    c.select("INBOX");
    let expunge = c.call("EXPUNGE");
    assert_eq!(expunge.lines, ["* 2 EXPUNGE"]);
    assert_eq!(
        c.ok("STATUS INBOX (MESSAGES UIDNEXT DELETED SIZE)"),
        [format!(
            "* STATUS \"INBOX\" (MESSAGES 2 UIDNEXT 4 DELETED 0 SIZE {})",
            one.len() + 1
        )]
    );
}

#[test]
fn select_and_examine_responses_and_close_versus_unselect() {
    let server = started("select", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    let validity = appenduid(&c.call("APPEND INBOX (\\Seen $Work) {1+}\r\na").tagged).0;
    c.append("INBOX", "", &simple_message("unseen", "x"));
    c.append("INBOX", "(\\Deleted)", &simple_message("deleted", "x"));
    let select = c.call("SELECT INBOX");
    assert_eq!(
        select.lines,
        lines(&[
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)",
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work \\*)] Flags permitted",
            "* 3 EXISTS",
            // Appended while no session had INBOX selected: this first
            // SELECT claims all three as \Recent.
            "* 3 RECENT",
            "* OK [UNSEEN 2] First unseen",
            &format!("* OK [UIDVALIDITY {validity}] UIDs valid"),
            "* OK [UIDNEXT 4] Predicted next UID",
        ])
    );
    assert_eq!(select.tagged, "OK [READ-WRITE] SELECT completed");

    // EXAMINE: read-only; a body fetch does not set \Seen; CLOSE expunges nothing.
    let examine = c.call("EXAMINE INBOX");
    assert_eq!(examine.lines[0], "* OK [CLOSED] Previous mailbox closed");
    assert_eq!(
        examine.lines[2],
        "* OK [PERMANENTFLAGS ()] Read-only mailbox"
    );
    assert_eq!(examine.tagged, "OK [READ-ONLY] EXAMINE completed");
    let body = c.call("FETCH 2 BODY[TEXT]");
    assert_eq!(body.lines, ["* 2 FETCH (BODY[TEXT] {3}\r\nx\r\n)"]);
    assert_eq!(
        c.only_tagged("STORE 2 +FLAGS (\\Seen)"),
        "NO [READ-ONLY] Mailbox is read-only"
    );
    assert_eq!(
        c.only_tagged("EXPUNGE"),
        "NO [READ-ONLY] Mailbox is read-only"
    );
    assert_eq!(
        c.only_tagged("UID EXPUNGE 3"),
        "NO [READ-ONLY] Mailbox is read-only"
    );
    assert_eq!(
        c.only_tagged("MOVE 1 Trash"),
        "NO [READ-ONLY] Mailbox is read-only"
    );
    assert!(c.only_tagged("COPY 1 Trash").starts_with("OK [COPYUID "));
    assert_eq!(c.only_tagged("CLOSE"), "OK CLOSE completed");
    assert_eq!(
        c.ok("STATUS INBOX (MESSAGES UNSEEN)"),
        ["* STATUS \"INBOX\" (MESSAGES 3 UNSEEN 2)"]
    );

    // A failed SELECT leaves no mailbox selected.
    c.select("INBOX");
    let failed = c.call("SELECT Nope");
    assert_eq!(failed.lines, ["* OK [CLOSED] Previous mailbox closed"]);
    assert_eq!(failed.tagged, "NO [NONEXISTENT] No such mailbox");
    assert_eq!(
        c.only_tagged("FETCH 1 FLAGS"),
        "BAD Command is only valid with a mailbox selected"
    );

    // UNSELECT leaves \Deleted messages; CLOSE expunges them, silently.
    c.select("INBOX");
    assert_eq!(c.only_tagged("UNSELECT"), "OK UNSELECT completed");
    assert_eq!(
        c.ok("STATUS INBOX (MESSAGES)"),
        ["* STATUS \"INBOX\" (MESSAGES 3)"]
    );
    c.select("INBOX");
    c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)");
    assert_eq!(c.only_tagged("CLOSE"), "OK CLOSE completed");
    assert_eq!(
        c.ok("STATUS INBOX (MESSAGES DELETED UIDNEXT)"),
        ["* STATUS \"INBOX\" (MESSAGES 1 DELETED 0 UIDNEXT 4)"]
    );
    let again = c.select("INBOX");
    assert!(again.contains(&"* 1 EXISTS".to_string()), "{again:?}");
    assert!(again.contains(&"* OK [UNSEEN 1] First unseen".to_string()));
}

#[test]
fn append_with_flags_dates_literals_and_appenduid() {
    let server = started("append", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    let message = simple_message("appended", "hello");
    // Synchronizing literal, with flags and a date.
    c.send(
        format!(
            "a1 APPEND INBOX (\\Seen \\Flagged $Label1) \" 7-Feb-2024 09:05:00 -0800\" {{{}}}\r\n",
            message.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.line(), "+ Ready for literal data");
    c.send(&message);
    c.send(b"\r\n");
    let (validity, uid) = appenduid(&c.reply("a1").tagged);
    assert_eq!(uid, 1);
    // LITERAL+: no continuation request.
    c.send(b"a2 APPEND INBOX {5+}\r\nworld\r\n");
    let reply = c.reply("a2");
    assert!(reply.lines.is_empty(), "{reply:?}");
    assert_eq!(appenduid(&reply.tagged), (validity, 2));
    assert_eq!(
        reply.tagged,
        format!("OK [APPENDUID {validity} 2] APPEND completed")
    );
    // Only flags; only a date (date-day-fixed as two digits).
    c.send(b"a3 APPEND INBOX () {1+}\r\n3\r\n");
    assert!(c.reply("a3").is_ok());
    c.send(b"a4 APPEND INBOX \"29-Feb-2024 23:59:59 +0000\" {1+}\r\n4\r\n");
    assert!(c.reply("a4").is_ok());
    // A binary literal (RFC 3516) may hold NUL.
    c.send(b"a5 APPEND INBOX ~{8+}\r\nx\r\n\r\na\0b\r\n");
    assert!(c.reply("a5").is_ok());

    // Appended while INBOX was not selected: the next SELECT claims them
    // all as \Recent, which FETCH FLAGS lists after the system flags.
    c.select("INBOX");
    let fetched = c.ok("FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)");
    assert_eq!(fetched[0], format!(
        "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Seen \\Recent $Label1) INTERNALDATE \"07-Feb-2024 09:05:00 -0800\" RFC822.SIZE {})",
        message.len()
    ));
    assert!(
        fetched[1].starts_with("* 2 FETCH (UID 2 FLAGS (\\Recent) INTERNALDATE \""),
        "{}",
        fetched[1]
    );
    assert!(
        fetched[1].ends_with(" +0000\" RFC822.SIZE 5)"),
        "{}",
        fetched[1]
    );
    assert_eq!(
        fetched[3],
        "* 4 FETCH (UID 4 FLAGS (\\Recent) INTERNALDATE \"29-Feb-2024 23:59:59 +0000\" RFC822.SIZE 1)"
    );
    assert_eq!(
        c.ok("FETCH 1 BODY.PEEK[]"),
        [format!(
            "* 1 FETCH (BODY[] {{{}}}\r\n{})",
            message.len(),
            lossy(&message)
        )]
    );
    assert_eq!(
        c.ok("FETCH 5 BINARY.PEEK[]"),
        ["* 5 FETCH (BINARY[] ~{8}\r\nx\r\n\r\na\0b)"]
    );
    // The keyword is now one of the mailbox's FLAGS.
    assert!(c
        .select("INBOX")
        .contains(&"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1)".to_string()));

    // APPEND to the selected mailbox: the session hears of the new message,
    // which is \Recent in this session (the one that has INBOX selected).
    c.send(b"a6 APPEND INBOX {1+}\r\n6\r\n");
    let reply = c.reply("a6");
    assert_eq!(reply.lines, ["* 6 EXISTS", "* 1 RECENT"]);
    assert_eq!(appenduid(&reply.tagged), (validity, 6));

    // RFC 6855's UTF8 form, with a literal8.
    c.send("u1 APPEND INBOX (\\Seen) UTF8 (~{6}\r\n".as_bytes());
    assert_eq!(c.line(), "+ Ready for literal data");
    c.send("héllo)\r\n".as_bytes());
    let reply = c.reply("u1");
    assert_eq!(reply.lines, ["* 7 EXISTS", "* 2 RECENT"]);
    assert_eq!(appenduid(&reply.tagged), (validity, 7));
    assert_eq!(
        c.ok("FETCH 7 BODY.PEEK[]"),
        ["* 7 FETCH (BODY[] {6}\r\nhéllo)"]
    );
    c.send(b"u2 APPEND INBOX UTF8 (~{5+}\r\nhe\0lo)\r\n");
    assert_eq!(c.reply("u2").tagged, "BAD UTF8 message contains NUL");
    c.send(b"u3 APPEND INBOX UTF8 ({5+}\r\nhello)\r\n");
    assert!(c.reply("u3").tagged.starts_with("BAD "));
    // A literal8 anywhere but an APPEND's message is refused.
    c.send(b"u4 SELECT ~{5+}\r\nINBOX\r\n");
    assert_eq!(
        c.reply("u4").tagged,
        "BAD literal8 (~{n}) is only allowed for an APPEND message"
    );

    // Refusals.
    c.send(b"b1 APPEND Nope {1+}\r\nx\r\n");
    assert_eq!(c.reply("b1").tagged, "NO [TRYCREATE] No such mailbox");
    c.send(b"b2 APPEND INBOX {0+}\r\n\r\n");
    assert_eq!(c.reply("b2").tagged, "NO Cannot store an empty message");
    c.send(b"b3 APPEND INBOX \"30-Feb-2024 00:00:00 +0000\" {1+}\r\nx\r\n");
    assert!(c.reply("b3").tagged.starts_with("BAD invalid date-time"));
    c.send(b"b4 APPEND INBOX (\\Recent) {1+}\r\nx\r\n");
    assert_eq!(
        c.reply("b4").tagged,
        "BAD \\Recent cannot be set by a client"
    );
    c.send(b"b5 APPEND INBOX (\\Bogus) {1+}\r\nx\r\n");
    assert!(c.reply("b5").tagged.starts_with("BAD "));
    c.send(b"b6 APPEND INBOX {3+}\r\na\0b\r\n");
    assert!(c.reply("b6").tagged.starts_with("BAD literal contains NUL"));
    c.send(b"b7 APPEND INBOX\r\n");
    assert!(c.reply("b7").tagged.starts_with("BAD "));
    // Nothing was stored by the refusals.
    assert_eq!(c.ok("NOOP"), Vec::<String>::new());
    assert_eq!(
        c.ok("STATUS INBOX (MESSAGES UIDNEXT)"),
        ["* STATUS \"INBOX\" (MESSAGES 7 UIDNEXT 8)"]
    );
}

/// A multipart message with a quoted-printable text, a base64 attachment
/// holding NUL and 0xFF, and an attached multipart message.
const NESTED: &str = "From: Alice Example <alice@example.org>\r
To: Bob <bob@example.org>, \"Carol C.\" <carol@example.org>\r
Cc: dave@example.org\r
Reply-To: replies@example.org\r
Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= from the test\r
Date: Tue, 03 Mar 2026 10:00:00 +0100\r
Message-ID: <nested@example.org>\r
In-Reply-To: <parent@example.org>\r
MIME-Version: 1.0\r
Content-Type: multipart/mixed; boundary=\"outer\"\r
\r
preamble\r
--outer\r
Content-Type: text/plain; charset=utf-8\r
Content-Transfer-Encoding: quoted-printable\r
\r
Hello caf=C3=A9 world\r
--outer\r
Content-Type: application/octet-stream; name=\"bin.dat\"\r
Content-Transfer-Encoding: base64\r
Content-Disposition: attachment; filename=\"bin.dat\"\r
\r
AAECAwD/\r
--outer\r
Content-Type: message/rfc822\r
\r
From: Inner <inner@example.org>\r
Subject: inner message\r
Content-Type: multipart/alternative; boundary=\"inner\"\r
\r
--inner\r
Content-Type: text/plain\r
\r
inner plain\r
--inner\r
Content-Type: text/html\r
\r
<p>inner html</p>\r
--inner--\r
--outer--\r
";

/// The text of `message` between the end of `after` and the start of `before`.
fn between<'a>(message: &'a str, after: &str, before: &str) -> &'a str {
    let start = message.find(after).unwrap() + after.len();
    let end = start + message[start..].find(before).unwrap();
    &message[start..end]
}

/// `* 1 FETCH (NAME {n}\r\nDATA)` for one literal item.
fn fetched_literal(seq: u32, name: &str, data: &str) -> String {
    format!("* {seq} FETCH ({name} {{{}}}\r\n{data})", data.len())
}

#[test]
fn fetch_every_item_and_nested_sections() {
    let server = started("fetch", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    let m = NESTED;
    c.append("INBOX", "\"03-Mar-2026 10:00:05 +0100\"", m.as_bytes());
    // The message arrived before this SELECT, so it is \Recent here.
    c.select("INBOX");
    assert_eq!(
        c.ok("FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE UID)"),
        [format!(
            "* 1 FETCH (FLAGS (\\Recent) INTERNALDATE \"03-Mar-2026 10:00:05 +0100\" RFC822.SIZE {} UID 1)",
            m.len()
        )]
    );
    let envelope = "(\"Tue, 03 Mar 2026 10:00:00 +0100\" \"=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= from the test\" \
        ((\"Alice Example\" NIL \"alice\" \"example.org\")) ((\"Alice Example\" NIL \"alice\" \"example.org\")) \
        ((NIL NIL \"replies\" \"example.org\")) \
        ((\"Bob\" NIL \"bob\" \"example.org\")(\"Carol C.\" NIL \"carol\" \"example.org\")) \
        ((NIL NIL \"dave\" \"example.org\")) NIL \"<parent@example.org>\" \"<nested@example.org>\")";
    assert_eq!(
        c.ok("FETCH 1 ENVELOPE"),
        [format!("* 1 FETCH (ENVELOPE {envelope})")]
    );
    let inner_envelope = "(NIL \"inner message\" ((\"Inner\" NIL \"inner\" \"example.org\")) \
        ((\"Inner\" NIL \"inner\" \"example.org\")) ((\"Inner\" NIL \"inner\" \"example.org\")) \
        NIL NIL NIL NIL NIL)";
    let inner_len = between(m, "message/rfc822\r\n\r\n", "\r\n--outer--").len();
    assert_eq!(
        c.ok("FETCH 1 BODY"),
        [format!(
            "* 1 FETCH (BODY ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 21 0)\
             (\"application\" \"octet-stream\" (\"name\" \"bin.dat\") NIL NIL \"base64\" 8)\
             (\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" {inner_len} {inner_envelope} \
             ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 11 0)\
             (\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 17 0) \"alternative\") 12) \"mixed\"))"
        )]
    );
    assert_eq!(
        c.ok("FETCH 1 BODYSTRUCTURE"),
        [format!(
            "* 1 FETCH (BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 21 0 NIL NIL NIL NIL)\
             (\"application\" \"octet-stream\" (\"name\" \"bin.dat\") NIL NIL \"base64\" 8 NIL (\"attachment\" (\"filename\" \"bin.dat\")) NIL NIL)\
             (\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" {inner_len} {inner_envelope} \
             ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 11 0 NIL NIL NIL NIL)\
             (\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 17 0 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"inner\") NIL NIL NIL) \
             12 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"outer\") NIL NIL NIL))"
        )]
    );
    // The macros.
    let all = c.ok("FETCH 1 ALL");
    assert!(all[0].starts_with(
        "* 1 FETCH (FLAGS (\\Recent) INTERNALDATE \"03-Mar-2026 10:00:05 +0100\" RFC822.SIZE "
    ));
    assert!(all[0].ends_with(&format!("ENVELOPE {envelope})")));
    assert_eq!(
        c.ok("FETCH 1 FAST"),
        [format!(
            "* 1 FETCH (FLAGS (\\Recent) INTERNALDATE \"03-Mar-2026 10:00:05 +0100\" RFC822.SIZE {})",
            m.len()
        )]
    );
    assert!(c.ok("FETCH 1 FULL")[0].contains(" BODY ((\"text\" \"plain\""));

    // Sections, each against the bytes of the message.
    let header = &m[..m.find("\r\n\r\n").unwrap() + 4];
    let text = &m[header.len()..];
    let inner = between(m, "message/rfc822\r\n\r\n", "\r\n--outer--");
    let inner_header = &inner[..inner.find("\r\n\r\n").unwrap() + 4];
    let sections: Vec<(&str, String)> = vec![
        ("", m.to_string()),
        ("HEADER", header.to_string()),
        ("TEXT", text.to_string()),
        ("1", "Hello caf=C3=A9 world".to_string()),
        (
            "1.MIME",
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
                .to_string(),
        ),
        ("2", "AAECAwD/".to_string()),
        ("3", inner.to_string()),
        ("3.MIME", "Content-Type: message/rfc822\r\n\r\n".to_string()),
        ("3.HEADER", inner_header.to_string()),
        ("3.TEXT", inner[inner_header.len()..].to_string()),
        ("3.1", "inner plain".to_string()),
        ("3.2", "<p>inner html</p>".to_string()),
        ("3.2.MIME", "Content-Type: text/html\r\n\r\n".to_string()),
        (
            "HEADER.FIELDS (Subject TO)",
            "To: Bob <bob@example.org>, \"Carol C.\" <carol@example.org>\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= from the test\r\n\r\n"
                .to_string(),
        ),
        (
            "HEADER.FIELDS.NOT (Subject To From Cc Date Message-ID In-Reply-To MIME-Version)",
            "Reply-To: replies@example.org\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n"
                .to_string(),
        ),
        ("HEADER.FIELDS (X-Absent)", "\r\n".to_string()),
        ("3.HEADER.FIELDS (subject)", "Subject: inner message\r\n\r\n".to_string()),
    ];
    for (section, want) in &sections {
        assert_eq!(
            c.ok(&format!("FETCH 1 BODY.PEEK[{section}]")),
            [fetched_literal(1, &format!("BODY[{section}]"), want)],
            "BODY[{section}]"
        );
    }
    // Parts that do not exist are NIL.
    for section in ["4", "3.3", "1.TEXT", "2.HEADER"] {
        assert_eq!(
            c.ok(&format!("FETCH 1 BODY.PEEK[{section}]")),
            [format!("* 1 FETCH (BODY[{section}] NIL)")]
        );
    }
    // Partial fetches: the response names only the origin.
    assert_eq!(
        c.ok("FETCH 1 (BODY.PEEK[]<0.20> BODY.PEEK[1]<6.4> BODY.PEEK[TEXT]<100000.5>)"),
        ["* 1 FETCH (BODY[]<0> {20}\r\nFrom: Alice Example  BODY[1]<6> {4}\r\ncaf= BODY[TEXT]<100000> {0}\r\n)"]
    );
    // RFC822 forms.
    assert_eq!(
        c.ok("FETCH 1 RFC822.HEADER"),
        [fetched_literal(1, "RFC822.HEADER", header)]
    );
    // BINARY: the content-transfer-encoding undone (RFC 3516); NUL makes a literal8.
    let binary = c.call("FETCH 1 (BINARY.PEEK[1] BINARY.PEEK[2] BINARY.SIZE[2] BINARY.SIZE[1] BINARY.PEEK[2]<4.10> BINARY.PEEK[3.1])");
    assert_eq!(
        binary.lines,
        ["* 1 FETCH (BINARY[1] {17}\r\nHello café world BINARY[2] ~{6}\r\n\0\u{1}\u{2}\u{3}\0\u{FFFD} BINARY.SIZE[2] 6 BINARY.SIZE[1] 17 BINARY[2]<4> ~{2}\r\n\0\u{FFFD} BINARY[3.1] {11}\r\ninner plain)"]
    );
    assert_eq!(binary.tagged, "OK FETCH completed");
    // The byte really is 0xFF.
    c.send(b"b1 FETCH 1 BINARY.PEEK[2]\r\n");
    assert!(c.line_bytes().ends_with(b"\0\x01\x02\x03\0\xff)"));
    assert!(c.reply("b1").is_ok());
    // Nothing so far set \Seen.
    assert_eq!(c.ok("FETCH 1 FLAGS"), ["* 1 FETCH (FLAGS (\\Recent))"]);

    // Unknown items and malformed sections are BAD.
    for bad in [
        "FETCH 1 BODY[MIME]",
        "FETCH 1 BODY[1.]",
        "FETCH 1 BODY[0]",
        "FETCH 1 BODY[HEADER.FIELDS ()]",
        "FETCH 1 BODY[]<1.0>",
        "FETCH 1 BODY[]<a.1>",
        "FETCH 1 BOGUS",
        "FETCH 1 (FLAGS",
        "FETCH 1 ()",
        "FETCH 1",
        "FETCH FLAGS",
        "FETCH 1 BINARY[TEXT]",
    ] {
        assert!(c.only_tagged(bad).starts_with("BAD "), "{bad}");
    }
}

#[test]
fn fetch_sets_seen_except_for_peek_and_header_items() {
    let server = started("seen", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    let m = simple_message("seen", "the body");
    c.append("INBOX", "", &m);
    // Appended before the SELECT: \Recent in this session throughout.
    c.select("INBOX");
    let body = "the body\r\n";
    // These leave \Seen alone.
    for item in [
        "BODY.PEEK[]",
        "BODY.PEEK[TEXT]",
        "BINARY.PEEK[1]",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "BODY.PEEK[HEADER]",
        "BODYSTRUCTURE",
        "ENVELOPE",
        "BINARY.SIZE[1]",
    ] {
        c.ok(&format!("FETCH 1 {item}"));
        assert_eq!(
            c.ok("FETCH 1 FLAGS"),
            ["* 1 FETCH (FLAGS (\\Recent))"],
            "{item}"
        );
    }
    // These set it, and say so in the same response (RFC 9051 §6.4.5).
    for (item, shown) in [
        ("BODY[TEXT]", fetched_literal(1, "BODY[TEXT]", body)),
        ("BODY[1]", fetched_literal(1, "BODY[1]", body)),
        ("BINARY[1]", fetched_literal(1, "BINARY[1]", body)),
        ("RFC822.TEXT", fetched_literal(1, "RFC822.TEXT", body)),
        ("RFC822", fetched_literal(1, "RFC822", &lossy(&m))),
        ("BODY[]", fetched_literal(1, "BODY[]", &lossy(&m))),
    ] {
        assert_eq!(
            c.ok(&format!("FETCH 1 {item}")),
            [format!(
                "{} FLAGS (\\Seen \\Recent))",
                shown.strip_suffix(')').unwrap()
            )],
            "{item}"
        );
        // Already seen: no FLAGS the second time.
        assert_eq!(c.ok(&format!("FETCH 1 {item}")), [shown], "{item}");
        c.ok("STORE 1 -FLAGS.SILENT (\\Seen)");
    }
    // UID FETCH adds UID, and BODY[] with FLAGS asked for shows them once.
    assert_eq!(
        c.ok("UID FETCH 1 (FLAGS BODY[TEXT])"),
        [format!(
            "* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent) BODY[TEXT] {{{}}}\r\n{body})",
            body.len()
        )]
    );
    // A single-part message: part 1 is its body; BODYSTRUCTURE is flat.
    assert_eq!(
        c.ok("FETCH 1 BODYSTRUCTURE"),
        ["* 1 FETCH (BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 10 1 NIL NIL NIL NIL))"]
    );
    // An encoding letterbox cannot decode.
    c.append(
        "INBOX",
        "",
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n",
    );
    c.ok("NOOP");
    let unknown = c.call("FETCH 2 BINARY.PEEK[1]");
    assert_eq!(unknown.lines, ["* 2 FETCH (BINARY[1] NIL)"]);
    assert!(
        unknown.tagged.starts_with("NO [UNKNOWN-CTE]"),
        "{unknown:?}"
    );
}

/// Logs in, APPENDs `n` messages "m1".."mn" to INBOX and selects it.
fn mailbox_with(server: &Server, n: u32) -> Client {
    let mut c = Client::login(server.ports.imap, "alice");
    for i in 1..=n {
        c.append(
            "INBOX",
            "",
            &simple_message(&format!("m{i}"), &format!("body {i}")),
        );
    }
    c.select("INBOX");
    c
}

#[test]
fn store_flags_keywords_and_silent() {
    let server = started("store", &["alice"]);
    let mut c = mailbox_with(&server, 4);
    // RFC 9051 §6.4.6's example, with this server's flag order.
    c.ok("STORE 2 FLAGS (\\Seen)");
    c.ok("STORE 4 FLAGS (\\Flagged \\Seen)");
    let r = c.call("STORE 2:4 +FLAGS (\\Deleted)");
    assert_eq!(
        r.lines,
        lines(&[
            "* 2 FETCH (FLAGS (\\Deleted \\Seen \\Recent))",
            "* 3 FETCH (FLAGS (\\Deleted \\Recent))",
            "* 4 FETCH (FLAGS (\\Flagged \\Deleted \\Seen \\Recent))",
        ])
    );
    assert_eq!(r.tagged, "OK STORE completed");
    assert_eq!(
        c.ok("STORE 2:4 -FLAGS (\\Deleted \\Seen)"),
        lines(&[
            "* 2 FETCH (FLAGS (\\Recent))",
            "* 3 FETCH (FLAGS (\\Recent))",
            "* 4 FETCH (FLAGS (\\Flagged \\Recent))",
        ])
    );
    // Flags without parentheses, every system flag, and keywords. The new
    // keywords are announced (FLAGS, PERMANENTFLAGS) before the FETCH that
    // carries them.
    assert_eq!(
        c.ok("STORE 1 FLAGS \\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1 Junk"),
        lines(&[
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1 Junk)",
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1 Junk \\*)] Flags permitted",
            "* 1 FETCH (FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\Recent $Label1 Junk))",
        ])
    );
    assert_eq!(
        c.ok("STORE 1 -FLAGS ($label1 \\DRAFT)"),
        ["* 1 FETCH (FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Recent Junk))"],
        "keywords and flags match case-insensitively"
    );
    assert_eq!(c.ok("STORE 1 FLAGS ()"), ["* 1 FETCH (FLAGS (\\Recent))"]);
    // .SILENT sends no FETCH, but the flags are set; the new keyword is
    // still announced.
    assert_eq!(
        c.ok("STORE 1:2 +FLAGS.SILENT ($Work \\Answered)"),
        lines(&[
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1 Junk $Work)",
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1 Junk $Work \\*)] Flags permitted",
        ])
    );
    assert!(c.ok("STORE 2 -FLAGS.SILENT (\\Answered)").is_empty());
    assert!(c.ok("STORE 3 FLAGS.SILENT (\\Draft)").is_empty());
    assert_eq!(
        c.ok("FETCH 1:3 FLAGS"),
        lines(&[
            "* 1 FETCH (FLAGS (\\Answered \\Recent $Work))",
            "* 2 FETCH (FLAGS (\\Recent $Work))",
            "* 3 FETCH (FLAGS (\\Draft \\Recent))",
        ])
    );
    // UID STORE includes the UID; `*` and ranges in either order.
    assert_eq!(
        c.ok("UID STORE 4:3 +FLAGS (\\Seen)"),
        lines(&[
            "* 3 FETCH (FLAGS (\\Seen \\Draft \\Recent) UID 3)",
            "* 4 FETCH (FLAGS (\\Flagged \\Seen \\Recent) UID 4)",
        ])
    );
    assert_eq!(
        c.ok("STORE * +FLAGS (\\Answered)"),
        ["* 4 FETCH (FLAGS (\\Answered \\Flagged \\Seen \\Recent))"]
    );
    // New keywords are permanent (\* in PERMANENTFLAGS) and show in FLAGS;
    // as in Dovecot, the mailbox's list keeps keywords no message has now.
    let select = c.select("INBOX");
    assert_eq!(select[0], "* OK [CLOSED] Previous mailbox closed");
    assert_eq!(
        select[1],
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1 Junk $Work)"
    );
    assert!(select[2].contains("\\*)]"), "{select:?}");
    // Flags that cannot be set.
    for bad in [
        "STORE 1 +FLAGS (\\Recent)",
        "STORE 1 +FLAGS (\\*)",
        "STORE 1 +FLAGS (\\Bogus)",
        "STORE 1 FLAGS.LOUD (\\Seen)",
        "STORE 1 +FLAGS",
        "STORE 1 +FLAGS (a(b)",
        "STORE 1 BOGUS (\\Seen)",
    ] {
        assert!(c.only_tagged(bad).starts_with("BAD "), "{bad}");
    }
    // Keywords are kept per message, and limited in number.
    let many: Vec<String> = (0..65).map(|i| format!("k{i}")).collect();
    assert!(c
        .only_tagged(&format!("STORE 1 +FLAGS ({})", many.join(" ")))
        .starts_with("NO [LIMIT]"));
    // They survive a new session.
    let mut other = Client::login(server.ports.imap, "alice");
    other.select("INBOX");
    assert_eq!(
        other.ok("FETCH 1:* FLAGS"),
        lines(&[
            "* 1 FETCH (FLAGS (\\Answered $Work))",
            "* 2 FETCH (FLAGS ($Work))",
            "* 3 FETCH (FLAGS (\\Seen \\Draft))",
            "* 4 FETCH (FLAGS (\\Answered \\Flagged \\Seen))",
        ])
    );
}

/// The number after `name (` or `name ` in a response line.
fn number_after(line: &str, name: &str) -> u64 {
    let at = line
        .find(name)
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        + name.len();
    let digits: String = line[at..]
        .trim_start_matches([' ', '('])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after {name} in {line}"))
}

#[test]
fn condstore_modseqs_changedsince_unchangedsince_and_search() {
    let server = started("condstore", &["alice"]);
    let mut other = mailbox_with(&server, 3);
    assert!(other.ok("CAPABILITY")[0].contains(" CONDSTORE"));
    let mut c = Client::login(server.ports.imap, "alice");
    let select = c.ok("SELECT INBOX (CONDSTORE)");
    let highest = select
        .iter()
        .find(|l| l.starts_with("* OK [HIGHESTMODSEQ "))
        .map(|l| number_after(l, "HIGHESTMODSEQ"))
        .unwrap_or_else(|| panic!("{select:?}"));
    let modseqs: Vec<u64> = c
        .ok("FETCH 1:* (MODSEQ)")
        .iter()
        .map(|l| number_after(l, "MODSEQ"))
        .collect();
    assert_eq!(modseqs.len(), 3);
    assert!(
        modseqs.iter().all(|&m| m >= 1 && m <= highest),
        "{modseqs:?}"
    );

    // A plain STORE now answers with UID and MODSEQ too.
    let stored = c.ok("STORE 2 +FLAGS (\\Flagged)");
    assert_eq!(stored.len(), 1, "{stored:?}");
    let m2 = number_after(&stored[0], "MODSEQ");
    assert!(m2 > highest);
    assert_eq!(
        stored[0],
        format!("* 2 FETCH (FLAGS (\\Flagged) UID 2 MODSEQ ({m2}))")
    );
    // CHANGEDSINCE: only what changed, with its MODSEQ.
    assert_eq!(
        c.ok(&format!("UID FETCH 1:* (FLAGS) (CHANGEDSINCE {highest})")),
        [format!("* 2 FETCH (UID 2 FLAGS (\\Flagged) MODSEQ ({m2}))")]
    );
    assert!(c
        .ok(&format!("FETCH 1:* (UID) (CHANGEDSINCE {m2})"))
        .is_empty());
    // UNCHANGEDSINCE: message 2 changed after `highest`, so it is left
    // alone and named in MODIFIED; message 1 is stored, and even .SILENT
    // tells its new MODSEQ.
    let reply = c.call(&format!(
        "STORE 1,2 (UNCHANGEDSINCE {highest}) +FLAGS.SILENT (\\Seen)"
    ));
    assert_eq!(reply.tagged, "OK [MODIFIED 2] Conditional STORE failed");
    assert_eq!(reply.lines.len(), 1, "{reply:?}");
    let m1 = number_after(&reply.lines[0], "MODSEQ");
    assert_eq!(reply.lines[0], format!("* 1 FETCH (UID 1 MODSEQ ({m1}))"));
    assert!(m1 > m2);
    assert_eq!(
        c.ok("FETCH 1:2 (FLAGS)"),
        [
            "* 1 FETCH (FLAGS (\\Seen))",
            "* 2 FETCH (FLAGS (\\Flagged))"
        ]
    );
    // SEARCH MODSEQ, and the highest MODSEQ of what it found.
    assert_eq!(
        c.ok(&format!("SEARCH MODSEQ {m2}")),
        [format!("* SEARCH 1 2 (MODSEQ {m1})")]
    );
    assert_eq!(
        c.ok(&format!("UID SEARCH RETURN (COUNT) MODSEQ {m1}")),
        [format!(
            "* ESEARCH (TAG \"{}\") UID COUNT 1 MODSEQ {m1}",
            c.last_tag()
        )]
    );
    assert_eq!(c.ok(&format!("SEARCH MODSEQ {}", m1 + 1)), ["* SEARCH"]);
    assert_eq!(
        c.ok("STATUS INBOX (HIGHESTMODSEQ MESSAGES)"),
        [format!(
            "* STATUS \"INBOX\" (HIGHESTMODSEQ {m1} MESSAGES 3)"
        )]
    );

    // Another session's change reaches this one with its MODSEQ; that
    // session, which never enabled CONDSTORE, gets none. (`other` selected
    // INBOX first, so the messages are \Recent there and not here.)
    let answered = other.ok("STORE 3 +FLAGS (\\Answered)");
    assert!(
        answered.contains(&"* 3 FETCH (FLAGS (\\Answered \\Recent))".to_string()),
        "{answered:?}"
    );
    assert!(
        !answered.iter().any(|l| l.contains("MODSEQ")),
        "{answered:?}"
    );
    let noop = c.ok("NOOP");
    assert_eq!(noop.len(), 1, "{noop:?}");
    let m3 = number_after(&noop[0], "MODSEQ");
    assert_eq!(
        noop[0],
        format!("* 3 FETCH (UID 3 FLAGS (\\Answered) MODSEQ ({m3}))")
    );
    // ENABLE while a mailbox is selected: the client hears where it stands.
    let enabled = other.ok("ENABLE CONDSTORE");
    assert!(
        enabled.contains(&"* ENABLED CONDSTORE".to_string()),
        "{enabled:?}"
    );
    assert!(
        enabled
            .iter()
            .any(|l| l.starts_with("* OK [HIGHESTMODSEQ ")),
        "{enabled:?}"
    );
    // A FETCH that sets \Seen says so with UID and MODSEQ.
    let fetched = other.ok("FETCH 2 (BODY[TEXT])").join("\n");
    assert!(
        fetched.contains(" FLAGS (\\Flagged \\Seen \\Recent) UID 2 MODSEQ ("),
        "{fetched}"
    );
}

#[test]
fn copy_move_expunge_and_uid_expunge() {
    let server = started("copymove", &["alice"]);
    let mut c = mailbox_with(&server, 11);
    c.ok("CREATE Meeting");
    let validity = |c: &mut Client, mailbox: &str| -> u32 {
        let status = c.ok(&format!("STATUS {mailbox} (UIDVALIDITY)"));
        status[0]
            .rsplit(' ')
            .next()
            .unwrap()
            .trim_end_matches(')')
            .parse()
            .unwrap()
    };
    let meeting = validity(&mut c, "Meeting");
    // COPY keeps flags and answers with COPYUID (RFC 4315).
    c.ok("STORE 2 +FLAGS.SILENT (\\Flagged $Work)");
    assert_eq!(
        c.only_tagged("COPY 2:4 Meeting"),
        format!("OK [COPYUID {meeting} 2:4 1:3] COPY completed")
    );
    assert_eq!(
        c.only_tagged("UID COPY 8,6 Meeting"),
        format!("OK [COPYUID {meeting} 6,8 4:5] COPY completed")
    );
    assert_eq!(
        c.only_tagged("COPY 1 Nope"),
        "NO [TRYCREATE] No such mailbox"
    );
    // The first SELECT of Meeting since the copies: all are \Recent there.
    let mut other = Client::login(server.ports.imap, "alice");
    other.select("Meeting");
    assert_eq!(
        other.ok("FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (Subject)])"),
        (1..=5)
            .zip([2, 3, 4, 6, 8])
            .map(|(seq, n)| {
                let flags = if n == 2 {
                    "\\Flagged \\Recent $Work"
                } else {
                    "\\Recent"
                };
                let subject = format!("Subject: m{n}\r\n\r\n");
                format!(
                    "* {seq} FETCH (UID {seq} FLAGS ({flags}) BODY[HEADER.FIELDS (Subject)] {{{}}}\r\n{subject})",
                    subject.len()
                )
            })
            .collect::<Vec<_>>()
    );
    // COPY into the selected mailbox itself: the new message shows up, and
    // is \Recent here like the eleven this session's SELECT claimed.
    let r = c.call("COPY 1 INBOX");
    assert_eq!(r.lines, ["* 12 EXISTS", "* 12 RECENT"]);
    assert!(r.tagged.starts_with("OK [COPYUID "), "{r:?}");

    // EXPUNGE: RFC 9051 §6.4.3's example (messages 3, 4, 7 and 11 deleted).
    // Sequence numbers shift with each EXPUNGE line, whatever the order.
    c.ok("STORE 3,4,7,11 +FLAGS.SILENT (\\Deleted)");
    let r = c.call("EXPUNGE");
    assert_eq!(r.tagged, "OK EXPUNGE completed");
    let mut view: Vec<u32> = (1..=12).collect();
    for line in &r.lines {
        let seq: usize = line
            .strip_prefix("* ")
            .and_then(|l| l.strip_suffix(" EXPUNGE"))
            .unwrap_or_else(|| panic!("{line}"))
            .parse()
            .unwrap();
        view.remove(seq - 1);
    }
    assert_eq!(view, [1, 2, 5, 6, 8, 9, 10, 12]);
    let uids = c.ok("FETCH 1:* UID");
    assert_eq!(
        uids,
        view.iter()
            .enumerate()
            .map(|(i, uid)| format!("* {} FETCH (UID {uid})", i + 1))
            .collect::<Vec<_>>()
    );
    assert_eq!(c.only_tagged("EXPUNGE"), "OK EXPUNGE completed");

    // UID EXPUNGE removes only the listed UIDs that are \Deleted.
    c.ok("UID STORE 1,2,5 +FLAGS.SILENT (\\Deleted)");
    let r = c.call("UID EXPUNGE 2:5,9");
    assert_eq!(r.lines, lines(&["* 3 EXPUNGE", "* 2 EXPUNGE"]));
    assert_eq!(
        c.ok("UID FETCH 1 FLAGS"),
        ["* 1 FETCH (UID 1 FLAGS (\\Deleted \\Recent))"]
    );

    // MOVE (RFC 6851): COPYUID first, then the EXPUNGEs, then OK.
    let r = c.call("MOVE 2:3 Meeting");
    assert_eq!(
        r.lines,
        lines(&[
            &format!("* OK [COPYUID {meeting} 6,8 6:7] Moved"),
            "* 3 EXPUNGE",
            "* 2 EXPUNGE",
        ])
    );
    assert_eq!(r.tagged, "OK MOVE completed");
    let r = c.call("UID MOVE 12 Meeting");
    assert_eq!(
        r.lines,
        lines(&[
            &format!("* OK [COPYUID {meeting} 12 8] Moved"),
            "* 4 EXPUNGE"
        ])
    );
    assert_eq!(
        c.only_tagged("MOVE 1 Nope"),
        "NO [TRYCREATE] No such mailbox"
    );
    assert_eq!(
        c.ok("STATUS Meeting (MESSAGES UIDNEXT)"),
        ["* STATUS \"Meeting\" (MESSAGES 8 UIDNEXT 9)"]
    );
    // The other session, idle in Meeting, learns of all eight at its next
    // NOOP; the three moved in while it had Meeting selected are \Recent
    // there too.
    assert_eq!(other.ok("NOOP"), ["* 8 EXISTS", "* 8 RECENT"]);
    // An empty result: a UID set that matches nothing.
    assert_eq!(
        c.only_tagged("UID COPY 1000:2000 Meeting"),
        "OK COPY completed"
    );
    assert_eq!(
        c.only_tagged("UID MOVE 1000:2000 Meeting"),
        "OK MOVE completed"
    );
}

/// Five messages with known headers, bodies, dates, sizes and flags, for SEARCH.
fn search_corpus() -> Vec<(&'static str, &'static str, String)> {
    vec![
        (
            "(\\Seen)",
            "\"02-Feb-2026 09:00:00 +0000\"",
            "From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nCc: carol@example.org\r\n\
             Subject: Quarterly report\r\nDate: Mon, 2 Feb 2026 09:00:00 +0000\r\n\r\nnumbers are up\r\n"
                .to_string(),
        ),
        (
            "(\\Flagged $Work)",
            "\"10-Feb-2026 12:00:00 +0100\"",
            "From: Bob <bob@example.org>\r\nTo: alice@example.org\r\n\
             Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_M=C3=BCnchen?=\r\nDate: Tue, 10 Feb 2026 12:00:00 +0100\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\nSch=C3=B6ne Gr=C3=BC=C3=9Fe\r\n"
                .to_string(),
        ),
        (
            "(\\Deleted \\Answered)",
            "\"20-Feb-2026 08:00:00 +0000\"",
            format!(
                "From: Carol <carol@example.org>\r\nTo: alice@example.org\r\nSubject: large\r\n\
                 Date: Fri, 20 Feb 2026 08:00:00 +0000\r\n\r\n{}\r\n",
                "x".repeat(5000)
            ),
        ),
        (
            "(\\Draft)",
            "\"01-Mar-2026 10:00:00 +0000\"",
            "From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nBcc: dave@example.org\r\n\
             Subject: Re: Quarterly report\r\nX-Priority: 1\r\nDate: Sun, 1 Mar 2026 10:00:00 +0000\r\n\r\n\
             see attached\r\n"
                .to_string(),
        ),
        (
            "()",
            // Late on 1 March in New York: 2 March in UTC.
            "\"01-Mar-2026 23:30:00 -0500\"",
            "From: Dave <dave@example.org>\r\nTo: alice@example.org\r\nSubject: lunch\r\n\r\nnoon?\r\n"
                .to_string(),
        ),
    ]
}

#[test]
fn search_keys() {
    let server = started("search", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    let corpus = search_corpus();
    for (flags, date, message) in &corpus {
        c.append("INBOX", &format!("{flags} {date}"), message.as_bytes());
    }
    c.select("INBOX");
    let search = |c: &mut Client, criteria: &str| -> String {
        let r = c.call(&format!("SEARCH {criteria}"));
        assert_eq!(r.tagged, "OK SEARCH completed", "{criteria}");
        assert_eq!(r.lines.len(), 1, "{criteria}: {r:?}");
        r.lines[0]
            .strip_prefix("* SEARCH")
            .unwrap()
            .trim()
            .to_string()
    };
    let sizes: Vec<usize> = corpus.iter().map(|m| m.2.len()).collect();
    let cases: Vec<(String, &str)> = vec![
        ("ALL".into(), "1 2 3 4 5"),
        ("SEEN".into(), "1"),
        ("UNSEEN".into(), "2 3 4 5"),
        ("FLAGGED".into(), "2"),
        ("UNFLAGGED".into(), "1 3 4 5"),
        ("DELETED".into(), "3"),
        ("UNDELETED".into(), "1 2 4 5"),
        ("ANSWERED".into(), "3"),
        ("UNANSWERED".into(), "1 2 4 5"),
        ("DRAFT".into(), "4"),
        ("UNDRAFT".into(), "1 2 3 5"),
        ("KEYWORD $Work".into(), "2"),
        ("UNKEYWORD $Work".into(), "1 3 4 5"),
        ("KEYWORD $Nothing".into(), ""),
        // All five arrived before this session's SELECT, which claimed
        // them: RECENT is all, NEW is RECENT UNSEEN, OLD is NOT RECENT.
        ("RECENT".into(), "1 2 3 4 5"),
        ("NEW".into(), "2 3 4 5"),
        ("OLD".into(), ""),
        ("FROM alice".into(), "1 4"),
        ("FROM \"ALICE@EXAMPLE\"".into(), "1 4"),
        ("TO alice".into(), "2 3 5"),
        ("CC carol".into(), "1"),
        ("BCC dave".into(), "4"),
        ("SUBJECT quarterly".into(), "1 4"),
        ("SUBJECT \"Re: Q\"".into(), "4"),
        ("HEADER X-Priority 1".into(), "4"),
        ("HEADER x-priority \"\"".into(), "4"),
        ("HEADER Message-ID \"\"".into(), ""),
        ("BODY numbers".into(), "1"),
        ("BODY quarterly".into(), ""),
        ("TEXT quarterly".into(), "1 4"),
        ("TEXT noon".into(), "5"),
        ("BODY xxxxxxxx".into(), "3"),
        ("OR SEEN FLAGGED".into(), "1 2"),
        ("OR (SEEN DRAFT) OR FLAGGED DELETED".into(), "2 3"),
        ("NOT SEEN".into(), "2 3 4 5"),
        ("NOT (FROM alice SUBJECT report)".into(), "2 3 5"),
        ("FROM alice NOT DRAFT".into(), "1"),
        ("((((SEEN))))".into(), "1"),
        (format!("LARGER {}", sizes[2] - 1), "3"),
        (format!("LARGER {}", sizes[2]), ""),
        (format!("SMALLER {}", sizes[4] + 1), "5"),
        ("SMALLER 1".into(), ""),
        ("BEFORE 10-Feb-2026".into(), "1"),
        ("ON 10-Feb-2026".into(), "2"),
        ("SINCE 20-Feb-2026".into(), "3 4 5"),
        // INTERNALDATE comparisons ignore time and zone: message 5 is on 1 March.
        ("ON 1-Mar-2026".into(), "4 5"),
        ("ON 2-Mar-2026".into(), ""),
        ("SENTBEFORE 10-Feb-2026".into(), "1"),
        ("SENTON 2-Feb-2026".into(), "1"),
        // Message 5 has no Date header: SENT* use its INTERNALDATE's day
        // instead (as RFC 5256 does for SORT), 1 March.
        ("SENTSINCE 20-Feb-2026".into(), "3 4 5"),
        ("SENTON \"1-Mar-2026\"".into(), "4 5"),
        ("1:3".into(), "1 2 3"),
        ("2,4:*".into(), "2 4 5"),
        ("*".into(), "5"),
        ("*:4".into(), "4 5"),
        ("1:* NOT 3".into(), "1 2 4 5"),
        ("UID 2:4".into(), "2 3 4"),
        ("UID *".into(), "5"),
        ("UID 6:100".into(), ""),
        ("UID 100:*".into(), "5"),
        ("2:3 UID 3:5".into(), "3"),
        ("CHARSET US-ASCII SUBJECT lunch".into(), "5"),
        ("CHARSET \"UTF-8\" SUBJECT lunch".into(), "5"),
    ];
    for (criteria, want) in &cases {
        assert_eq!(search(&mut c, criteria), *want, "SEARCH {criteria}");
    }
    // Non-ASCII search strings as literals, matched against decoded
    // headers (RFC 2047) and bodies (quoted-printable).
    for (key, text, want) in [
        ("SUBJECT", "münchen", "2"),
        ("SUBJECT", "Grüße", "2"),
        ("BODY", "schöne", "2"),
        ("TEXT", "grüße", "2"),
    ] {
        let tag = c.tag();
        c.send(format!("{tag} SEARCH CHARSET UTF-8 {key} {{{}}}\r\n", text.len()).as_bytes());
        assert_eq!(c.line(), "+ Ready for literal data");
        c.send(format!("{text}\r\n").as_bytes());
        let r = c.reply(&tag);
        assert_eq!(r.tagged, "OK SEARCH completed");
        assert_eq!(
            r.lines,
            [format!("* SEARCH {want}").trim_end()],
            "{key} {text}"
        );
    }
    // The same with LITERAL+ and a UTF-8 quoted string.
    c.send("x1 SEARCH CHARSET UTF-8 SUBJECT {8+}\r\nmünchen\r\n".as_bytes());
    assert_eq!(c.reply("x1").lines, ["* SEARCH 2"]);
    c.send("x2 SEARCH CHARSET UTF-8 BODY \"Grüße\"\r\n".as_bytes());
    assert_eq!(c.reply("x2").lines, ["* SEARCH 2"]);
    // UID SEARCH answers with UIDs. (Message 3 was \Deleted already.)
    c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)");
    assert_eq!(c.ok("EXPUNGE"), lines(&["* 3 EXPUNGE", "* 1 EXPUNGE"]));
    assert_eq!(c.ok("SEARCH FLAGGED"), ["* SEARCH 1"]);
    assert_eq!(c.ok("UID SEARCH FLAGGED"), ["* SEARCH 2"]);
    assert_eq!(c.ok("UID SEARCH 1:2"), ["* SEARCH 2 4"]);
    assert_eq!(c.ok("UID SEARCH UID 1:2"), ["* SEARCH 2"]);
    // Refusals.
    assert_eq!(
        c.only_tagged("SEARCH CHARSET KOI8-R SUBJECT x"),
        "NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset"
    );
    for bad in [
        "SEARCH",
        "SEARCH BOGUS",
        "SEARCH BEFORE 31-Feb-2026",
        "SEARCH BEFORE 2026-02-01",
        "SEARCH LARGER x",
        "SEARCH (SEEN",
        "SEARCH SEEN)",
        "SEARCH OR SEEN",
        "SEARCH NOT",
        "SEARCH HEADER",
        "SEARCH UID 0",
        "SEARCH 0:3",
        "SEARCH KEYWORD \\Seen",
        "SEARCH RETURN (BOGUS) ALL",
    ] {
        assert!(c.only_tagged(bad).starts_with("BAD "), "{bad}");
    }
    // In a later session none of them is recent any more.
    let mut other = Client::login(server.ports.imap, "alice");
    assert!(other.select("INBOX").contains(&"* 0 RECENT".to_string()));
    assert_eq!(other.ok("SEARCH RECENT"), ["* SEARCH"]);
    assert_eq!(other.ok("SEARCH NEW"), ["* SEARCH"]);
    assert_eq!(other.ok("SEARCH OLD"), ["* SEARCH 1 2 3"]);
}

#[test]
fn esearch_return_options_and_the_saved_result() {
    let server = started("esearch", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    for (flags, date, message) in search_corpus() {
        c.append("INBOX", &format!("{flags} {date}"), message.as_bytes());
    }
    c.select("INBOX");
    let esearch = |c: &mut Client, command: &str| -> String {
        let tag = c.tag();
        c.send(format!("{tag} {command}\r\n").as_bytes());
        let r = c.reply(&tag);
        assert_eq!(r.tagged, "OK SEARCH completed", "{command}");
        match &r.lines[..] {
            [] => String::new(),
            [line] => line
                .strip_prefix(&format!("* ESEARCH (TAG \"{tag}\")"))
                .unwrap_or_else(|| panic!("{command}: {line}"))
                .trim()
                .to_string(),
            more => panic!("{command}: {more:?}"),
        }
    };
    // RFC 4731.
    assert_eq!(
        esearch(&mut c, "SEARCH RETURN (MIN MAX COUNT) UNSEEN"),
        "MIN 2 MAX 5 COUNT 4"
    );
    assert_eq!(esearch(&mut c, "SEARCH RETURN (ALL) UNSEEN"), "ALL 2:5");
    assert_eq!(esearch(&mut c, "SEARCH RETURN () OR SEEN DRAFT"), "ALL 1,4");
    assert_eq!(esearch(&mut c, "SEARCH RETURN (COUNT) ALL"), "COUNT 5");
    assert_eq!(
        esearch(&mut c, "UID SEARCH RETURN (MIN MAX) ALL"),
        "UID MIN 1 MAX 5"
    );
    assert_eq!(
        esearch(&mut c, "UID SEARCH RETURN (ALL) UID 2:3,5"),
        "UID ALL 2:3,5"
    );
    // No match: only COUNT has something to say.
    assert_eq!(
        esearch(&mut c, "SEARCH RETURN (MIN MAX ALL COUNT) KEYWORD none"),
        "COUNT 0"
    );
    assert_eq!(esearch(&mut c, "SEARCH RETURN (MIN) KEYWORD none"), "");

    // SAVE (RFC 5182): no ESEARCH of its own; `$` in later commands.
    assert_eq!(esearch(&mut c, "SEARCH RETURN (SAVE) OR FLAGGED DRAFT"), "");
    // (All five are \Recent: they arrived before this session's SELECT.)
    assert_eq!(
        c.ok("FETCH $ (UID FLAGS)"),
        lines(&[
            "* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent $Work))",
            "* 4 FETCH (UID 4 FLAGS (\\Draft \\Recent))",
        ])
    );
    assert_eq!(c.ok("SEARCH $"), ["* SEARCH 2 4"]);
    assert_eq!(c.ok("SEARCH UID $ SEEN"), ["* SEARCH"]);
    assert_eq!(c.ok("UID SEARCH $"), ["* SEARCH 2 4"]);
    assert_eq!(
        c.ok("UID FETCH $ UID"),
        lines(&["* 2 FETCH (UID 2)", "* 4 FETCH (UID 4)"])
    );
    // $Saved is a new keyword: announced before the FETCHes that carry it.
    assert_eq!(
        c.ok("STORE $ +FLAGS ($Saved)"),
        lines(&[
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work $Saved)",
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work $Saved \\*)] Flags permitted",
            "* 2 FETCH (FLAGS (\\Flagged \\Recent $Work $Saved))",
            "* 4 FETCH (FLAGS (\\Draft \\Recent $Saved))",
        ])
    );
    assert!(c.only_tagged("COPY $ Trash").starts_with("OK [COPYUID "));
    // SAVE with other options returns them and saves everything.
    assert_eq!(
        esearch(&mut c, "SEARCH RETURN (SAVE COUNT) UNSEEN"),
        "COUNT 4"
    );
    assert_eq!(c.ok("SEARCH $"), ["* SEARCH 2 3 4 5"]);
    // SAVE with only MIN and/or MAX saves just those (RFC 5182 §2.4).
    assert_eq!(esearch(&mut c, "SEARCH RETURN (MIN SAVE) UNSEEN"), "MIN 2");
    assert_eq!(c.ok("SEARCH $"), ["* SEARCH 2"]);
    assert_eq!(
        esearch(&mut c, "SEARCH RETURN (MAX MIN SAVE) UNSEEN"),
        "MAX 5 MIN 2"
    );
    assert_eq!(c.ok("SEARCH $"), ["* SEARCH 2 5"]);
    assert_eq!(
        esearch(&mut c, "UID SEARCH RETURN (SAVE MAX) UNSEEN"),
        "UID MAX 5"
    );
    assert_eq!(c.ok("SEARCH $"), ["* SEARCH 5"]);
    assert_eq!(
        esearch(&mut c, "SEARCH RETURN (SAVE MIN ALL) DRAFT"),
        "MIN 4 ALL 4"
    );
    assert_eq!(c.ok("SEARCH $"), ["* SEARCH 4"]);
    // `$` follows its messages: after an expunge it holds the rest.
    assert_eq!(esearch(&mut c, "SEARCH RETURN (SAVE) 3:5"), "");
    c.ok("STORE 4 +FLAGS.SILENT (\\Deleted)");
    c.ok("UID EXPUNGE 4");
    assert_eq!(
        c.ok("FETCH $ UID"),
        lines(&["* 3 FETCH (UID 3)", "* 4 FETCH (UID 5)"])
    );
    // A search that fails leaves `$` empty (RFC 5182 §2.1); an empty `$` is fine.
    assert_eq!(
        c.only_tagged("SEARCH RETURN (SAVE) CHARSET KOI8-R SUBJECT x"),
        "NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset"
    );
    assert!(c.ok("FETCH $ UID").is_empty());
    assert!(c.only_tagged("FETCH $,1 UID").starts_with("BAD "));
    // SELECT empties `$` too.
    assert_eq!(esearch(&mut c, "SEARCH RETURN (SAVE) ALL"), "");
    c.select("INBOX");
    assert!(c.ok("FETCH $ UID").is_empty());
    // rev2: SEARCH always answers with ESEARCH, ALL by default.
    c.ok("ENABLE IMAP4rev2");
    assert_eq!(esearch(&mut c, "SEARCH UNSEEN"), "ALL 2:4");
    assert_eq!(esearch(&mut c, "UID SEARCH UNSEEN"), "UID ALL 2:3,5");
    assert_eq!(esearch(&mut c, "SEARCH KEYWORD none"), "");
}

#[test]
fn two_sessions_see_each_others_changes() {
    let server = started("sync", &["alice"]);
    let mut a = mailbox_with(&server, 2);
    let mut b = Client::login(server.ports.imap, "alice");
    b.select("INBOX");
    // Flags set by one session reach the other at its next command. (Both
    // messages are \Recent in `a`, whose SELECT came first, and not in `b`.)
    assert_eq!(
        b.ok("STORE 1 +FLAGS (\\Flagged)"),
        ["* 1 FETCH (FLAGS (\\Flagged))"]
    );
    assert_eq!(
        a.ok("NOOP"),
        ["* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))"]
    );
    assert!(a.ok("NOOP").is_empty(), "reported once");
    assert!(
        b.ok("NOOP").is_empty(),
        "a session's own change is not repeated"
    );
    // .SILENT hides the change from its own session only; the new keyword
    // is announced to the other session before the FETCH that carries it.
    b.ok("STORE 2 +FLAGS.SILENT ($Work)");
    assert_eq!(
        a.ok("NOOP"),
        lines(&[
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)",
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work \\*)] Flags permitted",
            "* 2 FETCH (UID 2 FLAGS (\\Recent $Work))",
        ])
    );
    // New mail, delivered or appended, arrives as EXISTS, and is \Recent in
    // the one session that hears of it first.
    deliver(&server, "alice", "delivered", "hello");
    assert_eq!(a.ok("NOOP"), ["* 3 EXISTS", "* 3 RECENT"]);
    let appended = simple_message("appended", "x");
    b.send(format!("ap APPEND INBOX (\\Seen) {{{}+}}\r\n", appended.len()).as_bytes());
    b.send(&appended);
    b.send(b"\r\n");
    // The appending session learns of both new messages with its reply;
    // message 3 is already \Recent in `a`, message 4 is in `b` alone.
    assert_eq!(b.reply("ap").lines, ["* 4 EXISTS", "* 1 RECENT"]);
    assert!(b.ok("NOOP").is_empty());
    assert_eq!(a.ok("CHECK"), ["* 4 EXISTS", "* 3 RECENT"]);
    assert_eq!(
        a.ok("FETCH 3:4 (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])"),
        lines(&[
            "* 3 FETCH (UID 3 FLAGS (\\Recent) BODY[HEADER.FIELDS (SUBJECT)] {22}\r\nSubject: delivered\r\n\r\n)",
            "* 4 FETCH (UID 4 FLAGS (\\Seen) BODY[HEADER.FIELDS (SUBJECT)] {21}\r\nSubject: appended\r\n\r\n)",
        ])
    );
    // An expunge in one session reaches the other as EXPUNGE.
    a.ok("STORE 2 +FLAGS.SILENT (\\Deleted)");
    assert_eq!(a.ok("EXPUNGE"), ["* 2 EXPUNGE"]);
    // (The \Deleted flag may be told first; the EXPUNGE must come.)
    let noop = b.ok("NOOP");
    assert_eq!(noop.last().unwrap(), "* 2 EXPUNGE", "{noop:?}");
    assert_eq!(
        b.ok("FETCH 1:* UID"),
        lines(&[
            "* 1 FETCH (UID 1)",
            "* 2 FETCH (UID 3)",
            "* 3 FETCH (UID 4)"
        ])
    );
    // Both sessions agree on STATUS-level counts.
    assert_eq!(
        a.ok("STATUS INBOX (MESSAGES UIDNEXT)"),
        b.ok("STATUS INBOX (MESSAGES UIDNEXT)")
    );
    // A session in another mailbox hears nothing; one that selects later
    // starts from the current state.
    let mut c = Client::login(server.ports.imap, "alice");
    c.select("Trash");
    b.ok("STORE 1 -FLAGS.SILENT (\\Flagged)");
    assert!(c.ok("NOOP").is_empty());
    a.ok("MOVE 1 Trash");
    // Moved in while `c` had Trash selected: \Recent there.
    assert_eq!(c.ok("NOOP"), ["* 1 EXISTS", "* 1 RECENT"]);
    assert_eq!(b.ok("NOOP"), ["* 1 EXPUNGE"]);
}

#[test]
fn expunges_wait_for_a_command_that_may_report_them() {
    let server = started("expunge-rule", &["alice"]);
    let mut a = mailbox_with(&server, 3);
    let mut b = Client::login(server.ports.imap, "alice");
    b.select("INBOX");
    b.ok("STORE 2 +FLAGS.SILENT (\\Deleted)");
    assert_eq!(b.ok("EXPUNGE"), ["* 2 EXPUNGE"]);
    b.ok("UID STORE 3 +FLAGS.SILENT (\\Flagged)");
    deliver(&server, "alice", "new", "x");

    // FETCH by sequence number: no EXPUNGE (RFC 9051 §7.5.1); message 3
    // keeps its number; the flag change and the new message may be told.
    let fetch = a.call("FETCH 1:3 (UID)");
    assert!(
        !fetch.lines.iter().any(|l| l.contains("EXPUNGE")),
        "{fetch:?}"
    );
    assert!(
        fetch.lines.contains(&"* 1 FETCH (UID 1)".to_string()),
        "{fetch:?}"
    );
    assert!(
        fetch.lines.contains(&"* 3 FETCH (UID 3)".to_string()),
        "{fetch:?}"
    );
    assert!(fetch.lines.contains(&"* 4 EXISTS".to_string()), "{fetch:?}");
    // Message 2, expunged elsewhere but still in this session's view, is
    // answered from the view, and the reply says some were expunged.
    assert!(
        fetch.lines.contains(&"* 2 FETCH (UID 2)".to_string()),
        "{fetch:?}"
    );
    assert_eq!(
        fetch.tagged,
        "OK [EXPUNGEISSUED] Some messages were already expunged"
    );
    // STORE by sequence number: still no EXPUNGE, and still the old numbers.
    let store = a.call("STORE 3 +FLAGS (\\Seen)");
    // (All three were \Recent in `a`, which selected INBOX first.)
    assert_eq!(
        store.lines,
        ["* 3 FETCH (FLAGS (\\Flagged \\Seen \\Recent))"]
    );
    assert_eq!(store.tagged, "OK STORE completed");
    // SEARCH by sequence number: none either; the expunged message, still
    // in this session's view, still counts (as FETCH and STORE answer it).
    let search = a.call("SEARCH 1:4");
    assert_eq!(search.lines, ["* SEARCH 1 2 3 4"]);
    let search = a.call("SEARCH ALL");
    assert_eq!(search.lines, ["* SEARCH 1 2 3 4"]);
    // Asking for the expunged message itself: its data as this session last
    // knew it (the \Deleted set just before the expunge was never told
    // here), and OK [EXPUNGEISSUED].
    let gone = a.call("FETCH 2 (UID FLAGS)");
    assert_eq!(gone.lines, ["* 2 FETCH (UID 2 FLAGS (\\Recent))"]);
    assert_eq!(
        gone.tagged,
        "OK [EXPUNGEISSUED] Some messages were already expunged"
    );
    // STORE on it is OK, and answers with the flags applied.
    let gone = a.call("STORE 2 +FLAGS (\\Seen)");
    assert_eq!(gone.lines, ["* 2 FETCH (FLAGS (\\Seen \\Recent))"]);
    assert_eq!(gone.tagged, "OK STORE completed");
    // A command that may report it does: NOOP (or a UID command).
    assert_eq!(a.ok("NOOP"), ["* 2 EXPUNGE"]);
    assert_eq!(
        a.ok("FETCH 1:* UID"),
        lines(&[
            "* 1 FETCH (UID 1)",
            "* 2 FETCH (UID 3)",
            "* 3 FETCH (UID 4)"
        ])
    );

    // The same through a UID command, which may report it at once.
    b.ok("UID STORE 1 +FLAGS.SILENT (\\Deleted)");
    b.ok("UID EXPUNGE 1");
    assert!(a
        .call("FETCH 1 FLAGS")
        .lines
        .iter()
        .all(|l| !l.contains("EXPUNGE")));
    assert!(a
        .call("STORE 1 -FLAGS (\\Answered)")
        .lines
        .iter()
        .all(|l| !l.contains("EXPUNGE")));
    let uid_fetch = a.call("UID FETCH 1:* (UID)");
    assert_eq!(
        uid_fetch.lines,
        lines(&["* 1 EXPUNGE", "* 1 FETCH (UID 3)", "* 2 FETCH (UID 4)"])
    );
    assert_eq!(uid_fetch.tagged, "OK FETCH completed");
}

/// Reads one line with `timeout`, as an IDLEing client waits for a push.
fn pushed(c: &mut Client, timeout: Duration) -> String {
    c.set_timeout(timeout);
    let line = c.line();
    c.set_timeout(Duration::from_secs(20));
    line
}

#[test]
fn idle_is_woken_by_delivery_by_another_session_and_by_expunge() {
    let server = started("idle", &["alice"]);
    let mut a = mailbox_with(&server, 1);
    let mut b = Client::login(server.ports.imap, "alice");
    b.select("INBOX");
    a.send(b"i1 IDLE\r\n");
    assert_eq!(a.line(), "+ idling");
    let wait = Duration::from_secs(5);
    // An LMTP delivery. The idling session hears of it first, so the new
    // message is \Recent there (as message 1 is, from its SELECT).
    deliver(&server, "alice", "pushed", "x");
    assert_eq!(pushed(&mut a, wait), "* 2 EXISTS");
    assert_eq!(pushed(&mut a, wait), "* 2 RECENT");
    // Another session's STORE.
    assert_eq!(b.ok("NOOP"), ["* 2 EXISTS", "* 0 RECENT"]);
    b.ok("STORE 1 +FLAGS (\\Flagged)");
    assert_eq!(
        pushed(&mut a, wait),
        "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))"
    );
    // Another session's EXPUNGE (the EXPUNGE is allowed while idling).
    b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)");
    let first = pushed(&mut a, wait);
    assert_eq!(
        first,
        "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Deleted \\Recent))"
    );
    b.ok("EXPUNGE");
    assert_eq!(pushed(&mut a, wait), "* 1 EXPUNGE");
    // An APPEND from another session. Both have INBOX selected, and the new
    // message is \Recent in exactly one of them: whichever hears first.
    let appended = simple_message("appended", "x");
    b.send(format!("ap APPEND INBOX {{{}+}}\r\n", appended.len()).as_bytes());
    b.send(&appended);
    b.send(b"\r\n");
    let in_b = match &b.reply("ap").lines[..] {
        [exists, recent] if exists == "* 2 EXISTS" && recent == "* 1 RECENT" => true,
        [exists, recent] if exists == "* 2 EXISTS" && recent == "* 0 RECENT" => false,
        other => panic!("{other:?}"),
    };
    assert_eq!(pushed(&mut a, wait), "* 2 EXISTS");
    // Message 2 (UID 2) is \Recent in `a` already.
    let in_a = if in_b { "* 1 RECENT" } else { "* 2 RECENT" };
    assert_eq!(pushed(&mut a, wait), in_a);
    a.send(b"DONE\r\n");
    let done = a.reply("i1");
    assert!(done.lines.is_empty(), "{done:?}");
    assert_eq!(done.tagged, "OK IDLE terminated");
    assert_eq!(
        a.ok("FETCH 1:* UID"),
        lines(&["* 1 FETCH (UID 2)", "* 2 FETCH (UID 3)"])
    );

    // Changes made just before IDLE are told when it starts.
    b.ok("STORE 1 +FLAGS.SILENT (\\Seen)");
    a.send(b"i2 IDLE\r\n");
    let start = [a.line(), a.line()];
    assert!(start.contains(&"+ idling".to_string()), "{start:?}");
    assert!(
        start.contains(&"* 1 FETCH (UID 2 FLAGS (\\Seen \\Recent))".to_string()),
        "{start:?}"
    );
    a.send(b"done\r\n");
    assert_eq!(a.reply("i2").tagged, "OK IDLE terminated");
    // Anything but DONE ends IDLE with BAD.
    a.send(b"i3 IDLE\r\n");
    assert_eq!(a.line(), "+ idling");
    a.send(b"i4 NOOP\r\n");
    assert_eq!(a.reply("i3").tagged, "BAD Expected DONE to end IDLE");
    assert_eq!(a.only_tagged("NOOP"), "OK NOOP completed");
    // IDLE without a selected mailbox waits for DONE all the same.
    let mut c = Client::login(server.ports.imap, "alice");
    c.send(b"i5 IDLE\r\n");
    assert_eq!(c.line(), "+ idling");
    deliver(&server, "alice", "unseen by c", "x");
    c.send(b"DONE\r\n");
    assert_eq!(c.reply("i5").tagged, "OK IDLE terminated");
}

#[test]
fn idle_keepalives_and_the_autologout_timer() {
    // The timers shortened by their flags (defaults: 2 and 30 minutes).
    let mut server = Server::new("timers", &["alice"]);
    server.extra_args = ["--idle-keepalive", "1", "--imap-autologout", "4"]
        .map(String::from)
        .to_vec();
    start(&mut server);
    assert!(server.log_text().contains("below the 30 minutes"));
    // A client that logs in and then says nothing.
    let mut quiet = Client::login(server.ports.imap, "alice");
    let quiet_since = Instant::now();

    let mut c = Client::login(server.ports.imap, "alice");
    c.select("INBOX");
    c.send(b"i1 IDLE\r\n");
    assert_eq!(c.line(), "+ idling");
    let idling = Instant::now();
    assert_eq!(c.line(), "* OK Still here");
    assert_eq!(c.line(), "* OK Still here");
    assert!(idling.elapsed() >= Duration::from_millis(1800));
    c.send(b"DONE\r\n");
    assert_eq!(c.reply("i1").tagged, "OK IDLE terminated");

    // Keepalives do not keep a silent IDLE alive past the autologout time.
    c.send(b"i2 IDLE\r\n");
    assert_eq!(c.line(), "+ idling");
    let idling = Instant::now();
    let mut keepalives = 0;
    loop {
        let line = c.line();
        if line == "* OK Still here" {
            keepalives += 1;
            continue;
        }
        assert_eq!(line, "* BYE Autologout: idle for too long");
        break;
    }
    assert!(keepalives >= 3, "{keepalives}");
    assert!(idling.elapsed() >= Duration::from_secs(4));
    assert!(c.closed());

    // Outside IDLE, silence alone ends the session the same way.
    assert_eq!(quiet.line(), "* BYE Autologout: idle for too long");
    assert!(quiet_since.elapsed() >= Duration::from_secs(4));
    assert!(quiet.closed());
}

#[test]
fn idle_done_pipelined_with_the_next_command() {
    let server = started("idle-pipe", &["alice"]);
    let mut a = mailbox_with(&server, 1);
    // As iOS Mail does: DONE and the next command in one write.
    for round in 0..3 {
        a.send(format!("i{round} IDLE\r\n").as_bytes());
        assert_eq!(a.line(), "+ idling");
        deliver(&server, "alice", "more", "x");
        assert_eq!(
            pushed(&mut a, Duration::from_secs(5)),
            format!("* {} EXISTS", round + 2)
        );
        a.send(format!("DONE\r\nn{round} FETCH * (UID)\r\nm{round} NOOP\r\n").as_bytes());
        assert_eq!(a.reply(&format!("i{round}")).tagged, "OK IDLE terminated");
        let fetch = a.reply(&format!("n{round}"));
        assert_eq!(fetch.lines, [format!("* {0} FETCH (UID {0})", round + 2)]);
        assert_eq!(a.reply(&format!("m{round}")).tagged, "OK NOOP completed");
    }
    // IDLE, DONE and more, all in one write.
    a.send(b"x1 IDLE\r\nDONE\r\nx2 NOOP\r\n");
    assert_eq!(a.line(), "+ idling");
    assert_eq!(a.reply("x1").tagged, "OK IDLE terminated");
    assert_eq!(a.reply("x2").tagged, "OK NOOP completed");
}

/// The session still answers, and a second client can log in and work.
fn still_healthy(server: &Server, c: &mut Client) {
    assert_eq!(c.only_tagged("NOOP"), "OK NOOP completed");
    let mut other = Client::login(server.ports.imap, "alice");
    other.select("INBOX");
    assert_eq!(other.only_tagged("NOOP"), "OK NOOP completed");
    other.ok("LOGOUT");
}

#[test]
fn unterminated_and_oversized_literals() {
    let mut server = Server::new("literals", &["alice"]);
    server.extra_args = vec!["--max-message-size".into(), "2000".into()];
    start(&mut server);
    // A client that announces a literal and sends less holds only itself.
    let mut stuck = Client::connect(server.ports.imap);
    stuck.send(b"s1 LOGIN alice {100}\r\n");
    assert_eq!(stuck.line(), "+ Ready for literal data");
    stuck.send(b"only part");
    let mut c = Client::login(server.ports.imap, "alice");
    c.select("INBOX");
    still_healthy(&server, &mut c);
    // ... and when it hangs up mid-literal, nothing is left behind.
    drop(stuck);
    let mut lplus = Client::connect(server.ports.imap);
    lplus.send(b"s2 APPEND INBOX {100+}\r\nshort");
    drop(lplus);
    still_healthy(&server, &mut c);

    // A synchronizing literal over the limit is declined before it is sent.
    assert_eq!(
        c.only_tagged("APPEND INBOX {999999999}"),
        "NO [TOOBIG] literal of 999999999 bytes is over the limit of 2000 bytes"
    );
    assert_eq!(
        c.only_tagged("APPEND INBOX {2001}"),
        "NO [TOOBIG] literal of 2001 bytes is over the limit of 2000 bytes"
    );
    assert_eq!(
        c.only_tagged("APPEND INBOX (\\Seen) {99999999999999999999999}"),
        // Too large to count: said so, not as a wrapped-around number.
        "NO [TOOBIG] literal size too large (the limit is 2000 bytes)"
    );
    still_healthy(&server, &mut c);
    // A non-synchronizing one is already on its way: skipped, then refused.
    let mut refused = b"n1 APPEND INBOX {2500+}\r\n".to_vec();
    refused.extend(std::iter::repeat_n(b'x', 2500));
    refused.extend(b"\r\nn2 NOOP\r\n");
    c.send(&refused);
    assert_eq!(
        c.reply("n1").tagged,
        "BAD [TOOBIG] literal of 2500 bytes is over the limit of 2000 bytes"
    );
    assert_eq!(c.reply("n2").tagged, "OK NOOP completed");
    // Under the limit, the message goes in.
    let fits = vec![b'y'; 2000];
    c.send(b"n3 APPEND INBOX {2000+}\r\n");
    c.send(&fits);
    c.send(b"\r\n");
    let reply = c.reply("n3");
    assert!(reply.tagged.starts_with("OK [APPENDUID "), "{reply:?}");
    // A literal in a command that is not APPEND counts against the command
    // size limit (64 KiB), not the message limit.
    let mut d = Client::connect(server.ports.imap);
    assert!(d
        .only_tagged("LOGIN alice {70000}")
        .starts_with("NO [TOOBIG]"));
    still_healthy(&server, &mut d);
    // One too big to be worth skipping ends the connection.
    let mut e = Client::login(server.ports.imap, "alice");
    e.send(b"h1 APPEND INBOX {999999999+}\r\nxxxx");
    assert_eq!(
        e.line(),
        "h1 BAD [TOOBIG] literal of 999999999 bytes is over the limit of 2000 bytes"
    );
    assert!(e.closed());
    still_healthy(&server, &mut c);
    // APPENDLIMIT tells clients the limit.
    assert!(c.ok("CAPABILITY")[0].ends_with(" APPENDLIMIT=2000"));
}

#[test]
fn hostile_syntax_is_refused_and_the_session_goes_on() {
    let server = started("hostile", &["alice"]);
    let mut c = mailbox_with(&server, 3);
    let bad = |c: &mut Client, command: &[u8]| -> String {
        let tag = c.tag();
        let mut line = format!("{tag} ").into_bytes();
        line.extend_from_slice(command);
        line.extend_from_slice(b"\r\n");
        c.send(&line);
        let reply = c.reply(&tag);
        assert!(
            reply.tagged.starts_with("BAD "),
            "{}: {reply:?}",
            lossy(command)
        );
        assert!(reply.lines.is_empty(), "{reply:?}");
        // The session goes on (and twenty unparsable commands in a row
        // would close it: see a_client_speaking_nonsense_is_cut_off…).
        assert_eq!(c.only_tagged("NOOP"), "OK NOOP completed");
        reply.tagged
    };
    // 40,000 levels of parentheses: over the 64 KiB line limit, refused
    // unparsed.
    let deep = format!("SEARCH {}ALL{}", "(".repeat(40_000), ")".repeat(40_000));
    assert_eq!(
        bad(&mut c, deep.as_bytes()),
        "BAD [TOOBIG] line longer than the limit of 65536 bytes"
    );
    // 4,000 levels fit in a line and meet the parser's depth limit.
    let deep = format!("SEARCH {}ALL{}", "(".repeat(4000), ")".repeat(4000));
    assert_eq!(
        bad(&mut c, deep.as_bytes()),
        "BAD parentheses nested deeper than 64"
    );
    let nots = format!("SEARCH {}ALL", "NOT ".repeat(2000));
    assert_eq!(
        bad(&mut c, nots.as_bytes()),
        "BAD search keys nested deeper than 64"
    );
    let ors = format!("SEARCH {}ALL{}", "OR ALL ".repeat(1000), "");
    assert!(bad(&mut c, ors.as_bytes()).contains("nested deeper than 64"));
    // Sixty levels are fine.
    assert_eq!(
        c.ok(&format!("SEARCH {}SEEN{}", "(".repeat(60), ")".repeat(60))),
        ["* SEARCH"]
    );
    // Invalid sequence sets.
    for set in [
        "0",
        "0:*",
        "*:4294967296",
        "1:4294967296",
        "4294967296",
        "1,,2",
        "1:",
        ":1",
        "-1",
        "1.5",
        "a",
    ] {
        bad(&mut c, format!("FETCH {set} FLAGS").as_bytes());
        bad(&mut c, format!("UID FETCH {set} FLAGS").as_bytes());
        bad(&mut c, format!("STORE {set} +FLAGS (\\Seen)").as_bytes());
    }
    // Out of range, the number is quoted as sent.
    assert_eq!(
        bad(&mut c, b"FETCH 1:4294967296 FLAGS"),
        "BAD sequence number 4294967296 is too large (the limit is 4294967295)"
    );
    assert_eq!(
        bad(&mut c, b"UID FETCH 99999999999999999999 FLAGS"),
        "BAD sequence number 99999999999999999999 is too large (the limit is 4294967295)"
    );
    assert!(c.ok("FETCH 4294967295 FLAGS").is_empty());
    assert!(c.ok("UID FETCH 4294967295:* UID") == ["* 3 FETCH (UID 3)"]);
    // 1,000 ranges are accepted; 1,001 are not.
    let ranges = |n: u32| {
        (0..n)
            .map(|i| (2 * i + 1).to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    assert_eq!(
        c.ok(&format!("UID FETCH {} UID", ranges(1000))),
        lines(&["* 1 FETCH (UID 1)", "* 3 FETCH (UID 3)"])
    );
    assert_eq!(
        bad(&mut c, format!("UID FETCH {} UID", ranges(1001)).as_bytes()),
        "BAD sequence set has more than 1000 ranges"
    );
    // Garbage after a command, and unknown commands.
    for garbage in [
        "NOOP garbage",
        "CAPABILITY now",
        "CHECK 1",
        "LOGOUT please",
        "SELECT INBOX extra",
        "FETCH 1 FLAGS extra",
        "UID FETCH 1 FLAGS (CHANGEDSINCE)",
        "EXPUNGE 1",
        "STATUS INBOX (MESSAGES) x",
        "LIST \"\" * x",
        "FROB",
        "UID FROB 1",
        "UID",
        "X-UNKNOWN arg",
        "SELECT",
        "SELECT \"INBOX",
        "SELECT \"IN\\BOX\"",
        "COPY 1",
        "COPY",
        "ENABLE",
    ] {
        bad(&mut c, garbage.as_bytes());
    }
    assert_eq!(c.only_tagged("FROB"), "BAD unknown command FROB");
    // Untagged junk and empty lines.
    c.send(b"\r\n");
    assert_eq!(c.line(), "* BAD empty command line");
    c.send(b"* NOOP\r\n");
    assert_eq!(c.line(), "* BAD invalid or missing tag");
    c.send(b"+ NOOP\r\n");
    assert_eq!(c.line(), "* BAD invalid or missing tag");
    c.send(b"tag\r\n");
    assert_eq!(c.line(), "tag BAD missing command after tag");
    // An overlong line (100 KB), with its tag in the reply.
    let mut long = b"long1 FETCH 1 (FLAGS".to_vec();
    long.extend(std::iter::repeat_n(b' ', 100_000));
    long.extend(b")\r\n");
    c.send(&long);
    assert_eq!(
        c.line(),
        "long1 BAD [TOOBIG] line longer than the limit of 65536 bytes"
    );
    // An overlong line without a line end in sight yet, then its end.
    c.send(&vec![b'z'; 100_000]);
    c.send(b"\r\n");
    let reply = c.line();
    assert!(reply.starts_with("z"), "{reply}");
    assert!(
        reply.ends_with(" BAD [TOOBIG] line longer than the limit of 65536 bytes"),
        "{reply}"
    );
    // NUL bytes.
    bad(&mut c, b"NOOP\0");
    bad(&mut c, b"SELECT IN\0BOX");
    assert_eq!(
        bad(&mut c, b"SELECT \"IN\0BOX\""),
        "BAD CR, LF or NUL in quoted string"
    );
    bad(&mut c, b"\0\0\0");
    // A literal is read before the command is judged; the refusal follows.
    c.send(b"n1 LOGIN {5}\r\n");
    assert_eq!(c.line(), "+ Ready for literal data");
    c.send(b"alice pw\r\n");
    assert_eq!(
        c.reply("n1").tagged,
        "BAD Command is only valid before login"
    );
    still_healthy(&server, &mut c);
    // 8-bit bytes where only ASCII belongs.
    bad(&mut c, b"FETCH 1 B\xc3\xbcDY[]");
    assert_eq!(c.ok("FETCH 1:* UID").len(), 3);
    still_healthy(&server, &mut c);
}

/// Python's imaplib does the everyday things: the same script runs over
/// plain IMAP, STARTTLS and IMAPS.
const IMAPLIB_SESSION: &str = r#"
import os, imaplib, ssl, smtplib, socket, time, re
port, sport, lport = int(os.environ['IMAP_PORT']), int(os.environ['IMAPS_PORT']), int(os.environ['LMTP_PORT'])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
mode = os.environ['MODE']
if mode == 'plain':
    M = imaplib.IMAP4('127.0.0.1', port)
    assert 'STARTTLS' in M.capabilities, M.capabilities
elif mode == 'starttls':
    M = imaplib.IMAP4('127.0.0.1', port)
    typ, _ = M.starttls(ssl_context=ctx)
    assert typ == 'OK'
    assert 'STARTTLS' not in M.capabilities, M.capabilities
else:
    M = imaplib.IMAP4_SSL('127.0.0.1', sport, ssl_context=ctx)
    assert 'STARTTLS' not in M.capabilities, M.capabilities
assert 'AUTH=PLAIN' in M.capabilities, M.capabilities
typ, data = M.login('alice', 'pw-alice')
assert typ == 'OK', data
box = 'Box-' + mode
typ, data = M.create(box); assert typ == 'OK', data
typ, data = M.list()
names = [l.decode() for l in data]
assert any(n.endswith('"/" "INBOX"') for n in names), names
assert any(n.endswith('"/" "%s"' % box) for n in names), names
msg = b'From: a@example.org\r\nSubject: hello ' + mode.encode() + b'\r\n\r\nbody text\r\n'
typ, data = M.append(box, '(\\Seen)', imaplib.Time2Internaldate(time.time()), msg)
assert typ == 'OK' and b'APPENDUID' in data[0], data
typ, data = M.append(box, None, None, b'Subject: second\r\n\r\nmore\r\n')
assert typ == 'OK', data
typ, data = M.select(box)
assert typ == 'OK' and data == [b'2'], data
typ, data = M.fetch('1', '(FLAGS RFC822)')
assert typ == 'OK' and data[0][1] == msg and b'\\Seen' in data[0][0], data
typ, data = M.uid('FETCH', '1:*', '(UID RFC822.SIZE)')
assert typ == 'OK' and len(data) == 2, data
typ, data = M.search(None, 'SUBJECT', '"hello"')
assert data == [b'1'], data
typ, data = M.search('UTF-8', 'BODY', 'more')
assert data == [b'2'], data
typ, data = M.store('2', '+FLAGS', '(\\Flagged)')
assert typ == 'OK' and b'\\Flagged' in data[0], data
typ, data = M.copy('1:2', 'INBOX')
assert typ == 'OK' and b'COPYUID' in data[0], data
typ, data = M.store('1', '+FLAGS', '\\Deleted')
typ, data = M.expunge()
assert typ == 'OK' and data == [b'1'], data
typ, data = M.status(box, '(MESSAGES UNSEEN)')
assert b'MESSAGES 1 UNSEEN 1' in data[0], data
# CONDSTORE through imaplib's generic commands: what changed since a MODSEQ.
typ, data = M.capability()
assert b' CONDSTORE' in data[0], data
typ, data = M.status(box, '(HIGHESTMODSEQ)')
highest = int(re.search(rb'HIGHESTMODSEQ (\d+)', data[0]).group(1))
typ, data = M.store('1', '+FLAGS', '(\\Answered)')
assert typ == 'OK' and b'MODSEQ' in data[0], data
typ, data = M.uid('FETCH', '1:*', '(FLAGS) (CHANGEDSINCE %d)' % highest)
assert typ == 'OK' and len(data) == 1 and b'\\Answered' in data[0] and b'MODSEQ' in data[0], data
# IDLE through raw commands on imaplib's connection.
tag = M._new_tag()
M.send(tag + b' IDLE\r\n')
assert M.readline().startswith(b'+'), 'no continuation'
M.sock.settimeout(5)
l = smtplib.LMTP('127.0.0.1', lport)
l.sendmail('s@example.org', ['alice+' + box + '@example.org'], b'Subject: pushed\r\n\r\nx\r\n')
l.quit()
line = M.readline()
assert line == b'* 2 EXISTS\r\n', line
# Both messages are \Recent in this session: the one left from its SELECT,
# and the one delivered while it has the mailbox selected.
line = M.readline()
assert line == b'* 2 RECENT\r\n', line
M.send(b'DONE\r\n')
line = M.readline()
assert line.startswith(tag + b' OK'), line
M.sock.settimeout(None)
typ, data = M.noop()
assert typ == 'OK'
M.close()
M.logout()
print('ok')
"#;

#[test]
fn a_client_speaking_nonsense_is_cut_off_after_twenty_bad_commands() {
    let server = started("nonsense", &["alice"]);
    // Nineteen BADs, then a good command: the count starts again.
    let mut c = Client::login(server.ports.imap, "alice");
    for round in 0..3 {
        for i in 0..19 {
            let tag = format!("b{round}x{i}");
            c.send(format!("{tag} FROB\r\n").as_bytes());
            assert!(c.reply(&tag).tagged.starts_with("BAD "));
        }
        assert_eq!(c.only_tagged("NOOP"), "OK NOOP completed");
    }
    // A web form posted at the IMAP port, as a cross-protocol attack would.
    let mut web = Client::connect(server.ports.imap);
    let mut post = String::from("POST /form HTTP/1.1\r\nHost: mail.example.org\r\n");
    for i in 0..30 {
        post.push_str(&format!("X-Filler-{i}: a1 LOGIN alice secret\r\n"));
    }
    post.push_str("\r\n");
    web.send(post.as_bytes());
    let mut lines = Vec::new();
    loop {
        let line = web.line();
        if line.is_empty() || line.starts_with("* BYE") {
            lines.push(line);
            break;
        }
        lines.push(line);
    }
    assert_eq!(
        lines.last().map(String::as_str),
        Some("* BYE Too many invalid commands"),
        "{lines:?}"
    );
    assert_eq!(lines.len(), 21, "{lines:?}");
    assert!(lines[..20].iter().all(|l| l.contains(" BAD ")), "{lines:?}");
    assert!(web.closed());
    still_healthy(&server, &mut c);
}

#[test]
fn imaplib_over_plain_starttls_and_imaps() {
    let server = started("imaplib", &["alice"]);
    for mode in ["plain", "starttls", "imaps"] {
        let mut cmd = Command::new("python3");
        cmd.arg("-c")
            .arg(IMAPLIB_SESSION)
            .env("IMAP_PORT", server.ports.imap.to_string())
            .env("IMAPS_PORT", server.ports.imaps.to_string())
            .env("LMTP_PORT", server.ports.lmtp.to_string())
            .env("MODE", mode);
        let out = run_with_stdin(cmd, b"");
        assert!(
            out.status.success() && out.stdout_text().trim() == "ok",
            "{mode}: {}\n{}",
            out.stdout_text(),
            out.stderr_text()
        );
    }
    // Every session's INBOX copies landed in INBOX.
    let mut c = Client::login(server.ports.imap, "alice");
    assert_eq!(
        c.ok("STATUS INBOX (MESSAGES)"),
        ["* STATUS \"INBOX\" (MESSAGES 6)"]
    );
}

#[test]
fn imaplib_refuses_bad_passwords_and_reports_errors() {
    let server = started("imaplib-errors", &["alice"]);
    python_ok(
        &server,
        r#"
import os, imaplib
M = imaplib.IMAP4('127.0.0.1', int(os.environ['IMAP_PORT']))
try:
    M.login('alice', 'wrong'); raise SystemExit('accepted a wrong password')
except imaplib.IMAP4.error as e:
    assert 'AUTHENTICATIONFAILED' in str(e), e
typ, data = M.authenticate('PLAIN', lambda _: b'\0alice\0pw-alice')
assert typ == 'OK', data
typ, data = M.select('Nope')
assert typ == 'NO' and b'NONEXISTENT' in data[0], data
M.select('INBOX')
try:
    M.fetch('0', '(FLAGS)'); raise SystemExit('FETCH 0 accepted')
except imaplib.IMAP4.error as e:
    assert 'numbers start at 1' in str(e), e
typ, data = M.noop()
assert typ == 'OK'
M.logout()
print('ok')
"#,
    );
}

#[test]
fn curl_lists_fetches_appends_and_searches_over_imap_and_imaps() {
    let server = started("curl", &["alice"]);
    let message = "From: curl@example.org\r\nSubject: uploaded by curl\r\n\r\nhello from curl\r\n";
    let file = server.dir.0.join("upload.eml");
    std::fs::write(&file, message).unwrap();
    let file = file.to_str().unwrap();
    for (scheme, port, tls) in [
        ("imap", server.ports.imap, &[][..]),
        ("imaps", server.ports.imaps, &["-k"][..]),
        ("imap", server.ports.imap, &["-k", "--ssl-reqd"][..]),
    ] {
        let base = format!("{scheme}://127.0.0.1:{port}/");
        let run = |extra: &[&str]| {
            let mut args = tls.to_vec();
            args.extend_from_slice(&["-u", "alice:pw-alice"]);
            args.extend_from_slice(extra);
            let out = curl(&args);
            out.assert_ok();
            out.stdout_text()
        };
        let list = run(&[&base]);
        assert!(
            list.contains("* LIST (\\HasNoChildren) \"/\" \"INBOX\""),
            "{list}"
        );
        assert!(list.contains("\\Sent) \"/\" \"Sent\""), "{list}");
        // Upload is an APPEND.
        run(&["-T", file, &format!("{base}INBOX")]);
        let search = run(&[
            "-X",
            "SEARCH SUBJECT \"uploaded by curl\"",
            &format!("{base}INBOX"),
        ]);
        let found: Vec<&str> = search
            .trim()
            .strip_prefix("* SEARCH")
            .unwrap()
            .split_whitespace()
            .collect();
        assert!(!found.is_empty(), "{search}");
        let uid = found.last().unwrap();
        let fetched = run(&[&format!("{base}INBOX;UID={uid}")]);
        assert_eq!(fetched, message);
        let section = run(&[&format!("{base}INBOX;UID={uid};SECTION=TEXT")]);
        assert_eq!(section, "hello from curl\r\n");
        let nothing = run(&[
            "-X",
            "SEARCH SUBJECT \"not there\"",
            &format!("{base}INBOX"),
        ]);
        assert_eq!(nothing.trim(), "* SEARCH");
    }
    // A wrong password fails.
    let wrong = curl(&[
        "-u",
        "alice:nope",
        &format!("imap://127.0.0.1:{}/", server.ports.imap),
    ]);
    assert!(!wrong.status.success());
    let mut c = Client::login(server.ports.imap, "alice");
    assert_eq!(
        c.ok("STATUS INBOX (MESSAGES)"),
        ["* STATUS \"INBOX\" (MESSAGES 3)"]
    );
}

#[test]
fn logindisabled_off_loopback_until_starttls() {
    let Some(host) = TestHost::create() else {
        eprintln!("skipped: making a network namespace needs root and iproute2");
        return;
    };
    let script = r#"
import os, imaplib, ssl
ip, port = os.environ['SERVER_IP'], int(os.environ['IMAP_PORT'])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
M = imaplib.IMAP4(ip, port, timeout=20)
caps = M.capabilities
print('caps', 'LOGINDISABLED' in caps, 'STARTTLS' in caps, 'AUTH=PLAIN' in caps)
for attempt in ('login', 'authenticate'):
    P = imaplib.IMAP4(ip, port, timeout=20)
    try:
        if attempt == 'login':
            P.login('alice', 'pw-alice')
        else:
            P.authenticate('PLAIN', lambda _: b'\0alice\0pw-alice')
        print(attempt, 'accepted')
    except imaplib.IMAP4.error as e:
        print(attempt, 'refused', e)
M.starttls(ssl_context=ctx)
caps = M.capabilities
print('after tls', 'LOGINDISABLED' in caps, 'STARTTLS' in caps, 'AUTH=PLAIN' in caps)
typ, _ = M.login('alice', 'pw-alice')
print('login over STARTTLS', typ)
M.logout()
"#;
    for allow in [false, true] {
        let mut server = Server::new("offloopback", &["alice"]);
        server.bind_ip = "0.0.0.0".into();
        if allow {
            server.extra_args.push("--allow-plaintext-auth".into());
        }
        start(&mut server);
        let out = host.python(
            script,
            &[
                ("SERVER_IP", TestHost::SERVER_IP.into()),
                ("IMAP_PORT", server.ports.imap.to_string()),
            ],
        );
        let text = out.stdout_text();
        assert!(out.status.success(), "{text}\n{}", out.stderr_text());
        if allow {
            assert!(text.contains("caps False True True"), "{text}");
            assert!(text.contains("login accepted"), "{text}");
            assert!(text.contains("authenticate accepted"), "{text}");
            assert!(text.contains("login over STARTTLS OK"), "{text}");
        } else {
            assert!(text.contains("caps True True False"), "{text}");
            assert!(
                text.contains("[PRIVACYREQUIRED] Plaintext login is not allowed"),
                "{text}"
            );
            assert!(
                text.contains("authenticate refused [PRIVACYREQUIRED]"),
                "{text}"
            );
            assert!(text.contains("after tls False False True"), "{text}");
            assert!(text.contains("login over STARTTLS OK"), "{text}");
        }
    }
}

#[test]
fn connections_per_ip_are_limited() {
    let mut server = Server::new("limit", &["alice"]);
    server.extra_args = vec!["--max-connections-per-ip".into(), "3".into()];
    start(&mut server);
    let mut open: Vec<Client> = (0..3).map(|_| Client::connect(server.ports.imap)).collect();
    let (mut fourth, greeting) = Client::connect_greeting(server.ports.imap);
    assert!(greeting.starts_with("* BYE [UNAVAILABLE] "), "{greeting}");
    assert!(fourth.closed());
    // IMAPS counts too: turned away (how it is told is the next test's business).
    let tls = python(
        &server,
        r#"
import os, imaplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
try:
    imaplib.IMAP4_SSL('127.0.0.1', int(os.environ['IMAPS_PORT']), ssl_context=ctx)
    print('accepted')
except Exception as e:
    print('refused', e)
"#,
    );
    assert!(
        tls.stdout_text().starts_with("refused"),
        "{}",
        tls.stdout_text()
    );
    // The ones let in work; when one leaves, a newcomer gets its place.
    assert_eq!(open[0].only_tagged("NOOP"), "OK NOOP completed");
    open.pop().unwrap().ok("LOGOUT");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (mut c, greeting) = Client::connect_greeting(server.ports.imap);
        if greeting.starts_with("* OK ") {
            assert!(c.call("LOGIN alice pw-alice").is_ok());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed place was not given back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn imaps_connections_over_the_limit_are_told_why_inside_tls() {
    let mut server = Server::new("limit-tls", &["alice"]);
    server.extra_args = vec!["--max-connections-per-ip".into(), "1".into()];
    start(&mut server);
    let _first = Client::connect(server.ports.imap);
    let out = python(
        &server,
        r#"
import os, socket, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(os.environ['IMAPS_PORT']))))
print(s.recv(1000).decode())
"#,
    );
    assert!(
        out.stdout_text().starts_with("* BYE [UNAVAILABLE] "),
        "{}\n{}",
        out.stdout_text(),
        out.stderr_text()
    );
}

#[test]
fn odd_mailbox_names_round_trip() {
    let server = started("names", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    c.ok("CREATE \"q\\\"uote\"");
    c.ok("CREATE \"back\\\\slash\"");
    c.send(b"l1 CREATE {6+}\r\nsp ace\r\n");
    assert_eq!(c.reply("l1").tagged, "OK CREATE completed");
    c.ok("CREATE \"T&AOQ-st\"");
    assert_eq!(
        c.ok("LIST \"\" *"),
        lines(&[
            "* LIST (\\HasNoChildren \\Archive) \"/\" \"Archive\"",
            "* LIST (\\HasNoChildren \\Drafts) \"/\" \"Drafts\"",
            "* LIST (\\HasNoChildren) \"/\" \"INBOX\"",
            "* LIST (\\HasNoChildren \\Junk) \"/\" \"Junk\"",
            "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"",
            "* LIST (\\HasNoChildren \\Trash) \"/\" \"Trash\"",
            // In the order of the stored (UTF-8) names: "Täst".
            "* LIST (\\HasNoChildren) \"/\" \"T&AOQ-st\"",
            "* LIST (\\HasNoChildren) \"/\" \"back\\\\slash\"",
            "* LIST (\\HasNoChildren) \"/\" \"q\\\"uote\"",
            "* LIST (\\HasNoChildren) \"/\" \"sp ace\"",
        ])
    );
    for name in [
        "\"q\\\"uote\"",
        "\"back\\\\slash\"",
        "\"sp ace\"",
        "T&AOQ-st",
    ] {
        c.select(name);
        c.append(name, "", b"x");
    }
    assert_eq!(
        c.ok("STATUS \"sp ace\" (MESSAGES)"),
        ["* STATUS \"sp ace\" (MESSAGES 1)"]
    );
    // Broken modified UTF-7 from a rev1 client is well-formed IMAP that
    // names no mailbox: NO, not BAD.
    assert!(c
        .only_tagged("CREATE \"bad&utf7\"")
        .starts_with("NO [CANNOT]"));
    // The same name, UTF-8 once enabled.
    c.ok("ENABLE UTF8=ACCEPT");
    assert!(c
        .ok("LIST \"\" T*")
        .contains(&"* LIST (\\HasNoChildren) \"/\" \"Täst\"".to_string()));
    assert_eq!(
        c.only_tagged("CREATE \"Täst\""),
        "NO [ALREADYEXISTS] Mailbox already exists"
    );
    assert_eq!(
        c.ok("STATUS \"Täst\" (MESSAGES)"),
        ["* STATUS \"Täst\" (MESSAGES 1)"]
    );
    // Empty names are refused: well-formed, so NO.
    assert_eq!(
        c.only_tagged("CREATE \"\""),
        "NO [CANNOT] Empty mailbox name"
    );
    assert_eq!(
        c.call("SELECT \"\"").tagged,
        "NO [NONEXISTENT] Empty mailbox name"
    );
}

#[test]
fn a_selected_mailbox_deleted_or_renamed_elsewhere() {
    let server = started("gone", &["alice"]);
    let mut a = Client::login(server.ports.imap, "alice");
    a.ok("CREATE Tmp");
    a.append("Tmp", "", b"one");
    a.append("Tmp", "", b"two");
    a.select("Tmp");
    let mut b = Client::login(server.ports.imap, "alice");
    // Renamed: the session keeps its messages.
    b.ok("RENAME Tmp Tmp2");
    assert!(a.ok("NOOP").is_empty());
    assert_eq!(
        a.ok("FETCH 1:* UID"),
        lines(&["* 1 FETCH (UID 1)", "* 2 FETCH (UID 2)"])
    );
    // Deleted: every message goes, reported as EXPUNGE when allowed.
    b.ok("DELETE Tmp2");
    let fetch = a.call("FETCH 1:* UID");
    assert!(
        !fetch.lines.iter().any(|l| l.contains("EXPUNGE")),
        "{fetch:?}"
    );
    assert_eq!(a.ok("NOOP"), lines(&["* 2 EXPUNGE", "* 1 EXPUNGE"]));
    assert!(a.ok("FETCH 1:* UID").is_empty());
    assert!(a.ok("SEARCH ALL") == ["* SEARCH"]);
    assert_eq!(a.only_tagged("EXPUNGE"), "NO [NONEXISTENT] No such mailbox");
    // A new mailbox of the same name is a different mailbox.
    b.ok("CREATE Tmp2");
    b.append("Tmp2", "", b"three");
    assert!(a.ok("NOOP").is_empty());
    assert_eq!(a.only_tagged("CLOSE"), "OK CLOSE completed");
    let select = a.select("Tmp2");
    assert!(select.contains(&"* 1 EXISTS".to_string()), "{select:?}");
}

#[test]
fn starttls_drops_pipelined_plaintext_and_cannot_be_repeated() {
    let server = started("starttls", &["alice"]);
    python_ok(
        &server,
        r#"
import os, socket, ssl
port, sport = int(os.environ['IMAP_PORT']), int(os.environ['IMAPS_PORT'])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = socket.create_connection(('127.0.0.1', port))
f = s.makefile('rb')
assert f.readline().startswith(b'* OK')
# A command injected behind STARTTLS in the same packet must not run inside TLS.
s.sendall(b'a STARTTLS\r\nb LOGIN alice pw-alice\r\n')
line = f.readline()
assert line == b'a OK Begin TLS negotiation now\r\n', line
t = ctx.wrap_socket(s)
g = t.makefile('rb')
t.sendall(b'c NOOP\r\nd STARTTLS\r\ne SELECT INBOX\r\nf CAPABILITY\r\n')
got = [g.readline() for _ in range(5)]
assert got[0] == b'c OK NOOP completed\r\n', got
assert got[1] == b'd BAD TLS is already active\r\n', got
assert got[2] == b'e BAD Command is only valid after login\r\n', got
assert b'STARTTLS' not in got[3] and b'AUTH=PLAIN' in got[3], got
# IMAPS: STARTTLS makes no sense either.
u = ctx.wrap_socket(socket.create_connection(('127.0.0.1', sport)))
h = u.makefile('rb')
greeting = h.readline()
assert b'STARTTLS' not in greeting, greeting
u.sendall(b'a STARTTLS\r\n')
assert h.readline() == b'a BAD TLS is already active\r\n'
print('ok')
"#,
    );
}

#[test]
fn large_fetches_arrive_whole() {
    let server = started("large", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    for i in 0..10 {
        let body = format!("{i:04} {}\r\n", "x".repeat(2000));
        c.append("INBOX", "", &simple_message(&format!("big{i}"), &body));
    }
    c.select("INBOX");
    // Double up to 320 messages, some 650 KB in all: several flushes and
    // yields in one FETCH. Every message is \Recent in this session: the
    // first ten from its SELECT, the copies because it has INBOX selected
    // as they arrive.
    for exists in [20, 40, 80, 160, 320] {
        let copy = c.call("COPY 1:* INBOX");
        assert_eq!(
            copy.lines,
            [format!("* {exists} EXISTS"), format!("* {exists} RECENT")]
        );
    }
    let fetch = c.call("FETCH 1:* (UID RFC822.SIZE BODY.PEEK[TEXT])");
    assert_eq!(fetch.tagged, "OK FETCH completed");
    assert_eq!(fetch.lines.len(), 320);
    for (i, line) in fetch.lines.iter().enumerate() {
        let n = i % 10;
        assert!(
            line.starts_with(&format!("* {} FETCH (UID {} RFC822.SIZE ", i + 1, i + 1)),
            "{}",
            &line[..60]
        );
        assert!(
            line.ends_with(&format!("{n:04} {}\r\n\r\n)", "x".repeat(2000))),
            "{i}"
        );
    }
    // The same with UIDs and pipelined behind another command.
    c.send(b"p1 UID FETCH 1:* (FLAGS)\r\np2 NOOP\r\n");
    assert_eq!(c.reply("p1").lines.len(), 320);
    assert_eq!(c.reply("p2").tagged, "OK NOOP completed");
    assert_eq!(
        c.ok("SEARCH BODY 0007"),
        [format!(
            "* SEARCH {}",
            (1..=32)
                .map(|k| (10 * (k - 1) + 8).to_string())
                .collect::<Vec<_>>()
                .join(" ")
        )]
    );
    // A client that hangs up in the middle of a large FETCH harms no one.
    for _ in 0..3 {
        let mut quitter = Client::login(server.ports.imap, "alice");
        quitter.select("INBOX");
        quitter.send(b"q1 FETCH 1:* BODY.PEEK[]\r\n");
        quitter.line();
    }
    still_healthy(&server, &mut c);
    // Two thousand commands in one write are all answered, in order.
    let mut burst = Vec::new();
    for i in 0..2000 {
        burst.extend_from_slice(format!("b{i} FETCH {} (UID)\r\n", i % 320 + 1).as_bytes());
    }
    c.send(&burst);
    for i in 0..2000 {
        let reply = c.reply(&format!("b{i}"));
        assert_eq!(reply.tagged, "OK FETCH completed");
        assert_eq!(reply.lines, [format!("* {0} FETCH (UID {0})", i % 320 + 1)]);
    }
}

#[test]
fn every_uid_command_takes_uids() {
    let server = started("uids", &["alice"]);
    let mut c = mailbox_with(&server, 6);
    // Gaps, so that UIDs and sequence numbers differ: UIDs 2 3 5 6. (All
    // are \Recent here: they arrived before this session's SELECT.)
    c.ok("STORE 1,4 +FLAGS.SILENT (\\Deleted)");
    c.ok("EXPUNGE");
    assert_eq!(
        c.ok("UID FETCH 3:5 (FLAGS)"),
        lines(&[
            "* 2 FETCH (UID 3 FLAGS (\\Recent))",
            "* 3 FETCH (UID 5 FLAGS (\\Recent))"
        ])
    );
    // `*` is the highest UID, even below the range's start (RFC 9051 §9).
    assert_eq!(c.ok("UID FETCH 100:* UID"), ["* 4 FETCH (UID 6)"]);
    assert_eq!(c.ok("UID FETCH 4 UID"), Vec::<String>::new());
    assert_eq!(c.ok("UID SEARCH UID 1:4"), ["* SEARCH 2 3"]);
    assert_eq!(c.ok("UID SEARCH 2"), ["* SEARCH 3"]);
    assert_eq!(
        c.ok("UID STORE 5:6 +FLAGS (\\Answered)"),
        lines(&[
            "* 3 FETCH (FLAGS (\\Answered \\Recent) UID 5)",
            "* 4 FETCH (FLAGS (\\Answered \\Recent) UID 6)",
        ])
    );
    let validity = c.ok("STATUS Trash (UIDVALIDITY)")[0]
        .rsplit(' ')
        .next()
        .unwrap()
        .trim_end_matches(')')
        .to_string();
    assert_eq!(
        c.only_tagged("UID COPY 1:3 Trash"),
        format!("OK [COPYUID {validity} 2:3 1:2] COPY completed")
    );
    let moved = c.call("UID MOVE 6,3 Trash");
    assert_eq!(
        moved.lines,
        lines(&[
            &format!("* OK [COPYUID {validity} 3,6 3:4] Moved"),
            "* 4 EXPUNGE",
            "* 2 EXPUNGE",
        ])
    );
    c.ok("UID STORE 2 +FLAGS.SILENT (\\Deleted)");
    assert_eq!(c.ok("UID EXPUNGE 1:4"), ["* 1 EXPUNGE"]);
    assert_eq!(c.ok("UID FETCH 1:* UID"), ["* 1 FETCH (UID 5)"]);
    // RFC 9051 §6.4.5's example, by UID.
    c.append("INBOX", "", b"Date: Wed, 17 Jul 1996 02:23:25 -0700\r\nFrom: Terry Gray <gray@cac.washington.edu>\r\nSubject: IMAP4rev2 WG mtg summary\r\n\r\nbody\r\n");
    c.ok("NOOP");
    let want = "Date: Wed, 17 Jul 1996 02:23:25 -0700\r\nFrom: Terry Gray <gray@cac.washington.edu>\r\n\r\n";
    assert_eq!(
        c.ok("UID FETCH 7 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])"),
        [format!(
            "* 2 FETCH (UID 7 FLAGS (\\Seen \\Recent) BODY[HEADER.FIELDS (DATE FROM)] {{{}}}\r\n{want})",
            want.len()
        )]
    );
}

#[test]
fn a_refused_rename_changes_nothing() {
    let server = started("rename-atomic", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    c.ok("CREATE aa/b");
    c.ok("CREATE aa/c");
    // RENAME makes the levels above its new name, so "zz" exists here too.
    c.ok("CREATE y/b");
    c.ok("RENAME y/b zz/b");
    let before = c.ok("LIST \"\" *");
    assert!(
        before.contains(&"* LIST (\\HasChildren) \"/\" \"zz\"".to_string()),
        "{before:?}"
    );
    assert_eq!(
        c.only_tagged("RENAME aa zz"),
        "NO [ALREADYEXISTS] Mailbox already exists"
    );
    assert_eq!(
        c.only_tagged("RENAME aa/b zz/b"),
        "NO [ALREADYEXISTS] Mailbox already exists"
    );
    assert_eq!(
        c.ok("LIST \"\" *"),
        before,
        "a refused RENAME must change nothing"
    );
}

#[test]
fn random_command_lines_never_break_the_session() {
    let server = started("random", &["alice"]);
    let mut c = mailbox_with(&server, 5);
    c.ok("STORE 2 +FLAGS ($Work \\Seen)");
    const TOKENS: &[&str] = &[
        "FETCH",
        "UID",
        "SEARCH",
        "STORE",
        "COPY",
        "MOVE",
        "EXPUNGE",
        "LIST",
        "LSUB",
        "STATUS",
        "SELECT",
        "EXAMINE",
        "CREATE",
        "ENABLE",
        "ID",
        "NOOP",
        "CHECK",
        "NAMESPACE",
        "LOGIN",
        "1",
        "2",
        "*",
        "0",
        "4294967295",
        "4294967296",
        "99999999999999999999",
        ":",
        ",",
        "$",
        "(",
        ")",
        "[",
        "]",
        "<",
        ">",
        ".",
        "\"",
        "\\",
        "{",
        "}",
        "+",
        "-",
        "~",
        "%",
        "=",
        "BODY",
        "BODY.PEEK",
        "BINARY",
        "BINARY.SIZE",
        "HEADER",
        "HEADER.FIELDS",
        "HEADER.FIELDS.NOT",
        "TEXT",
        "MIME",
        "ENVELOPE",
        "BODYSTRUCTURE",
        "FLAGS",
        "+FLAGS",
        "-FLAGS.SILENT",
        "\\Seen",
        "\\Deleted",
        "\\Recent",
        "\\*",
        "$Work",
        "ALL",
        "OR",
        "NOT",
        "RETURN",
        "MIN",
        "MAX",
        "COUNT",
        "SAVE",
        "CHARSET",
        "UTF-8",
        "SUBJECT",
        "HEADER",
        "BEFORE",
        "1-Jan-2026",
        "31-Feb-2026",
        "LARGER",
        "SMALLER",
        "INBOX",
        "Trash",
        "NIL",
        "SUBSCRIBED",
        "CHILDREN",
        "SPECIAL-USE",
        "MESSAGES",
        "UIDNEXT",
        "IMAP4rev2",
        "UTF8=ACCEPT",
        "\u{e9}",
        "\u{7f}",
        "\t",
        "\0",
        " ",
        " ",
        " ",
        " ",
    ];
    let mut seed: u64 = 0x5eed_1e77_e2b0_c0de;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as usize) % n
    };
    for i in 0..3000 {
        let mut line = String::new();
        for _ in 0..1 + next(12) {
            line.push_str(TOKENS[next(TOKENS.len())]);
            if next(3) > 0 {
                line.push(' ');
            }
        }
        // A literal announcement at the end would wait for its data.
        if line.trim_end().ends_with('}') {
            line.push_str(" x");
        }
        let tag = format!("r{i}");
        c.send(format!("{tag} {line}\r\n").as_bytes());
        let reply = c.reply(&tag);
        assert!(
            ["OK ", "NO ", "BAD "]
                .iter()
                .any(|s| reply.tagged.starts_with(s)),
            "{line:?}: {reply:?}"
        );
        if !matches!(c.call("NOOP").tagged.as_str(), "OK NOOP completed") {
            panic!("after {line:?} the session is broken");
        }
        // SELECT and EXAMINE that fail leave no mailbox selected.
        if i % 50 == 0 {
            c.call("SELECT INBOX");
        }
    }
    still_healthy(&server, &mut c);
}

#[test]
fn uidvalidity_and_uids_survive_a_restart_and_are_never_reused() {
    let mut server = started("restart", &["alice"]);
    let mut c = mailbox_with(&server, 3);
    c.ok("STORE 3 +FLAGS.SILENT (\\Deleted)");
    c.ok("EXPUNGE");
    let before = c.ok("STATUS INBOX (UIDNEXT UIDVALIDITY MESSAGES)");
    assert!(before[0].contains("UIDNEXT 4 "), "{before:?}");
    drop(c);
    server.stop();
    start(&mut server);
    let mut c = Client::login(server.ports.imap, "alice");
    assert_eq!(c.ok("STATUS INBOX (UIDNEXT UIDVALIDITY MESSAGES)"), before);
    assert_eq!(appenduid(&c.call("APPEND INBOX {1+}\r\nx").tagged).1, 4);
    c.select("INBOX");
    assert_eq!(
        c.ok("UID FETCH 1:* UID"),
        lines(&[
            "* 1 FETCH (UID 1)",
            "* 2 FETCH (UID 2)",
            "* 3 FETCH (UID 4)"
        ])
    );
}
