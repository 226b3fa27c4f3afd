//! An IMAP session's state and command dispatch. Each command family lives
//! in its own file under `command/` as more `impl Session` blocks; they
//! write responses into `out`, which the shell sends.

use std::rc::Rc;

use super::parser::{Command, CommandBody, FetchItem, MessageSet, StatusItem};
use super::view::View;
use crate::net::{Conn, Peer};
use crate::services::Shared;
use crate::store::{canonical_mailbox_name, StoreError};

pub enum State {
    NotAuthenticated,
    Authenticated,
    // Boxed: a view is much larger than the other states.
    Selected(Box<View>),
}

/// What the shell does after a command.
pub enum Flow {
    Continue,
    Close,
    /// The shell runs the interactive part (it needs the connection).
    StartTls(String),
    Authenticate {
        tag: String,
        mechanism: String,
        initial_response: Option<Vec<u8>>,
    },
    Idle(String),
    /// COMPRESS was accepted: the shell starts deflate after the OK.
    Compress,
}

pub struct Session {
    pub(super) shared: Rc<Shared>,
    pub(super) peer: Peer,
    pub out: Vec<u8>,
    pub(super) state: State,
    pub(super) user: String,
    /// UTF8=ACCEPT or IMAP4rev2 enabled: mailbox names are UTF-8.
    pub(super) utf8: bool,
    /// IMAP4rev2 enabled: ESEARCH replies, no \Recent.
    pub(super) rev2: bool,
    /// CONDSTORE enabled (RFC 7162 §3.1): unsolicited FETCH responses carry
    /// UID and MODSEQ, and SELECT announces HIGHESTMODSEQ.
    pub(super) condstore: bool,
    /// The result SEARCH RETURN (SAVE) kept, as UIDs (RFC 5182).
    pub(super) saved: Option<Vec<u32>>,
    /// A \Recent horizon this session claimed and has yet to store.
    recent_to_store: Option<(crate::store::MailboxId, u32)>,
    pub(super) login_failures: u32,
}

/// After this many failed logins the connection is closed.
pub const MAX_LOGIN_FAILURES: u32 = 3;

impl Session {
    pub fn new(shared: Rc<Shared>, peer: Peer) -> Session {
        Session {
            shared,
            peer,
            out: Vec::with_capacity(256),
            state: State::NotAuthenticated,
            user: String::new(),
            utf8: false,
            rev2: false,
            condstore: false,
            saved: None,
            recent_to_store: None,
            login_failures: 0,
        }
    }

    pub fn greeting(&self) -> Vec<u8> {
        format!(
            "* OK [CAPABILITY {}] {} letterbox IMAP ready\r\n",
            self.capabilities(),
            self.shared.config.hostname
        )
        .into_bytes()
    }

    /// STARTTLS succeeded.
    pub fn tls_started(&mut self) {
        self.peer.tls = true;
    }

    pub(super) fn plaintext_ok(&self) -> bool {
        self.shared.plaintext_auth_allowed(&self.peer)
    }

    pub fn capabilities(&self) -> String {
        let mut caps = String::from("IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE");
        if let State::NotAuthenticated = self.state {
            if !self.peer.tls && self.shared.tls_acceptor().is_some() && self.peer.addr.is_some() {
                caps.push_str(" STARTTLS");
            }
            if self.plaintext_ok() {
                caps.push_str(" AUTH=PLAIN AUTH=LOGIN");
            } else {
                caps.push_str(" LOGINDISABLED");
            }
        } else {
            caps.push_str(&format!(
                " NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN LIST-EXTENDED LIST-STATUS SPECIAL-USE \
                 ESEARCH SEARCHRES BINARY UTF8=ACCEPT STATUS=SIZE CONDSTORE SORT SORT=DISPLAY ESORT \
                 THREAD=ORDEREDSUBJECT THREAD=REFERENCES WITHIN QUOTA QUOTA=RES-STORAGE \
                 QUOTA=RES-MESSAGE COMPRESS=DEFLATE METADATA METADATA-SERVER CREATE-SPECIAL-USE \
                 APPENDLIMIT={}",
                self.shared.config.max_message_size
            ));
        }
        caps
    }

