//! The server's side of `letterbox import`: the command reads the source
//! and sends its items over the control socket ([`crate::import::wire`]);
//! here they are read, handed one at a time to an [`Importer`] on a
//! blocking thread, and stored through the writer like any delivery, so
//! IDLE clients see them arrive.
//!
//! Memory stays bounded whatever the source's size: the socket is read one
//! item at a time, the channel to the importer holds one item, and the
//! importer commits every few MiB. One import runs at a time (a second
//! waits), so what imports hold never multiplies: at most about three
//! messages and one batch.

use std::rc::Rc;

use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use smol::net::unix::UnixStream;

use crate::import::target::Importer;
use crate::import::wire::{self, Header};
use crate::import::Item;
use crate::services::Shared;

/// Imports take turns.
static ONE_AT_A_TIME: smol::lock::Semaphore = smol::lock::Semaphore::new(1);

/// Serves one import whose request line (`import<TAB>USER`) has been read.
pub async fn serve<R>(
    shared: Rc<Shared>,
    mut reader: BufReader<R>,
    mut stream: UnixStream,
    user: String,
) where
    R: smol::io::AsyncRead + Unpin,
{
    let Some(user) = shared.resolve_user(&user) else {
        let _ = stream
            .write_all(
                format!(
                    "err no user {user} in the users file (add one with `letterbox user add`)\n"
                )
                .as_bytes(),
            )
            .await;
        return;
    };
    let _turn = match ONE_AT_A_TIME.try_acquire() {
        Some(turn) => turn,
        None => {
            let waiting = ". another import is running; this one starts when it ends\n";
            if stream.write_all(waiting.as_bytes()).await.is_err() {
                return;
            }
            ONE_AT_A_TIME.acquire().await
        }
    };
    let limit = shared.config.max_message_size;
    if stream
        .write_all(format!("limit {limit}\n").as_bytes())
        .await
        .is_err()
    {
        return;
    }
    log::info!("control socket: import for {user} started");
    let (items, incoming_items) = smol::channel::bounded::<Item>(1);
    let (lines, incoming_lines) = smol::channel::unbounded::<String>();
    let store = shared.store.clone();
    let work_lines = lines.clone();
    // Set when the command's `end` arrived: the source was read whole.
    let complete = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let read_whole = complete.clone();
    let work = crate::services::unblock(move || {
        let mut say = |text: String| {
            let _ = work_lines.send_blocking(format!(". {}\n", text.replace('\n', " ")));
        };
        let mut importer = Importer::new(store, &user, limit);
        while let Ok(item) = incoming_items.recv_blocking() {
            // An error here drops the receiver, which stops the reading.
            importer.handle(item, &mut say)?;
        }
        importer.finish(
            complete.load(std::sync::atomic::Ordering::Acquire),
            &mut say,
        )
    });
    let read = async move {
        let outcome = read_items(&mut reader, &items, limit).await;
        if outcome.is_ok() {
            read_whole.store(true, std::sync::atomic::Ordering::Release);
        }
        drop(items);
        drop(lines);
        outcome
    };
    let forward = async {
        while let Ok(text) = incoming_lines.recv().await {
            if stream.write_all(text.as_bytes()).await.is_err() {
                break;
            }
        }
    };
    let ((read, done), ()) = smol::future::zip(smol::future::zip(read, work), forward).await;
    let last = match (done, read) {
        (Ok(tally), Ok(())) => {
            log::info!("control socket: import finished: {}", tally.summary());
            format!("ok {}\n", tally.summary())
        }
        (Ok(tally), Err(e)) => {
            log::warn!(
                "control socket: import cut short ({e}): {}",
                tally.summary()
            );
            format!("err {e} (so far: {})\n", tally.summary())
        }
        (Err(e), _) => {
            log::error!("control socket: import failed: {e}");
            format!("err {e}\n")
        }
    };
    let _ = stream.write_all(last.as_bytes()).await;
}

/// Reads items until `end`; an error for anything else (the command went
/// away, or sent what is not understood).
async fn read_items<R>(
    reader: &mut BufReader<R>,
    items: &smol::channel::Sender<Item>,
    limit: usize,
) -> Result<(), String>
where
    R: smol::io::AsyncRead + Unpin,
{
    loop {
        let line = read_line(reader).await?;
        let item = match wire::parse_header(&line)? {
            Header::End => return Ok(()),
            Header::Item(item) => item,
            Header::Message(mut message, size) => {
                if size > limit as u64 {
                    return Err(format!(
                        "{}: {size} bytes, over the limit of {limit}",
                        message.label
                    ));
                }
                message.raw = vec![0; size as usize];
                reader
                    .read_exact(&mut message.raw)
                    .await
                    .map_err(|e| format!("the import stopped mid-message: {e}"))?;
                Item::Message(message)
            }
        };
        if items.send(item).await.is_err() {
            // The importer stopped; it says why.
            return Ok(());
        }
    }
}

/// One line, at most [`wire::MAX_LINE`] long.
async fn read_line<R>(reader: &mut BufReader<R>) -> Result<String, String>
where
    R: smol::io::AsyncRead + Unpin,
{
    let mut line = Vec::new();
    loop {
        let buffer = reader
            .fill_buf()
            .await
            .map_err(|e| format!("reading the import: {e}"))?;
        if buffer.is_empty() {
            return Err("the import stopped before its end (was the command interrupted?)".into());
        }
        let (take, done) = match buffer.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (buffer.len(), false),
        };
        line.extend_from_slice(&buffer[..take]);
        reader.consume(take);
        if line.len() > wire::MAX_LINE {
            return Err("an import item line is too long".into());
        }
        if done {
            return String::from_utf8(line).map_err(|_| "an import item line is not UTF-8".into());
        }
    }
}
