//! The log sink for `serve`: one line per record on stderr, filtered by
//! `RUST_LOG` with env_logger's directive syntax, which is what users and
//! their unit files already write. Our own because env_logger brought more
//! code than the twenty lines it did for us.
//!
//! `RUST_LOG` is a comma-separated list of directives: `LEVEL` sets the
//! level of everything, `PATH=LEVEL` the level of the log targets (module
//! paths) that start with PATH, and a bare `PATH` turns everything on for
//! them. The longest matching PATH wins. Levels are `off`, `error`, `warn`,
//! `info`, `debug` and `trace`, in any case. Unset, it means `info`.
//! env_logger's `/regex` message filter is not supported: a directive with
//! one is refused with a warning, as are directives that do not parse.

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// What `RUST_LOG` asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct Filter {
    /// For targets no directive names.
    everything: LevelFilter,
    /// Longest path first, so the first match is the most specific.
    paths: Vec<(String, LevelFilter)>,
}

impl Filter {
    /// Parses a `RUST_LOG` value; also returns the directives it could not
    /// use, for a warning.
    pub fn parse(spec: &str) -> (Filter, Vec<String>) {
        let mut filter = Filter {
            // Naming only some targets silences the rest, as in env_logger.
            everything: LevelFilter::Off,
            paths: Vec::new(),
        };
        let mut refused = Vec::new();
        for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            if directive.contains('/') {
                refused.push(directive.to_string());
                continue;
            }
            match directive.split_once('=') {
                Some((path, level)) => match level.trim().parse() {
                    Ok(level) if !path.trim().is_empty() => {
                        filter.paths.push((path.trim().to_string(), level))
                    }
                    _ => refused.push(directive.to_string()),
                },
                None => match directive.parse() {
                    Ok(level) => filter.everything = level,
                    Err(_) => filter
                        .paths
                        .push((directive.to_string(), LevelFilter::Trace)),
                },
            }
        }
        // A later directive for the same path wins, as in env_logger: the
        // stable sort keeps the order among equal lengths, and dedup below
        // keeps the last.
        filter
            .paths
            .sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        let mut kept: Vec<(String, LevelFilter)> = Vec::with_capacity(filter.paths.len());
        for (path, level) in filter.paths.drain(..) {
            match kept.iter_mut().find(|(p, _)| *p == path) {
                Some(existing) => existing.1 = level,
                None => kept.push((path, level)),
            }
        }
        filter.paths = kept;
        (filter, refused)
    }

    fn level_for(&self, target: &str) -> LevelFilter {
        self.paths
            .iter()
            .find(|(path, _)| target.starts_with(path.as_str()))
            .map_or(self.everything, |&(_, level)| level)
    }

    pub fn enabled(&self, target: &str, level: Level) -> bool {
        level <= self.level_for(target)
    }

    /// The most verbose level any target may log at.
    fn max(&self) -> LevelFilter {
        self.paths
            .iter()
            .map(|&(_, level)| level)
            .fold(self.everything, Ord::max)
    }
}

/// How each line starts.
#[derive(Clone, Copy)]
pub enum Style {
    /// `[2026-11-30T05:00:00Z INFO ] `: a UTC timestamp and the level.
    Timestamped,
    /// `<6>`: the syslog priority journald reads (sd-daemon(3)); the
    /// journal keeps its own timestamps.
    Journal,
}

struct Logger {
    filter: Filter,
    style: Style,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.filter.enabled(metadata.target(), metadata.level())
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format_line(self.style, crate::store::now_unix(), record);
        // One write per line, so lines from the writer thread and the
        // event loop never interleave; a closed stderr is not our problem
        // to report.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().lock().flush();
    }
}

fn format_line(style: Style, now: i64, record: &Record) -> String {
    match style {
        Style::Journal => format!("{}{}\n", syslog_priority(record.level()), record.args()),
        Style::Timestamped => {
            let t = crate::clock::civil(now, 0);
            format!(
                "[{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z {:<5}] {}\n",
                t.year,
                t.month,
                t.day,
                t.hour,
                t.minute,
                t.second,
                record.level(),
                record.args()
            )
        }
    }
}