    pub(super) fn ok(&mut self, tag: &str, text: &str) {
        self.out
            .extend_from_slice(format!("{tag} OK {text}\r\n").as_bytes());
    }
    pub(super) fn no(&mut self, tag: &str, text: &str) {
        self.out
            .extend_from_slice(format!("{tag} NO {text}\r\n").as_bytes());
    }
    pub(super) fn bad(&mut self, tag: &str, text: &str) {
        self.out
            .extend_from_slice(format!("{tag} BAD {text}\r\n").as_bytes());
    }
    pub(super) fn untagged(&mut self, text: &str) {
        self.out
            .extend_from_slice(format!("* {text}\r\n").as_bytes());
    }

    /// A storage failure: the client may retry later.
    pub(super) fn store_failed(&mut self, tag: &str, e: &StoreError) {
        match e {
            StoreError::NoSuchMailbox => self.no(tag, "[NONEXISTENT] No such mailbox"),
            StoreError::MailboxExists => self.no(tag, "[ALREADYEXISTS] Mailbox already exists"),
            StoreError::Refused(why) => self.no(tag, &format!("[CANNOT] {why}")),
            StoreError::Limit(why) => self.no(tag, &format!("[LIMIT] {why}")),
            StoreError::OverQuota(why) => self.no(tag, &format!("[OVERQUOTA] {why}")),
            StoreError::LowOnSpace => self.no(
                tag,
                "[OVERQUOTA] Not enough disk space for new mail; try again later",
            ),
            StoreError::Corrupt(_) => {
                log::error!("{}: store: {e}", self.peer);
                self.no(
                    tag,
                    "[CORRUPTION] Stored data could not be read back intact; see the server log",
                )
            }
            // The disk or the database failed; the store reopens itself,
            // so a retry may well work.
            other => {
                log::error!("{}: store: {other}", self.peer);
                self.no(
                    tag,
                    "[UNAVAILABLE] Temporary storage failure; try again later",
                )
            }
        }
    }

    /// A mailbox name from the client, as stored: UTF-8 when enabled, else
    /// modified UTF-7 decoded; INBOX in its canonical case.
    pub(super) fn mailbox_arg(&self, raw: &[u8]) -> Result<String, String> {
        let text =
            std::str::from_utf8(raw).map_err(|_| "Mailbox name is not valid UTF-8".to_string())?;
        let name = if self.utf8 || !text.is_ascii() {
            text.to_string()
        } else {
            super::mutf7::decode(text)
                .ok_or("Mailbox name is not valid modified UTF-7 (RFC 3501 5.1.3)")?
        };
        if name.is_empty() {
            return Err("Empty mailbox name".into());
        }
        if name.len() > 512 || name.chars().any(char::is_control) {
            return Err("Mailbox name is too long or holds control characters".into());
        }
        Ok(canonical_mailbox_name(&name).into_owned())
    }

    /// A mailbox name that cannot name a mailbox (not valid modified UTF-7,
    /// say): the command is well-formed, so NO, not BAD.
    pub(super) fn no_such_name(&mut self, tag: &str, why: &str) {
        self.no(tag, &format!("[NONEXISTENT] {why}"));
    }

    /// The saved SEARCH result or the given set, as UIDs or sequence numbers
    /// resolved against the current view.
    pub(super) fn resolve_set(&self, set: &MessageSet, uid: bool) -> Vec<u32> {
        let State::Selected(view) = &self.state else {
            return Vec::new();
        };
        match set {
            MessageSet::Saved => match &self.saved {
                Some(uids) if uid => uids
                    .iter()
                    .copied()
                    .filter(|u| view.seq_of(*u).is_some())
                    .collect(),
                Some(uids) => uids.iter().filter_map(|u| view.seq_of(*u)).collect(),
                None => Vec::new(),
            },
            MessageSet::Set(set) if uid => {
                let max = view.uids.last().copied().unwrap_or(0);
                // UIDs come from the view, so a huge range costs what the
                // mailbox holds, not what the client wrote. Both lists are
                // sorted: one merging pass.
                let ranges = set.resolve(max);
                let mut out = Vec::new();
                let mut next_range = ranges.iter().peekable();
                for &u in &view.uids {
                    while next_range.peek().is_some_and(|r| *r.end() < u) {
                        next_range.next();
                    }
                    match next_range.peek() {
                        Some(r) if r.contains(&u) => out.push(u),
                        Some(_) => {}
                        None => break,
                    }
                }
                out
            }
            MessageSet::Set(set) => set.iter_within(view.exists()).collect(),
        }
    }

