//! Where an incoming message body waits while its bytes arrive: in memory
//! up to [`SPOOL_THRESHOLD`], then in a file under `DATA/tmp`, written in
//! pieces of that size. A client that sends half a large message and stalls
//! holds a file, not memory.
//!
//! The file is unlinked as soon as it is created and used through its open
//! descriptor, so it disappears however the session or the process ends;
//! the server also empties `DATA/tmp` at startup, for a file caught between
//! creation and unlinking by a crash.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes kept in memory before the body moves to a file.
pub const SPOOL_THRESHOLD: usize = 64 * 1024;

/// The directory under the data directory that holds spool files.
pub fn spool_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tmp")
}

/// Creates `DATA/tmp` and removes whatever an earlier run left in it.
pub fn prepare_spool_dir(data_dir: &Path) -> io::Result<()> {
    let dir = spool_dir(data_dir);
    std::fs::create_dir_all(&dir)?;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.is_file() {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

pub struct Spool {
    dir: PathBuf,
    /// The bytes not yet in the file: all of a small body, or up to about
    /// [`SPOOL_THRESHOLD`] waiting to be written in one go.
    memory: Vec<u8>,
    file: Option<File>,
    len: u64,
}

impl Spool {
    pub fn new(dir: &Path) -> Spool {
        Spool {
            dir: dir.to_path_buf(),
            memory: Vec::new(),
            file: None,
            len: 0,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends bytes. Past [`SPOOL_THRESHOLD`] in memory they go to the
    /// file, on a blocking thread: a disk that is slow to take them (an SD
    /// card under writeback) must not stall the event loop.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.memory.extend_from_slice(bytes);
        self.len += bytes.len() as u64;
        if self.memory.len() > SPOOL_THRESHOLD {
            self.flush_to_file().await?;
        }
        Ok(())
    }

    async fn flush_to_file(&mut self) -> io::Result<()> {
        let file = self.file.take();
        let dir = self.dir.clone();
        let buffer = std::mem::take(&mut self.memory);
        let (file, mut buffer) =
            crate::services::unblock(move || -> io::Result<(File, Vec<u8>)> {
                let mut file = match file {
                    Some(file) => file,
                    None => create_file(&dir)?,
                };
                file.write_all(&buffer)?;
                Ok((file, buffer))
            })
            .await?;
        buffer.clear();
        self.memory = buffer;
        self.file = Some(file);
        Ok(())
    }

    /// The whole body in memory, `prefix` first, read off the event loop.
    /// The caller holds a budget reservation for it.
    pub async fn into_bytes(self, prefix: Vec<u8>) -> io::Result<Vec<u8>> {
        let Spool {
            memory, file, len, ..
        } = self;
        let Some(mut file) = file else {
            let mut out = prefix;
            out.extend_from_slice(&memory);
            return Ok(out);
        };
        crate::services::unblock(move || {
            file.write_all(&memory)?;
            drop(memory);
            let mut out = Vec::new();
            out.try_reserve_exact(prefix.len() + len as usize)
                .map_err(|_| io::Error::other("out of memory for an incoming message"))?;
            out.extend_from_slice(&prefix);
            file.seek(SeekFrom::Start(0))?;
            file.take(len).read_to_end(&mut out)?;
            if out.len() as u64 != prefix.len() as u64 + len {
                return Err(io::Error::other("spool file came back short"));
            }
            Ok(out)
        })
        .await
    }
}

/// A new spool file, already unlinked: it lives as long as its descriptor.
fn create_file(dir: &Path) -> io::Result<File> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("incoming-{}-{n}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bodies_stay_in_memory_large_ones_go_to_a_vanished_file() {
        let dir = std::env::temp_dir().join(format!("letterbox-spool-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("stale"), b"x").unwrap();
        prepare_spool_dir(&dir).unwrap();
        let tmp = spool_dir(&dir);
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
        let mut small = Spool::new(&tmp);
        smol::block_on(small.write(b"hello")).unwrap();
        assert!(small.file.is_none());
        assert_eq!(
            smol::block_on(small.into_bytes(b">".to_vec())).unwrap(),
            b">hello"
        );
        let mut big = Spool::new(&tmp);
        let mut want = Vec::new();
        for i in 0..40u32 {
            let piece = vec![(i % 251) as u8; 5000];
            smol::block_on(big.write(&piece)).unwrap();
            want.extend_from_slice(&piece);
        }
        assert!(big.file.is_some() && big.memory.len() <= SPOOL_THRESHOLD);
        // Unlinked at once: nothing to clean up, whatever happens next.
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
        assert_eq!(big.len(), want.len() as u64);
        assert_eq!(smol::block_on(big.into_bytes(Vec::new())).unwrap(), want);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
