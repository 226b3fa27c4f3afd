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