    /// Runs one parsed command.
    pub async fn run(&mut self, command: Command, conn: &mut Conn) -> Flow {
        let Command { tag, body } = command;
        let selected = matches!(self.state, State::Selected(_));
        let authenticated = !matches!(self.state, State::NotAuthenticated);
        use CommandBody as C;
        let needs = match &body {
            C::Capability | C::Noop | C::Logout | C::Id(_) => None,
            C::StartTls | C::Authenticate { .. } | C::Login { .. } => {
                Some((!authenticated, "before login"))
            }
            C::Check
            | C::Close
            | C::Unselect
            | C::Expunge { .. }
            | C::Search { .. }
            | C::Sort { .. }
            | C::Thread { .. }
            | C::Fetch { .. }
            | C::Store { .. }
            | C::Copy { .. }
            | C::Move { .. } => Some((selected, "with a mailbox selected")),
            _ => Some((authenticated, "after login")),
        };
        if let Some((allowed, when)) = needs {
            if !allowed {
                self.bad(&tag, &format!("Command is only valid {when}"));
                return Flow::Continue;
            }
        }
        if selected
            && matches!(
                body,
                C::Expunge { .. }
                    | C::Search { .. }
                    | C::Sort { .. }
                    | C::Thread { .. }
                    | C::Fetch { .. }
                    | C::Store { .. }
                    | C::Copy { .. }
                    | C::Move { .. }
            )
            && !self.load_view(&tag)
        {
            return Flow::Continue;
        }
        if enables_condstore(&body) {
            self.enable_condstore();
        }
        // Expunges by others may be reported after most commands, but not
        // after FETCH, STORE or SEARCH by sequence number (RFC 9051 7.5.1).
        let allow_expunge = !matches!(
            body,
            C::Fetch { uid: false, .. }
                | C::Store { uid: false, .. }
                | C::Search { uid: false, .. }
                | C::Sort { uid: false, .. }
                | C::Thread { uid: false, .. }
        );
        let flow = match body {
            C::Capability => {
                let caps = self.capabilities();
                self.untagged(&format!("CAPABILITY {caps}"));
                self.ok(&tag, "CAPABILITY completed");
                Flow::Continue
            }
            C::Noop => {
                self.sync(true);
                self.ok(&tag, "NOOP completed");
                return Flow::Continue;
            }
            // RFC 3501's CHECK is a NOOP here (every change is already
            // committed), but its reply names the command the client sent.
            C::Check => {
                self.sync(true);
                self.ok(&tag, "CHECK completed");
                return Flow::Continue;
            }
            C::Logout => {
                self.untagged("BYE Logging out");
                self.ok(&tag, "LOGOUT completed");
                return Flow::Close;
            }
            C::Id(_) => {
                self.untagged("ID (\"name\" \"letterbox\")");
                self.ok(&tag, "ID completed");
                Flow::Continue
            }
            C::StartTls => return self.starttls(&tag),
            C::Login { user, password } => return self.login(&tag, &user, &password).await,
            C::Authenticate {
                mechanism,
                initial_response,
            } => {
                return Flow::Authenticate {
                    tag,
                    mechanism,
                    initial_response,
                }
            }
            C::Enable(caps) => {
                self.enable(&tag, &caps);
                Flow::Continue
            }
            C::Namespace => {
                self.untagged("NAMESPACE ((\"\" \"/\")) NIL NIL");
                self.ok(&tag, "NAMESPACE completed");
                Flow::Continue
            }
            C::Select {
                mailbox,
                read_only,
                condstore,
            } => {
                // SELECT (CONDSTORE) enables it; SELECT itself then says
                // HIGHESTMODSEQ.
                self.condstore |= condstore;
                self.select(&tag, &mailbox, read_only);
                return Flow::Continue;
            }
            C::Create {
                mailbox,
                special_use,
            } => {
                self.create(&tag, &mailbox, special_use).await;
                Flow::Continue
            }
            C::Delete { mailbox } => {
                self.delete(&tag, &mailbox).await;
                Flow::Continue
            }
            C::Rename { from, to } => {
                self.rename(&tag, &from, &to).await;
                Flow::Continue
            }
            C::Subscribe { mailbox } => {
                self.subscribe(&tag, &mailbox, true).await;
                Flow::Continue
            }
            C::Unsubscribe { mailbox } => {
                self.subscribe(&tag, &mailbox, false).await;
                Flow::Continue
            }
            C::List {
                selection,
                reference,
                patterns,
                returns,
            } => {
                self.list(&tag, selection, &reference, &patterns, returns);
                Flow::Continue
            }
            C::Lsub { reference, pattern } => {
                self.lsub(&tag, &reference, &pattern);
                Flow::Continue
            }
            C::Status { mailbox, items } => {
                self.status(&tag, &mailbox, &items);
                Flow::Continue
            }
            C::Append {
                mailbox,
                flags,
                date,
                message,
                ..
            } => {
                self.append(&tag, &mailbox, flags, date, message).await;
                Flow::Continue
            }
            C::Close => {
                self.close(&tag).await;
                return Flow::Continue;
            }
            C::Unselect => {
                self.state = State::Authenticated;
                self.ok(&tag, "UNSELECT completed");
                return Flow::Continue;
            }
            C::Expunge { uids } => {
                self.expunge(&tag, uids).await;
                return Flow::Continue;
            }
            C::Search {
                uid,
                charset,
                return_options,
                key,
            } => {
                self.sync(allow_expunge);
                self.search(&tag, uid, charset, return_options, key).await;
                return Flow::Continue;
            }
            C::Sort {
                uid,
                return_options,
                keys,
                charset,
                key,
            } => {
                self.sync(allow_expunge);
                self.sort(&tag, uid, return_options, keys, charset, key)
                    .await;
                return Flow::Continue;
            }
            C::Thread {
                uid,
                algorithm,
                charset,
                key,
            } => {
                self.sync(allow_expunge);
                self.thread(&tag, uid, algorithm, charset, key).await;
                return Flow::Continue;
            }
            C::Fetch {
                uid,
                set,
                items,
                changed_since,
            } => {
                self.sync(allow_expunge);
                self.fetch(&tag, uid, &set, items, changed_since, conn)
                    .await;
                return Flow::Continue;
            }
            C::Store { uid, set, request } => {
                self.sync(allow_expunge);
                self.store(&tag, uid, &set, request).await;
                return Flow::Continue;
            }
            C::Copy { uid, set, mailbox } => {
                self.copy(&tag, uid, &set, &mailbox, false).await;
                Flow::Continue
            }
            C::Move { uid, set, mailbox } => {
                self.copy(&tag, uid, &set, &mailbox, true).await;
                Flow::Continue
            }
            C::Idle => return Flow::Idle(tag),
            C::GetQuotaRoot { mailbox } => {
                self.getquotaroot(&tag, &mailbox);
                Flow::Continue
            }
            C::GetQuota { root } => {
                self.getquota(&tag, &root);
                Flow::Continue
            }
            C::SetQuota { .. } => {
                self.no(
                    &tag,
                    "[NOPERM] Quota limits are set by the server's administrator",
                );
                Flow::Continue
            }
            C::Compress { mechanism } => return self.compress(&tag, &mechanism, conn.compressed()),
            C::GetMetadata {
                mailbox,
                entries,
                depth,
                max_size,
            } => {
                self.getmetadata(&tag, &mailbox, &entries, depth, max_size);
                Flow::Continue
            }
            C::SetMetadata { mailbox, entries } => {
                self.setmetadata(&tag, &mailbox, entries).await;
                Flow::Continue
            }
        };
        // The tagged reply is already in `out`; untagged updates go before it.
        self.sync_before_tagged(allow_expunge);
        flow
    }

