use super::*;
use crate::imap::assembler::{assemble_wire, Feed, Limits};
use CommandBody as C;

fn parse_wire(wire: &[u8]) -> Result<Command, ParseError> {
    let limits = Limits {
        max_line: 100_000,
        max_command: 1 << 20,
        max_literals: 100,
        ..Limits::default()
    };
    match assemble_wire(limits, wire).pop() {
        Some(Feed::Complete(cmd)) => parse(cmd),
        other => panic!("assembler gave {other:?}"),
    }
}

fn ok(wire: &str) -> CommandBody {
    match parse_wire(wire.as_bytes()) {
        Ok(command) => command.body,
        Err(e) => panic!("{wire:?}: {e}"),
    }
}

fn err(wire: &str) -> String {
    match parse_wire(wire.as_bytes()) {
        Ok(command) => panic!("{wire:?} parsed as {command:?}"),
        Err(e) => e.message,
    }
}

fn b(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

fn set(text: &str) -> MessageSet {
    match ok(&format!("t FETCH {text} UID")) {
        C::Fetch { set, .. } => set,
        other => panic!("{other:?}"),
    }
}

fn ranges(text: &str) -> SequenceSet {
    match set(text) {
        MessageSet::Set(ranges) => ranges,
        MessageSet::Saved => panic!("saved set"),
    }
}

fn search_key(criteria: &str) -> SearchKey {
    match ok(&format!("t SEARCH {criteria}")) {
        C::Search { key, .. } => key,
        other => panic!("{other:?}"),
    }
}

fn fetch_items(items: &str) -> Vec<FetchItem> {
    match ok(&format!("t FETCH 1 {items}")) {
        C::Fetch { items, .. } => items,
        other => panic!("{other:?}"),
    }
}

fn not(key: SearchKey) -> SearchKey {
    SearchKey::Not(Box::new(key))
}

#[test]
fn commands_without_arguments() {
    for (wire, body) in [
        ("a001 CAPABILITY", C::Capability),
        ("a002 noop", C::Noop),
        ("A023 LOGOUT", C::Logout),
        ("a001 StartTLS", C::StartTls),
        ("FXXZ CHECK", C::Check),
        ("A341 CLOSE", C::Close),
        ("A342 UNSELECT", C::Unselect),
        ("A001 NAMESPACE", C::Namespace),
        ("A002 IDLE", C::Idle),
        ("A202 EXPUNGE", C::Expunge { uids: None }),
    ] {
        assert_eq!(ok(wire), body, "{wire}");
    }
    assert_eq!(
        parse_wire(b"a.b[c]$! NOOP").map(|c| c.tag),
        Ok("a.b[c]$!".into())
    );
}

#[test]
fn authentication() {
    let auth = |mechanism: &str, initial: Option<&str>| C::Authenticate {
        mechanism: mechanism.into(),
        initial_response: initial.map(b),
    };
    assert_eq!(ok("A001 AUTHENTICATE GSSAPI"), auth("GSSAPI", None));
    assert_eq!(
        ok("A01 authenticate plain dGVzdAB0ZXN0AHRlc3Q="),
        auth("PLAIN", Some("dGVzdAB0ZXN0AHRlc3Q="))
    );
    assert_eq!(
        ok("A02 AUTHENTICATE EXTERNAL ="),
        auth("EXTERNAL", Some("="))
    );
    let login = |user: &str, password: &[u8]| C::Login {
        user: user.into(),
        password: password.to_vec(),
    };
    assert_eq!(ok("a001 LOGIN SMITH SESAME"), login("SMITH", b"SESAME"));
    assert_eq!(ok(r#"a LOGIN "j\"d" "p\\w d""#), login("j\"d", b"p\\w d"));
    assert_eq!(ok("a LOGIN {5}\r\njörg x"), login("jörg", b"x"));
    let two_literals = parse_wire(b"a1 LOGIN {4}\r\nfred {6+}\r\nse\"c\r\n\r\n");
    assert_eq!(
        two_literals.map(|c| c.body),
        Ok(login("fred", b"se\"c\r\n"))
    );
    let latin1 = parse_wire(b"a LOGIN {2}\r\n\xff\xfe x").map_err(|e| e.message);
    assert_eq!(latin1, Err("user name is not UTF-8".into()));
    assert_eq!(
        ok("a1 ENABLE CONDSTORE X-GOOD-IDEA"),
        C::Enable(vec!["CONDSTORE".into(), "X-GOOD-IDEA".into()])
    );
}

#[test]
fn mailbox_commands() {
    let select = |mailbox: &str, read_only, condstore| C::Select {
        mailbox: b(mailbox),
        read_only,
        condstore,
    };
    assert_eq!(ok("A142 SELECT INBOX"), select("INBOX", false, false));
    assert_eq!(
        ok("A932 EXAMINE blurdybloop"),
        select("blurdybloop", true, false)
    );
    assert_eq!(
        ok("A1 SELECT \"Sent Items\" (condstore)"),
        select("Sent Items", false, true)
    );
    assert_eq!(
        ok("A1 SELECT Entw&APw-rfe"),
        select("Entw&APw-rfe", false, false)
    );
    assert_eq!(
        ok("A1 SELECT {9}\r\nEntwürfe"),
        select("Entwürfe", false, false)
    );
    let create = |mailbox: &str, special_use: Option<&[&str]>| C::Create {
        mailbox: b(mailbox),
        special_use: special_use.map(|uses| uses.iter().map(|u| u.to_string()).collect()),
    };
    assert_eq!(ok("A003 CREATE owatagusiam/"), create("owatagusiam/", None));
    assert_eq!(
        ok(r"t1 CREATE MySpecial (USE (\Drafts \Sent))"),
        create("MySpecial", Some(&[r"\Drafts", r"\Sent"]))
    );
    let mailbox = b("blurdybloop");
    assert_eq!(ok("A682 DELETE blurdybloop"), C::Delete { mailbox });
    let (from, to) = (b("foo"), b("zowie"));
    assert_eq!(ok("A683 RENAME foo zowie"), C::Rename { from, to });
    let mailbox = b("#news.comp.mail.mime");
    assert_eq!(
        ok("A002 SUBSCRIBE #news.comp.mail.mime"),
        C::Subscribe { mailbox }
    );
    let mailbox = Vec::new();
    assert_eq!(ok("A002 UNSUBSCRIBE \"\""), C::Unsubscribe { mailbox });
    let (mailbox, items) = (
        b("blurdybloop"),
        vec![StatusItem::UidNext, StatusItem::Messages],
    );
    assert_eq!(
        ok("A042 STATUS blurdybloop (UIDNEXT MESSAGES)"),
        C::Status { mailbox, items }
    );
    let items = match ok("A1 STATUS x (size deleted appendlimit recent unseen uidvalidity)") {
        C::Status { items, .. } => items,
        other => panic!("{other:?}"),
    };
    use StatusItem::*;
    assert_eq!(
        items,
        [Size, Deleted, AppendLimit, Recent, Unseen, UidValidity]
    );
    let (reference, pattern) = (b("#news."), b("comp.mail.*"));
    assert_eq!(
        ok("A002 LSUB \"#news.\" \"comp.mail.*\""),
        C::Lsub { reference, pattern }
    );
}

#[test]
fn list_basic_and_extended() {
    let list = |wire: &str| match ok(wire) {
        C::List {
            selection,
            reference,
            patterns,
            returns,
        } => (selection, reference, patterns, returns),
        other => panic!("{other:?}"),
    };
    let patterns = |items: &[&str]| items.iter().map(|s| b(s)).collect::<Vec<_>>();
    let basic = list("A101 LIST \"\" \"\"");
    let nothing = (
        ListSelection::default(),
        vec![],
        patterns(&[""]),
        ListReturn::default(),
    );
    assert_eq!(basic, nothing);
    assert_eq!(list("A202 LIST ~/Mail/ %").1, b"~/Mail/");
    assert_eq!(list("A202 LIST ~/Mail/ %").2, patterns(&["%"]));
    assert_eq!(list("A1 LIST \"\" foo/%/[x]*").2, patterns(&["foo/%/[x]*"]));
    let (selection, .., returns) = list("A02 LIST (SUBSCRIBED) \"\" \"*\"");
    assert!(selection.subscribed && !selection.remote && returns == ListReturn::default());
    let (selection, .., returns) = list("A03 LIST () \"\" \"%\" RETURN (CHILDREN)");
    assert!(selection == ListSelection::default() && returns.children);
    let (selection, ..) = list("A05 LIST (REMOTE SUBSCRIBED) \"\" \"*\"");
    assert!(selection.remote && selection.subscribed);
    let (selection, .., returns) =
        list("A06 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\" RETURN (CHILDREN)");
    assert!(selection.recursive_match && returns.children);
    let (.., many, _) = list("A07 LIST \"\" (\"INBOX\" \"Drafts\" Sent/%)");
    assert_eq!(many, patterns(&["INBOX", "Drafts", "Sent/%"]));
    let (.., returns) = list("A01 LIST \"\" % RETURN (STATUS (MESSAGES UNSEEN))");
    assert_eq!(
        returns.status,
        Some(vec![StatusItem::Messages, StatusItem::Unseen])
    );
    let (selection, .., returns) =
        list("t3 LIST (SPECIAL-USE) \"\" \"*\" RETURN (SPECIAL-USE SUBSCRIBED)");
    assert!(selection.special_use && returns.special_use && returns.subscribed);
}

#[test]
fn append_forms() {
    let message = "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n\r\nHello Joe\r\n";
    let wire = format!(
        "A003 APPEND saved-messages (\\Seen) {{{}+}}\r\n{message}\r\n",
        message.len()
    );
    let append = ok(&wire);
    let expected = C::Append {
        mailbox: b("saved-messages"),
        flags: vec![Flag::Seen],
        date: None,
        message: b(message),
        binary: false,
        utf8: false,
    };
    assert_eq!(append, expected);
    let C::Append { flags, date, .. } =
        ok("a APPEND INBOX (\\Draft $Forwarded) \" 7-Feb-1994 21:52:25 -0800\" {2}\r\nhi")
    else {
        panic!("not an APPEND")
    };
    assert_eq!(flags, vec![Flag::Draft, Flag::Keyword("$Forwarded".into())]);
    let (unix, offset_minutes) = (760686745, -480);
    assert_eq!(
        date,
        Some(DateTime {
            unix,
            offset_minutes
        })
    );
    let binary = b"a APPEND x () \"17-Jul-1996 02:44:25 -0700\" ~{6}\r\na\r\n\0\xffb\r\n";
    let Ok(C::Append {
        message,
        binary,
        date,
        ..
    }) = parse_wire(binary).map(|c| c.body)
    else {
        panic!("not an APPEND")
    };
    assert_eq!((&message[..], binary), (&b"a\r\n\0\xffb"[..], true));
    let (unix, offset_minutes) = (837596665, -420);
    assert_eq!(
        date,
        Some(DateTime {
            unix,
            offset_minutes
        })
    );
    let C::Append {
        message,
        utf8,
        binary,
        ..
    } = ok("a APPEND x UTF8 (~{3}\r\nabc)")
    else {
        panic!("not an APPEND")
    };
    assert_eq!((&message[..], utf8, binary), (&b"abc"[..], true, false));
}

#[test]
fn search_rfc_examples() {
    let smith = SearchKey::And(vec![
        SearchKey::Flag(Flag::Flagged),
        SearchKey::InternalDate(
            DateMatch::Since,
            Date {
                year: 1994,
                month: 2,
                day: 1,
            },
        ),
        not(SearchKey::Contains(TextField::From, b("Smith"))),
    ]);
    let search = |uid, charset: Option<&str>, return_options, key| C::Search {
        uid,
        charset: charset.map(String::from),
        return_options,
        key,
    };
    use SearchReturn::*;
    assert_eq!(
        ok("A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\""),
        search(false, None, Some(vec![Min, Count]), smith.clone())
    );
    assert_eq!(
        ok("A283 SEARCH RETURN () FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\""),
        search(false, None, Some(vec![]), smith)
    );
    let text = SearchKey::Contains(TextField::Text, b("台北\u{3000}台"));
    assert_eq!(
        ok("A285 SEARCH CHARSET UTF-8 TEXT {12}\r\n台北\u{3000}台"),
        search(false, Some("UTF-8"), None, text)
    );
    let since = SearchKey::InternalDate(
        DateMatch::Since,
        Date {
            year: 2007,
            month: 3,
            day: 19,
        },
    );
    assert_eq!(
        ok("A301 UID SEARCH RETURN (SAVE) SINCE 19-Mar-2007 NOT SEEN"),
        search(
            true,
            None,
            Some(vec![Save]),
            SearchKey::And(vec![since, not(SearchKey::Flag(Flag::Seen))])
        )
    );
    let any = search(false, Some("utf-8"), Some(vec![Max, All]), SearchKey::All);
    assert_eq!(ok("a SEARCH RETURN (MAX ALL) CHARSET \"utf-8\" ALL"), any);
}

#[test]
fn search_keys() {
    let date = Date {
        year: 2024,
        month: 2,
        day: 29,
    };
    let flag = SearchKey::Flag;
    let text = |field, value: &str| SearchKey::Contains(field, b(value));
    for (criteria, key) in [
        ("ANSWERED", flag(Flag::Answered)),
        ("undeleted", not(flag(Flag::Deleted))),
        ("DRAFT", flag(Flag::Draft)),
        ("UNDRAFT", not(flag(Flag::Draft))),
        ("UNFLAGGED", not(flag(Flag::Flagged))),
        ("UNANSWERED", not(flag(Flag::Answered))),
        ("KEYWORD $Junk", flag(Flag::Keyword("$Junk".into()))),
        ("UNKEYWORD work", not(flag(Flag::Keyword("work".into())))),
        (
            "NEW",
            SearchKey::And(vec![SearchKey::Recent, not(flag(Flag::Seen))]),
        ),
        ("OLD", not(SearchKey::Recent)),
        ("UNRECENT", not(SearchKey::Recent)),
        ("RECENT", SearchKey::Recent),
        ("BCC a", text(TextField::Bcc, "a")),
        ("BODY \"two words\"", text(TextField::Body, "two words")),
        ("CC c", text(TextField::Cc, "c")),
        ("SUBJECT s", text(TextField::Subject, "s")),
        ("TO t", text(TextField::To, "t")),
        (
            "HEADER Message-ID <x@y>",
            SearchKey::Header("Message-ID".into(), b("<x@y>")),
        ),
        (
            "HEADER X-Spam \"\"",
            SearchKey::Header("X-Spam".into(), Vec::new()),
        ),
        (
            "BEFORE 29-feb-2024",
            SearchKey::InternalDate(DateMatch::Before, date),
        ),
        (
            "ON \"29-Feb-2024\"",
            SearchKey::InternalDate(DateMatch::On, date),
        ),
        (
            "SENTBEFORE 29-Feb-2024",
            SearchKey::SentDate(DateMatch::Before, date),
        ),
        (
            "SENTON 29-Feb-2024",
            SearchKey::SentDate(DateMatch::On, date),
        ),
        (
            "SENTSINCE 29-Feb-2024",
            SearchKey::SentDate(DateMatch::Since, date),
        ),
        ("LARGER 4096", SearchKey::Larger(4096)),
        ("SMALLER 10000000000", SearchKey::Smaller(10_000_000_000)),
        ("UID 1:5,7", SearchKey::Uid(set("1:5,7"))),
        ("UID $", SearchKey::Uid(MessageSet::Saved)),
        ("2:*", SearchKey::Sequence(set("2:*"))),
        ("$", SearchKey::Sequence(MessageSet::Saved)),
        ("((ALL))", SearchKey::All),
        (
            "OR SEEN (FLAGGED DELETED)",
            SearchKey::Or(
                Box::new(flag(Flag::Seen)),
                Box::new(SearchKey::And(vec![
                    flag(Flag::Flagged),
                    flag(Flag::Deleted),
                ])),
            ),
        ),
    ] {
        assert_eq!(search_key(criteria), key, "{criteria}");
    }
}

#[test]
fn deep_nesting_fails_fast() {
    let start = std::time::Instant::now();
    let deep = format!("a SEARCH {}ALL{}", "(".repeat(10_000), ")".repeat(10_000));
    assert_eq!(err(&deep), "parentheses nested deeper than 64");
    let nots = format!("a SEARCH {}ALL", "NOT ".repeat(10_000));
    assert_eq!(err(&nots), "search keys nested deeper than 64");
    let ors = format!("a SEARCH {}ALL", "OR ALL ".repeat(10_000));
    assert_eq!(err(&ors), "search keys nested deeper than 64");
    assert!(start.elapsed().as_secs() < 2);
    let deepest = format!("a SEARCH {}ALL{}", "(".repeat(64), ")".repeat(64));
    assert!(matches!(
        ok(&deepest),
        C::Search {
            key: SearchKey::All,
            ..
        }
    ));
}

#[test]
fn fetch_items_and_macros() {
    use FetchItem::*;
    assert_eq!(
        fetch_items("ALL"),
        [Flags, InternalDate, Rfc822Size, Envelope]
    );
    assert_eq!(fetch_items("fast"), [Flags, InternalDate, Rfc822Size]);
    assert_eq!(
        fetch_items("FULL"),
        [Flags, InternalDate, Rfc822Size, Envelope, Body]
    );
    assert_eq!(
        fetch_items("(uid body bodystructure rfc822 rfc822.header rfc822.text envelope)"),
        [
            Uid,
            Body,
            BodyStructure,
            Rfc822,
            Rfc822Header,
            Rfc822Text,
            Envelope
        ]
    );
    let body = |part: Vec<u32>, text| BodySection {
        peek: false,
        section: Section { part, text },
        partial: None,
    };
    let date_from = SectionText::HeaderFields(vec!["DATE".into(), "FROM".into()]);
    assert_eq!(
        ok("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])"),
        C::Fetch {
            uid: false,
            set: set("2:4"),
            items: vec![Flags, body(vec![], Some(date_from))],
            changed_since: None,
        }
    );
    let not_fields = vec!["X-A".into(), "X-B".into(), "X-C".into()];
    assert_eq!(
        fetch_items("(BODY[1.2.MIME] BODY[3.header.fields.not (X-A \"X-B\" {3}\r\nX-C)] BODY[4.TEXT] BODY[HEADER] BODY[5])"),
        [
            body(vec![1, 2], Some(SectionText::Mime)),
            body(vec![3], Some(SectionText::HeaderFieldsNot(not_fields))),
            body(vec![4], Some(SectionText::Text)),
            body(vec![], Some(SectionText::Header)),
            body(vec![5], None),
        ]
    );
    let partial = |offset, length| Some(Partial { offset, length });
    assert_eq!(
        fetch_items("(BODY.PEEK[]<0.2048> BODY[]<10.99999999999>)"),
        [
            BodySection {
                peek: true,
                section: Section::default(),
                partial: partial(0, 2048)
            },
            BodySection {
                peek: false,
                section: Section::default(),
                partial: partial(10, u32::MAX)
            },
        ]
    );
    assert_eq!(
        fetch_items("(BINARY.PEEK[1.2]<0.100> BINARY[] BINARY.SIZE[1])"),
        [
            Binary {
                peek: true,
                part: vec![1, 2],
                partial: partial(0, 100)
            },
            Binary {
                peek: false,
                part: vec![],
                partial: None
            },
            BinarySize { part: vec![1] },
        ]
    );
    assert_eq!(fetch_items("(FLAGS) (CHANGEDSINCE 12345)"), [Flags]);
    assert_eq!(fetch_items("(UID MODSEQ)"), [Uid, FetchItem::Modseq]);
}

#[test]
fn response_names() {
    let items = r#"(BODY.PEEK[header.fields (From "X\"Q")]<0.100> BINARY.PEEK[1.2]<5.10> BINARY.SIZE[] BODY[1.MIME] rfc822.size BODY[])"#;
    let names: Vec<String> = fetch_items(items)
        .iter()
        .map(FetchItem::response_name)
        .collect();
    assert_eq!(
        names,
        [
            r#"BODY[HEADER.FIELDS (From "X\"Q")]<0>"#,
            "BINARY[1.2]<5>",
            "BINARY.SIZE[]",
            "BODY[1.MIME]",
            "RFC822.SIZE",
            "BODY[]"
        ]
    );
}

#[test]
fn condstore_syntax() {
    // RFC 7162's examples.
    assert_eq!(
        ok("s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)"),
        C::Fetch {
            uid: true,
            set: set("1:*"),
            items: vec![FetchItem::Flags],
            changed_since: Some(12345),
        }
    );
    assert_eq!(
        ok(r"d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\Deleted)"),
        C::Store {
            uid: false,
            set: set("7,5,9"),
            request: StoreRequest {
                mode: StoreMode::Add,
                silent: true,
                flags: vec![Flag::Deleted],
                unchanged_since: Some(320162338),
            },
        }
    );
    let search = |line: &str| match ok(line) {
        C::Search { key, .. } => key,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        search("a SEARCH MODSEQ 620162338"),
        SearchKey::Modseq(620162338)
    );
    assert_eq!(
        search(
            r#"a SEARCH OR NOT MODSEQ 720162338 LARGER 50000 MODSEQ "/flags/\\draft" all 620162338"#
        ),
        SearchKey::And(vec![
            SearchKey::Or(
                Box::new(SearchKey::Not(Box::new(SearchKey::Modseq(720162338)))),
                Box::new(SearchKey::Larger(50000))
            ),
            SearchKey::Modseq(620162338),
        ])
    );
    assert!(SearchKey::Not(Box::new(SearchKey::Modseq(1))).mentions_modseq());
    assert!(!SearchKey::Larger(1).mentions_modseq());
    match ok("a STATUS INBOX (HIGHESTMODSEQ MESSAGES)") {
        C::Status { items, .. } => {
            assert_eq!(items, [StatusItem::HighestModseq, StatusItem::Messages])
        }
        other => panic!("{other:?}"),
    }
    for (line, error) in [
        (
            "a STORE 1 (UNCHANGEDSINCE x) +FLAGS (\\Seen)",
            "expected mod-sequence",
        ),
        (
            "a STORE 1 (CHANGEDSINCE 1) +FLAGS (\\Seen)",
            "unknown STORE modifier CHANGEDSINCE",
        ),
        (
            "a FETCH 1 FLAGS (UNCHANGEDSINCE 1)",
            "unknown FETCH modifier UNCHANGEDSINCE",
        ),
        (
            "a SEARCH MODSEQ \"/flags/x\" mine 5",
            "entry type MINE is not priv, shared or all",
        ),
    ] {
        assert!(err(line).starts_with(error), "{line}: {}", err(line));
    }
}

#[test]
fn store_copy_move_and_uid() {
    let store = |uid, set, mode, silent, flags| C::Store {
        uid,
        set,
        request: StoreRequest {
            mode,
            silent,
            flags,
            unchanged_since: None,
        },
    };
    assert_eq!(
        ok(r"A003 STORE 2:4 +FLAGS (\Deleted)"),
        store(
            false,
            set("2:4"),
            StoreMode::Add,
            false,
            vec![Flag::Deleted]
        )
    );
    assert_eq!(
        ok(r"A4 UID STORE 1 -FLAGS.SILENT \seen Junk"),
        store(
            true,
            set("1"),
            StoreMode::Remove,
            true,
            vec![Flag::Seen, Flag::Keyword("Junk".into())]
        )
    );
    assert_eq!(
        ok("A5 STORE $ FLAGS ()"),
        store(false, MessageSet::Saved, StoreMode::Replace, false, vec![])
    );
    let mailbox = b("MEETING");
    assert_eq!(
        ok("A003 COPY 2:4 MEETING"),
        C::Copy {
            uid: false,
            set: set("2:4"),
            mailbox
        }
    );
    let mailbox = b("foo");
    assert_eq!(
        ok("a UID MOVE 42:69 foo"),
        C::Move {
            uid: true,
            set: set("42:69"),
            mailbox
        }
    );
    let mailbox = b("Other Messages");
    let saved = MessageSet::Saved;
    assert_eq!(
        ok("A003 UID COPY $ \"Other Messages\""),
        C::Copy {
            uid: true,
            set: saved,
            mailbox
        }
    );
    let uids = Some(set("3000:3002"));
    assert_eq!(ok("A003 UID EXPUNGE 3000:3002"), C::Expunge { uids });
    assert!(matches!(
        ok("A999 UID FETCH 4827313:4828442 FLAGS"),
        C::Fetch { uid: true, .. }
    ));
    assert_eq!(
        ok("a023 ID (\"name\" \"sodr\" \"version\" \"19.34\" \"vendor\" NIL)"),
        C::Id(Some(vec![
            ("name".into(), Some("sodr".into())),
            ("version".into(), Some("19.34".into())),
            ("vendor".into(), None),
        ]))
    );
    assert_eq!(ok("a ID NIL"), C::Id(None));
    assert_eq!(ok("a ID ()"), C::Id(Some(vec![])));
}

#[test]
fn sequence_sets() {
    let s = ranges("1,3:5,*,9:7,10:*");
    let range = |start, end| SeqRange { start, end };
    assert_eq!(s.ranges()[1], range(SeqBound::Num(3), SeqBound::Num(5)));
    assert_eq!(s.ranges()[2], range(SeqBound::Star, SeqBound::Star));
    assert!(s.contains(4, 20) && s.contains(8, 20) && s.contains(20, 20) && !s.contains(2, 20));
    assert!(s.contains(6, 6), "10:* covers * even when * < 10");
    assert_eq!(s.resolve(20), vec![1..=1, 3..=5, 7..=20]);
    assert_eq!(s.resolve(4), vec![1..=1, 3..=4]);
    assert_eq!(s.iter_within(6).collect::<Vec<_>>(), vec![1, 3, 4, 5, 6]);
    assert_eq!(s.iter_within(0).count(), 0);
    let everything = ranges("1:*");
    let first: Vec<u32> = everything.iter_within(u32::MAX).take(3).collect();
    assert_eq!(first, [1, 2, 3]);
    assert_eq!(everything.iter_within(u32::MAX).last(), Some(u32::MAX));
    assert!(everything.contains(u32::MAX, u32::MAX));
    let top = SeqBound::Num(u32::MAX);
    assert_eq!(ranges("4294967295").ranges(), [range(top, top)]);
    let most = (1..=1000)
        .map(|n| (n * 2).to_string())
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(ranges(&most).ranges().len(), 1000);
}

#[test]
fn error_messages_name_the_problem() {
    let many = (1..=1001)
        .map(|n| (n * 2).to_string())
        .collect::<Vec<_>>()
        .join(",");
    let many_ranges = format!("a FETCH {many} FLAGS");
    let many_ids = format!("a ID ({})", "\"k\" \"v\" ".repeat(31).trim_end());
    for (wire, message) in [
        // framing, tags and command names
        ("x1 FROB", "unknown command FROB"),
        ("x1", "missing command after tag"),
        ("x1\tNOOP", "expected SP after tag"),
        (
            "a NOOP extra",
            "unexpected characters after command: \" extra\"",
        ),
        (
            "a SEARCH ALL)",
            "unexpected characters after command: \")\"",
        ),
        (
            "a SELECT {3}\r\nabc{3}\r\nabc",
            "unexpected characters after command: a literal",
        ),
        // strings and literals
        ("a SELECT \"INBOX", "unterminated quoted string"),
        (
            "a SELECT \"IN\\BOX\"",
            r#"bad escape in quoted string: only \" and \\ are allowed"#,
        ),
        ("a SELECT \"IN\rBOX\"", "CR, LF or NUL in quoted string"),
        (
            "a LOGIN {3}\r\na\0b x",
            "literal contains NUL; binary data needs literal8 (~{n})",
        ),
        (
            "a APPEND x {3}\r\na\0b",
            "literal contains NUL; binary data needs literal8 (~{n})",
        ),
        (
            "a LOGIN ~{1}\r\nx y",
            "literal8 (~{n}) is only allowed for an APPEND message",
        ),
        (
            "a APPEND ~{1}\r\nx {1}\r\ny",
            "literal8 (~{n}) is only allowed for an APPEND message",
        ),
        // missing and wrong arguments
        ("A05 AUTHENTICATE", "missing SASL mechanism"),
        (
            "A03 AUTHENTICATE PLAIN abc=d",
            "initial response must be base64, or = for an empty one",
        ),
        (
            "A04 AUTHENTICATE PLAIN a=b=",
            "initial response must be base64, or = for an empty one",
        ),
        ("a LOGIN smith", "missing password"),
        ("a1 ENABLE", "missing capability"),
        ("A1 SELECT", "missing mailbox name"),
        ("A1 SELECT x (QRESYNC)", "unknown SELECT parameter QRESYNC"),
        ("t1 CREATE x (FOO)", "unknown CREATE parameter FOO"),
        (
            "t1 CREATE x (USE (Drafts))",
            r#"expected special-use attribute such as \Drafts, found "Drafts))""#,
        ),
        ("A683 RENAME foo", "missing mailbox name"),
        ("A1 STATUS x ()", "empty status items"),
        ("A1 LIST \"\"", "missing mailbox pattern"),
        (
            "A1 LIST (RECURSIVEMATCH) \"\" *",
            "RECURSIVEMATCH needs SUBSCRIBED or SPECIAL-USE beside it",
        ),
        (
            "A1 LIST (REMOTE RECURSIVEMATCH) \"\" *",
            "RECURSIVEMATCH needs SUBSCRIBED or SPECIAL-USE beside it",
        ),
        ("A1 LIST (FOO) \"\" *", "unknown LIST selection option FOO"),
        (
            "A1 LIST \"\" * RETURN (MYRIGHTS)",
            "unknown LIST return option MYRIGHTS",
        ),
        (
            "A1 LIST \"\" * (CHILDREN)",
            "expected RETURN, found \"(CHILDREN)\"",
        ),
        ("a APPEND x", "missing message literal"),
        (
            "a APPEND x hello",
            "expected message literal, found \"hello\"",
        ),
        (
            "a APPEND x {1}\r\nx y",
            "unexpected characters after command: \" y\"",
        ),
        (
            "a APPEND x UTF8 ({1}\r\nx)",
            "expected literal8 (~{n}) in UTF8 (...), found \")\"",
        ),
        (
            "a APPEND x \"hello\"",
            r#"invalid date-time "hello": expected "dd-Mon-yyyy hh:mm:ss +zzzz""#,
        ),
        (
            "a APPEND x \"30-Feb-2024 10:00:00 +0000\" {1}\r\nx",
            r#"invalid date-time "30-Feb-2024 10:00:00 +0000": expected "dd-Mon-yyyy hh:mm:ss +zzzz""#,
        ),
        (
            "a APPEND x \"01-Feb-2024 24:00:00 +0000\" {1}\r\nx",
            r#"invalid date-time "01-Feb-2024 24:00:00 +0000": expected "dd-Mon-yyyy hh:mm:ss +zzzz""#,
        ),
        (
            "a APPEND x \"01-Feb-2024 10:00:00 +0060\" {1}\r\nx",
            r#"invalid date-time "01-Feb-2024 10:00:00 +0060": expected "dd-Mon-yyyy hh:mm:ss +zzzz""#,
        ),
        // flags
        (
            "a APPEND x (\\Recent) {1}\r\nx",
            r"\Recent cannot be set by a client",
        ),
        (
            r"A6 STORE 1 +FLAGS (\Recent)",
            r"\Recent cannot be set by a client",
        ),
        ("a APPEND x (\\Junk) {1}\r\nx", r"unknown system flag \Junk"),
        (r"A6 STORE 1 +FLAGS \*", r"\* is not a flag that can be set"),
        (
            "A6 STORE 1 LABELS (x)",
            "expected FLAGS, +FLAGS or -FLAGS, found LABELS",
        ),
        // sequence sets
        (
            "a FETCH 0 FLAGS",
            "invalid sequence number 0: numbers start at 1",
        ),
        (
            "a FETCH 1:0 FLAGS",
            "invalid sequence number 0: numbers start at 1",
        ),
        (
            "a FETCH *:4294967296 FLAGS",
            "sequence number 4294967296 is too large (the limit is 4294967295)",
        ),
        (
            "a FETCH 1:99999999999999999999999 FLAGS",
            "sequence number 99999999999999999999999 is too large (the limit is 4294967295)",
        ),
        (
            "a FETCH , FLAGS",
            "expected sequence number or *, found \", FLAGS\"",
        ),
        (
            "a FETCH 1, FLAGS",
            "expected sequence number or *, found \" FLAGS\"",
        ),
        (&many_ranges, "sequence set has more than 1000 ranges"),
        ("A1 COPY 1", "missing mailbox name"),
        (
            "A1 UID FROB 1",
            "unknown UID command FROB: expected FETCH, SEARCH, SORT, THREAD, STORE, COPY, MOVE or EXPUNGE",
        ),
        ("A1 UID EXPUNGE", "missing UID set"),
        // SEARCH
        ("a SEARCH", "missing search criteria"),
        ("a SEARCH FROB", "unknown search key FROB"),
        ("a SEARCH FROM", "missing search string"),
        (
            "a SEARCH SINCE 30-Feb-2024",
            "invalid date \"30-Feb-2024\": expected d-Mon-yyyy, as in 1-Feb-1994",
        ),
        (
            "a SEARCH SINCE 1-Foo-2024",
            "invalid date \"1-Foo-2024\": expected d-Mon-yyyy, as in 1-Feb-1994",
        ),
        (
            "a SEARCH SINCE 1-Feb-24",
            "invalid date \"1-Feb-24\": expected d-Mon-yyyy, as in 1-Feb-1994",
        ),
        ("a SEARCH OR SEEN", "missing second search key of OR"),
        ("a SEARCH (SEEN", "missing SP or ) in search key list"),
        (
            "a SEARCH RETURN (FOO) ALL",
            "unknown search return option FOO",
        ),
        (
            "a SEARCH HEADER \"a:b\" x",
            "invalid header field name \"a:b\"",
        ),
        // FETCH
        ("a FETCH", "missing message set"),
        ("a FETCH 1", "missing fetch items"),
        ("a FETCH 1 (FLAGS FROB)", "unknown fetch item FROB"),
        ("a FETCH 1 ()", "empty fetch items"),
        (
            "a FETCH 1 BODY[MIME]",
            "MIME needs a part number, as in BODY[1.MIME]",
        ),
        ("a FETCH 1 BODY[0]", "section part number must not be 0"),
        (
            "a FETCH 1 BODY[1.]",
            "expected section: HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT or MIME, found \"]\"",
        ),
        ("a FETCH 1 BODY[HEADER", "missing ] to close the section"),
        ("a FETCH 1 BODY.PEEK", "missing [ to open a section"),
        ("a FETCH 1 BODY[]<1.0>", "partial length must not be 0"),
        (
            "a FETCH 1 BODY[]<4294967296.1>",
            "partial offset 4294967296 is too large (the limit is 4294967295)",
        ),
        (
            "a FETCH 1 BINARY[TEXT]",
            "expected section part number, found \"TEXT]\"",
        ),
        (
            "a FETCH 1 (FLAGS) (VANISHED)",
            "unknown FETCH modifier VANISHED",
        ),
        // ID
        (
            "a ID (\"name\")",
            "expected SP before ID field value, found \")\"",
        ),
        (&many_ids, "ID has more than 30 field-value pairs"),
    ] {
        assert_eq!(err(wire), message, "{wire:?}");
    }
}

#[test]
fn errors_carry_the_tag_when_there_is_one() {
    let e = parse_wire(b"x1 FROB").expect_err("unknown command");
    assert_eq!(e.tag.as_deref(), Some("x1"));
    let e = parse_wire(b"").expect_err("empty");
    assert_eq!((e.tag, e.message.as_str()), (None, "empty command line"));
    let e = parse_wire(b"+tag NOOP").expect_err("bad tag");
    assert_eq!(
        (e.tag, e.message.as_str()),
        (None, "invalid or missing tag")
    );
}

#[test]
fn dates() {
    let date = |year, month, day| Date { year, month, day };
    assert_eq!(date(1970, 1, 1).days_since_epoch(), 0);
    assert_eq!(date(1994, 2, 1).days_since_epoch(), 8797);
    assert_eq!(date(2000, 3, 1).days_since_epoch(), 11017);
    assert_eq!(date(1, 1, 1).days_since_epoch(), -719162);
    let (unix, offset_minutes) = (1709231400, 330);
    let leap_second = parse_date_time(b"29-Feb-2024 23:59:60 +0530");
    assert_eq!(
        leap_second,
        Some(DateTime {
            unix,
            offset_minutes
        })
    );
    assert_eq!(parse_date_time(b"29-Feb-2023 23:59:59 +0530"), None);
    assert_eq!(parse_date(b"1-Jan-1900"), Some(date(1900, 1, 1)));
    assert_eq!(parse_date(b"29-Feb-1900"), None);
    assert_eq!(parse_date(b"29-Feb-2000"), Some(date(2000, 2, 29)));
    assert_eq!(parse_date(b"123-Feb-2000"), None);
}

/// Mutations of valid commands, fed through assembler and parser: the
/// answer may be anything but a panic.
#[test]
fn mangled_commands_never_panic() {
    let seeds: [&[u8]; 6] = [
        b"a1 UID FETCH 1:*,5 (BODY.PEEK[1.2.HEADER.FIELDS (A B)]<0.5> BINARY[1] FLAGS)",
        b"a2 SEARCH RETURN (MIN) CHARSET UTF-8 OR (SEEN 1:4) NOT HEADER X \"y\" SINCE 1-Feb-1994",
        b"a3 APPEND x (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {3+}\r\nabc",
        b"a4 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (% \"a\") RETURN (STATUS (MESSAGES) CHILDREN)",
        b"a5 STORE $ +FLAGS.SILENT (\\Deleted kw)",
        b"a6 ID (\"name\" {2+}\r\nxy) ",
    ];
    let alphabet = b" ()[]<>{}\"\\*$%:,.+-~0123456789AZaz\r\n\0\xff";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut random = move |below: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below as u64) as usize
    };
    for round in 0..20_000 {
        let mut wire = seeds[round % seeds.len()].to_vec();
        for _ in 0..1 + random(4) {
            let at = random(wire.len() + 1);
            match random(3) {
                0 if at < wire.len() => {
                    wire.remove(at);
                }
                1 if at < wire.len() => wire[at] = alphabet[random(alphabet.len())],
                _ => wire.insert(at, alphabet[random(alphabet.len())]),
            }
        }
        for feed in assemble_wire(Limits::default(), &wire) {
            if let Feed::Complete(cmd) = feed {
                let _ = parse(cmd);
            }
        }
    }
}

#[test]
fn sort_thread_and_within() {
    let key = |field, reverse| SortKey { field, reverse };
    assert_eq!(
        ok("t SORT (SUBJECT REVERSE DATE) UTF-8 ALL\r\n"),
        C::Sort {
            uid: false,
            return_options: None,
            keys: vec![key(SortField::Subject, false), key(SortField::Date, true)],
            charset: "UTF-8".into(),
            key: SearchKey::All,
        }
    );
    assert_eq!(
        ok("t UID SORT RETURN (MIN COUNT) (displayfrom) \"us-ascii\" UNSEEN SINCE 1-Feb-1994\r\n"),
        C::Sort {
            uid: true,
            return_options: Some(vec![SearchReturn::Min, SearchReturn::Count]),
            keys: vec![key(SortField::DisplayFrom, false)],
            charset: "us-ascii".into(),
            key: SearchKey::And(vec![
                not(SearchKey::Flag(Flag::Seen)),
                search_key("SINCE 1-Feb-1994"),
            ]),
        }
    );
    assert_eq!(
        ok("t UID THREAD REFERENCES UTF-8 YOUNGER 3600\r\n"),
        C::Thread {
            uid: true,
            algorithm: ThreadAlgorithm::References,
            charset: "UTF-8".into(),
            key: SearchKey::Younger(3600),
        }
    );
    assert_eq!(search_key("OLDER 1"), SearchKey::Older(1));
    assert_eq!(
        err("t SORT (SENDER) UTF-8 ALL\r\n"),
        "unknown sort key SENDER"
    );
    assert_eq!(err("t SORT () UTF-8 ALL\r\n"), "empty sort criteria");
    assert_eq!(
        err("t SORT (DATE REVERSE) UTF-8 ALL\r\n"),
        "REVERSE must be followed by a sort key"
    );
    assert_eq!(
        err("t SORT (REVERSE REVERSE DATE) UTF-8 ALL\r\n"),
        "REVERSE twice in a row"
    );
    assert!(err("t SORT (DATE) ALL\r\n").contains("search"));
    assert_eq!(
        err("t THREAD JWZ UTF-8 ALL\r\n"),
        "unknown thread algorithm JWZ: expected ORDEREDSUBJECT or REFERENCES"
    );
    assert_eq!(
        err("t SEARCH OLDER 0\r\n"),
        "OLDER needs an interval of at least 1 second"
    );
    let many = vec!["DATE"; MAX_SORT_KEYS + 1].join(" ");
    assert_eq!(
        err(&format!("t SORT ({many}) UTF-8 ALL\r\n")),
        format!("more than {MAX_SORT_KEYS} sort criteria")
    );
}
