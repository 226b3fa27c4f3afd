//! Drafts and sending: the compose form made into an RFC 5322 message,
//! APPENDed to Drafts, or handed to `--sendmail` and kept in Sent.
//!
//! The From address is the user's own (`address=` in the users file, or
//! `USER@` + `--mail-domain`); the form cannot set it. Every header value
//! from the form is checked: a CR, LF or any other control character is a
//! 400, so no field can add a header. Non-ASCII text goes in RFC 2047
//! encoded words, file names in RFC 2231 parameters, the body as
//! quoted-printable UTF-8, attachments as base64.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::Arc;

use super::{form, json, multipart, store_error, Request, Response};
use crate::services::Shared;
use crate::store::{Flags, MailboxId, SpecialUse, StoreError};

/// The most recipients one message may have.
const MAX_RECIPIENTS: usize = 100;
/// The most of the sendmail command's error output shown.
const MAX_STDERR: usize = 2000;
/// How long the sendmail command may take: a local MTA queues a message
/// in well under a second.
const SENDMAIL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The user's From address.
pub fn from_address(shared: &Shared, user: &str) -> String {
    if let Some(address) = shared
        .user_setting(user, "address")
        .filter(|a| !a.is_empty())
    {
        return address;
    }
    if user.contains('@') {
        return user.to_string();
    }
    let domain = shared
        .config
        .mail_domain
        .as_deref()
        .unwrap_or(&shared.config.hostname);
    format!("{user}@{domain}")
}

/// Splits `--sendmail`'s command into its words, as a POSIX shell would
/// for plain words, single and double quotes and backslashes; nothing
/// else of a shell (no variables, globs or pipes) is done.
pub fn split_command(command: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("a single quote is not closed".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("a double quote is not closed".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("a double quote is not closed".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => return Err("the command ends in a backslash".into()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err("the command is empty".into());
    }
    Ok(words)
}

/// What the compose form holds.
#[derive(Default)]
struct Compose {
    to: String,
    cc: String,
    bcc: String,
    subject: String,
    body: String,
    in_reply_to: String,
    references: String,
    replace: Option<u32>,
    attachments: Vec<Attachment>,
}

struct Attachment {
    name: String,
    content_type: String,
    data: Vec<u8>,
}

/// A refusal: status and text for the person.
type Refusal = (u16, String);

fn refuse(why: impl Into<String>) -> Refusal {
    (400, why.into())
}

impl Compose {
    fn read(content_type: &str, body: &[u8]) -> Result<Compose, Refusal> {
        let mut compose = Compose::default();
        let set = |compose: &mut Compose, name: &str, value: String| -> Result<(), Refusal> {
            let slot = match name {
                "to" => &mut compose.to,
                "cc" => &mut compose.cc,
                "bcc" => &mut compose.bcc,
                "subject" => &mut compose.subject,
                "body" => &mut compose.body,
                "in_reply_to" => &mut compose.in_reply_to,
                "references" => &mut compose.references,
                "replace" => {
                    let value = value.trim();
                    if !value.is_empty() {
                        compose.replace = Some(
                            super::id::<u32>(value).ok_or_else(|| refuse("replace is a UID"))?,
                        );
                    }
                    return Ok(());
                }
                _ => return Ok(()),
            };
            *slot = value;
            Ok(())
        };
        let kind = content_type.split(';').next().unwrap_or_default().trim();
        if kind.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            for (name, value) in form::parse(body) {
                set(&mut compose, &name, value)?;
            }
            return Ok(compose);
        }
        let fields = multipart::parse(content_type, body).map_err(|e| refuse(e.0))?;
        for field in fields {
            if let Some(filename) = field.filename {
                if field.name != "attachment" || (filename.is_empty() && field.data.is_empty()) {
                    // An empty file input sends a nameless, empty part.
                    continue;
                }
                if filename.chars().any(char::is_control) || filename.len() > 255 {
                    return Err(refuse(
                        "an attachment's name has control characters or is too long",
                    ));
                }
                compose.attachments.push(Attachment {
                    name: filename,
                    content_type: field
                        .content_type
                        .filter(|t| valid_media_type(t))
                        .unwrap_or_else(|| "application/octet-stream".into())
                        .to_ascii_lowercase(),
                    data: field.data.to_vec(),
                });
                continue;
            }
            let value = String::from_utf8(field.data.to_vec())
                .map_err(|_| refuse(format!("{} is not UTF-8", field.name)))?;
            set(&mut compose, &field.name, value)?;
        }
        Ok(compose)
    }
}

fn valid_media_type(text: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.len() <= 127
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    matches!(text.split_once('/'), Some((a, b)) if token(a) && token(b))
}

/// A header value from the form: any control character (CR and LF above
/// all) refuses the whole message.
fn header_text<'a>(name: &str, value: &'a str) -> Result<&'a str, Refusal> {
    if value.chars().any(char::is_control) {
        return Err(refuse(format!(
            "{name} may not contain line breaks or control characters"
        )));
    }
    if value.len() > 4000 {
        return Err(refuse(format!("{name} is too long")));
    }
    Ok(value.trim())
}

