//! `letterbox import USER SOURCE`: mail moving in from Dovecot's Maildir,
//! mbox files, or letterbox's own export (see [`crate::import`]). This
//! process reads the source, as the user who runs it; the running server
//! stores what it sends over the control socket, or, with no server
//! running, this process opens the store itself.

use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use argh::FromArgs;

use crate::import::{self, target::Importer, Item, Sink, Tally};
use crate::store::Store;

/// import mail from a Dovecot Maildir (Maildir++ or LAYOUT=fs, keeping UIDs, UIDVALIDITY, flags, keywords and subscriptions), an mbox file or a directory of them, or letterbox's export; messages already there are skipped, so it can run again (through the running server if there is one)
#[derive(FromArgs)]
#[argh(subcommand, name = "import")]
pub struct ImportArgs {
    /// whose mailboxes to import into
    #[argh(positional)]
    user: String,
    /// a Maildir directory, an mbox file, or a directory of mbox files
    #[argh(positional)]
    source: PathBuf,
    /// import into this folder (and folders below it) instead of INBOX and the top level
    #[argh(option)]
    folder: Option<String>,
    /// data directory (default /var/lib/letterbox)
    #[argh(option)]
    data: Option<PathBuf>,
    /// the largest message taken when no server runs, in bytes; a running server uses its own --max-message-size (default 52428800, 50 MiB)
    #[argh(option, default = "50 * 1024 * 1024")]
    max_message_size: usize,
}

pub fn run(args: ImportArgs) -> i32 {
    match import_into(args) {
        Ok(tally) => {
            println!("{}", tally.summary());
            if tally.failed > 0 {
                1
            } else {
                0
            }
        }
        Err(e) => {
            eprintln!("letterbox import: {e}");
            1
        }
    }
}

fn import_into(args: ImportArgs) -> Result<Tally, String> {
    let data_dir = super::data_dir(args.data);
    let user = args.user.to_ascii_lowercase();
    if let Some(folder) = &args.folder {
        if !import::valid_mailbox_name(folder) {
            return Err(format!("--folder {folder:?} is not a valid mailbox name"));
        }
    }
    std::fs::metadata(&args.source).map_err(|e| format!("{}: {e}", args.source.display()))?;
    let progress = Progress::new(&args.source);
    let folder = args.folder.as_deref();
    match UnixStream::connect(crate::control::socket_path(&data_dir)) {
        Ok(stream) => through_server(stream, &user, &args.source, folder, progress),
        Err(_) => by_itself(
            &data_dir,
            &user,
            &args.source,
            folder,
            args.max_message_size,
            progress,
        ),
    }
}

/// Sends the items to the running server.
fn through_server(
    stream: UnixStream,
    user: &str,
    source: &Path,
    folder: Option<&str>,
    progress: Progress,
) -> Result<Tally, String> {
    let gone = |e: std::io::Error| format!("the server's control socket: {e}");
    let mut out = BufWriter::with_capacity(1 << 16, stream.try_clone().map_err(gone)?);
    let line = format!("import\t{user}\n");
    out.write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .map_err(gone)?;
    let mut answers = BufReader::new(stream);
    let mut first = String::new();
    loop {
        first.clear();
        answers.read_line(&mut first).map_err(gone)?;
        match first.strip_prefix(". ") {
            Some(note) => eprint!("{note}"),
            None => break,
        }
    }
    let first = first.trim_end();
    let limit: usize = match first.strip_prefix("limit ") {
        Some(n) => n
            .parse()
            .map_err(|_| format!("unexpected answer: {first}"))?,
        None => return Err(first.strip_prefix("err ").unwrap_or(first).to_string()),
    };
    // The server's lines are read while the items go out, so neither side
    // waits on the other.
    let listener = std::thread::spawn(move || -> Result<Tally, String> {
        let mut line = String::new();
        loop {
            line.clear();
            match answers.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    return Err("the server closed the control socket without an answer".into())
                }
                Ok(_) => {}
            }
            let text = line.trim_end_matches('\n');
            if let Some(rest) = text.strip_prefix(". ") {
                eprintln!("{rest}");
            } else if let Some(rest) = text.strip_prefix("ok ") {
                return Tally::parse(rest).ok_or_else(|| format!("unexpected answer: {text}"));
            } else {
                return Err(text.strip_prefix("err ").unwrap_or(text).to_string());
            }
        }
    });
    let mut sink = RemoteSink {
        out,
        problems: 0,
        progress,
        sending: Ok(()),
    };
    let read = import::read_source(source, folder, limit, &mut sink).and_then(|()| {
        let sent = import::wire::write_end(&mut sink.out).and_then(|()| sink.out.flush());
        if sent.is_err() {
            sink.sending = Err(());
        }
        sent.map_err(gone)
    });
    sink.progress.clear();
    let (problems, server_went_away) = (sink.problems, sink.sending.is_err());
    if read.is_err() {
        // Ends the stream early: the server stops, and answers.
        let _ = sink.out.get_ref().shutdown(std::net::Shutdown::Write);
    }
    drop(sink);
    let answer = listener
        .join()
        .map_err(|_| "reading the server's answer failed".to_string())?;
    let mut tally = match (read, answer) {
        (Ok(()), answer) => answer?,
        // When the server stopped taking items, its answer says why.
        (Err(_), Err(why)) if server_went_away => return Err(why),
        (Err(e), _) => return Err(e),
    };
    tally.failed += problems;
    Ok(tally)
}

