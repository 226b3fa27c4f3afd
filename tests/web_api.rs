//! The webmail's API (`letterbox::web::api::handle`) in process: a real
//! store in a temporary directory, mail delivered through the store as
//! LMTP does, requests as web-http hands them over, and the store's change
//! stream fed to the hub as the server does.

mod common;

use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use common::TempDir;
use letterbox::services::{analysis_of, Config, Pop3Mode, Shared};
use letterbox::store::{Change, DeliveryTarget, Flags, MailboxId, QuotaLimits};
use letterbox::web::api::handle;
use letterbox::web::{Body, Caller, Method, Request, Response};
use smol::stream::StreamExt;

struct Web {
    shared: Rc<Shared>,
    changes: smol::channel::Receiver<Vec<Change>>,
    dir: TempDir,
}

fn config(data: &Path, sendmail: Option<Vec<String>>) -> Config {
    Config {
        data_dir: data.to_path_buf(),
        imap: None,
        imaps: None,
        pop3: None,
        pop3s: None,
        lmtp: None,
        lmtp_socket: None,
        tls_cert: None,
        tls_key: None,
        hostname: "mx.example.org".into(),
        allow_plaintext_auth: false,
        max_message_size: 1024 * 1024,
        max_connections: 10,
        max_connections_per_ip: 10,
        cache_size: 4 << 20,
        pop3_mode: Pop3Mode::Delete,
        idle_keepalive: Duration::from_secs(120),
        imap_autologout: Duration::from_secs(1800),
        login_timeout: Duration::from_secs(60),
        login_cache: Duration::from_secs(0),
        memory_budget: 64 << 20,
        memory_wait: Duration::from_secs(30),
        backup_dir: None,
        backup_every: Duration::from_secs(86_400),
        backup_keep: 7,
        min_free_space: Some(0),
        run_as: None,
        quota: QuotaLimits::default(),
        quota_bounce: false,
        sendmail,
        mail_domain: Some("example.org".into()),
        web: Default::default(),
    }
}

fn open_with(name: &str, sendmail: impl FnOnce(&Path) -> Option<Vec<String>>) -> Web {
    let dir = TempDir::new(name);
    let data = dir.0.join("data");
    std::fs::create_dir_all(&data).unwrap();
    // Never checked here: the API is called for a logged-in caller.
    let hash = "{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$x";
    std::fs::write(
        data.join("users"),
        format!("alice:{hash}\nbob:{hash}\ncarol:{hash}::::::address=Carol.C@family.example\n"),
    )
    .unwrap();
    let sendmail = sendmail(&dir.0);
    let (shared, changes) = Shared::open(config(&data, sendmail)).unwrap();
    Web {
        shared: Rc::new(shared),
        changes,
        dir,
    }
}

fn open(name: &str) -> Web {
    open_with(name, |_| None)
}

struct Answer {
    status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn collect(response: Response) -> (Answer, usize) {
    let (body, pieces) = match response.body {
        Body::Bytes(bytes) => (bytes, 1),
        Body::Stream(mut stream) => {
            let (mut all, mut n) = (Vec::new(), 0);
            while let Some(piece) = stream.next().await {
                all.extend(piece);
                n += 1;
            }
            (all, n)
        }
    };
    (
        Answer {
            status: response.status,
            content_type: response.content_type,
            headers: response.headers,
            body,
        },
        pieces,
    )
}

impl Web {
    fn request(
        &self,
        user: &str,
        method: Method,
        target: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Response {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let query = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), letterbox::web::api::form::percent_decode(v))
            })
            .collect();
        let request = Request {
            method,
            path: path.to_string(),
            query,
            content_type: content_type.map(str::to_string),
            body: body.to_vec(),
        };
        let caller = Caller {
            user: user.to_string(),
            peer: "127.0.0.1".into(),
        };
        let post = method == Method::Post;
        let response = smol::block_on(handle(&self.shared, &caller, request));
        if post {
            self.settle();
        }
        response
    }

    fn get(&self, user: &str, target: &str) -> Answer {
        smol::block_on(collect(self.request(user, Method::Get, target, None, b""))).0
    }

    fn post(&self, user: &str, target: &str, form: &str) -> Answer {
        let response = self.request(
            user,
            Method::Post,
            target,
            Some("application/x-www-form-urlencoded"),
            form.as_bytes(),
        );
        smol::block_on(collect(response)).0
    }

    fn post_multipart(
        &self,
        user: &str,
        target: &str,
        parts: &[(&str, Option<&str>, &[u8])],
    ) -> Answer {
        let boundary = "----lbtest7MA4YWxkTrZu0gW";
        let mut body = Vec::new();
        for (name, filename, data) in parts {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            match filename {
                Some(file) => body.extend_from_slice(
                    format!(
                        // Quotes as browsers send them (WHATWG): %22.
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{}\"\r\n\
                         Content-Type: application/pdf\r\n\r\n",
                        file.replace('"', "%22")
                    )
                    .as_bytes(),
                ),
                None => body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                ),
            }
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let response = self.request(user, Method::Post, target, Some(&content_type), &body);
        smol::block_on(collect(response)).0
    }

    /// What the server's hub task does: committed changes to the hub.
    fn pump(&self) {
        while let Ok(batch) = self.changes.try_recv() {
            self.shared.hub.publish(&batch);
        }
    }

    /// The writer answers a write before it sends the write's changes:
    /// waits a moment for them, then publishes whatever came.
    fn settle(&self) {
        let first = smol::block_on(smol::future::or(
            async { self.changes.recv().await.ok() },
            async {
                smol::Timer::after(Duration::from_millis(100)).await;
                None
            },
        ));
        if let Some(batch) = first {
            self.shared.hub.publish(&batch);
        }
        self.pump();
    }

    fn deliver(&self, user: &str, raw: &[u8]) -> (MailboxId, u32) {
        let raw = raw.to_vec();
        let analysis = analysis_of(&raw);
        let target = DeliveryTarget {
            user: user.to_string(),
            folder: None,
        };
        let delivered = smol::block_on(
            self.shared
                .store
                .write(move |tx| tx.deliver(&raw, &analysis, letterbox::clock::now(), &[target])),
        )
        .unwrap();
        self.settle();
        (delivered[0].mailbox, delivered[0].uid)
    }

    fn folder(&self, user: &str, name: &str) -> MailboxId {
        let snapshot = self.shared.store.snapshot().unwrap();
        snapshot.mailbox_id(user, name).unwrap().unwrap()
    }

    fn flags(&self, mailbox: MailboxId, uid: u32) -> Option<Flags> {
        let snapshot = self.shared.store.snapshot().unwrap();
        snapshot.message(mailbox, uid).unwrap().map(|m| m.flags)
    }

    fn uids(&self, mailbox: MailboxId) -> Vec<u32> {
        let snapshot = self.shared.store.snapshot().unwrap();
        snapshot
            .messages(mailbox)
            .unwrap()
            .into_iter()
            .map(|(u, _)| u)
            .collect()
    }

    fn raw(&self, mailbox: MailboxId, uid: u32) -> Vec<u8> {
        let snapshot = self.shared.store.snapshot().unwrap();
        let record = snapshot.message(mailbox, uid).unwrap().unwrap();
        snapshot.blob(record.blob).unwrap()
    }
}