    /// Brings the selected view up to date, writing untagged responses.
    pub(super) fn sync(&mut self, allow_expunge: bool) {
        let State::Selected(view) = &mut self.state else {
            return;
        };
        let (mailbox, claims) = (view.mailbox, claims_recent(self.rev2, view.read_only));
        let shared = &self.shared;
        let mut claimed_to = None;
        let mut claim = |record: &crate::store::MailboxRecord| {
            let claimed = claims
                .then(|| shared.claim_recent(mailbox, record.recent_horizon, record.uid_next))
                .flatten();
            claimed_to = claimed.as_ref().map(|r| r.end);
            claimed
        };
        let rev1 = !self.rev2;
        let result = self.shared.store.snapshot().and_then(|snapshot| {
            view.sync(
                &snapshot,
                &mut self.out,
                allow_expunge,
                self.condstore,
                rev1,
                &mut claim,
            )
        });
        if let Some(end) = claimed_to {
            self.recent_to_store = Some((mailbox, end));
        }
        if let Err(e) = result {
            log::error!("{}: cannot refresh the selected mailbox: {e}", self.peer);
        }
    }

    /// Notes a \Recent claim for [`Session::store_recent_claim`].
    pub(super) fn recent_claimed(&mut self, mailbox: crate::store::MailboxId, end: u32) {
        self.recent_to_store = Some((mailbox, end));
    }

