//! SORT, ESORT, THREAD and WITHIN against the real binary.
//!
//! The fixed message set (tests/fixtures/sort_thread_set.py) is appended
//! and queried through Python's imaplib, with SORT and THREAD sent as raw
//! commands. The expected answers are Dovecot 2.3's, recorded once by
//! running that same script against a private Dovecot
//! (benches/dovecot/setup.sh, 2026-11-30); this test does not need Dovecot.

mod common;

use common::imap_client::*;
use common::*;

const SET_SCRIPT: &str = include_str!("fixtures/sort_thread_set.py");

/// Dovecot's answers over the fixed set, in the script's command order.
const DOVECOT_ANSWERS: &[(&str, &str)] = &[
    (
        "SORT (ARRIVAL) UTF-8 ALL",
        "* SORT 6 1 2 3 4 5 7 8 9 10 11 12 13 14 15",
    ),
    (
        "SORT (DATE) UTF-8 ALL",
        "* SORT 6 1 2 3 4 5 8 7 9 10 11 12 13 15 14",
    ),
    (
        "SORT (REVERSE DATE) UTF-8 ALL",
        "* SORT 14 15 13 12 11 10 9 7 8 5 4 3 2 1 6",
    ),
    (
        "SORT (SUBJECT) UTF-8 ALL",
        "* SORT 13 12 14 15 6 7 8 1 2 3 9 10 11 4 5",
    ),
    (
        "SORT (SUBJECT REVERSE DATE) UTF-8 ALL",
        "* SORT 13 12 14 15 7 8 6 9 3 2 1 11 10 5 4",
    ),
    (
        "SORT (FROM) UTF-8 ALL",
        "* SORT 13 4 11 2 3 15 5 6 14 7 8 12 10 1 9",
    ),
    (
        "SORT (TO) UTF-8 ALL",
        "* SORT 13 1 10 12 14 15 3 2 6 5 7 8 4 9 11",
    ),
    (
        "SORT (CC) UTF-8 ALL",
        "* SORT 1 2 4 5 7 8 9 10 11 12 13 14 15 6 3",
    ),
    (
        "SORT (SIZE) UTF-8 ALL",
        "* SORT 13 5 15 12 9 1 8 10 11 6 14 3 4 2 7",
    ),
    (
        "SORT (DISPLAYFROM) UTF-8 ALL",
        "* SORT 13 11 2 4 3 15 5 6 7 14 8 12 10 9 1",
    ),
    (
        "SORT (DISPLAYTO) UTF-8 ALL",
        "* SORT 13 1 10 12 14 15 3 2 6 5 7 8 4 9 11",
    ),
    (
        "SORT (REVERSE SIZE) US-ASCII SINCE 5-Feb-2026",
        "* SORT 7 14 11 10 8 9 12 15 5 13",
    ),
    // REVERSE turns its key around, never the mailbox order of ties.
    (
        "SORT (REVERSE SUBJECT) UTF-8 ALL",
        "* SORT 4 5 10 11 1 2 3 9 6 7 8 14 15 12 13",
    ),
    (
        "SORT (REVERSE CC REVERSE ARRIVAL) UTF-8 ALL",
        "* SORT 3 6 15 14 13 12 11 10 9 8 7 5 4 2 1",
    ),
    (
        "SORT (REVERSE CC) UTF-8 ALL",
        "* SORT 3 6 1 2 4 5 7 8 9 10 11 12 13 14 15",
    ),
    (
        "UID SORT (DATE) UTF-8 ALL",
        "* SORT 6 1 2 3 4 5 8 7 9 10 11 12 13 15 14",
    ),
    (
        "SORT RETURN (MIN MAX COUNT) (DATE) UTF-8 ALL",
        "* ESEARCH (TAG \"TAG\") MIN 6 MAX 14 COUNT 15",
    ),
    (
        "SORT RETURN (ALL) (SUBJECT) UTF-8 ALL",
        "* ESEARCH (TAG \"TAG\") ALL 13,12,14:15,6:8,1:3,9:11,4:5",
    ),
    (
        "UID SORT RETURN () (FROM) UTF-8 2:6",
        "* ESEARCH (TAG \"TAG\") UID ALL 4,2:3,5:6",
    ),
    (
        "THREAD ORDEREDSUBJECT UTF-8 ALL",
        "* THREAD (6 (8)(7))(1 (2)(3)(9))(4 5)(10 11)(12)(13)(15 14)",
    ),
    (
        "THREAD REFERENCES UTF-8 ALL",
        "* THREAD ((6 7)(8))(1 (2 3)(9))(4 5)(11 10)(12)(13)(15 14)",
    ),
    (
        "UID THREAD REFERENCES UTF-8 ALL",
        "* THREAD ((6 7)(8))(1 (2 3)(9))(4 5)(11 10)(12)(13)(15 14)",
    ),
    (
        "THREAD REFERENCES UTF-8 1:11",
        "* THREAD ((6 7)(8))(1 (2 3)(9))(4 5)(11 10)",
    ),
];