/// The `<N>` prefix journald reads as the line's priority.
fn syslog_priority(level: Level) -> &'static str {
    match level {
        Level::Error => "<3>",
        Level::Warn => "<4>",
        Level::Info => "<6>",
        Level::Debug | Level::Trace => "<7>",
    }
}

/// Installs the logger, filtered by `RUST_LOG` (unset: `info`). Does
/// nothing if a logger is already installed.
pub fn init(style: Style) {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let (filter, refused) = Filter::parse(&spec);
    let max = filter.max();
    let logger = Box::leak(Box::new(Logger { filter, style }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(max);
        for directive in refused {
            log::warn!("RUST_LOG: ignoring {directive:?} (a level, PATH=LEVEL or PATH; levels: off, error, warn, info, debug, trace)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> Filter {
        let (filter, refused) = Filter::parse(spec);
        assert!(refused.is_empty(), "{spec}: refused {refused:?}");
        filter
    }

    #[test]
    fn a_bare_level_sets_everything() {
        let filter = parse("debug");
        assert!(filter.enabled("letterbox::imap", Level::Debug));
        assert!(filter.enabled("redb", Level::Debug));
        assert!(!filter.enabled("redb", Level::Trace));
        assert_eq!(filter.max(), LevelFilter::Debug);
        assert!(parse("WARN").enabled("x", Level::Warn));
        assert!(!parse("WARN").enabled("x", Level::Info));
        assert!(!parse("off").enabled("x", Level::Error));
    }

    #[test]
    fn the_longest_path_wins_and_unnamed_targets_follow_the_bare_level() {
        let filter = parse("warn,letterbox=info,letterbox::imap=trace");
        assert!(filter.enabled("letterbox::imap::session", Level::Trace));
        assert!(filter.enabled("letterbox::pop3", Level::Info));
        assert!(!filter.enabled("letterbox::pop3", Level::Debug));
        assert!(filter.enabled("redb::db", Level::Warn));
        assert!(!filter.enabled("redb::db", Level::Info));
        assert_eq!(filter.max(), LevelFilter::Trace);
    }

    #[test]
    fn naming_only_some_targets_silences_the_rest() {
        let filter = parse("letterbox::store=debug");
        assert!(filter.enabled("letterbox::store::writer", Level::Debug));
        assert!(!filter.enabled("letterbox::imap", Level::Error));
        // A bare path turns everything on for it.
        let filter = parse("letterbox::lmtp");
        assert!(filter.enabled("letterbox::lmtp", Level::Trace));
        assert!(!filter.enabled("letterbox::imap", Level::Error));
    }

    #[test]
    fn a_later_directive_for_the_same_path_wins() {
        let filter = parse("letterbox=debug, letterbox=error ,info");
        assert!(!filter.enabled("letterbox::imap", Level::Warn));
        assert!(filter.enabled("letterbox::imap", Level::Error));
        assert!(filter.enabled("other", Level::Info));
    }

    #[test]
    fn what_does_not_parse_is_refused_and_the_rest_still_counts() {
        let (filter, refused) = Filter::parse("info,letterbox=loud,=debug,redb/commit,,");
        assert_eq!(refused, ["letterbox=loud", "=debug", "redb/commit"]);
        assert!(filter.enabled("letterbox", Level::Info));
        assert!(!filter.enabled("letterbox", Level::Debug));
        assert_eq!(Filter::parse("").0.max(), LevelFilter::Off);
    }

    #[test]
    fn lines_carry_a_utc_timestamp_or_the_journal_priority() {
        let args = format_args!("{}: connected", "#7");
        let record = Record::builder()
            .args(args)
            .level(Level::Warn)
            .target("letterbox::server")
            .build();
        // 2026-11-29T05:06:07Z
        let now = 1_795_928_767;
        assert_eq!(
            format_line(Style::Timestamped, now, &record),
            "[2026-11-29T05:06:07Z WARN ] #7: connected\n"
        );
        assert_eq!(
            format_line(Style::Journal, now, &record),
            "<4>#7: connected\n"
        );
    }
}
