//! Counters for `--metrics ADDR`, rendered in Prometheus' text format.
//!
//! Everything here lives on the event loop (plain `Cell`s) except the commit
//! latency histogram, which the store's writer thread fills, so it uses
//! atomics. Gauges that are a fact of the moment (the store file's size, the
//! memory budget in use) are read when the page is rendered, not kept.

use std::cell::Cell;
use std::fmt::Write;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::net::budget::Budget;

/// What a connection speaks, for the open-connections gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionKind {
    Imap,
    Imaps,
    Pop3,
    Pop3s,
    Lmtp,
    Web,
}

impl ConnectionKind {
    const ALL: [ConnectionKind; 6] = [
        ConnectionKind::Imap,
        ConnectionKind::Imaps,
        ConnectionKind::Pop3,
        ConnectionKind::Pop3s,
        ConnectionKind::Lmtp,
        ConnectionKind::Web,
    ];

    fn label(self) -> &'static str {
        match self {
            ConnectionKind::Imap => "imap",
            ConnectionKind::Imaps => "imaps",
            ConnectionKind::Pop3 => "pop3",
            ConnectionKind::Pop3s => "pop3s",
            ConnectionKind::Lmtp => "lmtp",
            ConnectionKind::Web => "web",
        }
    }
}

type OpenGauges = Rc<[Cell<u64>; ConnectionKind::ALL.len()]>;

/// The server's counters, kept in [`crate::services::Shared`].
#[derive(Default)]
pub struct Metrics {
    /// Web requests answered, by any status.
    pub web_requests: Cell<u64>,
    open: OpenGauges,
    logins_succeeded: Cell<u64>,
    logins_failed: Cell<u64>,
    deliveries: Cell<u64>,
    delivered_bytes: Cell<u64>,
    not_delivered: Cell<u64>,
    commit_latency: Arc<Histogram>,
    /// The store's file, whose size is read at each rendering.
    store_file: Option<PathBuf>,
    budget: Option<Budget>,
}

/// One open connection, counted in its protocol's gauge until dropped.
pub struct OpenConnection {
    gauges: OpenGauges,
    kind: ConnectionKind,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let gauge = &self.gauges[self.kind as usize];
        gauge.set(gauge.get().saturating_sub(1));
    }
}

impl Metrics {
    /// Counters that also report the store file's size, the memory budget
    /// in use, and the commit latencies the store's writer records.
    pub fn new(store_file: PathBuf, budget: Budget, commit_latency: Arc<Histogram>) -> Metrics {
        Metrics {
            commit_latency,
            store_file: Some(store_file),
            budget: Some(budget),
            ..Metrics::default()
        }
    }

    /// Counts a connection as open for as long as the guard lives; hold it
    /// beside the connection-limit slot.
    pub fn connection_opened(&self, kind: ConnectionKind) -> OpenConnection {
        let gauge = &self.open[kind as usize];
        gauge.set(gauge.get() + 1);
        OpenConnection {
            gauges: self.open.clone(),
            kind,
        }
    }

    /// Connections of one kind open now.
    pub fn connections_open(&self, kind: ConnectionKind) -> u64 {
        self.open[kind as usize].get()
    }

    /// A password check's outcome (cached or hashed alike).
    pub fn login(&self, succeeded: bool) {
        let counter = if succeeded {
            &self.logins_succeeded
        } else {
            &self.logins_failed
        };
        bump(counter, 1);
    }

    /// A message stored into one recipient's mailbox.
    pub fn delivered(&self, bytes: u64) {
        bump(&self.deliveries, 1);
        bump(&self.delivered_bytes, bytes);
    }

    /// Recipients the store refused a message for (over quota, disk full,
    /// a storage error): the MTA retries or bounces those.
    pub fn not_delivered(&self, recipients: u64) {
        bump(&self.not_delivered, recipients);
    }