/// The tag imaplib chose, replaced so answers compare across runs.
fn untag(reply: &str) -> String {
    match reply.split_once("(TAG \"") {
        Some((head, rest)) => match rest.split_once('"') {
            Some((_, tail)) => format!("{head}(TAG \"TAG\"{tail}"),
            None => reply.to_string(),
        },
        None => reply.to_string(),
    }
}

#[test]
fn fixed_set_sorts_and_threads_as_dovecot_does() {
    let server = started("sort-set", &["alice"]);
    let out = python(&server, SET_SCRIPT);
    let stdout = out.stdout_text();
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "python failed ({}):\n{stdout}\n{}",
        out.status,
        out.stderr_text()
    );
    let answers: Vec<(String, String)> = stdout
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(command, reply)| (command.to_string(), untag(reply)))
        .collect();
    assert_eq!(answers.len(), DOVECOT_ANSWERS.len(), "{stdout}");
    let mut wrong = Vec::new();
    for ((command, reply), (want_command, want)) in answers.iter().zip(DOVECOT_ANSWERS) {
        assert_eq!(command, want_command);
        if reply != want {
            wrong.push(format!("{command}\n   got  {reply}\n   want {want}"));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

/// A message with the given headers, appended with an INTERNALDATE.
fn append(c: &mut Client, date: &str, headers: &str) {
    let message = format!("{headers}\r\n\r\nbody\r\n");
    c.append("INBOX", &format!("\"{date}\""), message.as_bytes());
}

#[test]
fn rfc_example_commands_and_esort() {
    let server = started("sort-rfc", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    let caps = c.ok("CAPABILITY").join(" ");
    for cap in [
        "SORT",
        "SORT=DISPLAY",
        "ESORT",
        "THREAD=ORDEREDSUBJECT",
        "THREAD=REFERENCES",
        "WITHIN",
    ] {
        assert!(caps.split(' ').any(|c| c == cap), "{cap} in {caps}");
    }
    append(
        &mut c,
        "01-Feb-1994 10:00:00 +0000",
        "Subject: b\r\nDate: Tue, 1 Feb 1994 10:00:00 +0000",
    );
    append(
        &mut c,
        "31-Jan-1994 10:00:00 +0000",
        "Subject: Re: a\r\nDate: Mon, 31 Jan 1994 10:00:00 +0000",
    );
    append(
        &mut c,
        "05-Mar-2000 10:00:00 +0000",
        "Subject: a\r\nDate: Sun, 5 Mar 2000 10:00:00 +0000",
    );
    c.select("INBOX");
    // RFC 5256 §4's example commands.
    assert_eq!(
        c.ok("SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994"),
        ["* SORT 3 1"]
    );
    assert_eq!(
        c.ok("SORT (SUBJECT REVERSE DATE) UTF-8 ALL"),
        ["* SORT 3 2 1"]
    );
    assert_eq!(
        c.ok("SORT (SUBJECT) US-ASCII TEXT \"not in mailbox\""),
        ["* SORT"]
    );
    assert_eq!(
        c.ok("THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000"),
        ["* THREAD (3)"]
    );
    assert_eq!(
        c.ok("THREAD ORDEREDSUBJECT US-ASCII TEXT \"gewp\""),
        ["* THREAD"]
    );
    assert_eq!(
        c.ok("THREAD ORDEREDSUBJECT UTF-8 ALL"),
        ["* THREAD (2 3)(1)"]
    );
    // RFC 5267 §3's: no match gives an ESEARCH with nothing but the tag.
    let tag = c.tag();
    c.send(
        format!("{tag} SORT RETURN (MIN MAX) (DATE) UTF-8 SUBJECT \"not there\"\r\n").as_bytes(),
    );
    let reply = c.reply(&tag);
    assert_eq!(reply.lines, [format!("* ESEARCH (TAG \"{tag}\")")]);
    assert_eq!(reply.tagged, "OK SORT completed");
    let tag = c.tag();
    c.send(
        format!("{tag} UID SORT RETURN (COUNT MAX MIN ALL) (REVERSE ARRIVAL) UTF-8 ALL\r\n")
            .as_bytes(),
    );
    let reply = c.reply(&tag);
    assert_eq!(
        reply.lines,
        [format!(
            "* ESEARCH (TAG \"{tag}\") UID MAX 2 MIN 3 ALL 3,1:2 COUNT 3"
        )]
    );
    // SEARCHRES: SORT RETURN (SAVE) keeps the result for `$`.
    let reply = c.call("SORT RETURN (SAVE) (DATE) UTF-8 SUBJECT a");
    assert!(reply.lines.is_empty() && reply.is_ok(), "{reply:?}");
    assert_eq!(c.ok("SEARCH $"), ["* SEARCH 2 3"]);
}

#[test]
fn bad_sort_and_thread_commands_get_clear_errors() {
    let server = started("sort-bad", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    assert_eq!(
        c.call("SORT (DATE) UTF-8 ALL").tagged,
        "BAD Command is only valid with a mailbox selected"
    );
    deliver(&server, "alice", "hello", "text");
    c.select("INBOX");
    let cases = [
        ("SORT (SENDER) UTF-8 ALL", "BAD unknown sort key SENDER"),
        ("SORT () UTF-8 ALL", "BAD empty sort criteria"),
        (
            "SORT (REVERSE) UTF-8 ALL",
            "BAD REVERSE must be followed by a sort key",
        ),
        (
            "SORT DATE UTF-8 ALL",
            "BAD expected ( to open sort criteria",
        ),
        (
            "SORT (DATE) KOI8-R ALL",
            "NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset",
        ),
        (
            "THREAD REFERENCES ISO-2022-JP ALL",
            "NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset",
        ),
        (
            "THREAD JWZ UTF-8 ALL",
            "BAD unknown thread algorithm JWZ: expected ORDEREDSUBJECT or REFERENCES",
        ),
        ("THREAD REFERENCES UTF-8", "BAD missing search criteria"),
        (
            "SEARCH YOUNGER 0",
            "BAD YOUNGER needs an interval of at least 1 second",
        ),
        ("SEARCH OLDER x", "BAD expected interval in seconds"),
    ];
    for (command, want) in cases {
        let reply = c.call(command);
        assert!(reply.tagged.starts_with(want), "{command}: {reply:?}");
    }
    // The connection goes on.
    assert_eq!(c.ok("SORT (SUBJECT) UTF-8 ALL"), ["* SORT 1"]);
    assert_eq!(c.ok("THREAD REFERENCES UTF-8 ALL"), ["* THREAD (1)"]);
}

#[test]
fn within_counts_seconds_back_from_now() {
    let server = started("within", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    append(&mut c, "01-Jan-2020 00:00:00 +0000", "Subject: old");
    // No date given: INTERNALDATE is now.
    c.append("INBOX", "", b"Subject: new\r\n\r\nbody\r\n");
    append(&mut c, "01-Jan-2021 00:00:00 +0000", "Subject: older");
    c.select("INBOX");
    // The test takes far less than a day; the old ones are years back.
    assert_eq!(c.ok("SEARCH YOUNGER 86400"), ["* SEARCH 2"]);
    assert_eq!(c.ok("SEARCH OLDER 86400"), ["* SEARCH 1 3"]);
    assert_eq!(c.ok("UID SEARCH NOT OLDER 86400"), ["* SEARCH 2"]);
    assert_eq!(c.ok("SORT (ARRIVAL) UTF-8 OLDER 86400"), ["* SORT 1 3"]);
    assert_eq!(
        c.ok("THREAD ORDEREDSUBJECT UTF-8 YOUNGER 86400"),
        ["* THREAD (2)"]
    );
}

#[test]
fn new_deliveries_and_expunges_are_sorted_at_once() {
    let server = started("sort-live", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    c.select("INBOX");
    assert_eq!(c.ok("SORT (SUBJECT) UTF-8 ALL"), ["* SORT"]);
    assert_eq!(c.ok("THREAD REFERENCES UTF-8 ALL"), ["* THREAD"]);
    for (subject, id, refs) in [
        ("Zebra", "<z@x>", ""),
        ("Re: zebra", "<z2@x>", "References: <z@x>\r\n"),
        ("Apple", "<a@x>", ""),
    ] {
        let message = format!("Subject: {subject}\r\nMessage-ID: {id}\r\n{refs}\r\nbody\r\n");
        let replies = lmtp_deliver(&server, "s@example.org", &["alice"], message.as_bytes());
        assert!(replies[0].starts_with("250"), "{replies:?}");
    }
    let sorted = c.ok("SORT (SUBJECT) UTF-8 ALL");
    assert_eq!(sorted.last().map(String::as_str), Some("* SORT 3 1 2"));
    assert_eq!(c.ok("THREAD REFERENCES UTF-8 ALL"), ["* THREAD (1 2)(3)"]);
    c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)");
    c.ok("EXPUNGE");
    assert_eq!(c.ok("SORT (SUBJECT) UTF-8 ALL"), ["* SORT 2 1"]);
    assert_eq!(c.ok("UID SORT (SUBJECT) UTF-8 ALL"), ["* SORT 3 2"]);
    // Another session expunges one this session still sees: it keeps its
    // number and sorts as a message without fields until the EXPUNGE is
    // reported (UID SORT reports it first).
    let mut other = Client::login(server.ports.imap, "alice");
    other.select("INBOX");
    other.ok("STORE 2 +FLAGS.SILENT (\\Deleted)");
    other.ok("EXPUNGE");
    assert_eq!(c.ok("SORT (REVERSE SUBJECT) UTF-8 ALL"), ["* SORT 1 2"]);
    let reply = c.ok("UID SORT (SUBJECT) UTF-8 ALL");
    assert_eq!(reply, ["* 2 EXPUNGE", "* SORT 2"]);
}

/// The SORT line of a command's reply (the last untagged line).
fn subject_sort(c: &mut Client, command: &str) -> String {
    let reply = c.ok(command);
    reply.last().cloned().unwrap_or_default()
}

#[test]
fn stored_orders_follow_copy_move_rename_and_restart() {
    // SORT (SUBJECT) and SORT (DATE) read orders the store keeps as
    // messages come and go; every way a message enters or leaves a mailbox
    // must keep them. The message without a Date header sorts by its
    // INTERNALDATE (now, so last); 2 and 5 have the same date.
    let mut server = started("sort-follow", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    c.select("INBOX");
    for headers in [
        "Date: Fri, 3 Jan 2020 10:00:00 +0000\r\nSubject: Pear",
        "Date: Wed, 1 Jan 2020 12:00:00 +0200\r\nSubject: Re: apple",
        "From: nobody@example.org",
        "Date: 2 Jan 2020 10:00:00 -0000\r\nSubject: [list] Fwd: pear",
        "Date: Wed, 1 Jan 2020 10:00:00 +0000\r\nSubject: =?UTF-8?Q?Banana?=",
    ] {
        c.append("INBOX", "", format!("{headers}\r\n\r\nbody\r\n").as_bytes());
    }
    c.ok("NOOP");
    assert_eq!(
        subject_sort(&mut c, "SORT (SUBJECT) UTF-8 ALL"),
        "* SORT 3 2 5 1 4"
    );
    assert_eq!(
        subject_sort(&mut c, "SORT (REVERSE SUBJECT) UTF-8 ALL"),
        "* SORT 1 4 5 2 3"
    );
    assert_eq!(
        subject_sort(&mut c, "SORT (DATE) UTF-8 ALL"),
        "* SORT 2 5 4 1 3"
    );
    assert_eq!(
        subject_sort(&mut c, "SORT (REVERSE DATE) UTF-8 ALL"),
        "* SORT 3 1 4 2 5"
    );
    assert_eq!(
        subject_sort(&mut c, "SORT (DATE) UTF-8 NOT SUBJECT apple"),
        "* SORT 5 4 1 3"
    );
    // A search key other than ALL: the order filtered to its matches.
    assert_eq!(
        subject_sort(&mut c, "SORT (SUBJECT) UTF-8 NOT SUBJECT apple"),
        "* SORT 3 5 1 4"
    );
    assert_eq!(
        subject_sort(&mut c, "UID SORT (REVERSE SUBJECT) UTF-8 2:4"),
        "* SORT 4 2 3"
    );
    c.ok("CREATE Box");
    c.ok("COPY 1:2 Box");
    c.ok("MOVE 5 Box");
    assert_eq!(
        subject_sort(&mut c, "UID SORT (SUBJECT) UTF-8 ALL"),
        "* SORT 3 2 1 4"
    );
    assert_eq!(
        subject_sort(&mut c, "UID SORT (DATE) UTF-8 ALL"),
        "* SORT 2 4 1 3"
    );
    c.select("Box");
    assert_eq!(
        subject_sort(&mut c, "UID SORT (SUBJECT) UTF-8 ALL"),
        "* SORT 2 3 1"
    );
    assert_eq!(
        subject_sort(&mut c, "UID SORT (REVERSE DATE) UTF-8 ALL"),
        "* SORT 1 2 3"
    );
    // Renaming INBOX moves its messages to a new mailbox, new UIDs.
    c.ok("RENAME INBOX Old");
    c.select("Old");
    assert_eq!(
        subject_sort(&mut c, "UID SORT (SUBJECT) UTF-8 ALL"),
        "* SORT 3 2 1 4"
    );
    c.select("INBOX");
    assert_eq!(subject_sort(&mut c, "SORT (SUBJECT) UTF-8 ALL"), "* SORT");
    deliver(&server, "alice", "Cherry", "new");
    c.ok("NOOP");
    assert_eq!(
        subject_sort(&mut c, "UID SORT (SUBJECT) UTF-8 ALL"),
        "* SORT 6"
    );
    c.ok("LOGOUT");
    server.stop();
    start(&mut server);
    let mut c = Client::login(server.ports.imap, "alice");
    c.select("Old");
    assert_eq!(
        subject_sort(&mut c, "UID SORT (SUBJECT) UTF-8 ALL"),
        "* SORT 3 2 1 4"
    );
    assert_eq!(
        subject_sort(&mut c, "UID SORT (DATE) UTF-8 ALL"),
        "* SORT 2 4 1 3"
    );
    c.ok("STORE 2 +FLAGS.SILENT (\\Deleted)");
    c.ok("EXPUNGE");
    assert_eq!(
        subject_sort(&mut c, "UID SORT (REVERSE SUBJECT) UTF-8 ALL"),
        "* SORT 1 4 3"
    );
    assert_eq!(
        subject_sort(&mut c, "UID SORT (REVERSE DATE) UTF-8 ALL"),
        "* SORT 3 1 4"
    );
}

#[test]
fn old_databases_get_their_sort_keys_on_upgrade() {
    // Written by the schema-3 letterbox: INBOX with "small" (UID 1) and
    // "big" (UID 2).
    let mut server = Server::new("sort-upgrade", &["alice"]);
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/schema3.redb.gz"
    );
    let out = std::process::Command::new("gzip")
        .args(["-dc", fixture])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(server.data.join("letterbox.redb"), &out.stdout).unwrap();
    start(&mut server);
    let log = server.log_text();
    assert!(
        log.contains("upgraded the database to schema 6 (sort keys of 2 messages)"),
        "{log}"
    );
    assert!(
        log.contains("upgraded the database to schema 7 (subject order of 2 messages)"),
        "{log}"
    );
    assert!(
        log.contains("upgraded the database to schema 8 (date order of 2 messages)"),
        "{log}"
    );
    let mut c = Client::login(server.ports.imap, "alice");
    c.select("INBOX");
    assert_eq!(c.ok("SORT (SUBJECT) UTF-8 ALL"), ["* SORT 2 1"]);
    assert_eq!(c.ok("SORT (REVERSE SUBJECT) UTF-8 ALL"), ["* SORT 1 2"]);
}
