//! IMAP with many sessions on one mailbox, against the real binary: what a
//! session is told about messages another one expunged, keywords another one
//! made, \Recent, subscriptions and LIST-EXTENDED, MOVE within a mailbox, and
//! a randomized run of several sessions checked against fresh SELECTs.

mod common;

use common::imap_client::*;
use common::*;

fn message_dated(subject: &str, date: Option<&str>) -> Vec<u8> {
    let date = date.map_or(String::new(), |d| format!("Date: {d}\r\n"));
    format!("From: a@example.org\r\nSubject: {subject}\r\n{date}\r\nbody of {subject}\r\n")
        .into_bytes()
}

/// RFC 2180 §4: a message another session expunged keeps its number here
/// until this session may be told; FETCH, STORE and SEARCH still work on it.
#[test]
fn a_message_expunged_elsewhere_is_answered_until_the_expunge_is_reported() {
    let server = started("expunged-elsewhere", &["alice"]);
    let mut b = Client::login(server.ports.imap, "alice");
    for subject in ["one", "two", "three"] {
        b.append("INBOX", "", &simple_message(subject, subject));
    }
    let mut a = Client::login(server.ports.imap, "alice");
    a.select("INBOX");
    a.ok("STORE 1 +FLAGS (\\Seen)");
    b.select("INBOX");
    b.ok("STORE 1 +FLAGS (\\Deleted)");
    b.ok("EXPUNGE");

    // FETCH by number may not report the expunge: the gone message gets
    // what A knows of it and NIL content; the others their data.
    let reply = a.call("FETCH 1:3 (FLAGS BODY.PEEK[TEXT])");
    assert_eq!(reply.lines.len(), 3, "{reply:?}");
    assert_eq!(
        reply.lines[0],
        "* 1 FETCH (FLAGS (\\Seen \\Recent) BODY[TEXT] NIL)"
    );
    assert_eq!(
        reply.lines[1],
        "* 2 FETCH (FLAGS (\\Recent) BODY[TEXT] {5}\r\ntwo\r\n)"
    );
    assert!(reply.lines[2].starts_with("* 3 FETCH ("), "{reply:?}");
    assert_eq!(
        reply.tagged,
        "OK [EXPUNGEISSUED] Some messages were already expunged"
    );
    // STORE on it answers OK, and A sees its own change.
    assert_eq!(
        a.ok("STORE 1 +FLAGS (\\Flagged)"),
        ["* 1 FETCH (FLAGS (\\Flagged \\Seen \\Recent))"]
    );
    let reply = a.call("FETCH 1 (FLAGS)");
    assert_eq!(
        reply.lines,
        ["* 1 FETCH (FLAGS (\\Flagged \\Seen \\Recent))"]
    );
    assert_eq!(
        reply.tagged,
        "OK [EXPUNGEISSUED] Some messages were already expunged"
    );
    // SEARCH by number still counts it.
    assert_eq!(a.ok("SEARCH ALL"), ["* SEARCH 1 2 3"]);
    assert_eq!(a.ok("SEARCH FLAGGED"), ["* SEARCH 1"]);
    assert_eq!(a.ok("SEARCH 1"), ["* SEARCH 1"]);
    assert_eq!(a.ok("SEARCH BODY two"), ["* SEARCH 2"]);
    // The next command that may report expunges does.
    assert_eq!(a.ok("NOOP"), ["* 1 EXPUNGE"]);
    assert_eq!(a.ok("UID SEARCH ALL"), ["* SEARCH 2 3"]);
    // A UID that was never in the view is simply not there.
    assert_eq!(a.only_tagged("UID FETCH 1 (FLAGS)"), "OK FETCH completed");
}

/// RFC 9051 §7.3.5: a client hears of a keyword in FLAGS before any FETCH
/// carries it: the session that stored it, the others, and one in IDLE.
#[test]
fn new_keywords_are_announced_before_they_are_used() {
    let server = started("keywords", &["alice"]);
    let mut a = Client::login(server.ports.imap, "alice");
    a.append("INBOX", "", &simple_message("one", "1"));
    a.select("INBOX");
    let mut b = Client::login(server.ports.imap, "alice");
    b.select("INBOX");
    let mut c = Client::login(server.ports.imap, "alice");
    c.select("INBOX");
    c.send(b"i1 IDLE\r\n");
    assert_eq!(c.line(), "+ idling");

    let flags = "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Todo)";
    let permanent =
        "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Todo \\*)] Flags permitted";
    assert_eq!(
        a.ok("STORE 1 +FLAGS ($Todo)"),
        [flags, permanent, "* 1 FETCH (FLAGS (\\Recent $Todo))"]
    );
    assert_eq!(c.line(), flags);
    assert_eq!(c.line(), permanent);
    assert_eq!(c.line(), "* 1 FETCH (UID 1 FLAGS ($Todo))");
    c.send(b"DONE\r\n");
    assert_eq!(c.reply("i1").tagged, "OK IDLE terminated");
    assert_eq!(
        b.ok("NOOP"),
        [flags, permanent, "* 1 FETCH (UID 1 FLAGS ($Todo))"]
    );
    // Said once: the next change with the same keyword brings no FLAGS.
    assert_eq!(
        a.ok("STORE 1 -FLAGS ($Todo)"),
        ["* 1 FETCH (FLAGS (\\Recent))"]
    );
    assert_eq!(b.ok("NOOP"), ["* 1 FETCH (UID 1 FLAGS ())"]);
    // A keyword brought by an APPEND from elsewhere is announced too.
    let mut d = Client::login(server.ports.imap, "alice");
    d.append("INBOX", "(NewOne)", &simple_message("two", "2"));
    let noop = b.ok("NOOP");
    assert_eq!(
        noop[0],
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Todo NewOne)"
    );
    assert!(noop.contains(&"* 2 EXISTS".to_string()), "{noop:?}");
}