/// One address of a To, Cc or Bcc list.
struct Mailbox {
    name: Option<String>,
    address: String,
}

/// Splits at commas outside quotes and angle brackets.
fn split_list(text: &str) -> Vec<&str> {
    let (mut out, mut start, mut quoted, mut angle, mut escaped) =
        (Vec::new(), 0, false, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' | ';' if !quoted && !angle => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

fn valid_address(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| {
            !c.is_ascii() || c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c)
        });
    let domain_ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| !c.is_ascii() || c.is_ascii_alphanumeric() || c == '-')
        });
    local_ok && domain_ok
}

fn parse_mailbox(item: &str) -> Option<Mailbox> {
    if let (Some(open), true) = (item.rfind('<'), item.ends_with('>')) {
        let address = item[open + 1..item.len() - 1].trim();
        let mut name = item[..open].trim();
        if let Some(inner) = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
            name = inner;
        }
        let name = name.replace("\\\"", "\"").replace("\\\\", "\\");
        return valid_address(address).then(|| Mailbox {
            name: (!name.trim().is_empty()).then(|| name.trim().to_string()),
            address: address.to_string(),
        });
    }
    valid_address(item).then(|| Mailbox {
        name: None,
        address: item.to_string(),
    })
}

fn addresses(field: &str, text: &str) -> Result<Vec<Mailbox>, Refusal> {
    split_list(header_text(field, text)?)
        .into_iter()
        .map(|item| {
            parse_mailbox(item)
                .ok_or_else(|| refuse(format!("{field}: {item:?} is not an address")))
        })
        .collect()
}

/// A display name as a phrase: atoms as they are, other ASCII quoted,
/// anything else in encoded words.
fn phrase(name: &str) -> String {
    if !name.is_ascii() {
        return encoded_words(name);
    }
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == ' ' || "!#$%&'*+-/=?^_`{|}~".contains(c))
    {
        return name.to_string();
    }
    let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// RFC 2047 B-encoded words of at most 75 characters, split at