fn simple(from: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: alice@example.org\r\nSubject: {subject}\r\n\
         Date: Thu, 26 Nov 2026 11:26:36 +0000\r\nMessage-ID: <{subject}@example.org>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

const RICH: &str = "From: =?ISO-8859-1?Q?J=F6rg?= <jorg@example.org>\r\n\
To: Alice <alice@example.org>, bob@example.org\r\n\
Cc: carol@example.org\r\n\
Subject: =?UTF-8?B?UHLDvGZ1bmc=?= <b>bold</b>\r\n\
Date: Thu, 26 Nov 2026 11:26:36 +0100\r\n\
Message-ID: <rich@example.org>\r\n\
In-Reply-To: <parent@example.org>\r\n\
References: <root@example.org> <parent@example.org>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
--outer\r\n\
Content-Type: multipart/alternative; boundary=\"alt\"\r\n\
\r\n\
--alt\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Gr=FC=DFe aus K=F6ln\r\n\
--alt\r\n\
Content-Type: multipart/related; boundary=\"rel\"\r\n\
\r\n\
--rel\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<html><head><meta http-equiv=\"refresh\" content=\"0;url=https://evil.example/\"><base href=\"https://evil.example/\"></head>\
<body onload=\"alert(1)\"><p>Hello</p><script>alert(2)</script><img src=\"cid:logo@example.org\">\
<img src=x onerror=alert(3)><a href=\"javascript:alert(4)\">j</a><a href=\"https://example.org/\">ok</a>\
<form action=\"/api/send\" method=\"post\"><button>go</button></form><iframe src=\"/\"></iframe>\
<div style=\"background:url(https://remote.example/t.png)\">css</div></body></html>\r\n\
--rel\r\n\
Content-Type: image/png\r\n\
Content-ID: <logo@example.org>\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
iVBORw0KGgo=\r\n\
--rel--\r\n\
--alt--\r\n\
--outer\r\n\
Content-Type: text/html; name=\"evil.html\"\r\n\
Content-Disposition: attachment; filename*=UTF-8''%22%0D%0ASet-Cookie%3A%20x%22%5C..%2Fr%C3%A9sum%C3%A9.html\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\r\n\
--outer--\r\n";

#[test]
fn config_names_the_users_own_address() {
    let web = open("config");
    let alice = web.get("alice", "/api/config");
    assert_eq!(alice.status, 200);
    assert_eq!(
        alice.text(),
        r#"{"user":"alice","from":"alice@example.org","can_send":false,"max_message_size":1048576}"#
    );
    let carol = web.get("carol", "/api/config");
    assert!(
        carol.text().contains(r#""from":"Carol.C@family.example""#),
        "{}",
        carol.text()
    );
}

#[test]
fn folders_list_inbox_then_special_use_then_by_name() {
    let web = open("folders");
    assert_eq!(
        web.post("alice", "/api/folders/create", "name=Zeta").status,
        200
    );
    assert_eq!(
        web.post("alice", "/api/folders/create", "name=Lists%2Frust")
            .status,
        200
    );
    web.deliver("alice", &simple("a@example.org", "one", "x"));
    web.deliver("alice", &simple("a@example.org", "two", "x"));
    let answer = web.get("alice", "/api/folders");
    assert_eq!(answer.status, 200);
    let text = answer.text();
    let names: Vec<&str> = text
        .split("\"name\":\"")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    assert_eq!(
        names,
        [
            "INBOX",
            "Sent",
            "Drafts",
            "Trash",
            "Junk",
            "Archive",
            "Lists",
            "Lists/rust",
            "Zeta"
        ]
    );
    assert!(
        text.contains(r#""name":"INBOX","special_use":null,"unread":2,"total":2"#),
        "{text}"
    );
    assert!(
        text.contains(r#""name":"Sent","special_use":"\\Sent""#),
        "{text}"
    );
}

#[test]
fn folder_create_rename_delete() {
    let web = open("folder-ops");
    let created = web.post("alice", "/api/folders/create", "name=Projects");
    assert_eq!(created.status, 200);
    let id: u64 = created
        .text()
        .trim_start_matches("{\"id\":")
        .trim_end_matches('}')
        .parse()
        .unwrap();
    assert_eq!(
        web.post("alice", "/api/folders/create", "name=Projects")
            .status,
        409
    );
    for bad in [
        "name=",
        "name=a%2F%2Fb",
        "name=a%0Db",
        "name=INBOX",
        "name=%2A",
    ] {
        assert_eq!(
            web.post("alice", "/api/folders/create", bad).status,
            400,
            "{bad}"
        );
    }
    let renamed = web.post(
        "alice",
        &format!("/api/folders/{id}/rename"),
        "name=Work%2FProjects",
    );
    assert_eq!(renamed.status, 200, "{}", renamed.text());
    assert_eq!(web.folder("alice", "Work/Projects"), id);
    web.folder("alice", "Work");
    let inbox = web.folder("alice", "INBOX");
    assert_eq!(
        web.post("alice", &format!("/api/folders/{inbox}/rename"), "name=x")
            .status,
        400
    );
    assert_eq!(
        web.post("alice", &format!("/api/folders/{inbox}/delete-folder"), "")
            .status,
        400
    );
    // Without `uids`, deleting messages is refused; the folder stays.
    assert_eq!(
        web.post("alice", &format!("/api/folders/{id}/delete"), "")
            .status,
        400
    );
    assert_eq!(web.folder("alice", "Work/Projects"), id);
    assert_eq!(
        web.post("alice", &format!("/api/folders/{id}/delete-folder"), "")
            .status,
        200
    );
    assert!(web
        .shared
        .store
        .snapshot()
        .unwrap()
        .mailbox(id)
        .unwrap()
        .is_none());
    assert_eq!(
        web.post("alice", &format!("/api/folders/{id}/delete-folder"), "")
            .status,
        404
    );
}

#[test]
fn message_list_is_newest_first_paged_and_filtered() {
    let web = open("list");
    let mut uids = Vec::new();
    for n in 0..7 {
        let (_, uid) = web.deliver(
            "alice",
            &simple(
                &format!("\"Sender {n}\" <s{n}@example.org>"),
                &format!("subject-{n}"),
                &format!("body word{n}"),
            ),
        );
        uids.push(uid);
    }
    let inbox = web.folder("alice", "INBOX");
    let page = web.get(
        "alice",
        &format!("/api/folders/{inbox}/messages?offset=2&limit=3"),
    );
    assert_eq!(page.status, 200);
    let text = page.text();
    assert!(text.starts_with(r#"{"total":7,"offset":2,"messages":[{"uid":5,"from":"Sender 4","subject":"subject-4","date":"2026-11-26T11:26:36Z","size":"#), "{text}");
    let listed: Vec<&str> = text
        .split("\"uid\":")
        .skip(1)
        .map(|s| &s[..s.find(',').unwrap()])
        .collect();
    assert_eq!(listed, ["5", "4", "3"]);
    assert!(text
        .contains(r#""attachment":false,"seen":false,"flagged":false,"answered":false,"depth":0"#));

    // Flags through the API, then the filters.
    let form = format!("uids={},{}&add=%5CFlagged&add=%5CSeen", uids[1], uids[2]);
    assert_eq!(
        web.post("alice", &format!("/api/folders/{inbox}/flags"), &form)
            .text(),
        r#"{"ok":true}"#
    );
    let flagged = web
        .get(
            "alice",
            &format!("/api/folders/{inbox}/messages?filter=flagged"),
        )
        .text();
    assert!(flagged.starts_with(r#"{"total":2,"#), "{flagged}");
    let unread = web
        .get(
            "alice",
            &format!("/api/folders/{inbox}/messages?filter=unread"),
        )
        .text();
    assert!(unread.starts_with(r#"{"total":5,"#), "{unread}");
    assert_eq!(
        web.get(
            "alice",
            &format!("/api/folders/{inbox}/messages?filter=odd")
        )
        .status,
        400
    );
    assert_eq!(
        web.get("alice", &format!("/api/folders/{inbox}/messages?limit=x"))
            .status,
        400
    );

    // Search: from, subject, body.
    for (q, expect) in [
        ("word3", "4"),
        ("SUBJECT-6", "7"),
        ("s0%40example", "1"),
        ("nothing-like-it", ""),
    ] {
        let found = web
            .get("alice", &format!("/api/folders/{inbox}/messages?q={q}"))
            .text();
        let listed: Vec<&str> = found
            .split("\"uid\":")
            .skip(1)
            .map(|s| &s[..s.find(',').unwrap()])
            .collect();
        assert_eq!(listed.join(","), expect, "q={q}: {found}");
    }
}

#[test]
fn thread_view_indents_replies() {
    let web = open("thread");
    let msg = |id: &str, refs: &str, subject: &str| {
        format!(
            "From: a@example.org\r\nSubject: {subject}\r\nMessage-ID: <{id}@x>\r\n{refs}\
             Date: Thu, 26 Nov 2026 11:26:36 +0000\r\n\r\nbody\r\n"
        )
        .into_bytes()
    };
    web.deliver("alice", &msg("a", "", "plan"));
    web.deliver("alice", &msg("other", "", "unrelated"));
    web.deliver(
        "alice",
        &msg(
            "b",
            "In-Reply-To: <a@x>\r\nReferences: <a@x>\r\n",
            "Re: plan",
        ),
    );
    web.deliver(
        "alice",
        &msg("c", "References: <a@x> <b@x>\r\n", "Re: plan"),
    );
    let inbox = web.folder("alice", "INBOX");
    let text = web
        .get("alice", &format!("/api/folders/{inbox}/messages?thread=1"))
        .text();
    let order: Vec<String> = text
        .split("\"uid\":")
        .skip(1)
        .map(|s| {
            let uid = &s[..s.find(',').unwrap()];
            let depth = s.split("\"depth\":").nth(1).unwrap();
            format!("{uid}/{}", &depth[..depth.find('}').unwrap()])
        })
        .collect();
    // The thread with the newest message first; replies indented.
    assert_eq!(order, ["1/0", "3/1", "4/2", "2/0"], "{text}");
}

#[test]
fn threaded_and_searched_lists_follow_every_change() {
    // These orders are kept between pages until the folder changes; every
    // change must show at once.
    let web = open("list-cache");
    for n in 1..=3 {
        web.deliver(
            "alice",
            format!("Subject: note {n}\r\nMessage-ID: <n{n}@x>\r\n\r\nkeyword\r\n").as_bytes(),
        );
    }
    let inbox = web.folder("alice", "INBOX");
    let uids = |query: &str| -> Vec<u32> {
        let text = web
            .get("alice", &format!("/api/folders/{inbox}/messages?{query}"))
            .text();
        text.split("\"uid\":")
            .skip(1)
            .map(|s| s[..s.find(',').unwrap()].parse().unwrap())
            .collect()
    };
    for query in ["thread=1", "q=keyword", "thread=1&q=keyword"] {
        assert_eq!(uids(query), [3, 2, 1], "{query}");
        // The same again (kept), then after an arrival and an expunge.
        assert_eq!(uids(query), [3, 2, 1], "{query}");
    }
    web.deliver(
        "alice",
        b"Subject: Re: note 1\r\nReferences: <n1@x>\r\n\r\nkeyword\r\n",
    );
    assert_eq!(uids("thread=1"), [1, 4, 3, 2]);
    assert_eq!(uids("q=keyword"), [4, 3, 2, 1]);
    let removed = web.post("alice", &format!("/api/folders/{inbox}/delete"), "uids=2");
    assert_eq!(removed.status, 200, "{}", removed.text());
    assert_eq!(uids("thread=1"), [1, 4, 3]);
    assert_eq!(uids("q=keyword"), [4, 3, 1]);
    // With a filter, flags count: reading a message takes it out.
    assert_eq!(uids("thread=1&filter=unread"), [1, 4, 3]);
    let read = web.post(
        "alice",
        &format!("/api/folders/{inbox}/flags"),
        "uids=3&add=%5CSeen",
    );
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(uids("thread=1&filter=unread"), [1, 4]);
    assert_eq!(uids("thread=1"), [1, 4, 3]);
}

#[test]
fn a_kept_list_order_is_not_served_after_an_import_resets_uids() {
    // An import into an emptied folder sets UIDNEXT back to 1 under a new
    // UIDVALIDITY: the same UIDNEXT and count can come back with other
    // messages behind them.
    let web = open("list-cache-import");
    let msg = |id: &str, refs: &str, subject: &str| {
        format!("Subject: {subject}\r\nMessage-ID: <{id}@x>\r\n{refs}\r\nbody\r\n").into_bytes()
    };
    for n in 1..=3 {
        web.deliver("alice", &msg(&format!("n{n}"), "", &format!("note {n}")));
    }
    let inbox = web.folder("alice", "INBOX");
    let threaded = |web: &Web| -> Vec<u32> {
        let text = web
            .get("alice", &format!("/api/folders/{inbox}/messages?thread=1"))
            .text();
        text.split("\"uid\":")
            .skip(1)
            .map(|s| s[..s.find(',').unwrap()].parse().unwrap())
            .collect()
    };
    assert_eq!(threaded(&web), [3, 2, 1]);
    web.shared
        .store
        .write_blocking(move |tx| tx.expunge(inbox, &[1, 2, 3]).map(drop))
        .unwrap();
    web.shared
        .store
        .write_blocking(move |tx| tx.adopt_uid_validity(inbox, 77))
        .unwrap();
    web.deliver("alice", &msg("a", "", "plan"));
    web.deliver("alice", &msg("b", "References: <a@x>\r\n", "Re: plan"));
    web.deliver("alice", &msg("c", "", "other"));
    assert_eq!(threaded(&web), [3, 1, 2]);
}

#[test]
fn message_view_decodes_and_sets_seen() {
    let web = open("view");
    let (inbox, uid) = web.deliver("alice", RICH.as_bytes());
    let before = web.get("alice", "/api/folders").text();
    assert!(before.contains(r#""unread":1"#));
    let inbox_listener = web.shared.hub.listen(inbox);
    let answer = web.get("alice", &format!("/api/folders/{inbox}/messages/{uid}"));
    assert_eq!(answer.status, 200);
    let text = answer.text();
    for part in [
        r#""from":"Jörg \u003cjorg@example.org\u003e""#,
        r#""to":"Alice \u003calice@example.org\u003e, bob@example.org""#,
        r#""cc":"carol@example.org""#,
        r#""date":"2026-11-26T10:26:36Z""#,
        // Markup in a subject is text, escaped in the JSON.
        r#""subject":"Prüfung \u003cb\u003ebold\u003c/b\u003e""#,
        r#""message_id":"\u003crich@example.org\u003e""#,
        r#""in_reply_to":"\u003cparent@example.org\u003e""#,
        r#""flags":["\\Seen"]"#,
        r#""text":"Grüße aus Köln"#,
        r#""has_html":true"#,
        r#"{"part":"1.2.2","name":"","type":"image/png","size":12,"inline":true,"cid":"logo@example.org"}"#,
        r#""part":"2","name":"\"\r\nSet-Cookie: x\"\\../résumé.html","type":"text/html""#,
    ] {
        let part = part.replace("\r\n", "\\r\\n");
        assert!(text.contains(&part), "{part} not in {text}");
    }
    // \Seen is set through the store's flag path: IDLE sessions are woken.
    web.settle();
    assert!(web.flags(inbox, uid).unwrap().contains(Flags::SEEN));
    assert!(smol::block_on(smol::future::poll_once(inbox_listener)).is_some());
    assert!(web
        .get("alice", "/api/folders")
        .text()
        .contains(r#""name":"INBOX","special_use":null,"unread":0"#));
}

#[test]
fn html_is_sanitized_under_its_own_csp() {
    let web = open("html");
    let (inbox, uid) = web.deliver("alice", RICH.as_bytes());
    let answer = web.get(
        "alice",
        &format!("/api/folders/{inbox}/messages/{uid}/html"),
    );
    assert_eq!(answer.status, 200);
    assert_eq!(answer.content_type, "text/html; charset=utf-8");
    let csp = answer.header("Content-Security-Policy").unwrap();
    assert!(
        csp.starts_with("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:;"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'self'") && csp.contains("form-action 'none'"));
    let html = answer.text().to_ascii_lowercase();
    assert!(html.starts_with("<!doctype html><meta charset=\"utf-8\"><base target=\"_blank\">"));
    for gone in [
        "<script",
        "onload",
        "onerror",
        "javascript:",
        "http-equiv",
        "evil.example",
        "<form",
        "<iframe",
        "<button",
    ] {
        assert!(!html.contains(gone), "{gone} in {html}");
    }
    assert!(
        html.contains(&format!(
            "<img src=\"/api/folders/{inbox}/messages/{uid}/cid/logo%40example.org\">"
        )),
        "{html}"
    );
    assert!(html.contains("<a href=\"https://example.org/\" rel=\"noopener noreferrer\">ok</a>"));
    let remote = web.get(
        "alice",
        &format!("/api/folders/{inbox}/messages/{uid}/html?remote=1"),
    );
    assert!(remote
        .header("Content-Security-Policy")
        .unwrap()
        .contains("img-src 'self' data: https: http:"));
    // A message without HTML has no HTML route.
    let (_, plain) = web.deliver("alice", &simple("a@example.org", "plain", "x"));
    assert_eq!(
        web.get(
            "alice",
            &format!("/api/folders/{inbox}/messages/{plain}/html")
        )
        .status,
        404
    );
}

#[test]
fn parts_download_with_safe_names_and_types() {
    let web = open("parts");
    let (inbox, uid) = web.deliver("alice", RICH.as_bytes());
    let (attachment, _) = smol::block_on(collect(web.request(
        "alice",
        Method::Get,
        &format!("/api/folders/{inbox}/messages/{uid}/part/2"),
        None,
        b"",
    )));
    assert_eq!(attachment.status, 200);
    // HTML as an attachment is never served as HTML.
    assert_eq!(attachment.content_type, "application/octet-stream");
    assert_eq!(attachment.body, b"<script>alert(1)</script>");
    assert_eq!(
        attachment.header("Content-Disposition").unwrap(),
        "attachment; filename=\"___Set-Cookie: x__.._r_sum_.html\"; \
         filename*=UTF-8''%22__Set-Cookie%3A%20x%22_.._r%C3%A9sum%C3%A9.html"
    );
    let image = web.get(
        "alice",
        &format!("/api/folders/{inbox}/messages/{uid}/cid/logo%40example.org"),
    );
    assert_eq!(image.status, 200);
    assert_eq!(image.content_type, "image/png");
    assert_eq!(image.body, b"\x89PNG\r\n\x1a\n");
    assert_eq!(image.header("Content-Disposition"), Some("inline"));
    for missing in [
        "part/9",
        "part/0",
        "part/1.x",
        "part/..%2F1",
        "cid/nope",
        "cid/",
        "nothing",
    ] {
        let answer = web.get(
            "alice",
            &format!("/api/folders/{inbox}/messages/{uid}/{missing}"),
        );
        assert_eq!(answer.status, 404, "{missing}");
    }
}

#[test]
fn source_streams_in_pieces() {
    let web = open("source");
    let mut big = simple("a@example.org", "big", "").to_vec();
    for n in 0..3000 {
        big.extend_from_slice(
            format!("line {n:05} of a long message body, to pass one store chunk\r\n").as_bytes(),
        );
    }
    let (inbox, uid) = web.deliver("alice", &big);
    let (answer, pieces) = smol::block_on(collect(web.request(
        "alice",
        Method::Get,
        &format!("/api/folders/{inbox}/messages/{uid}/source"),
        None,
        b"",
    )));
    assert_eq!(answer.status, 200);
    assert_eq!(answer.content_type, "text/plain; charset=utf-8");
    assert_eq!(answer.header("Content-Disposition"), Some("inline"));
    assert_eq!(answer.body, big);
    assert!(
        pieces >= big.len() / letterbox::store::BLOB_CHUNK,
        "{pieces} pieces"
    );
}

#[test]
fn flags_move_and_delete_go_through_the_store() {
    let web = open("actions");
    let (inbox, one) = web.deliver("alice", &simple("a@example.org", "one", "x"));
    let (_, two) = web.deliver("alice", &simple("a@example.org", "two", "x"));
    let listener = web.shared.hub.listen(inbox);
    let flags = format!("/api/folders/{inbox}/flags");
    assert_eq!(
        web.post(
            "alice",
            &flags,
            &format!("uids={one}&add=%5CFlagged&add=%5CAnswered")
        )
        .status,
        200
    );
    assert!(
        smol::block_on(smol::future::poll_once(listener)).is_some(),
        "IDLE would wake"
    );
    assert_eq!(
        web.flags(inbox, one),
        Some(Flags::FLAGGED.with(Flags::ANSWERED))
    );
    assert_eq!(
        web.post("alice", &flags, &format!("uids={one}&remove=%5CFlagged"))
            .status,
        200
    );
    assert_eq!(web.flags(inbox, one), Some(Flags::ANSWERED));
    assert_eq!(
        web.post("alice", &flags, &format!("uids={one}&add=%5CDeleted"))
            .status,
        400
    );
    assert_eq!(
        web.post("alice", &flags, "uids=1,x&add=%5CSeen").status,
        400
    );
    assert_eq!(web.post("alice", &flags, "uids=&add=%5CSeen").status, 400);
    assert_eq!(
        web.post("alice", &flags, &format!("uids={one}")).status,
        400
    );

    let archive = web.folder("alice", "Archive");
    let moved = web.post(
        "alice",
        &format!("/api/folders/{inbox}/move"),
        &format!("uids={one}&to={archive}"),
    );
    assert_eq!(moved.status, 200);
    assert_eq!(web.uids(inbox), [two]);
    assert_eq!(web.uids(archive).len(), 1);
    assert_eq!(web.get("bob", "/api/config").status, 200);
    let bobs = web.folder("bob", "INBOX");
    let refused = web.post(
        "alice",
        &format!("/api/folders/{inbox}/move"),
        &format!("uids={two}&to={bobs}"),
    );
    assert_eq!(refused.status, 404);
    assert_eq!(web.uids(inbox), [two]);

    let trash = web.folder("alice", "Trash");
    assert_eq!(
        web.post(
            "alice",
            &format!("/api/folders/{inbox}/delete"),
            &format!("uids={two}")
        )
        .status,
        200
    );
    assert!(web.uids(inbox).is_empty());
    let in_trash = web.uids(trash);
    assert_eq!(in_trash.len(), 1);
    // Inside Trash, for good.
    let gone = web.post(
        "alice",
        &format!("/api/folders/{trash}/delete"),
        &format!("uids={}", in_trash[0]),
    );
    assert_eq!(gone.status, 200);
    assert!(web.uids(trash).is_empty());
    assert_eq!(
        web.post("alice", &format!("/api/folders/{inbox}/delete"), "uids=")
            .status,
        400
    );
    assert!(web
        .shared
        .store
        .snapshot()
        .unwrap()
        .mailbox(inbox)
        .unwrap()
        .is_some());
}

#[test]
fn another_users_ids_are_unknown_ids() {
    let web = open("others");
    let (bob_inbox, bob_uid) = web.deliver("bob", &simple("a@example.org", "secret", "for bob"));
    let (alice_inbox, _) = web.deliver("alice", &simple("a@example.org", "hi", "x"));
    for path in [
        format!("/api/folders/{bob_inbox}/messages"),
        format!("/api/folders/{bob_inbox}/messages/{bob_uid}"),
        format!("/api/folders/{bob_inbox}/messages/{bob_uid}/html"),
        format!("/api/folders/{bob_inbox}/messages/{bob_uid}/part/1"),
        format!("/api/folders/{bob_inbox}/messages/{bob_uid}/source"),
        format!("/api/folders/{alice_inbox}/messages/{bob_uid}9"),
        "/api/folders/999999/messages".to_string(),
        format!("/api/folders/..%2F{bob_inbox}/messages"),
        format!("/api/folders/+{bob_inbox}/messages"),
        "/api/folders/x/messages".to_string(),
        "/api/nothing".to_string(),
    ] {
        let answer = web.get("alice", &path);
        assert_eq!(answer.status, 404, "{path}: {}", answer.text());
        assert_eq!(answer.text(), r#"{"error":"not found"}"#);
    }
    for (path, form) in [
        (
            format!("/api/folders/{bob_inbox}/flags"),
            format!("uids={bob_uid}&add=%5CSeen"),
        ),
        (
            format!("/api/folders/{bob_inbox}/delete"),
            format!("uids={bob_uid}"),
        ),
        (
            format!("/api/folders/{bob_inbox}/delete-folder"),
            String::new(),
        ),
        (
            format!("/api/folders/{bob_inbox}/rename"),
            "name=mine".to_string(),
        ),
        (
            format!("/api/folders/{bob_inbox}/move"),
            format!("uids={bob_uid}&to={alice_inbox}"),
        ),
    ] {
        assert_eq!(web.post("alice", &path, &form).status, 404, "{path}");
    }
    assert_eq!(web.uids(bob_inbox), [bob_uid]);
    assert!(!web.flags(bob_inbox, bob_uid).unwrap().contains(Flags::SEEN));
}

#[test]
fn drafts_are_built_safely_and_replaced() {
    let web = open("drafts");
    let first = web.post_multipart(
        "alice",
        "/api/drafts",
        &[
            (
                "to",
                None,
                "\"Smith, Bob\" <bob@example.org>, Zoë <zoe@example.org>".as_bytes(),
            ),
            ("subject", None, "Grüße".as_bytes()),
            ("body", None, "Hello =\r\nsecond line \r\n.".as_bytes()),
            ("in_reply_to", None, b"<parent@example.org>"),
            (
                "references",
                None,
                b"<root@example.org> <parent@example.org>",
            ),
            (
                "attachment",
                Some("résumé \"v2\".pdf"),
                b"%PDF-1.4 binary \x00\x01\x02",
            ),
        ],
    );
    assert_eq!(first.status, 200, "{}", first.text());
    let uid: u32 = first
        .text()
        .trim_start_matches("{\"uid\":")
        .trim_end_matches('}')
        .parse()
        .unwrap();
    let drafts = web.folder("alice", "Drafts");
    assert_eq!(web.flags(drafts, uid), Some(Flags::DRAFT.with(Flags::SEEN)));
    let raw = String::from_utf8(web.raw(drafts, uid)).unwrap();
    for line in [
        "From: alice@example.org\r\n",
        "To: \"Smith, Bob\" <bob@example.org>,\r\n =?UTF-8?B?Wm/Dqw==?= <zoe@example.org>\r\n",
        "Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n",
        "In-Reply-To: <parent@example.org>\r\n",
        "References: <root@example.org>\r\n <parent@example.org>\r\n",
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nHello =3D\r\nsecond line=20\r\n=2E\r\n",
        "Content-Type: application/pdf;\r\n name*=UTF-8''r%C3%A9sum%C3%A9%20%22v2%22.pdf\r\n",
        "Content-Disposition: attachment;\r\n filename*=UTF-8''r%C3%A9sum%C3%A9%20%22v2%22.pdf\r\n",
        "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQgYmluYXJ5IAABAg==\r\n",
    ] {
        assert!(raw.contains(line), "{line:?} not in {raw}");
    }
    assert!(raw.contains("\r\nMessage-ID: <") && raw.contains("@example.org>\r\n"));
    // Read back through the API: the attachment and its name survive.
    let view = web
        .get("alice", &format!("/api/folders/{drafts}/messages/{uid}"))
        .text();
    assert!(
        view.contains(r#""name":"résumé \"v2\".pdf","type":"application/pdf""#),
        "{view}"
    );
    assert!(
        view.contains(r#""text":"Hello =\r\nsecond line \r\n.""#),
        "{view}"
    );

    // Saving again replaces the old draft; a half-typed address is kept.
    let second = web.post(
        "alice",
        "/api/drafts",
        &format!("to=bo&subject=x&replace={uid}"),
    );
    assert_eq!(second.status, 200, "{}", second.text());
    let uids = web.uids(drafts);
    assert_eq!(uids.len(), 1);
    assert_ne!(uids[0], uid);
    assert!(String::from_utf8(web.raw(drafts, uids[0]))
        .unwrap()
        .contains("\r\nTo: bo\r\n"));
}

#[test]
fn header_injection_is_refused() {
    let web = open("injection");
    for (field, value) in [
        ("subject", "hi%0D%0ABcc%3A%20eve%40evil.example"),
        ("subject", "hi%0Abcc"),
        ("to", "bob%40example.org%0D%0ABcc%3A%20eve%40evil.example"),
        ("cc", "bob%40example.org%00"),
        ("in_reply_to", "%3Ca%40b%3E%0D%0AX%3A%201"),
        ("references", "%3Ca%40b%3E%09%0D%0A"),
    ] {
        let answer = web.post("alice", "/api/drafts", &format!("{field}={value}"));
        assert_eq!(answer.status, 400, "{field}={value}: {}", answer.text());
    }
    let file = web.post_multipart(
        "alice",
        "/api/drafts",
        &[("attachment", Some("a\rb.txt"), b"x")],
    );
    assert_eq!(file.status, 400, "{}", file.text());
    // From is the user's own, whatever the form says.
    let sneaky = web.post(
        "alice",
        "/api/drafts",
        "from=ceo%40example.org&to=bob%40example.org",
    );
    assert_eq!(sneaky.status, 200);
    let drafts = web.folder("alice", "Drafts");
    let raw = String::from_utf8(web.raw(drafts, web.uids(drafts)[0])).unwrap();
    assert!(raw.contains("From: alice@example.org\r\n") && !raw.contains("ceo@"));
    assert!(web.uids(drafts).len() == 1, "nothing refused was stored");
}

fn script(dir: &Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn sending_is_off_without_sendmail() {
    let web = open("nosend");
    let answer = web.post(
        "alice",
        "/api/send",
        "to=bob%40example.org&subject=x&body=y",
    );
    assert_eq!(answer.status, 503);
    assert_eq!(answer.text(), r#"{"error":"sending is not configured"}"#);
}

#[test]
fn send_through_sendmail_keeps_a_copy_in_sent() {
    let web = open_with("send", |dir| {
        let out = dir.join("sent.eml");
        let args = dir.join("args");
        Some(vec![
            script(
                dir,
                "sendmail",
                &format!(
                    "echo \"$@\" > '{}'\ncat > '{}'",
                    args.display(),
                    out.display()
                ),
            ),
            "-i".into(),
            "-t".into(),
        ])
    });
    let draft = web.post("alice", "/api/drafts", "to=bob%40example.org&subject=draft");
    let draft_uid: u32 = draft
        .text()
        .trim_start_matches("{\"uid\":")
        .trim_end_matches('}')
        .parse()
        .unwrap();
    let bad = web.post("alice", "/api/send", "to=not-an-address&subject=x");
    assert_eq!(bad.status, 400, "{}", bad.text());
    let none = web.post("alice", "/api/send", "subject=x");
    assert_eq!(none.status, 400, "{}", none.text());
    let sent = web.post(
        "alice",
        "/api/send",
        &format!("to=bob%40example.org&bcc=hidden%40example.org&subject=Hello&body=Hi+Bob&replace={draft_uid}"),
    );
    assert_eq!(sent.status, 200, "{}", sent.text());
    assert_eq!(sent.text(), r#"{"ok":true}"#);
    let piped = std::fs::read_to_string(web.dir.0.join("sent.eml")).unwrap();
    assert!(piped.contains("From: alice@example.org\r\nTo: bob@example.org\r\nBcc: hidden@example.org\r\nSubject: Hello\r\n"), "{piped}");
    assert_eq!(
        std::fs::read_to_string(web.dir.0.join("args")).unwrap(),
        "-i -t\n"
    );
    let sent_box = web.folder("alice", "Sent");
    let copies = web.uids(sent_box);
    assert_eq!(copies.len(), 1);
    assert_eq!(web.flags(sent_box, copies[0]), Some(Flags::SEEN));
    assert_eq!(web.raw(sent_box, copies[0]), piped.as_bytes());
    assert!(
        web.uids(web.folder("alice", "Drafts")).is_empty(),
        "the draft is gone"
    );
}

#[test]
fn a_failed_send_says_why_and_keeps_the_draft() {
    let web = open_with("sendfail", |dir| {
        Some(vec![script(
            dir,
            "sendmail",
            "cat > /dev/null\necho 'mail.example: connection refused' >&2\nexit 75",
        )])
    });
    let answer = web.post(
        "alice",
        "/api/send",
        "to=bob%40example.org&subject=Hello&body=x",
    );
    assert_eq!(answer.status, 502);
    let text = answer.text();
    assert!(
        text.contains("exit status 75") && text.contains("connection refused"),
        "{text}"
    );
    let drafts = web.folder("alice", "Drafts");
    let kept = web.uids(drafts);
    assert_eq!(kept.len(), 1);
    assert!(
        text.ends_with(&format!(",\"draft_uid\":{}}}", kept[0])),
        "{text}"
    );
    assert!(web.uids(web.folder("alice", "Sent")).is_empty());
}

#[test]
fn a_sent_message_whose_copy_is_over_quota_is_reported_sent_with_a_warning() {
    let web = open_with("send-quota", |dir| {
        let out = dir.join("sent.eml");
        Some(vec![script(
            dir,
            "sendmail",
            &format!("cat > '{}'", out.display()),
        )])
    });
    // Alice may keep one message, and has it.
    let users = web.dir.0.join("data/users");
    let text = std::fs::read_to_string(&users).unwrap();
    let alice = text.lines().next().unwrap();
    assert!(alice.starts_with("alice:"));
    let text = text.replacen(alice, &format!("{alice}::::::quota_messages=1"), 1);
    std::fs::write(&users, text).unwrap();
    assert!(web.shared.resolve_user("alice").is_some());
    assert_eq!(web.shared.quota_limits("alice").messages, Some(1));
    web.deliver("alice", b"Subject: the one\r\n\r\nbody\r\n");

    let answer = web.post(
        "alice",
        "/api/send",
        "to=bob%40example.org&subject=Hello&body=x",
    );
    // Sent: a success, never an error that would have it sent twice.
    assert_eq!(answer.status, 200, "{}", answer.text());
    let text = answer.text();
    assert!(
        text.starts_with(
            r#"{"ok":true,"warning":"The message was sent, but its copy in Sent could not be kept"#
        ),
        "{text}"
    );
    let piped = std::fs::read_to_string(web.dir.0.join("sent.eml")).unwrap();
    assert!(piped.contains("Subject: Hello\r\n"), "{piped}");
    let sent = web
        .shared
        .store
        .snapshot()
        .unwrap()
        .mailbox_id("alice", "Sent");
    if let Ok(Some(sent)) = sent {
        assert!(web.uids(sent).is_empty());
    }
}

#[test]
fn events_follow_the_hub() {
    let web = open("events");
    let response = web.request("alice", Method::Get, "/api/events", None, b"");
    assert_eq!(response.status, 200);
    assert_eq!(response.content_type, "text/event-stream");
    let Body::Stream(mut stream) = response.body else {
        panic!("events must stream");
    };
    let first = smol::block_on(stream.next()).unwrap();
    assert!(String::from_utf8(first).unwrap().contains(": open"));
    let inbox = web.folder("alice", "INBOX");
    let wait =
        |web: &Web, stream: &mut letterbox::web::ChunkStream, act: &dyn Fn(&Web)| -> String {
            let (piece, ()) = smol::block_on(smol::future::zip(stream.next(), async { act(web) }));
            String::from_utf8(piece.unwrap()).unwrap()
        };
    // New mail over LMTP's path.
    let got = wait(&web, &mut stream, &|web| {
        web.deliver("alice", &simple("a@example.org", "new", "x"));
    });
    assert_eq!(got, format!("event: folder\ndata: {{\"id\":{inbox}}}\n\n"));
    // Another user's mail says nothing here; a folder made does.
    let got = wait(&web, &mut stream, &|web| {
        web.deliver("bob", &simple("a@example.org", "bob's", "x"));
        assert_eq!(
            web.post("alice", "/api/folders/create", "name=Fresh")
                .status,
            200
        );
    });
    assert_eq!(got, "event: folders\ndata: {}\n\n");
    // A flag change made elsewhere (as IMAP STORE does).
    let got = wait(&web, &mut stream, &|web| {
        let change = letterbox::store::FlagChange::Add(Flags::FLAGGED, Vec::new());
        smol::block_on(
            web.shared
                .store
                .write(move |tx| tx.change_flags(inbox, &[1], &change)),
        )
        .unwrap();
        web.settle();
    });
    assert_eq!(got, format!("event: folder\ndata: {{\"id\":{inbox}}}\n\n"));
}

/// The list page of a 100,000-message INBOX, timed in process (server
/// time: the handler alone, no HTTP). Run in release:
/// `cargo test --release --test web_api -- --ignored list_page_timing --nocapture`.
#[test]
#[ignore]
fn list_page_timing() {
    const COUNT: usize = 100_000;
    let web = open("timing");
    let started = std::time::Instant::now();
    for batch in 0..COUNT / 1000 {
        let messages: Vec<(Vec<u8>, letterbox::store::Analysis)> = (0..1000)
            .map(|n| {
                let n = batch * 1000 + n;
                let raw = format!(
                    "From: \"Sender {n}\" <s{n}@example.org>\r\nTo: alice@example.org\r\n\
                     Subject: message number {n}\r\nDate: Thu, 26 Nov 2026 11:26:36 +0000\r\n\
                     Message-ID: <{n}@example.org>\r\n\r\n{}\r\n",
                    "body text ".repeat(20)
                )
                .into_bytes();
                let analysis = analysis_of(&raw);
                (raw, analysis)
            })
            .collect();
        smol::block_on(web.shared.store.write(move |tx| {
            for (raw, analysis) in &messages {
                let target = DeliveryTarget {
                    user: "alice".into(),
                    folder: None,
                };
                tx.deliver(raw, analysis, letterbox::clock::now(), &[target])?;
            }
            Ok(())
        }))
        .unwrap();
    }
    web.pump();
    eprintln!("filled {COUNT} messages in {:?}", started.elapsed());
    let inbox = web.folder("alice", "INBOX");
    for (what, query) in [
        ("first page", String::new()),
        ("page at offset 50000", "?offset=50000".to_string()),
        ("unread filter", "?filter=unread".to_string()),
    ] {
        let mut times = Vec::new();
        for _ in 0..101 {
            let start = std::time::Instant::now();
            let answer = web.get("alice", &format!("/api/folders/{inbox}/messages{query}"));
            times.push(start.elapsed());
            assert_eq!(answer.status, 200);
            assert!(answer.text().starts_with(&format!("{{\"total\":{COUNT},")));
        }
        times.sort();
        eprintln!(
            "{what}: p50 {:?}, p99 {:?} (101 requests of 50 messages)",
            times[50], times[99]
        );
    }
    // Searching the bodies and threading read every message's stored
    // records; fewer runs.
    for (what, query, total) in [
        ("search (from, to, subject, body)", "?q=number%2099999", 1),
        ("thread view", "?thread=1", COUNT),
    ] {
        let mut times = Vec::new();
        for _ in 0..11 {
            let start = std::time::Instant::now();
            let answer = web.get("alice", &format!("/api/folders/{inbox}/messages{query}"));
            times.push(start.elapsed());
            assert!(
                answer.text().starts_with(&format!("{{\"total\":{total},")),
                "{}",
                answer.text()
            );
        }
        times.sort();
        eprintln!(
            "{what}: p50 {:?}, max {:?} (11 requests)",
            times[5], times[10]
        );
    }
}
