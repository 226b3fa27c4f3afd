//! The free-space reserve: new mail is refused while the disk holding the
//! store has less than the reserve free, so that what makes room (expunges,
//! deletes, flag changes, all of which need a few pages of their own in a
//! copy-on-write database) still has room to commit.
//!
//! An expunge frees pages inside the database file, not on the disk: redb
//! reuses them but never shrinks the file. So the room counted is the disk's
//! free space plus an estimate of the room inside the file: the message
//! bytes freed since this process started, less those stored since. A user
//! who expunges mail therefore gets deliveries going again at once, without
//! the file growing into the reserve.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::StoreError;

/// The default reserve: this much, or [`DEFAULT_PERCENT`] of the disk,
/// whichever is smaller (a 1 GB SD card keeps 20 MB, not 64).
pub const DEFAULT_MIN_FREE: u64 = 64 * 1024 * 1024;
pub const DEFAULT_PERCENT: u64 = 2;

/// How long one look at the disk is trusted: a burst of deliveries costs
/// one statvfs a second, not one each.
const RECHECK: Duration = Duration::from_secs(1);
/// How often the log repeats that new mail is being refused.
const LOG_EVERY: Duration = Duration::from_secs(60);

pub(super) struct Reserve {
    dir: PathBuf,
    state: Mutex<State>,
}

/// When the disk was last looked at, and what was found: room enough, or
/// (free, wanted) bytes.
type Checked = (Instant, Result<(), (u64, u64)>);

struct State {
    /// None: the default, worked out from the disk's size.
    min_free: Option<u64>,
    checked: Option<Checked>,
    logged: Option<Instant>,
    /// The estimate of reusable room inside the file (see above).
    inside: u64,
}

impl Reserve {
    pub(super) fn new(dir: PathBuf) -> Reserve {
        Reserve {
            dir,
            state: Mutex::new(State {
                min_free: None,
                checked: None,
                logged: None,
                inside: 0,
            }),
        }
    }

    pub(super) fn set_min_free(&self, bytes: Option<u64>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.min_free = bytes;
        state.checked = None;
    }

    /// Counts a commit's stored and freed message bytes into the estimate of
    /// the room inside the file.
    pub(super) fn note_commit(&self, added: u64, freed: u64) {
        if added == 0 && freed == 0 {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.inside = state.inside.saturating_add(freed).saturating_sub(added);
        if freed > 0 {
            // Room was made: look again at the next delivery.
            state.checked = None;
        }
    }

    /// Ok while the disk has more than the reserve free; else the temporary
    /// refusal for new mail.
    pub(super) fn check(&self) -> Result<(), StoreError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let fresh = state
            .checked
            .filter(|(at, _)| now.saturating_duration_since(*at) < RECHECK);
        let result = match fresh {
            Some((_, result)) => result,
            None => {
                let result = match disk_space(&self.dir) {
                    Ok((free, total)) => {
                        let free = free.saturating_add(state.inside);
                        let reserve = state.min_free.unwrap_or_else(|| default_reserve(total));
                        if free < reserve {
                            Err((free, reserve))
                        } else {
                            Ok(())
                        }
                    }
                    // Not knowing is no reason to refuse mail; the commit
                    // itself still fails safely if the disk is full.
                    Err(e) => {
                        log::warn!(
                            "store: cannot tell the free space on {}: {e}",
                            self.dir.display()
                        );
                        Ok(())
                    }
                };
                let was_low = state.checked.is_some_and(|(_, r)| r.is_err());
                if was_low && result.is_ok() {
                    log::info!("store: free space is above the reserve again; taking new mail");
                    state.logged = None;
                }
                state.checked = Some((now, result));
                result
            }
        };
        let Err((free, reserve)) = result else {
            return Ok(());
        };
        if state
            .logged
            .is_none_or(|at| now.saturating_duration_since(at) >= LOG_EVERY)
        {
            state.logged = Some(now);
            log::warn!(
                "store: {} has {} free, under the {} reserve (--min-free-space): new mail is refused \
                 for now; expunges and deletes still work. Free some space on that disk",
                self.dir.display(),
                mib(free),
                mib(reserve)
            );
        }
        Err(StoreError::LowOnSpace)
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

pub(super) fn default_reserve(total: u64) -> u64 {
    DEFAULT_MIN_FREE.min(total / 100 * DEFAULT_PERCENT)
}

/// (bytes free to an unprivileged user, size) of the filesystem holding `dir`.
fn disk_space(dir: &std::path::Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("path holds a NUL"))?;
    // SAFETY: statvfs only writes into the zeroed struct it is given, and
    // the path is a valid NUL-terminated string.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut st) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        st
    };
    let unit = st.f_frsize as u64;
    Ok((
        (st.f_bavail as u64).saturating_mul(unit),
        (st.f_blocks as u64).saturating_mul(unit),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_smaller_of_64_mib_and_2_percent() {
        assert_eq!(default_reserve(1 << 40), DEFAULT_MIN_FREE);
        assert_eq!(default_reserve(1_000_000_000), 20_000_000);
        assert_eq!(default_reserve(0), 0);
    }

    #[test]
    fn a_reserve_larger_than_the_disk_refuses_and_zero_never_does() {
        let dir = std::env::temp_dir();
        let reserve = Reserve::new(dir);
        reserve.set_min_free(Some(u64::MAX));
        assert_eq!(reserve.check(), Err(StoreError::LowOnSpace));
        reserve.set_min_free(Some(0));
        assert_eq!(reserve.check(), Ok(()));
    }
}
