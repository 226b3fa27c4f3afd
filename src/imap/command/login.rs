//! STARTTLS, LOGIN, the end of AUTHENTICATE, and ENABLE.

use crate::imap::session::{Flow, Session, State, MAX_LOGIN_FAILURES};
use crate::services::Login;

impl Session {
    pub(in crate::imap) fn starttls(&mut self, tag: &str) -> Flow {
        if self.peer.tls {
            self.bad(tag, "TLS is already active");
            return Flow::Continue;
        }
        if self.shared.tls_acceptor().is_none() || self.peer.addr.is_none() {
            self.no(tag, "STARTTLS is not available here");
            return Flow::Continue;
        }
        self.ok(tag, "Begin TLS negotiation now");
        Flow::StartTls(tag.to_string())
    }

    pub(in crate::imap) async fn login(&mut self, tag: &str, user: &str, password: &[u8]) -> Flow {
        if !self.plaintext_ok() {
            self.no(
                tag,
                "[PRIVACYREQUIRED] Plaintext login is not allowed on an unencrypted connection; use STARTTLS or port 993",
            );
            return Flow::Continue;
        }
        self.check_password(tag, user, password).await
    }

    /// Checks credentials from LOGIN or AUTHENTICATE and answers.
    pub(in crate::imap) async fn check_password(
        &mut self,
        tag: &str,
        user: &str,
        password: &[u8],
    ) -> Flow {
        match self.shared.authenticate(&self.peer, user, password).await {
            Login::Ok(user) => {
                self.user = user;
                self.state = State::Authenticated;
                // A first login creates INBOX and the special-use mailboxes.
                if let Err(e) = self.shared.ensure_user(&self.user).await {
                    log::error!(
                        "{}: cannot set up the mailboxes of {}: {e}",
                        self.peer,
                        self.user
                    );
                }
                let caps = self.capabilities();
                self.ok(tag, &format!("[CAPABILITY {caps}] Logged in"));
                Flow::Continue
            }
            Login::Failed => {
                self.login_failures += 1;
                if self.login_failures >= MAX_LOGIN_FAILURES {
                    self.no(tag, "[AUTHENTICATIONFAILED] Authentication failed");
                    self.untagged("BYE Too many failed logins");
                    return Flow::Close;
                }
                self.no(tag, "[AUTHENTICATIONFAILED] Authentication failed");
                Flow::Continue
            }
        }
    }

    pub(in crate::imap) fn enable(&mut self, tag: &str, caps: &[String]) {
        let mut enabled = Vec::new();
        let utf8_before = self.utf8;
        for cap in caps {
            let upper = cap.to_ascii_uppercase();
            match upper.as_str() {
                "IMAP4REV2" if !self.rev2 => {
                    self.rev2 = true;
                    self.utf8 = true;
                    enabled.push("IMAP4rev2");
                }
                "UTF8=ACCEPT" if !utf8_before && !enabled.contains(&"UTF8=ACCEPT") => {
                    self.utf8 = true;
                    enabled.push("UTF8=ACCEPT");
                }
                "CONDSTORE" if !self.condstore => {
                    self.enable_condstore();
                    enabled.push("CONDSTORE");
                }
                _ => {}
            }
        }
        let list: String = enabled.iter().map(|c| format!(" {c}")).collect();
        self.untagged(&format!("ENABLED{list}"));
        self.ok(tag, "ENABLE completed");
    }
}
