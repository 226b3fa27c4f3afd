//! GETQUOTA, GETQUOTAROOT and SETQUOTA (RFC 9208 §4.1).

use super::{CommandBody, Parsed, Parser};

/// SETQUOTA names at most this many resources; RFC 9208 defines four.
const MAX_SETQUOTA_RESOURCES: usize = 16;

impl Parser {
    /// `GETQUOTA SP quota-root`.
    pub(super) fn getquota(&mut self) -> Parsed<CommandBody> {
        self.sp("quota root")?;
        Ok(CommandBody::GetQuota {
            root: self.astring("quota root")?,
        })
    }

    /// `SETQUOTA SP quota-root SP "(" [resource SP number64 *(SP ...)] ")"`.
    /// Parsed in full, so a malformed one is BAD like any other command,
    /// though a well-formed one is refused: limits are the administrator's.
    pub(super) fn setquota(&mut self) -> Parsed<CommandBody> {
        self.sp("quota root")?;
        let root = self.astring("quota root")?;
        self.sp("quota limits")?;
        let mut count = 0;
        let resources = self.paren_list("quota limits", true, |p| {
            count += 1;
            if count > MAX_SETQUOTA_RESOURCES {
                return Err(format!(
                    "too many quota resources (limit {MAX_SETQUOTA_RESOURCES})"
                ));
            }
            let name = p.upper_atom("quota resource name")?;
            p.sp("quota limit")?;
            Ok((name, p.number64("quota limit")?))
        })?;
        Ok(CommandBody::SetQuota { root, resources })
    }
}

#[cfg(test)]
mod tests {
    use crate::imap::assembler::{assemble_wire, Feed, Limits};
    use crate::imap::parser::{parse, CommandBody, StatusItem};

    fn parsed(wire: &str) -> Result<CommandBody, String> {
        match assemble_wire(Limits::default(), wire.as_bytes()).pop() {
            Some(Feed::Complete(cmd)) => parse(cmd).map(|c| c.body).map_err(|e| e.message),
            other => panic!("assembler gave {other:?}"),
        }
    }

    #[test]
    fn quota_commands() {
        assert_eq!(
            parsed("a GETQUOTAROOT inbox\r\n"),
            Ok(CommandBody::GetQuotaRoot {
                mailbox: b"inbox".to_vec()
            })
        );
        assert_eq!(
            parsed("a getquota \"\"\r\n"),
            Ok(CommandBody::GetQuota { root: Vec::new() })
        );
        assert_eq!(
            parsed("a SETQUOTA \"\" (storage 512 MESSAGE 10)\r\n"),
            Ok(CommandBody::SetQuota {
                root: Vec::new(),
                resources: vec![("STORAGE".into(), 512), ("MESSAGE".into(), 10)],
            })
        );
        assert_eq!(
            parsed("a SETQUOTA x ()\r\n"),
            Ok(CommandBody::SetQuota {
                root: b"x".to_vec(),
                resources: Vec::new(),
            })
        );
        for bad in [
            "a GETQUOTAROOT\r\n",
            "a GETQUOTA\r\n",
            "a GETQUOTA \"\" extra\r\n",
            "a SETQUOTA \"\" (STORAGE)\r\n",
            "a SETQUOTA \"\" (STORAGE -1)\r\n",
            "a SETQUOTA \"\" STORAGE 1\r\n",
        ] {
            assert!(parsed(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parsed("a STATUS x (DELETED deleted-storage)\r\n"),
            Ok(CommandBody::Status {
                mailbox: b"x".to_vec(),
                items: vec![StatusItem::Deleted, StatusItem::DeletedStorage],
            })
        );
    }
}
