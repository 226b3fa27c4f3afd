//! Sockets, TLS and limits: everything between a listener and a protocol
//! session. Protocol code sees a [`Conn`] and never a socket.

pub mod budget;
pub mod compress;
mod conn;
mod limits;
pub mod spool;
pub mod tls;

pub use conn::{accept_tls, Conn, DataError, Peer, ReadError, Stream};
pub use limits::{address_key, ConnectionLimits, Slot};