    /// The counters in Prometheus' text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "letterbox_connections_open",
            "gauge",
            "Connections open now, by protocol.",
        );
        for kind in ConnectionKind::ALL {
            let _ = writeln!(
                out,
                "letterbox_connections_open{{protocol=\"{}\"}} {}",
                kind.label(),
                self.connections_open(kind)
            );
        }
        header(
            &mut out,
            "letterbox_logins_total",
            "counter",
            "Password checks, by outcome.",
        );
        let _ = writeln!(
            out,
            "letterbox_logins_total{{result=\"success\"}} {}\nletterbox_logins_total{{result=\"failure\"}} {}",
            self.logins_succeeded.get(),
            self.logins_failed.get()
        );
        single(
            &mut out,
            "letterbox_deliveries_total",
            "counter",
            "Messages stored into a recipient's mailbox (LMTP and letterbox deliver), one per recipient.",
            self.deliveries.get(),
        );
        single(
            &mut out,
            "letterbox_delivered_bytes_total",
            "counter",
            "Bytes of the messages counted in letterbox_deliveries_total.",
            self.delivered_bytes.get(),
        );
        single(
            &mut out,
            "letterbox_delivery_failures_total",
            "counter",
            "Recipients whose message the store refused (over quota, disk full, storage error), one per recipient and attempt.",
            self.not_delivered.get(),
        );
        self.commit_latency.render(
            &mut out,
            "letterbox_store_commit_seconds",
            "Time from the start of a write transaction to its durable commit (one per batch of writes).",
        );
        // A file that cannot be read now (removed under us) is left out
        // rather than reported as empty.
        if let Some(size) = self
            .store_file
            .as_ref()
            .and_then(|path| std::fs::metadata(path).ok())
        {
            single(
                &mut out,
                "letterbox_store_file_bytes",
                "gauge",
                "Size of the store's database file.",
                size.len(),
            );
        }
        if let Some(budget) = &self.budget {
            single(
                &mut out,
                "letterbox_memory_budget_used_bytes",
                "gauge",
                "Bytes of the memory budget held by incoming messages now.",
                budget.used(),
            );
            single(
                &mut out,
                "letterbox_memory_budget_bytes",
                "gauge",
                "The memory budget for incoming messages (--memory-budget).",
                budget.capacity(),
            );
        }
        single(
            &mut out,
            "letterbox_web_requests_total",
            "counter",
            "Web requests answered.",
            self.web_requests.get(),
        );
        out
    }
}

fn bump(counter: &Cell<u64>, by: u64) {
    counter.set(counter.get().saturating_add(by));
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Upper bounds of the latency buckets, in microseconds: 1 ms to 10 s, as
/// Prometheus' client libraries space them. A commit is one fsync at
/// best, milliseconds on an SSD; seconds mean a struggling SD card.
const BUCKETS_MICROS: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];
/// The same bounds as Prometheus' `le` labels, in seconds.
const BUCKET_LABELS: [&str; 13] = [
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
    "10",
];