/// RFC 3501 §2.3.2: each new message is \Recent in exactly one session.
#[test]
fn recent_belongs_to_one_rev1_session() {
    let mut server = Server::new("recent", &["alice"]);
    start(&mut server);
    deliver(&server, "alice", "one", "1");
    deliver(&server, "alice", "two", "2");

    let mut status = Client::login(server.ports.imap, "alice");
    assert_eq!(
        status.ok("STATUS INBOX (MESSAGES RECENT)"),
        ["* STATUS \"INBOX\" (MESSAGES 2 RECENT 2)"]
    );
    // EXAMINE shows them as recent and leaves them so.
    let mut examiner = Client::login(server.ports.imap, "alice");
    let examined = examiner.ok("EXAMINE INBOX");
    assert!(examined.contains(&"* 2 RECENT".to_string()), "{examined:?}");
    assert_eq!(
        examiner.ok("FETCH 1 (FLAGS)"),
        ["* 1 FETCH (FLAGS (\\Recent))"]
    );
    // A rev2 session sees none of it, and takes nothing away.
    let mut rev2 = Client::login(server.ports.imap, "alice");
    rev2.ok("ENABLE IMAP4rev2");
    let selected = rev2.select("INBOX");
    assert!(
        !selected.iter().any(|l| l.contains("RECENT")),
        "{selected:?}"
    );
    assert_eq!(rev2.ok("FETCH 1 (FLAGS)"), ["* 1 FETCH (FLAGS ())"]);

    // The first rev1 SELECT takes both.
    let mut first = Client::login(server.ports.imap, "alice");
    assert!(first.select("INBOX").contains(&"* 2 RECENT".to_string()));
    assert_eq!(
        first.ok("FETCH 1:2 (FLAGS)"),
        [
            "* 1 FETCH (FLAGS (\\Recent))",
            "* 2 FETCH (FLAGS (\\Recent))"
        ]
    );
    let mut second = Client::login(server.ports.imap, "alice");
    assert!(second.select("INBOX").contains(&"* 0 RECENT".to_string()));
    assert_eq!(second.ok("FETCH 1 (FLAGS)"), ["* 1 FETCH (FLAGS ())"]);
    assert_eq!(
        status.ok("STATUS INBOX (RECENT)"),
        ["* STATUS \"INBOX\" (RECENT 0)"]
    );

    // A delivery while both have it selected goes to the first to look.
    deliver(&server, "alice", "three", "3");
    assert_eq!(second.ok("NOOP"), ["* 3 EXISTS", "* 1 RECENT"]);
    assert_eq!(first.ok("NOOP"), ["* 3 EXISTS", "* 2 RECENT"]);
    assert_eq!(second.ok("SEARCH RECENT"), ["* SEARCH 3"]);
    assert_eq!(second.ok("SEARCH NEW"), ["* SEARCH 3"]);
    assert_eq!(second.ok("SEARCH OLD"), ["* SEARCH 1 2"]);
    assert_eq!(first.ok("SEARCH RECENT"), ["* SEARCH 1 2"]);
    rev2.ok("NOOP");
    let expected = format!("* ESEARCH (TAG \"t{}\")", rev2.next_tag);
    assert_eq!(rev2.ok("SEARCH RECENT"), [expected]);
    // Seen messages are not NEW.
    second.ok("STORE 3 +FLAGS.SILENT (\\Seen)");
    assert_eq!(second.ok("SEARCH NEW"), ["* SEARCH"]);
    assert_eq!(second.ok("SEARCH RECENT"), ["* SEARCH 3"]);

    // Taken is taken, across a restart too.
    drop((status, examiner, rev2, first, second));
    server.stop();
    start(&mut server);
    deliver(&server, "alice", "four", "4");
    let mut after = Client::login(server.ports.imap, "alice");
    let selected = after.select("INBOX");
    assert!(selected.contains(&"* 1 RECENT".to_string()), "{selected:?}");
    assert_eq!(after.ok("SEARCH RECENT"), ["* SEARCH 4"]);
}

