//! Outputs are written to a temporary file in the target directory and
//! renamed into place only once every file of the run is complete, so a failed
//! run leaves no half-written results. A name may hold a subdirectory
//! (`overlays/a.png`): the directory is created on first use and removed
//! again, when still empty, if the outputs are dropped without a commit.
//!
//! Each file is flushed to disk (`fsync`) before it is renamed, so a machine
//! that loses power mid-run keeps either the old file or the complete new
//! one. The `fsync` runs on a background thread as soon as the file is
//! written, overlapping the next file's work; [`AtomicOutputs::commit`]
//! waits for every one of them before the first rename.

use std::io::Write;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::{Error, Result};

/// A background `fsync` of one written file.
type Sync = std::thread::JoinHandle<std::io::Result<()>>;

/// Bytes written between two early flushes of a large output (see
/// [`EarlySync`]).
const EARLY_SYNC_BYTES: u64 = 8 << 20;

/// A file writer that starts the disk writeback of a large file while it is
/// still being written: after every [`EARLY_SYNC_BYTES`] it `fdatasync`s
/// what was written so far on a background thread (one at a time; a
/// threshold reached while one runs waits for the next). The final `fsync`
/// before the rename then has only the tail left, instead of the whole
/// file after its last byte. Durability is unchanged: the final `fsync`
/// still runs.
struct EarlySync<'a> {
    file: &'a std::fs::File,
    since: u64,
    running: Option<Sync>,
}

impl<'a> EarlySync<'a> {
    fn new(file: &'a std::fs::File) -> Self {
        EarlySync {
            file,
            since: 0,
            running: None,
        }
    }

    /// Wait for the early flush still running, if any; its error is the
    /// file's error.
    fn finish(mut self) -> std::io::Result<()> {
        match self.running.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("fsync thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Write for EarlySync<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.since += n as u64;
        if self.since >= EARLY_SYNC_BYTES && self.running.as_ref().is_none_or(|h| h.is_finished()) {
            if let Some(h) = self.running.take() {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("fsync thread panicked")))?;
            }
            let file = self.file.try_clone()?;
            self.running = Some(std::thread::spawn(move || file.sync_data()));
            self.since = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// A set of output files that appear together or not at all.
pub struct AtomicOutputs {
    dir: PathBuf,
    pending: Vec<(NamedTempFile, PathBuf, Option<Sync>)>,
    /// Subdirectories this set created, removed again if never committed.
    created: Vec<PathBuf>,
}

impl AtomicOutputs {
    /// Outputs for directory `dir` (created when the first file is added).
    pub fn new(dir: &Path) -> Self {
        AtomicOutputs {
            dir: dir.to_path_buf(),
            pending: Vec::new(),
            created: Vec::new(),
        }
    }

    /// The directory the outputs go to.
    pub fn dir_path(&self) -> PathBuf {
        self.dir.clone()
    }

    /// Write `name` through `fill` into a temporary file; nothing is visible
    /// under `name` until [`AtomicOutputs::commit`].
    pub fn write(
        &mut self,
        name: &str,
        fill: impl FnOnce(&mut (dyn Write + Send)) -> std::io::Result<()>,
    ) -> Result<()> {
        self.write_many([name], |[w]| fill(w))
    }

    /// Write the files `names` together through one `fill`, which gets a
    /// writer for each, in the same order (so one pass over the data can
    /// feed several files). As [`AtomicOutputs::write`], nothing is visible
    /// until [`AtomicOutputs::commit`]; an error from `fill` is reported
    /// against the first name.
    pub fn write_many<const K: usize>(
        &mut self,
        names: [&str; K],
        fill: impl FnOnce([&mut (dyn Write + Send); K]) -> std::io::Result<()>,
    ) -> Result<()> {
        let mut opened = Vec::with_capacity(K);
        for name in names {
            opened.push(self.temp_for(name)?);
        }
        let first = opened
            .first()
            .map_or_else(|| self.dir.clone(), |(_, t)| t.clone());
        {
            let mut ws: Vec<std::io::BufWriter<EarlySync<'_>>> = opened
                .iter()
                .map(|(tmp, _)| std::io::BufWriter::new(EarlySync::new(tmp.as_file())))
                .collect();
            let refs: Vec<&mut (dyn Write + Send)> = ws
                .iter_mut()
                .map(|w| w as &mut (dyn Write + Send))
                .collect();
            let arr: [&mut (dyn Write + Send); K] = refs
                .try_into()
                .map_err(|_| Error::io(&first, std::io::Error::other("one writer per name")))?;
            fill(arr).map_err(|e| Error::io(&first, e))?;
            for (w, (_, target)) in ws.iter_mut().zip(&opened) {
                w.flush().map_err(|e| Error::io(target, e))?;
            }
            for (w, (_, target)) in ws.into_iter().zip(&opened) {
                let early = w
                    .into_inner()
                    .map_err(|e| Error::io(target, e.into_error()))?;
                early.finish().map_err(|e| Error::io(target, e))?;
            }
        }
        for (tmp, target) in opened {
            let file = tmp
                .as_file()
                .try_clone()
                .map_err(|e| Error::io(&target, e))?;
            let sync = std::thread::spawn(move || file.sync_all());
            self.pending.push((tmp, target, Some(sync)));
        }
        Ok(())
    }

    /// A fresh temporary file beside `name`'s target (its directories
    /// created and recorded), and the target.
    fn temp_for(&mut self, name: &str) -> Result<(NamedTempFile, PathBuf)> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let target = self.dir.join(name);
        let parent = target.parent().unwrap_or(&self.dir).to_path_buf();
        if !parent.is_dir() {
            // Record each directory level this call creates, outermost first.
            let mut missing = Vec::new();
            let mut p = parent.as_path();
            while !p.is_dir() {
                missing.push(p.to_path_buf());
                match p.parent() {
                    Some(up) => p = up,
                    None => break,
                }
            }
            std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
            self.created.extend(missing.into_iter().rev());
        }
        let file_name = target
            .file_name()
            .map_or_else(|| name.to_string(), |f| f.to_string_lossy().into_owned());
        let prefix = format!(".{file_name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix);
        // Ordinary output files are world-readable (subject to the umask);
        // tempfile's default of 0600 would surprise a team sharing a queue.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o644));
        }
        let tmp: NamedTempFile = builder
            .tempfile_in(&parent)
            .map_err(|e| Error::io(&parent, e))?;
        Ok((tmp, target))
    }

    /// Rename every temporary file into place.
    pub fn commit(mut self) -> Result<Vec<PathBuf>> {
        let mut done = Vec::new();
        self.created.clear();
        // Every file is on disk before any is renamed.
        for (_, target, sync) in &mut self.pending {
            if let Some(handle) = sync.take() {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("fsync thread panicked")))
                    .map_err(|e| Error::io(target, e))?;
            }
        }
        for (tmp, target, _) in std::mem::take(&mut self.pending) {
            tmp.persist(&target)
                .map_err(|e| Error::io(&target, e.error))?;
            done.push(target);
        }
        Ok(done)
    }
}

