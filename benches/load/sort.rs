//! The `sort` part: SORT and THREAD over the big INBOX of the `imap` part
//! (the same 4 KB messages, the same fill), warm, and again right after
//! 1,000 new deliveries, letterbox and Dovecot taking turns.

use std::time::Duration;

use super::{
    fill_each, median, small_message, stuffed, time_command, Dovecot, Letterbox, Lmtp, Options,
    BENCH_USERS,
};

const BIG_USER: &str = "bench100";
const NEW_MAIL: usize = 1000;
const COMMANDS: [&str; 3] = [
    "UID SORT (DATE) UTF-8 ALL",
    "UID SORT (SUBJECT) UTF-8 ALL",
    "UID THREAD REFERENCES UTF-8 ALL",
];

/// Delivers messages `first..first + count` of the big set to the big user,
/// over 8 connections.
fn deliver_more(port: u16, first: usize, count: usize) {
    let threads: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Lmtp::connect(port);
                let mut n = t;
                while n < count {
                    c.deliver(BIG_USER, &stuffed(&small_message(first + n)));
                    n += 8;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn report(label: &str, names: &[&str], times: Vec<Vec<f64>>) {
    let medians: Vec<f64> = times.into_iter().map(median).collect();
    let mut line = format!("  {label:44}");
    for (name, m) in names.iter().zip(&medians) {
        line.push_str(&format!(" {name} {m:9.4} s"));
    }
    if medians.len() == 2 {
        line.push_str(&format!(
            "   letterbox/dovecot time {:.2}",
            medians[0] / medians[1]
        ));
    }
    println!("{line}");
}

pub fn bench_sort(o: &Options) {
    let users: Vec<String> = (1..=BENCH_USERS).map(|i| format!("bench{i}")).collect();
    let lb = Letterbox::start(&users);
    let dc = if o.dovecot { Dovecot::start() } else { None };
    let servers: Vec<(&str, u16, u16)> =
        std::iter::once(("letterbox", lb.ports.imap, lb.ports.lmtp))
            .chain(dc.as_ref().map(|d| ("dovecot", d.ports.imap, d.ports.lmtp)))
            .collect();
    let names: Vec<&str> = servers.iter().map(|s| s.0).collect();
    fill_each(&servers, BIG_USER, o.big);
    // Warm: each server has answered every command once before the clock
    // runs (Dovecot builds its index and caches the sort fields then).
    for (_, imap, _) in &servers {
        time_command(*imap, BIG_USER, false, "SELECT INBOX");
        for command in COMMANDS {
            time_command(*imap, BIG_USER, true, command);
        }
    }
    println!(
        "SORT and THREAD, a {}-message INBOX (4 KB messages): seconds per command, median of {} rounds",
        o.big, o.rounds
    );
    for command in COMMANDS {
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); servers.len()];
        for _ in 0..o.rounds {
            for (i, (_, imap, _)) in servers.iter().enumerate() {
                // Let the other server's after-work (Dovecot writes its
                // index when a session ends) finish first.
                std::thread::sleep(Duration::from_millis(500));
                times[i].push(time_command(*imap, BIG_USER, true, command));
            }
        }
        report(&format!("{command}, warm"), &names, times);
    }
    let mut next = o.big;
    for command in COMMANDS {
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); servers.len()];
        for _ in 0..o.rounds {
            for (i, (_, imap, lmtp)) in servers.iter().enumerate() {
                deliver_more(*lmtp, next, NEW_MAIL);
                std::thread::sleep(Duration::from_millis(500));
                times[i].push(time_command(*imap, BIG_USER, true, command));
            }
            next += NEW_MAIL;
        }
        report(&format!("{command}, after {NEW_MAIL} new"), &names, times);
    }
}
