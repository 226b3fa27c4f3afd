//! letterbox: a single-binary mail store for home servers and small boards.
//!
//! Mail arrives over LMTP ([`lmtp`]), lives in one redb file ([`store`]), and
//! is read over IMAP ([`imap`]) and POP3 ([`pop3`]). Everything runs on one
//! event-loop thread ([`server`]), sharing the services in [`services`]; see
//! DESIGN.md for the whole picture.

pub mod auth;
pub mod cli;
pub mod clock;
pub mod control;
pub mod imap;
pub mod import;
pub mod lmtp;
pub mod metrics;
pub mod mime;
pub mod net;
pub mod pop3;
pub mod quota;
pub mod server;
pub mod services;
pub mod store;
pub mod unix_accounts;
pub mod web;