/// RFC 3501 §6.4.4: SENT* compare the date written in Date:, without its
/// time and zone; a message without one uses INTERNALDATE.
#[test]
fn sent_dates_are_the_written_calendar_date() {
    let server = started("sentdate", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    c.append(
        "INBOX",
        "",
        &message_dated("late", Some("Sat, 24 Mar 2007 23:00:00 -0500")),
    );
    c.append(
        "INBOX",
        "\"10-Jan-2020 22:00:00 -0800\"",
        &message_dated("undated", None),
    );
    c.append(
        "INBOX",
        "\"10-Jan-2020 22:00:00 -0800\"",
        &message_dated("garbled", Some("not a date at all")),
    );
    c.select("INBOX");
    assert_eq!(c.ok("SEARCH SENTON 24-Mar-2007"), ["* SEARCH 1"]);
    assert_eq!(c.ok("SEARCH SENTON 25-Mar-2007"), ["* SEARCH"]);
    assert_eq!(c.ok("SEARCH SENTBEFORE 25-Mar-2007"), ["* SEARCH 1"]);
    assert_eq!(c.ok("SEARCH SENTSINCE 25-Mar-2007"), ["* SEARCH 2 3"]);
    assert_eq!(c.ok("SEARCH SENTON 10-Jan-2020"), ["* SEARCH 2 3"]);
}

/// RFC 5258 §5 (with RFC 3501's subscription rules), on this server's
/// hierarchy: what CREATE, DELETE, RENAME and (UN)SUBSCRIBE do to LIST.
#[test]
fn subscriptions_and_list_extended() {
    let server = started("subscriptions", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    // The default mailboxes start subscribed; a created one does not.
    c.ok("CREATE Fruit/Apple");
    c.ok("CREATE Fruit/Banana");
    c.ok("CREATE Fruit/Peach");
    c.ok("CREATE Tofu");
    c.ok("CREATE Vegetable/Broccoli");
    c.ok("CREATE Vegetable/Corn");
    assert_eq!(
        c.ok("LIST (SUBSCRIBED) \"\" *"),
        lines(&[
            "* LIST (\\HasNoChildren \\Subscribed \\Archive) \"/\" \"Archive\"",
            "* LIST (\\HasNoChildren \\Subscribed \\Drafts) \"/\" \"Drafts\"",
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"INBOX\"",
            "* LIST (\\HasNoChildren \\Subscribed \\Junk) \"/\" \"Junk\"",
            "* LIST (\\HasNoChildren \\Subscribed \\Sent) \"/\" \"Sent\"",
            "* LIST (\\HasNoChildren \\Subscribed \\Trash) \"/\" \"Trash\"",
        ])
    );
    for name in [
        "Fruit/Banana",
        "Fruit/Peach",
        "Vegetable",
        "Vegetable/Broccoli",
    ] {
        c.ok(&format!("SUBSCRIBE {name}"));
    }
    // A deleted mailbox stays subscribed, as \NonExistent.
    c.ok("DELETE Fruit/Peach");
    assert_eq!(
        c.ok("LIST (SUBSCRIBED) \"\" \"Fruit/*\""),
        lines(&[
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Fruit/Banana\"",
            "* LIST (\\NonExistent \\HasNoChildren \\Subscribed) \"/\" \"Fruit/Peach\"",
        ])
    );
    // Without SUBSCRIBED only mailboxes are listed; RETURN (SUBSCRIBED)
    // marks the subscribed ones.
    assert_eq!(
        c.ok("LIST \"\" \"Fruit/*\" RETURN (SUBSCRIBED)"),
        lines(&[
            "* LIST (\\HasNoChildren) \"/\" \"Fruit/Apple\"",
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Fruit/Banana\"",
        ])
    );
    // RECURSIVEMATCH: Fruit is not subscribed but has a subscribed child the
    // pattern does not reach; Vegetable is subscribed and has one too; Tofu
    // has none.
    assert_eq!(
        c.ok("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\" RETURN (CHILDREN)")
            .into_iter()
            .filter(|l| ["Fruit", "Tofu", "Vegetable"]
                .iter()
                .any(|n| l.ends_with(&format!("\"{n}\"")) || l.contains(&format!("\"{n}\" ("))))
            .collect::<Vec<_>>(),
        lines(&[
            "* LIST (\\HasChildren) \"/\" \"Fruit\" (\"CHILDINFO\" (\"SUBSCRIBED\"))",
            "* LIST (\\HasChildren \\Subscribed) \"/\" \"Vegetable\" (\"CHILDINFO\" (\"SUBSCRIBED\"))",
        ])
    );
    // When the pattern reaches the subscribed children, no CHILDINFO.
    assert_eq!(
        c.ok("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"Vegetable*\""),
        lines(&[
            "* LIST (\\HasChildren \\Subscribed) \"/\" \"Vegetable\"",
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Vegetable/Broccoli\"",
        ])
    );
    // LSUB marks an unsubscribed parent \Noselect; a '*' reaches the children.
    assert_eq!(
        c.ok("LSUB \"\" Fruit"),
        ["* LSUB (\\Noselect) \"/\" \"Fruit\""]
    );
    assert_eq!(
        c.ok("LSUB \"\" Fruit/*"),
        lines(&[
            "* LSUB () \"/\" \"Fruit/Banana\"",
            "* LSUB () \"/\" \"Fruit/Peach\"",
        ])
    );
    // UNSUBSCRIBE of a name that no longer exists, or is not subscribed: OK.
    assert_eq!(
        c.only_tagged("UNSUBSCRIBE Fruit/Peach"),
        "OK UNSUBSCRIBE completed"
    );
    assert_eq!(
        c.only_tagged("UNSUBSCRIBE Fruit/Peach"),
        "OK UNSUBSCRIBE completed"
    );
    assert_eq!(
        c.only_tagged("UNSUBSCRIBE Nowhere"),
        "OK UNSUBSCRIBE completed"
    );
    // RENAME carries the subscriptions of the mailbox and its children.
    c.ok("RENAME Vegetable Greens");
    assert_eq!(
        c.ok("LIST (SUBSCRIBED) \"\" \"Greens*\""),
        lines(&[
            "* LIST (\\HasChildren \\Subscribed) \"/\" \"Greens\"",
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Greens/Broccoli\"",
        ])
    );
    assert!(c.ok("LIST (SUBSCRIBED) \"\" \"Vegetable*\"").is_empty());
    // RECURSIVEMATCH alone, or with an option that is not a selection, is BAD.
    assert!(c
        .only_tagged("LIST (RECURSIVEMATCH) \"\" %")
        .starts_with("BAD "));
}

/// Names that are not valid modified UTF-7 are well-formed: NO, not BAD.
#[test]
fn names_that_are_not_modified_utf7_get_no() {
    let server = started("mutf7", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    for command in [
        "SELECT \"&Jjo\"",
        "EXAMINE \"&Jjo\"",
        "STATUS \"&Jjo\" (MESSAGES)",
        "SUBSCRIBE \"&Jjo\"",
        "CREATE \"&Jjo\"",
        "RENAME INBOX \"&Jjo\"",
        "DELETE \"&-&\"",
    ] {
        let tagged = c.call(command).tagged;
        assert!(tagged.starts_with("NO "), "{command}: {tagged}");
    }
    assert!(c.ok("LIST \"\" \"&Jjo*\"").is_empty());
    assert!(c.ok("LIST \"&Jjo\" \"*\"").is_empty());
    assert_eq!(c.ok("NOOP"), Vec::<String>::new(), "the session goes on");
}

/// RFC 6851 §3.3: COPY and MOVE into the selected mailbox make new UIDs.
#[test]
fn copy_and_move_within_the_selected_mailbox() {
    let server = started("move-self", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    c.append("INBOX", "(\\Flagged)", &simple_message("one", "1"));
    c.append("INBOX", "", &simple_message("two", "2"));
    let validity = c
        .select("INBOX")
        .iter()
        .find_map(|l| l.strip_prefix("* OK [UIDVALIDITY "))
        .and_then(|l| l.split(']').next())
        .unwrap()
        .to_string();
    let reply = c.call("COPY 1 INBOX");
    assert_eq!(
        reply.tagged,
        format!("OK [COPYUID {validity} 1 3] COPY completed")
    );
    assert_eq!(reply.lines, ["* 3 EXISTS", "* 3 RECENT"]);
    let reply = c.call("UID MOVE 1 INBOX");
    assert_eq!(
        reply.lines,
        [
            format!("* OK [COPYUID {validity} 1 4] Moved"),
            "* 1 EXPUNGE".to_string(),
            "* 3 EXISTS".to_string(),
            "* 3 RECENT".to_string(),
        ]
    );
    assert_eq!(reply.tagged, "OK MOVE completed");
    assert_eq!(
        c.ok("UID FETCH 1:* (FLAGS)"),
        [
            "* 1 FETCH (UID 2 FLAGS (\\Recent))",
            "* 2 FETCH (UID 3 FLAGS (\\Flagged \\Recent))",
            "* 3 FETCH (UID 4 FLAGS (\\Flagged \\Recent))",
        ]
    );
}

/// RFC 7162 §3.1.5: with RETURN (MIN) or (MAX), the MODSEQ is that of the
/// message returned.
#[test]
fn esearch_min_max_give_the_modseq_of_their_message() {
    let server = started("esearch-modseq", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    for subject in ["a", "b", "c"] {
        c.append("INBOX", "", &simple_message(subject, subject));
    }
    c.select("INBOX");
    c.ok("STORE 2 +FLAGS (\\Flagged)");
    c.ok("STORE 3 +FLAGS (\\Seen)");
    c.ok("STORE 1 +FLAGS (\\Answered)");
    let modseq = |c: &mut Client, n: u32| -> u64 {
        let lines = c.ok(&format!("FETCH {n} (MODSEQ)"));
        let line = lines.iter().find(|l| l.contains(" FETCH ")).unwrap();
        let start = line.find("MODSEQ (").unwrap() + 8;
        line[start..line.len() - 2].parse().unwrap()
    };
    let (m1, m2, m3) = (modseq(&mut c, 1), modseq(&mut c, 2), modseq(&mut c, 3));
    assert!(m1 > m3 && m3 > m2);
    let tag = |c: &Client| format!("t{}", c.next_tag);
    let t = tag(&c);
    assert_eq!(
        c.ok("SEARCH RETURN (MIN) MODSEQ 1"),
        [format!("* ESEARCH (TAG \"{t}\") MIN 1 MODSEQ {m1}")]
    );
    let t = tag(&c);
    assert_eq!(
        c.ok("SEARCH RETURN (MAX) MODSEQ 1"),
        [format!("* ESEARCH (TAG \"{t}\") MAX 3 MODSEQ {m3}")]
    );
    let t = tag(&c);
    assert_eq!(
        c.ok(&format!("SEARCH RETURN (MIN MAX) MODSEQ {m2}")),
        [format!("* ESEARCH (TAG \"{t}\") MIN 1 MAX 3 MODSEQ {m1}")]
    );
    let t = tag(&c);
    assert_eq!(
        c.ok("SEARCH RETURN (MAX COUNT) MODSEQ 1"),
        [format!("* ESEARCH (TAG \"{t}\") MAX 3 COUNT 3 MODSEQ {m1}")]
    );
}

/// Command lines up to 64 KiB, as Dovecot: an ID with long fields works;
/// a longer line gets one BAD, the rest of it is dropped, and the session
/// goes on.
#[test]
fn command_lines_up_to_64_kib() {
    let server = started("long-lines", &["alice"]);
    let mut c = Client::login(server.ports.imap, "alice");
    let fields: String = (0..30)
        .map(|i| format!(" \"f{i}\" \"{}\"", "v".repeat(1024)))
        .collect();
    let id = format!("ID ({})", &fields[1..]);
    assert!(id.len() > 30_000);
    assert_eq!(c.ok(&id), ["* ID (\"name\" \"letterbox\")"]);
    let long = format!("NOOP {}", "x".repeat(64 * 1024 - 20));
    assert!(c.call(&long).tagged.starts_with("BAD "));
    // Over the limit, and no CRLF for a while: one BAD, then the rest of
    // the line is skipped up to its CRLF.
    let tag = c.tag();
    c.send(format!("{tag} NOOP ").as_bytes());
    c.send("y".repeat(64 * 1024 + 10).as_bytes());
    c.send("z".repeat(200_000).as_bytes());
    c.send(b"\r\n");
    let bad = c.line();
    assert!(bad.contains("BAD") && bad.contains("65536"), "{bad}");
    assert_eq!(c.only_tagged("NOOP"), "OK NOOP completed");
}

/// A small deterministic random source; the seed is printed so that a
/// failure can be replayed with `LETTERBOX_SEED`.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

/// What one session's client knows of the mailbox, built only from the
/// untagged responses it was sent, as a real client builds it.
struct Model {
    rev2: bool,
    /// By sequence number: the UID and flags, once a response said them.
    messages: Vec<(Option<u32>, Option<Vec<String>>)>,
    /// The keywords the last FLAGS response listed.
    announced: Vec<String>,
    recent_count: Option<u32>,
}

impl Model {
    fn apply(&mut self, who: usize, line: &str) {
        let fail = |why: &str| -> ! { panic!("session {who}: {why}: {line}") };
        if let Some(list) = line.strip_prefix("* FLAGS (") {
            self.announced = list
                .trim_end_matches(')')
                .split(' ')
                .filter(|f| !f.starts_with('\\'))
                .map(str::to_string)
                .collect();
            return;
        }
        if line.starts_with("* OK ")
            || line.starts_with("* SEARCH")
            || line.starts_with("* ESEARCH")
            || line.starts_with("+ ")
            || line.starts_with("* LIST ")
        {
            return;
        }
        let words: Vec<&str> = line.splitn(4, ' ').collect();
        let n: usize = words
            .get(1)
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| fail("unexpected response"));
        match words.get(2).copied() {
            Some("EXISTS") => {
                if n < self.messages.len() {
                    fail("EXISTS shrank the mailbox");
                }
                self.messages.resize(n, (None, None));
            }
            Some("EXPUNGE") => {
                if n == 0 || n > self.messages.len() {
                    fail("EXPUNGE of a number the client does not have");
                }
                self.messages.remove(n - 1);
            }
            Some("RECENT") => {
                if self.rev2 {
                    fail("RECENT sent to an IMAP4rev2 session");
                }
                self.recent_count = Some(n as u32);
            }
            Some("FETCH") => {
                if n == 0 || n > self.messages.len() {
                    fail("FETCH of a number the client does not have");
                }
                let items = words[3];
                if let Some(at) = items.find("UID ") {
                    let digits: String = items[at + 4..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    let uid: u32 = digits.parse().unwrap_or_else(|_| fail("bad UID"));
                    if let Some(known) = self.messages[n - 1].0 {
                        if known != uid {
                            fail("a message's UID changed");
                        }
                    }
                    self.messages[n - 1].0 = Some(uid);
                }
                if let Some(at) = items.find("FLAGS (") {
                    let rest = &items[at + 7..];
                    let list = &rest[..rest.find(')').unwrap_or_else(|| fail("no )"))];
                    let mut flags: Vec<String> = list
                        .split(' ')
                        .filter(|f| !f.is_empty())
                        .map(str::to_string)
                        .collect();
                    for flag in &flags {
                        if !flag.starts_with('\\') && !self.announced.contains(flag) {
                            fail("a keyword used before FLAGS announced it");
                        }
                        if self.rev2 && flag == "\\Recent" {
                            fail("\\Recent sent to an IMAP4rev2 session");
                        }
                    }
                    flags.sort();
                    self.messages[n - 1].1 = Some(flags);
                }
            }
            _ => fail("unexpected response"),
        }
    }
}

/// One of the sessions of the randomized test, with its model.
struct Session {
    client: Client,
    model: Model,
    idling: Option<String>,
}

impl Session {
    fn open(port: u16, rev2: bool, who: usize) -> Session {
        let mut client = Client::login(port, "alice");
        if rev2 {
            client.ok("ENABLE IMAP4rev2");
        }
        let mut session = Session {
            client,
            model: Model {
                rev2,
                messages: Vec::new(),
                announced: Vec::new(),
                recent_count: None,
            },
            idling: None,
        };
        session.command(who, "SELECT INBOX", &[]);
        session
    }

    /// Runs a command, applies what it was told, and checks the tagged
    /// reply is OK (or one of `also`).
    fn command(&mut self, who: usize, command: &str, also: &[&str]) -> Vec<String> {
        assert!(self.idling.is_none());
        let reply = self.client.call(command);
        for line in &reply.lines {
            self.model.apply(who, line);
        }
        assert!(
            reply.tagged.starts_with("OK") || also.iter().any(|a| reply.tagged.starts_with(a)),
            "session {who}: {command}: {reply:?}"
        );
        reply.lines
    }

    fn idle(&mut self, who: usize) {
        let tag = self.client.tag();
        self.client.send(format!("{tag} IDLE\r\n").as_bytes());
        loop {
            let line = self.client.line();
            if line.starts_with("+ ") {
                break;
            }
            self.model.apply(who, &line);
        }
        self.idling = Some(tag);
    }

    fn done(&mut self, who: usize) {
        let Some(tag) = self.idling.take() else {
            return;
        };
        self.client.send(b"DONE\r\n");
        let reply = self.client.reply(&tag);
        for line in &reply.lines {
            self.model.apply(who, line);
        }
        assert_eq!(reply.tagged, "OK IDLE terminated", "session {who}");
    }
}

/// (UID, flags without \Recent) of every message, from a fresh EXAMINE,
/// which takes no \Recent away.
fn fresh_view(port: u16) -> Vec<(u32, Vec<String>)> {
    let mut c = Client::login(port, "alice");
    c.ok("EXAMINE INBOX");
    let mut model = Model {
        rev2: false,
        messages: Vec::new(),
        announced: Vec::new(),
        recent_count: None,
    };
    for line in c.ok("EXAMINE INBOX") {
        model.apply(usize::MAX, &line);
    }
    for line in c.ok("FETCH 1:* (UID FLAGS)") {
        model.apply(usize::MAX, &line);
    }
    model
        .messages
        .into_iter()
        .map(|(uid, flags)| {
            let mut flags = flags.expect("FETCH gave the flags");
            flags.retain(|f| f != "\\Recent");
            (uid.expect("FETCH gave the UID"), flags)
        })
        .collect()
}

/// Several real sessions, IMAP4rev1 and IMAP4rev2, some idling, on one
/// mailbox while deliveries arrive: each keeps a model from the untagged
/// responses alone, every reply is OK, and after each round every model
/// equals a fresh SELECT, and every message is \Recent in exactly one
/// IMAP4rev1 session.
#[test]
fn randomized_sessions_stay_in_step() {
    let server = started("random-sessions", &["alice"]);
    let port = server.ports.imap;
    let seed = std::env::var("LETTERBOX_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261129);
    eprintln!("seed {seed} (set LETTERBOX_SEED to replay)");
    let mut rng = Rng(seed);
    for i in 0..6 {
        deliver(&server, "alice", &format!("first {i}"), "x");
    }
    let rev2 = [false, true, false, false, true, false];
    let mut sessions: Vec<Session> = rev2
        .iter()
        .enumerate()
        .map(|(who, &rev2)| Session::open(port, rev2, who))
        .collect();
    let keywords = ["$Todo", "$Done", "Work", "home", "$Label1"];
    let flags = ["\\Seen", "\\Flagged", "\\Deleted", "\\Answered"];
    for round in 0..12 {
        for _ in 0..25 {
            let who = rng.below(sessions.len() as u64) as usize;
            let session = &mut sessions[who];
            if session.idling.is_some() {
                if rng.below(3) == 0 {
                    session.done(who);
                }
                continue;
            }
            let count = session.model.messages.len() as u64;
            let seq = 1 + rng.below(count.max(1));
            let seq2 = seq + rng.below(3);
            let set = if count == 0 {
                "1:*".to_string()
            } else {
                format!("{seq}:{}", seq2.min(count))
            };
            let flag = if rng.below(2) == 0 {
                flags[rng.below(4) as usize]
            } else {
                keywords[rng.below(5) as usize]
            };
            let sign = if rng.below(3) == 0 { "-" } else { "+" };
            match rng.below(14) {
                0 => {
                    let extra = if rng.below(2) == 0 {
                        format!(" ({flag})")
                    } else {
                        String::new()
                    };
                    let reply = session.client.call(&format!(
                        "APPEND INBOX{extra} {{{}+}}\r\n{}",
                        12, "Subject: a\r\n"
                    ));
                    for line in &reply.lines {
                        session.model.apply(who, line);
                    }
                    assert!(reply.is_ok(), "session {who}: APPEND: {reply:?}");
                }
                1 => deliver(&server, "alice", "delivered", "y"),
                2 | 3 if count > 0 => {
                    session.command(who, &format!("STORE {set} {sign}FLAGS ({flag})"), &[]);
                }
                // Not .SILENT: its client would apply the change itself.
                4 if count > 0 => {
                    session.command(who, &format!("UID STORE 1:* {sign}FLAGS ({flag})"), &[]);
                }
                5 if count > 0 => {
                    let target = if rng.below(2) == 0 {
                        "INBOX"
                    } else {
                        "Archive"
                    };
                    session.command(who, &format!("COPY {set} {target}"), &[]);
                }
                6 if count > 0 => {
                    let target = if rng.below(2) == 0 {
                        "INBOX"
                    } else {
                        "Archive"
                    };
                    session.command(who, &format!("MOVE {set} {target}"), &[]);
                }
                7 => {
                    session.command(who, "EXPUNGE", &[]);
                }
                8 if count > 0 => {
                    session.command(
                        who,
                        &format!("FETCH {set} (FLAGS UID BODY.PEEK[HEADER])"),
                        &[],
                    );
                }
                9 => {
                    session.command(who, "UID FETCH 1:* (FLAGS)", &[]);
                }
                10 => {
                    session.command(who, "SEARCH OR FLAGGED RECENT", &[]);
                }
                11 => session.idle(who),
                _ => {
                    session.command(who, "NOOP", &[]);
                }
            }
        }
        // End of the round: everyone hears everything.
        for (who, session) in sessions.iter_mut().enumerate() {
            session.done(who);
            session.command(who, "NOOP", &[]);
        }
        let fresh = fresh_view(port);
        let mut recent_owner: std::collections::HashMap<u32, usize> = Default::default();
        for (who, session) in sessions.iter_mut().enumerate() {
            // The client's model, checked against the server's own answer
            // (which must also agree with the model, \Recent included).
            let told = session.model.messages.clone();
            let mut asked = Model {
                rev2: session.model.rev2,
                messages: vec![(None, None); told.len()],
                announced: session.model.announced.clone(),
                recent_count: None,
            };
            for line in session.command(who, "FETCH 1:* (UID FLAGS)", &[]) {
                asked.apply(who, &line);
            }
            let asked: Vec<(u32, Vec<String>)> = asked
                .messages
                .into_iter()
                .map(|(uid, flags)| (uid.unwrap_or(0), flags.unwrap_or_default()))
                .collect();
            for (i, (uid, flags)) in told.iter().enumerate() {
                // What the client knew from untagged responses alone must
                // be what the server says; what it never heard it learns.
                if uid.is_some_and(|uid| asked[i].0 != uid) {
                    panic!("round {round}: session {who}: message {} is UID {uid:?} to the client, {} to the server", i + 1, asked[i].0);
                }
                if flags.as_ref().is_some_and(|flags| asked[i].1 != *flags) {
                    panic!("round {round}: session {who}: UID {}: the client has {flags:?}, the server {:?}", asked[i].0, asked[i].1);
                }
                let uid = &asked[i].0;
                if asked[i].1.iter().any(|f| f == "\\Recent") {
                    if let Some(other) = recent_owner.insert(*uid, who) {
                        panic!(
                            "round {round}: UID {uid} is \\Recent in sessions {other} and {who}"
                        );
                    }
                }
            }
            session.model.messages = asked
                .iter()
                .map(|(uid, flags)| (Some(*uid), Some(flags.clone())))
                .collect();
            let without_recent: Vec<(u32, Vec<String>)> = asked
                .into_iter()
                .map(|(uid, mut flags)| {
                    flags.retain(|f| f != "\\Recent");
                    (uid, flags)
                })
                .collect();
            assert_eq!(
                without_recent, fresh,
                "round {round}: session {who} against a fresh SELECT"
            );
            if let Some(count) = session.model.recent_count {
                let mine = recent_owner.values().filter(|&&w| w == who).count() as u32;
                assert!(
                    count >= mine || session.model.rev2,
                    "round {round}: session {who}: RECENT {count} < {mine}"
                );
            }
        }
        // Every message is \Recent in exactly one rev1 session: they all
        // have the mailbox selected read-write and have synced.
        for (uid, _) in &fresh {
            assert!(
                recent_owner.contains_key(uid),
                "round {round}: UID {uid} is \\Recent in no session"
            );
        }
    }
}

/// The subjects of a mailbox's messages, from a fresh session.
fn subjects(port: u16, mailbox: &str) -> Vec<String> {
    let mut c = Client::login(port, "alice");
    c.ok(&format!("EXAMINE {mailbox}"));
    let mut subjects: Vec<String> = c
        .ok("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (Subject)])")
        .iter()
        .filter_map(|l| l.split("Subject: ").nth(1))
        .map(|s| s.trim().trim_end_matches(')').trim().to_string())
        .collect();
    subjects.sort();
    subjects
}

/// Sessions racing EXPUNGE against FETCH, STORE, COPY and MOVE on the same
/// messages: every reply is one the RFCs allow, no response names a UID
/// twice, and every message ends up exactly where the commands that won
/// put it: nothing not expunged is lost, nothing is duplicated.
#[test]
fn sessions_racing_expunge_against_fetch_store_copy_and_move() {
    let server = started("races", &["alice"]);
    let port = server.ports.imap;
    let total = 60u32;
    {
        let mut c = Client::login(port, "alice");
        for i in 1..=total {
            c.append(
                "INBOX",
                "",
                format!("Subject: m{i:02}\r\n\r\nx\r\n").as_bytes(),
            );
        }
    }
    // Messages 1, 4, 7 … are both expunged by one session and moved by
    // another; 2, 5, 8 … are only copied and flagged; 3, 6, 9 … only moved.
    let doomed = |uid: u32| uid % 3 == 1;
    let threads: Vec<std::thread::JoinHandle<()>> = (0..5)
        .map(|role| {
            std::thread::spawn(move || {
                let mut c = Client::login(port, "alice");
                c.select("INBOX");
                for round in 0..3 {
                    for uid in 1..=total {
                        let reply = match role {
                            0 if doomed(uid) => {
                                c.call(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"));
                                c.call(&format!("UID EXPUNGE {uid}"))
                            }
                            1 if doomed(uid) || uid % 3 == 0 => {
                                c.call(&format!("UID MOVE {uid} Archive"))
                            }
                            2 if round == 0 && uid % 3 == 2 => {
                                c.call(&format!("UID COPY {uid} Trash"))
                            }
                            3 => c.call(&format!(
                                "STORE 1:* {}FLAGS (\\Flagged)",
                                ["+", "-"][uid as usize % 2]
                            )),
                            4 => c.call("FETCH 1:* (UID FLAGS)"),
                            _ => continue,
                        };
                        assert!(reply.is_ok(), "role {role}, UID {uid}: {reply:?}");
                        // No UID is given for two messages, and no message
                        // gets two UIDs (an update and the FETCH's own line
                        // may both name one message, at one number).
                        let mut by_uid = std::collections::HashMap::new();
                        let mut by_seq = std::collections::HashMap::new();
                        for line in reply.lines.iter().filter(|l| l.contains(" FETCH (")) {
                            let Some(at) = line.find("UID ") else {
                                continue;
                            };
                            let uid: String = line[at + 4..]
                                .chars()
                                .take_while(char::is_ascii_digit)
                                .collect();
                            let seq = line.split(' ').nth(1).unwrap_or_default().to_string();
                            let first = by_uid.entry(uid.clone()).or_insert(seq.clone());
                            assert_eq!(
                                *first, seq,
                                "role {role}: UID {uid} at two numbers: {reply:?}"
                            );
                            let first = by_seq.entry(seq.clone()).or_insert(uid.clone());
                            assert_eq!(*first, uid, "role {role}: {seq} has two UIDs: {reply:?}");
                        }
                    }
                }
                c.ok("NOOP");
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a racing session failed");
    }
    let name = |uid: u32| format!("m{uid:02}");
    let inbox = subjects(port, "INBOX");
    let archive = subjects(port, "Archive");
    let trash = subjects(port, "Trash");
    let expected_inbox: Vec<String> = (1..=total).filter(|u| u % 3 == 2).map(name).collect();
    assert_eq!(inbox, expected_inbox);
    assert_eq!(trash, expected_inbox);
    // Moved or expunged, never both and never twice.
    for uid in 1..=total {
        let in_archive = archive.iter().filter(|s| **s == name(uid)).count();
        match uid % 3 {
            0 => assert_eq!(in_archive, 1, "UID {uid} was only moved"),
            1 => assert!(in_archive <= 1, "UID {uid} in Archive twice"),
            _ => assert_eq!(in_archive, 0),
        }
    }
}

/// The `expunged` table is pruned to a bounded tail (store/expunges.rs),
/// yet a session that SELECTed before more expunges than that tail holds,
/// and read no messages since, still gets every EXPUNGE right: its view
/// pins the records it needs. Two such sessions, pinned at different
/// points.
#[test]
fn lazy_views_get_their_expunges_right_past_the_pruning_tail() {
    const TOTAL: u32 = 2000;
    const GONE: u32 = 1100;
    let server = started("expunge-pins", &["alice"]);
    let rcpts = vec!["alice"; 1000];
    for _ in 0..TOTAL / 1000 {
        let replies = lmtp_deliver(&server, "s@x", &rcpts, b"Subject: many\r\n\r\nx\r\n");
        assert!(replies.iter().all(|r| r.starts_with("250")));
    }
    let mut early = Client::login(server.ports.imap, "alice");
    assert!(early.select("INBOX").contains(&format!("* {TOTAL} EXISTS")));
    let mut b = Client::login(server.ports.imap, "alice");
    b.select("INBOX");
    b.ok(&format!("UID STORE 1:{GONE} +FLAGS.SILENT (\\Deleted)"));
    let mut later = None;
    for uid in 1..=GONE {
        b.ok(&format!("UID EXPUNGE {uid}"));
        if uid == 500 {
            let mut c = Client::login(server.ports.imap, "alice");
            assert!(c
                .select("INBOX")
                .contains(&format!("* {} EXISTS", TOTAL - 500)));
            later = Some(c);
        }
    }
    let check = |client: &mut Client, first_uid: u32| {
        let mut seen: Vec<u32> = (first_uid..=TOTAL).collect();
        let mut expunges = 0;
        for line in client.ok("NOOP") {
            if let Some(n) = line
                .strip_prefix("* ")
                .and_then(|l| l.strip_suffix(" EXPUNGE"))
            {
                let n: usize = n.parse().unwrap();
                assert!(n >= 1 && n <= seen.len(), "{line}");
                seen.remove(n - 1);
                expunges += 1;
            }
        }
        assert_eq!(expunges, GONE + 1 - first_uid);
        let reply = client.ok("UID SEARCH ALL");
        let on_server: Vec<u32> = reply[0]
            .trim_start_matches("* SEARCH ")
            .split(' ')
            .map(|u| u.parse().unwrap())
            .collect();
        assert_eq!(seen, on_server);
        assert_eq!(on_server, (GONE + 1..=TOTAL).collect::<Vec<_>>());
    };
    check(&mut early, 1);
    check(&mut later.unwrap(), 501);
}
