//! The `import` part: a Dovecot-style Maildir of `--big` 20 KB messages
//! (100,000 by default) imported into a running letterbox, then a live
//! backup and a verify of the store it made, with an IMAP client looping
//! during the backup and, for comparison, without one.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{message, percentile, sample_peak, Imap, Letterbox, Options, BIN};

/// Writes `count` messages as Dovecot would: LF line ends, `,S=<size>` in
/// the names, a version 3 dovecot-uidlist, some seen and flagged.
fn build_maildir(root: &Path, count: usize) -> u64 {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let mut uidlist =
        std::io::BufWriter::new(std::fs::File::create(root.join("dovecot-uidlist")).unwrap());
    writeln!(
        uidlist,
        "3 V1700000000 N{} G0123456789abcdef0123456789abcdef",
        count + 1
    )
    .unwrap();
    let mut bytes = 0;
    for n in 0..count {
        let body: Vec<u8> = message(n).into_iter().filter(|&b| b != b'\r').collect();
        let base = format!("1700000000.M{n}P1.bench");
        let info = match n % 4 {
            0 => "",
            1 => "S",
            2 => "FS",
            _ => "RS",
        };
        std::fs::write(
            root.join("cur")
                .join(format!("{base},S={}:2,{info}", body.len())),
            &body,
        )
        .unwrap();
        writeln!(uidlist, "{} :{base}", n + 1).unwrap();
        bytes += body.len() as u64;
    }
    uidlist.flush().unwrap();
    bytes
}

/// Latencies (seconds) of a client looping `UID FETCH 1:* FLAGS`, SELECT
/// and NOOP until `stop`.
fn looping_client(
    port: u16,
    user: &str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<f64>> {
    let user = user.to_string();
    std::thread::spawn(move || {
        let mut c = Imap::login(port, &user);
        let mut times = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            for command in ["SELECT INBOX", "UID FETCH 1:* FLAGS", "NOOP"] {
                let start = Instant::now();
                let (_, status) = c.cmd(command);
                times.push(start.elapsed().as_secs_f64());
                assert!(status.contains(" OK"), "{command}: {status}");
            }
        }
        c.cmd("LOGOUT");
        times
    })
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

pub fn bench_import(o: &Options) {
    let users = vec!["bench1".to_string()];
    let lb = Letterbox::start(&users);
    let data = lb.dir.join("data");
    let source = lb.dir.join("Maildir");
    let built = Instant::now();
    let bytes = build_maildir(&source, o.big);
    eprintln!(
        "built a {}-message Maildir ({:.0} MB) in {:.1} s",
        o.big,
        bytes as f64 / 1e6,
        built.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(1));
    let idle_kib = lb.status_kib("VmRSS:");

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_peak(lb.child.id(), stop.clone());
    let start = Instant::now();
    let out = Command::new(BIN)
        .args(["import", "bench1"])
        .arg(&source)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    let took = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (peak_kib, _) = sampler.join().unwrap();
    let hwm_kib = lb.status_kib("VmHWM:");
    let summary = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "import failed: {summary} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("\n## import ({} messages of 20 KB, Dovecot Maildir with dovecot-uidlist, into a running server)", o.big);
    println!("  {summary}");
    println!(
        "  {:.1} s: {:.0} messages/s, {:.1} MB/s",
        took,
        o.big as f64 / took,
        bytes as f64 / 1e6 / took
    );
    println!(
        "  server RSS: idle {:.1} MiB, peak during import {:.1} MiB (sampled every 100 ms; +{:.1} MiB), VmHWM {:.1} MiB",
        idle_kib as f64 / 1024.0,
        peak_kib as f64 / 1024.0,
        peak_kib.saturating_sub(idle_kib) as f64 / 1024.0,
        hwm_kib as f64 / 1024.0
    );
    let _ = std::fs::remove_dir_all(&source);

    // IMAP latency without a backup, then during one, over the same span.
    let stop = Arc::new(AtomicBool::new(false));
    let client = looping_client(lb.ports.imap, "bench1", stop.clone());
    let dest = lb.dir.join("backups");
    std::fs::create_dir_all(&dest).unwrap();
    let start = Instant::now();
    let out = Command::new(BIN)
        .arg("backup")
        .arg(&dest)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    let backup_secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let during = client.join().unwrap();
    assert!(
        out.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stop = Arc::new(AtomicBool::new(false));
    let client = looping_client(lb.ports.imap, "bench1", stop.clone());
    std::thread::sleep(Duration::from_secs_f64(backup_secs.max(2.0)));
    stop.store(true, Ordering::Relaxed);
    let without = client.join().unwrap();
    let backup_size = dir_size(&dest);
    println!(
        "\n## backup and verify (the store the import made: {} messages)",
        o.big
    );
    println!(
        "  backup: {:.1} s, {:.0} MB; database file {:.0} MB",
        backup_secs,
        backup_size as f64 / 1e6,
        std::fs::metadata(data.join("letterbox.redb")).map_or(0, |m| m.len()) as f64 / 1e6
    );
    println!(
        "  IMAP commands (SELECT, UID FETCH 1:* FLAGS, NOOP in a loop): p99 {:.1} ms during the backup ({} commands), {:.1} ms without ({} commands)",
        percentile(during.clone(), 0.99) * 1e3,
        during.len(),
        percentile(without.clone(), 0.99) * 1e3,
        without.len()
    );
    let start = Instant::now();
    let out = Command::new(BIN).arg("verify").arg(&data).output().unwrap();
    let verify_secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "verify failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    println!("  verify (through the running server): {verify_secs:.1} s");
}
