//! COMPRESS (RFC 4978). The session only answers; the shell starts the
//! deflate layer on the connection once the OK has gone out uncompressed.

use crate::imap::session::{Flow, Session};

impl Session {
    pub(in crate::imap) fn compress(&mut self, tag: &str, mechanism: &str, active: bool) -> Flow {
        if active {
            self.no(tag, "[COMPRESSIONACTIVE] DEFLATE is already active");
            return Flow::Continue;
        }
        if mechanism != "DEFLATE" {
            self.no(
                tag,
                &format!(
                    "Unknown compression mechanism {} (DEFLATE is offered)",
                    mechanism.chars().take(40).collect::<String>()
                ),
            );
            return Flow::Continue;
        }
        self.ok(tag, "DEFLATE active");
        Flow::Compress
    }
}