    /// Tells the client of keywords that reached the mailbox after its last
    /// FLAGS, before a reply that may carry them (RFC 9051 §7.3.5).
    pub(super) fn announce_keywords(&mut self, snapshot: &crate::store::Snapshot) {
        let State::Selected(view) = &mut self.state else {
            return;
        };
        if let Ok(Some(record)) = snapshot.mailbox(view.mailbox) {
            view.announce_keywords(&record, &mut self.out);
        }
    }

    pub fn has_recent_claim(&self) -> bool {
        self.recent_to_store.is_some()
    }

    /// Writes the \Recent horizon this session moved, after its reply has
    /// gone out, so that a restart does not make those messages recent
    /// again. The claim itself was made on the event loop at once.
    pub async fn store_recent_claim(&mut self) {
        let Some((mailbox, end)) = self.recent_to_store.take() else {
            return;
        };
        let result = self
            .shared
            .store
            .write(move |tx| tx.advance_recent_horizon(mailbox, end))
            .await;
        match result {
            Ok(()) | Err(StoreError::NoSuchMailbox) => {}
            Err(e) => log::warn!("{}: cannot store the \\Recent horizon: {e}", self.peer),
        }
    }

    /// Turns CONDSTORE on for the rest of the connection; with a mailbox
    /// selected, tells the client the HIGHESTMODSEQ its view is at.
    pub(super) fn enable_condstore(&mut self) {
        if self.condstore {
            return;
        }
        self.condstore = true;
        if let State::Selected(view) = &self.state {
            let highest = view.highest_modseq();
            self.untagged(&format!("OK [HIGHESTMODSEQ {highest}] Highest"));
        }
    }

    /// Reads the selected mailbox's messages if SELECT has not yet (see
    /// [`View::load`]); on failure answers the command and returns false.
    fn load_view(&mut self, tag: &str) -> bool {
        let State::Selected(view) = &mut self.state else {
            return true;
        };
        let result = self
            .shared
            .store
            .snapshot()
            .and_then(|snapshot| view.load(&snapshot));
        match result {
            Ok(()) => true,
            Err(e) => {
                self.store_failed(tag, &e);
                false
            }
        }
    }

    /// Like [`Session::sync`], but places the updates before the tagged
    /// reply that the command has already written.
    fn sync_before_tagged(&mut self, allow_expunge: bool) {
        if !matches!(self.state, State::Selected(_)) {
            return;
        }
        let tagged_start = self.out[..self.out.len().saturating_sub(2)]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let tagged = self.out.split_off(tagged_start);
        self.sync(allow_expunge);
        self.out.extend_from_slice(&tagged);
    }

    /// The view of the selected mailbox (callers check the state first).
    pub(super) fn view(&self) -> Option<&View> {
        match &self.state {
            State::Selected(view) => Some(view),
            _ => None,
        }
    }
}

/// Whether a session takes new messages' \Recent for itself: an IMAP4rev1
/// session with the mailbox selected read-write. EXAMINE only looks (RFC
/// 3501 §6.3.2), and IMAP4rev2 has no \Recent.
pub(super) fn claims_recent(rev2: bool, read_only: bool) -> bool {
    !rev2 && !read_only
}

/// RFC 7162 §3.1's CONDSTORE-enabling commands, except SELECT/EXAMINE
/// (CONDSTORE) and ENABLE, which say so in their own replies.
fn enables_condstore(body: &CommandBody) -> bool {
    match body {
        CommandBody::Fetch {
            items,
            changed_since,
            ..
        } => changed_since.is_some() || items.contains(&FetchItem::Modseq),
        CommandBody::Store { request, .. } => request.unchanged_since.is_some(),
        CommandBody::Search { key, .. } => key.mentions_modseq(),
        CommandBody::Status { items, .. } => items.contains(&StatusItem::HighestModseq),
        _ => false,
    }
}
