//! Counters for `--metrics ADDR`, rendered in Prometheus' text format.
//!
//! Everything here lives on the event loop except what other threads
//! count, which uses atomics.

use std::cell::Cell;

/// The server's counters, kept in [`crate::services::Shared`].
#[derive(Default)]
pub struct Metrics {
    /// Web requests answered, by any status.
    pub web_requests: Cell<u64>,
}

impl Metrics {
    /// The counters in Prometheus' text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        counter(
            &mut out,
            "letterbox_web_requests_total",
            "Web requests answered.",
            self.web_requests.get(),
        );
        out
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    use std::fmt::Write;
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
    );
}