/// A latency histogram any thread may record into.
#[derive(Default)]
pub struct Histogram {
    /// Observations per bucket, not cumulative; the last is above 10 s.
    buckets: [AtomicU64; BUCKETS_MICROS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_MICROS.partition_point(|&bound| bound < micros);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// How many observations there have been.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, "histogram", help);
        // Read while the writer may record: each figure is exact, and the
        // buckets may run one observation ahead of _count or behind it,
        // which Prometheus tolerates between scrapes.
        let mut cumulative = 0;
        for (bucket, le) in self.buckets.iter().zip(BUCKET_LABELS) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        cumulative += self.buckets[BUCKETS_MICROS.len()].load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {cumulative}\n{name}_sum {}.{:06}\n{name}_count {}",
            sum / 1_000_000,
            sum % 1_000_000,
            self.count()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of one sample line, by its name and labels as written.
    fn sample(text: &str, series: &str) -> Option<u64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn open_connections_are_counted_per_protocol_until_dropped() {
        let metrics = Metrics::default();
        let a = metrics.connection_opened(ConnectionKind::Imaps);
        let b = metrics.connection_opened(ConnectionKind::Imaps);
        let c = metrics.connection_opened(ConnectionKind::Web);
        let text = metrics.render();
        assert_eq!(
            sample(&text, "letterbox_connections_open{protocol=\"imaps\"}"),
            Some(2)
        );
        assert_eq!(
            sample(&text, "letterbox_connections_open{protocol=\"web\"}"),
            Some(1)
        );
        assert_eq!(
            sample(&text, "letterbox_connections_open{protocol=\"imap\"}"),
            Some(0)
        );
        drop(a);
        drop(c);
        assert_eq!(metrics.connections_open(ConnectionKind::Imaps), 1);
        assert_eq!(metrics.connections_open(ConnectionKind::Web), 0);
        drop(b);
        assert_eq!(metrics.connections_open(ConnectionKind::Imaps), 0);
    }

    #[test]
    fn logins_and_deliveries_add_up() {
        let metrics = Metrics::default();
        metrics.login(true);
        metrics.login(false);
        metrics.login(false);
        metrics.delivered(1200);
        metrics.delivered(34);
        metrics.not_delivered(3);
        let text = metrics.render();
        assert_eq!(
            sample(&text, "letterbox_logins_total{result=\"success\"}"),
            Some(1)
        );
        assert_eq!(
            sample(&text, "letterbox_logins_total{result=\"failure\"}"),
            Some(2)
        );
        assert_eq!(sample(&text, "letterbox_deliveries_total"), Some(2));
        assert_eq!(sample(&text, "letterbox_delivered_bytes_total"), Some(1234));
        assert_eq!(sample(&text, "letterbox_delivery_failures_total"), Some(3));
    }

    #[test]
    fn the_histogram_is_cumulative_with_sum_and_count() {
        let metrics = Metrics::default();
        let latency = &metrics.commit_latency;
        latency.observe(Duration::from_micros(400)); // le 0.001
        latency.observe(Duration::from_millis(1)); // le 0.001: bounds are inclusive
        latency.observe(Duration::from_millis(30)); // le 0.05
        latency.observe(Duration::from_secs(60)); // only +Inf
        let text = metrics.render();
        let bucket = |le: &str| {
            sample(
                &text,
                &format!("letterbox_store_commit_seconds_bucket{{le=\"{le}\"}}"),
            )
        };
        assert_eq!(bucket("0.001"), Some(2));
        assert_eq!(bucket("0.025"), Some(2));
        assert_eq!(bucket("0.05"), Some(3));
        assert_eq!(bucket("10"), Some(3));
        assert_eq!(bucket("+Inf"), Some(4));
        assert_eq!(
            sample(&text, "letterbox_store_commit_seconds_count"),
            Some(4)
        );
        assert!(
            text.contains("\nletterbox_store_commit_seconds_sum 60.031400\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE letterbox_store_commit_seconds histogram\n"));
    }

    #[test]
    fn store_size_and_budget_are_read_when_rendered() {
        let dir = std::env::temp_dir().join(format!("letterbox-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("store");
        std::fs::write(&file, [0u8; 100]).unwrap();
        let budget = Budget::new(1000);
        let metrics = Metrics::new(file.clone(), budget.clone(), Arc::default());
        let held = smol::block_on(budget.reserve(300, None)).unwrap();
        std::fs::write(&file, [0u8; 4096]).unwrap();
        let text = metrics.render();
        assert_eq!(sample(&text, "letterbox_store_file_bytes"), Some(4096));
        assert_eq!(
            sample(&text, "letterbox_memory_budget_used_bytes"),
            Some(300)
        );
        assert_eq!(sample(&text, "letterbox_memory_budget_bytes"), Some(1000));
        drop(held);
        let text = metrics.render();
        assert_eq!(sample(&text, "letterbox_memory_budget_used_bytes"), Some(0));
        std::fs::remove_dir_all(&dir).unwrap();
        // A store file that is gone is left out, not reported as empty.
        assert_eq!(
            sample(&metrics.render(), "letterbox_store_file_bytes"),
            None
        );
    }

    #[test]
    fn every_sample_has_its_help_and_type_first() {
        let metrics = Metrics::default();
        metrics.web_requests.set(7);
        let text = metrics.render();
        assert_eq!(sample(&text, "letterbox_web_requests_total"), Some(7));
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(typed.insert(name.to_string()), "{name} typed twice");
            } else if !line.starts_with("# HELP ") {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .filter(|base| typed.contains(*base))
                    .unwrap_or(name);
                assert!(typed.contains(family), "{line} before its TYPE");
            }
        }
        assert!(text.ends_with('\n'));
    }
}