/// character boundaries, joined by folding whitespace.
fn encoded_words(text: &str) -> String {
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| {
            format!(
                "=?UTF-8?B?{}?=",
                crate::auth::sasl::base64_encode(w.as_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// Unstructured text (Subject): as it is when ASCII, else encoded words.
fn unstructured(text: &str) -> String {
    if text.is_ascii() {
        text.to_string()
    } else {
        encoded_words(text)
    }
}

/// `<a@b> <c@d>`: message ids as written between angle brackets.
fn message_ids(field: &str, text: &str) -> Result<Vec<String>, Refusal> {
    let text = header_text(field, text)?;
    let mut out = Vec::new();
    for id in text.split_whitespace() {
        let inner = id
            .strip_prefix('<')
            .and_then(|i| i.strip_suffix('>'))
            .unwrap_or(id);
        if inner.is_empty() || inner.len() > 250 || inner.contains(['<', '>', '"', '\\', '(', ')'])
        {
            return Err(refuse(format!("{field}: {id:?} is not a message id")));
        }
        out.push(format!("<{inner}>"));
    }
    Ok(out)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The system's generator failing would be noticed everywhere; a
    // counter from the clock keeps ids unique even then.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut buf).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        buf = nanos.to_le_bytes()[..bytes.min(16)].to_vec();
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Quoted-printable (RFC 2045 §6.7) of text with CRLF line ends.
fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    for (n, line) in normalized.split('\n').enumerate() {
        if n > 0 {
            out.push_str("\r\n");
        }
        let bytes = line.as_bytes();
        let mut width = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let last = i + 1 == bytes.len();
            let plain = (b == b' ' || b == b'\t') && !last
                || (33..=126).contains(&b) && b != b'=' && !(b == b'.' && width == 0);
            let piece = if plain {
                (b as char).to_string()
            } else {
                format!("={b:02X}")
            };
            if width + piece.len() > 75 {
                out.push_str("=\r\n");
                width = 0;
            }
            width += piece.len();
            out.push_str(&piece);
        }
    }
    out
}

fn base64_lines(data: &[u8], out: &mut Vec<u8>) {
    for chunk in data.chunks(57) {
        out.extend_from_slice(crate::auth::sasl::base64_encode(chunk).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// A file name as an RFC 2231 parameter: quoted when plain ASCII,
/// `name*=UTF-8''…` otherwise.
fn file_parameter(key: &str, name: &str) -> String {
    let plain = name
        .chars()
        .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ');
    if plain {
        format!("{key}=\"{name}\"")
    } else {
        format!("{key}*=UTF-8''{}", form::percent_encode(name))
    }
}

/// Writes `Name: value` folded at commas, so no line passes 998 octets.
fn push_list(out: &mut Vec<u8>, name: &str, items: &[String]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b",\r\n ");
        }
        out.extend_from_slice(item.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// The message and the recipients it names.
struct Built {
    message: Vec<u8>,
    recipients: usize,
}

/// Builds the message. `strict`: every address must parse (sending);
/// a draft keeps a half-typed list as text.
fn build(compose: &Compose, from: &str, strict: bool) -> Result<Built, Refusal> {
    let mut out = Vec::with_capacity(1024 + compose.body.len() * 2);
    let (now, offset) = crate::clock::now();
    out.extend_from_slice(format!("Date: {}\r\n", crate::clock::rfc5322(now, offset)).as_bytes());
    out.extend_from_slice(format!("From: {from}\r\n").as_bytes());
    let mut recipients = 0;
    for (name, text) in [
        ("To", &compose.to),
        ("Cc", &compose.cc),
        ("Bcc", &compose.bcc),
    ] {
        let items: Vec<String> = match addresses(name, text) {
            Ok(list) => {
                recipients += list.len();
                list.iter()
                    .map(|m| match &m.name {
                        Some(display) => format!("{} <{}>", phrase(display), m.address),
                        None => m.address.clone(),
                    })
                    .collect()
            }
            Err(refusal) if strict => return Err(refusal),
            Err(_) => vec![unstructured(header_text(name, text)?)],
        };
        if !items.is_empty() {
            push_list(&mut out, name, &items);
        }
    }
    if recipients > MAX_RECIPIENTS {
        return Err(refuse(format!("at most {MAX_RECIPIENTS} recipients")));
    }
    let subject = header_text("subject", &compose.subject)?;
    out.extend_from_slice(format!("Subject: {}\r\n", unstructured(subject)).as_bytes());
    let domain: String = from
        .rsplit_once('@')
        .map_or("localhost", |(_, d)| d)
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '.' || *c == '-')
        .collect();
    out.extend_from_slice(format!("Message-ID: <{}@{domain}>\r\n", random_hex(16)).as_bytes());
    let in_reply_to = message_ids("in_reply_to", &compose.in_reply_to)?;
    if !in_reply_to.is_empty() {
        out.extend_from_slice(format!("In-Reply-To: {}\r\n", in_reply_to.join(" ")).as_bytes());
    }
    let mut references = message_ids("references", &compose.references)?;
    if references.len() > 50 {
        references.drain(..references.len() - 50);
    }
    if !references.is_empty() {
        out.extend_from_slice(format!("References: {}\r\n", references.join("\r\n ")).as_bytes());
    }
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    let text_headers = b"Content-Type: text/plain; charset=utf-8\r\n\
                         Content-Transfer-Encoding: quoted-printable\r\n";
    let body = quoted_printable(&compose.body);
    if compose.attachments.is_empty() {
        out.extend_from_slice(text_headers);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body.as_bytes());
        out.extend_from_slice(b"\r\n");
    } else {
        // "=_" never occurs in quoted-printable or base64 text.
        let boundary = format!("=_lb_{}", random_hex(12));
        out.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n").as_bytes(),
        );
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        out.extend_from_slice(text_headers);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body.as_bytes());
        out.extend_from_slice(b"\r\n");
        for attachment in &compose.attachments {
            out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            out.extend_from_slice(
                format!(
                    "Content-Type: {};\r\n {}\r\nContent-Disposition: attachment;\r\n {}\r\n\
                     Content-Transfer-Encoding: base64\r\n\r\n",
                    attachment.content_type,
                    file_parameter("name", &attachment.name),
                    file_parameter("filename", &attachment.name),
                )
                .as_bytes(),
            );
            base64_lines(&attachment.data, &mut out);
        }
        out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    }
    Ok(Built {
        message: out,
        recipients,
    })
}

/// Reads the form and builds the message off the event loop (base64 of
/// large attachments takes a while), with what storing it needs.
async fn prepare(
    shared: &Shared,
    user: &str,
    request: Request,
    strict: bool,
) -> Result<(Compose, Built, crate::store::Analysis), Refusal> {
    let from = from_address(shared, user);
    let limit = shared.config.max_message_size;
    let content_type = request.content_type.unwrap_or_default();
    let body = request.body;
    shared
        .run_heavy(move || {
            let mut compose = Compose::read(&content_type, &body)?;
            drop(body);
            let built = build(&compose, &from, strict)?;
            if built.message.len() > limit {
                return Err((
                    413,
                    format!("the message is over the size limit of {limit} bytes"),
                ));
            }
            // The attachments are in the message now.
            compose.attachments.clear();
            let analysis = crate::services::analysis_of(&built.message);
            Ok((compose, built, analysis))
        })
        .await
}

/// The user's folder with this special use; made (with the usual name)
/// when they have none.
async fn special_folder(
    shared: &Shared,
    user: &str,
    special: SpecialUse,
    name: &'static str,
) -> Result<MailboxId, StoreError> {
    if let Some(id) = super::folders::special(shared, user, special)? {
        return Ok(id);
    }
    let owner = user.to_string();
    shared
        .store
        .write(move |tx| match tx.mailbox_id(&owner, name)? {
            Some(id) => Ok(id),
            None => tx.create_mailbox(&owner, name, Some(special)),
        })
        .await
}

/// Stores the message in the folder and expunges `replace` from Drafts,
/// in one transaction. Returns the new UID.
async fn store_copy(
    shared: &Shared,
    user: &str,
    folder: MailboxId,
    flags: Flags,
    built: Built,
    analysis: crate::store::Analysis,
    replace: Option<(MailboxId, u32)>,
) -> Result<u32, StoreError> {
    shared.store.room_for_new_mail()?;
    let (owner, quota) = (user.to_string(), shared.quota_check(user));
    let when = crate::clock::now();
    shared
        .store
        .write(move |tx| {
            tx.quota_room(&owner, &quota.limits, built.message.len() as u64, 1)?;
            let uid =
                tx.append_message(folder, &built.message, &analysis, flags, Vec::new(), when)?;
            if let Some((drafts, old)) = replace {
                tx.expunge(drafts, &[old])?;
            }
            tx.quota_notice(&owner, &quota);
            Ok(uid)
        })
        .await
}

pub async fn draft(shared: &Rc<Shared>, user: &str, request: Request) -> Response {
    let (compose, built, analysis) = match prepare(shared, user, request, false).await {
        Ok(prepared) => prepared,
        Err((status, why)) => return Response::error(status, &why),
    };
    match save_draft(shared, user, compose.replace, built, analysis).await {
        Ok(uid) => {
            let mut out = json::Object::new();
            out.num("uid", uid);
            Response::json(200, out.finish())
        }
        Err(e) => store_error(&e),
    }
}

async fn save_draft(
    shared: &Shared,
    user: &str,
    replace: Option<u32>,
    built: Built,
    analysis: crate::store::Analysis,
) -> Result<u32, StoreError> {
    let drafts = special_folder(shared, user, SpecialUse::Drafts, "Drafts").await?;
    let flags = Flags::DRAFT.with(Flags::SEEN);
    let replace = replace.map(|uid| (drafts, uid));
    store_copy(shared, user, drafts, flags, built, analysis, replace).await
}

pub async fn send(shared: &Rc<Shared>, user: &str, request: Request) -> Response {
    let Some(command) = shared.config.sendmail.clone() else {
        return Response::error(503, "sending is not configured");
    };
    let (compose, mut built, analysis) = match prepare(shared, user, request, true).await {
        Ok(prepared) => prepared,
        Err((status, why)) => return Response::error(status, &why),
    };
    if built.recipients == 0 {
        return Response::error(400, "no recipients (to, cc or bcc)");
    }
    // Shared with the thread that feeds the command, then taken back for
    // the copy in Sent: the message is held once.
    let message = Arc::new(std::mem::take(&mut built.message));
    let feeding = message.clone();
    let outcome = crate::services::unblock(move || run_sendmail(&command, feeding)).await;
    built.message = Arc::try_unwrap(message).unwrap_or_else(|shared| shared.to_vec());
    match outcome {
        Ok(()) => {
            log::info!(
                "web: {user} sent a message to {} recipients",
                built.recipients
            );
            match keep_sent_copy(shared, user, compose.replace, built, analysis).await {
                Ok(()) => super::ok(),
                // Sent, but not kept: a success that says so. An error
                // here would read as "not sent" and invite sending twice.
                Err(e) => {
                    log::warn!("web: {user}'s message was sent but not kept in Sent: {e}");
                    let mut out = json::Object::new();
                    out.bool("ok", true).str(
                        "warning",
                        &format!(
                            "The message was sent, but its copy in Sent could not be kept: {e}"
                        ),
                    );
                    Response::json(200, out.finish())
                }
            }
        }
        Err(why) => {
            log::warn!("web: sending for {user} failed: {why}");
            match save_draft(shared, user, compose.replace, built, analysis).await {
                Ok(uid) => {
                    let mut out = json::Object::new();
                    out.str("error", &why).num("draft_uid", uid);
                    Response::json(502, out.finish())
                }
                Err(e) => store_error(&e),
            }
        }
    }
}

/// Stores a sent message's copy in Sent (made if the user has none) and
/// drops the draft it replaces, in one transaction.
async fn keep_sent_copy(
    shared: &Shared,
    user: &str,
    replace: Option<u32>,
    built: Built,
    analysis: crate::store::Analysis,
) -> Result<(), StoreError> {
    let sent = special_folder(shared, user, SpecialUse::Sent, "Sent").await?;
    let drafts = match replace {
        Some(uid) => Some((
            special_folder(shared, user, SpecialUse::Drafts, "Drafts").await?,
            uid,
        )),
        None => None,
    };
    store_copy(shared, user, sent, Flags::SEEN, built, analysis, drafts)
        .await
        .map(drop)
}

/// Runs the sendmail command with the message on its standard input.
/// Err carries what a person needs: its error output and exit status. A
/// command that has not finished after [`SENDMAIL_TIMEOUT`] is killed.
fn run_sendmail(command: &[String], message: Arc<Vec<u8>>) -> Result<(), String> {
    let (program, args) = command
        .split_first()
        .ok_or("the sendmail command is empty")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    // Input written and error output read on threads of their own, so a
    // command that writes much before reading all its input cannot
    // deadlock with us; only the first MAX_STDERR bytes are kept.
    let stdin = child.stdin.take();
    let writer = std::thread::spawn(move || {
        if let Some(mut stdin) = stdin {
            // A command that exits early closes its input: its status says why.
            let _ = stdin.write_all(&message);
        }
    });
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut kept = Vec::new();
        if let Some(stderr) = stderr {
            let _ = std::io::Read::read_to_end(
                &mut std::io::Read::take(stderr, MAX_STDERR as u64),
                &mut kept,
            );
        }
        kept
    });
    let deadline = std::time::Instant::now() + SENDMAIL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
    };
    // The command is gone. Its error output ends with it, unless it left
    // something running that holds it open: that is given a moment, not
    // waited for (nor is a stuck input pipe).
    let grace = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while !(reader.is_finished() && writer.is_finished()) && std::time::Instant::now() < grace {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let stderr = if reader.is_finished() {
        reader.join().unwrap_or_default()
    } else {
        Vec::new()
    };
    let Some(status) = status else {
        return Err(format!(
            "{program} did not finish within {} seconds and was stopped",
            SENDMAIL_TIMEOUT.as_secs()
        ));
    };
    if status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&stderr).trim().to_string();
    let status = match status.code() {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_string(),
    };
    Err(if stderr.is_empty() {
        format!("{program} failed ({status})")
    } else {
        format!("{program} failed ({status}): {stderr}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendmail_output_is_bounded_and_cannot_deadlock() {
        // Much error output and an unread megabyte of input.
        let command: Vec<String> = [
            "sh",
            "-c",
            "head -c 300000 /dev/zero | tr '\\0' e >&2; exit 3",
        ]
        .map(String::from)
        .to_vec();
        let why = run_sendmail(&command, Arc::new(vec![b'x'; 1 << 20])).unwrap_err();
        assert!(why.starts_with("sh failed (exit status 3): eeee"), "{why}");
        assert!(why.len() < MAX_STDERR + 100);
        let command: Vec<String> = ["sh", "-c", "cat > /dev/null"].map(String::from).to_vec();
        assert_eq!(
            run_sendmail(&command, Arc::new(vec![b'x'; 1 << 20])),
            Ok(())
        );
        let missing = vec!["/nonexistent/sendmail".to_string()];
        assert!(run_sendmail(&missing, Arc::new(Vec::new()))
            .unwrap_err()
            .starts_with("cannot run /nonexistent/sendmail"));
    }

    #[test]
    fn splits_commands_like_a_shell() {
        assert_eq!(
            split_command("/usr/sbin/sendmail -i -t").unwrap(),
            ["/usr/sbin/sendmail", "-i", "-t"]
        );
        assert_eq!(
            split_command(r#"'/opt/my mail/send' "-f x\"y" a\ b ''"#).unwrap(),
            ["/opt/my mail/send", "-f x\"y", "a b", ""]
        );
        assert!(split_command("  ").is_err());
        assert!(split_command("'open").is_err());
        assert!(split_command("x \\").is_err());
    }

    #[test]
    fn phrases_and_words() {
        assert_eq!(phrase("Bob Smith"), "Bob Smith");
        assert_eq!(phrase("Smith, Bob"), "\"Smith, Bob\"");
        assert_eq!(phrase("Zoë"), "=?UTF-8?B?Wm/Dqw==?=");
        let long = encoded_words(&"é".repeat(40));
        assert!(long.split("\r\n ").all(|w| w.len() <= 75));
    }

    #[test]
    fn quoted_printable_lines() {
        assert_eq!(quoted_printable("a=b \nc\t"), "a=3Db=20\r\nc=09");
        assert_eq!(quoted_printable("né"), "n=C3=A9");
        let long = quoted_printable(&"x".repeat(200));
        assert!(long.split("\r\n").all(|l| l.len() <= 76));
    }

    #[test]
    fn addresses_parse() {
        let list = addresses("to", "\"Smith, Bob\" <bob@example.org>, carol@example.org").unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].name.as_deref(), Some("Smith, Bob"));
        assert!(addresses("to", "bob@example.org\r\nBcc: eve@x").is_err());
        assert!(addresses("to", "not an address").is_err());
        assert!(addresses("to", "a@b@c").is_err());
    }
}
