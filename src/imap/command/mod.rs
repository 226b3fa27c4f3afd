//! One file per IMAP command or close family, as more `impl Session` blocks.

mod fetch;
mod list;
mod login;
mod mailbox;
mod messages;
mod quota;
mod search;
mod select;
mod sort;