struct RemoteSink {
    out: BufWriter<UnixStream>,
    problems: u64,
    progress: Progress,
    /// Err while an item is being sent, and after a send failed: the
    /// server stopped taking them.
    sending: Result<(), ()>,
}

impl Sink for RemoteSink {
    fn item(&mut self, item: Item) -> Result<(), String> {
        if matches!(item, Item::Message(_)) {
            self.progress.message();
        }
        self.sending = Err(());
        import::wire::write_item(&mut self.out, &item)
            .map_err(|e| format!("the server stopped taking the import: {e}"))?;
        self.sending = Ok(());
        Ok(())
    }
    fn problem(&mut self, text: String) {
        self.problems += 1;
        self.progress.clear();
        eprintln!("{text}");
    }
    fn progress(&mut self, bytes: u64) {
        self.progress.advance(bytes);
    }
}

/// No server runs: opens the store here.
fn by_itself(
    data_dir: &Path,
    user: &str,
    source: &Path,
    folder: Option<&str>,
    limit: usize,
    progress: Progress,
) -> Result<Tally, String> {
    let users_path = data_dir.join("users");
    let users = crate::auth::passwd::UsersFile::load(&users_path)
        .map_err(|e| format!("{}: {e} (give --data DIR)", users_path.display()))?;
    if users.get(user).is_none() {
        return Err(format!(
            "no user {user} in {} (add one with `letterbox user add`)",
            users_path.display()
        ));
    }
    let db = data_dir.join(crate::control::backup::DATABASE);
    let (store, _changes) =
        Store::open(&db, 16 << 20).map_err(|e| format!("{}: {e}", db.display()))?;
    let mut sink = LocalSink {
        importer: Importer::new(store.clone(), user, limit),
        problems: 0,
        progress,
    };
    let read = import::read_source(source, folder, limit, &mut sink);
    sink.progress.clear();
    let LocalSink {
        mut importer,
        problems,
        ..
    } = sink;
    importer.count_failed(problems);
    let finished = importer.finish(read.is_ok(), &mut |text| eprintln!("{text}"));
    store.shutdown();
    read?;
    finished
}

struct LocalSink {
    importer: Importer,
    problems: u64,
    progress: Progress,
}

impl Sink for LocalSink {
    fn item(&mut self, item: Item) -> Result<(), String> {
        if matches!(item, Item::Message(_)) {
            self.progress.message();
        }
        let progress = &mut self.progress;
        self.importer.handle(item, &mut |text| {
            progress.clear();
            eprintln!("{text}")
        })
    }
    fn problem(&mut self, text: String) {
        self.problems += 1;
        self.progress.clear();
        eprintln!("{text}");
    }
    fn progress(&mut self, bytes: u64) {
        self.progress.advance(bytes);
    }
}

/// Count, MB/s and time left on one line of stderr, when it is a terminal.
struct Progress {
    enabled: bool,
    total: u64,
    done: u64,
    messages: u64,
    start: Instant,
    last: Instant,
    shown: bool,
}

impl Progress {
    fn new(source: &Path) -> Progress {
        let enabled = std::io::stderr().is_terminal();
        let now = Instant::now();
        Progress {
            enabled,
            total: if enabled {
                import::source_size(source)
            } else {
                0
            },
            done: 0,
            messages: 0,
            start: now,
            last: now,
            shown: false,
        }
    }

    fn message(&mut self) {
        self.messages += 1;
    }

    fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if !self.enabled || self.last.elapsed() < Duration::from_millis(500) {
            return;
        }
        self.last = Instant::now();
        let seconds = self.start.elapsed().as_secs_f64().max(0.001);
        let rate = self.done as f64 / seconds;
        let left = if rate > 0.0 {
            self.total.saturating_sub(self.done) as f64 / rate
        } else {
            0.0
        };
        eprint!(
            "\r{} messages, {:.1} MB/s, {}:{:02} left\x1b[K",
            self.messages,
            rate / 1e6,
            left as u64 / 60,
            left as u64 % 60
        );
        self.shown = true;
    }

    fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
            self.shown = false;
        }
    }
}