impl Drop for AtomicOutputs {
    fn drop(&mut self) {
        // Temporary files first, then the directories they lived in (only
        // when empty: `remove_dir` leaves anything else alone).
        for (_, _, sync) in &mut self.pending {
            if let Some(handle) = sync.take() {
                let _ = handle.join();
            }
        }
        self.pending.clear();
        for dir in self.created.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_visible_until_commit_and_nothing_left_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = AtomicOutputs::new(dir.path());
        out.write("a.txt", |w: &mut (dyn Write + Send)| w.write_all(b"hello"))
            .unwrap();
        assert!(!dir.path().join("a.txt").exists());
        out.commit().unwrap();
        assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), b"hello");

        let mut out = AtomicOutputs::new(dir.path());
        out.write("b.txt", |w: &mut (dyn Write + Send)| w.write_all(b"x"))
            .unwrap();
        let err = out.write("c.txt", |_: &mut (dyn Write + Send)| {
            Err(std::io::Error::other("boom"))
        });
        assert!(err.is_err());
        drop(out);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("a.txt")],
            "temp files are removed"
        );
    }

    #[test]
    fn files_written_together_appear_together_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = AtomicOutputs::new(dir.path());
        out.write_many(["a.jsonl", "a.csv"], |[j, c]| {
            j.write_all(b"{}\n")?;
            c.write_all(b"x\n")?;
            j.write_all(b"{}\n")
        })
        .unwrap();
        assert!(!dir.path().join("a.jsonl").exists());
        out.commit().unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("a.jsonl")).unwrap(),
            b"{}\n{}\n"
        );
        assert_eq!(std::fs::read(dir.path().join("a.csv")).unwrap(), b"x\n");

        // A failure half-way names the first file and leaves neither behind.
        let mut out = AtomicOutputs::new(dir.path());
        let err = out
            .write_many(["b.jsonl", "b.csv"], |[j, c]| {
                j.write_all(b"{}")?;
                c.write_all(b"y")?;
                Err(std::io::Error::other("disk full"))
            })
            .unwrap_err();
        assert!(err.to_string().contains("b.jsonl"), "{err}");
        drop(out);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n.starts_with("b") || n.starts_with(".b")),
            "{names:?}"
        );
    }

    #[test]
    fn subdirectories_are_atomic_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = AtomicOutputs::new(dir.path());
        out.write("sub/deep/x.png", |w: &mut (dyn Write + Send)| {
            w.write_all(b"png")
        })
        .unwrap();
        assert!(!dir.path().join("sub/deep/x.png").exists());
        drop(out);
        assert!(!dir.path().join("sub").exists(), "uncommitted dirs removed");

        let mut out = AtomicOutputs::new(dir.path());
        out.write("sub/x.png", |w: &mut (dyn Write + Send)| {
            w.write_all(b"png")
        })
        .unwrap();
        out.write("top.txt", |w: &mut (dyn Write + Send)| w.write_all(b"t"))
            .unwrap();
        let done = out.commit().unwrap();
        assert_eq!(done.len(), 2);
        assert_eq!(std::fs::read(dir.path().join("sub/x.png")).unwrap(), b"png");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.png")]);
    }
}
