//! Who may log in: the users file, password hashes, SASL decoding, login
//! throttling, and reading a new password from the admin.
//!
//! A login goes: decode the client's SASL lines ([`sasl`]), wait out
//! [`Throttle::delay`], [`Users::refresh`] then [`Users::lookup`], check the
//! password with [`verify_password`], and report the outcome to the throttle.
//! An unknown user should still cost a hash (e.g. against a fixed dummy hash)
//! so that timing does not reveal which names exist.

pub mod hash;
pub mod passwd;
pub mod sasl;
pub mod throttle;
pub mod tty;

pub use hash::{hash_password, verify_password};
pub use passwd::{validate_name, EntryError, ParseError, UserEntry, Users, UsersFile};
pub use sasl::{Credentials, SaslError};
pub use throttle::Throttle;
pub use tty::{read_password, read_password_stdin};
