//! Who may log in: the users file, password hashes, SASL decoding, login
//! throttling, and reading a new password from the admin.
//!
//! A login goes: decode the client's SASL lines ([`sasl`]), wait for the
//! address's turn ([`fair::AddressQueue`]), wait out [`Throttle::delay`],
//! count the attempt as a failure until it proves otherwise, [`Users::refresh`]
//! then [`Users::lookup`], ask the [`LoginCache`], else check the password
//! with [`verify_password`] under the [`fair::HashGate`], and report a
//! success to the throttle and the cache. An unknown user still costs a hash
//! (against a fixed dummy hash) so that timing does not reveal which names
//! exist.

pub mod cache;
pub mod fair;
pub mod hash;
pub mod passwd;
pub mod sasl;
pub mod throttle;
pub mod tty;

pub use cache::LoginCache;
pub use hash::{hash_password, verify_password};
pub use passwd::{
    validate_name, validate_new_name, EntryError, ParseError, UserEntry, Users, UsersFile,
};
pub use sasl::{Credentials, SaslError};
pub use throttle::Throttle;
pub use tty::{read_password, read_password_stdin};
