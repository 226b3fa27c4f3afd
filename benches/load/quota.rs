//! The quota part: LMTP delivery with quotas on against quotas off, two
//! letterbox servers in the same run, taking turns within each round so
//! that both see the same machine noise.

use super::{lmtp_rate, median, Letterbox, Options, BENCH_USERS};

pub fn bench_quota(o: &Options) {
    let users: Vec<String> = (1..=BENCH_USERS).map(|i| format!("bench{i}")).collect();
    let off = Letterbox::start_with(&users, "-quota-off", &[]);
    // Limits far above what the run delivers: every delivery is checked
    // and counted, none is refused, and no notice is sent.
    let on = Letterbox::start_with(
        &users,
        "-quota-on",
        &["--quota-storage", "1T", "--quota-messages", "100000000"],
    );
    let (mut off1, mut off8, mut on1, mut on8) = (vec![], vec![], vec![], vec![]);
    for round in 0..o.rounds {
        // Alternate which goes first, so neither always meets a warmer disk.
        let order: [(&Letterbox, bool); 2] = if round % 2 == 0 {
            [(&off, false), (&on, true)]
        } else {
            [(&on, true), (&off, false)]
        };
        for (server, quota) in order {
            let one = lmtp_rate(server.ports.lmtp, 1, o.messages);
            let eight = lmtp_rate(server.ports.lmtp, 8, o.messages / 4);
            if quota {
                on1.push(one);
                on8.push(eight);
            } else {
                off1.push(one);
                off8.push(eight);
            }
        }
        eprintln!(
            "round {}: quotas off 1={:.0}/s 8={:.0}/s  quotas on 1={:.0}/s 8={:.0}/s",
            round + 1,
            off1[round],
            off8[round],
            on1[round],
            on8[round]
        );
    }
    println!(
        "LMTP delivery with quotas on and off, 20 KB messages, median of {} rounds ({} messages per 1-sender run, {} per 8-sender run)",
        o.rounds,
        o.messages,
        o.messages / 4 * 8
    );
    let (f1, f8, n1, n8) = (median(off1), median(off8), median(on1), median(on8));
    println!("  quotas off, 1 sender : {f1:8.0} msg/s");
    println!(
        "  quotas on,  1 sender : {n1:8.0} msg/s  ({:+.1}%)",
        (n1 / f1 - 1.0) * 100.0
    );
    println!("  quotas off, 8 senders: {f8:8.0} msg/s");
    println!(
        "  quotas on,  8 senders: {n8:8.0} msg/s  ({:+.1}%)",
        (n8 / f8 - 1.0) * 100.0
    );
}
