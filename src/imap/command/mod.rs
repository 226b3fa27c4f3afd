//! One file per IMAP command or close family, as more `impl Session` blocks.

mod compress;
mod fetch;
mod list;
mod login;
mod mailbox;
mod messages;
mod metadata;
mod quota;
pub(crate) mod search;
mod select;
mod sort;
