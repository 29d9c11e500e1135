//! Outputs that appear together or not at all: every file of a set is
//! written to a temporary file beside its target and the set is committed
//! with a journal, so that after any failure (an error, a rename refused
//! half-way, `kill -9` at any instant) the directory holds either the whole
//! old set or the whole new one.
//!
//! # Names (all start with a dot, all identifiable as this tool's own)
//! - `.<name>.triage-tmp-XXXXXX`: a file being written (created with
//!   `O_EXCL`, so never through a planted link), held under an exclusive
//!   [`File::try_lock`] by its writer for as long as the name exists.
//! - `.<name>.triage-bak-<token>`: the old `<name>` while a commit runs.
//! - `.triage-journal-<token>.pending` / `.committed`: the commit's journal
//!   in the set's directory, held under [`File::lock`] by the committing
//!   process while it lives.
//! - `.triage-outputs.json` ([`SET_LIST`]): the names of the set committed
//!   last, for sets made by [`AtomicOutputs::replacing_set`].
//!
//! # Commit ([`AtomicOutputs::commit`])
//! 1. Every file is complete and `fsync`ed (the `fsync` runs on a
//!    background thread as soon as each file is written).
//! 2. The directory is locked ([`File::lock`] on the directory itself), so
//!    two commits or recoveries in one directory never interleave; journals
//!    left by dead processes are recovered (below); this tool's stale temps
//!    and backups in the set's directories are removed.
//! 3. For a [`AtomicOutputs::replacing_set`] set, the old [`SET_LIST`] is
//!    read: files it names that the new set lacks join the commit as
//!    deletions, and the new list is written as part of the set. A file
//!    that no list names is never deleted.
//! 4. The journal (each target, its temp, its backup name and the temp's
//!    device and inode numbers) is written to a temp, `fsync`ed, locked and
//!    renamed to `.triage-journal-<token>.pending`; the directory is
//!    `fsync`ed.
//! 5. For each entry in turn: an existing target is renamed to its backup
//!    (a directory at a target's name is refused: the commit fails), then
//!    the temp is renamed to the target. A rename replaces a symbolic link
//!    planted at the name; it never writes through it. On any failure the
//!    commit is rolled back in-process (below) and the error returned.
//! 6. The directories are `fsync`ed and the journal is renamed to
//!    `.committed` (one atomic step: from here the new set stands).
//! 7. The backups are deleted, then the journal; directories left empty by
//!    deleted files are removed.
//!
//! # Recovery ([`recover`], [`clean`], and step 2 of every commit)
//! A journal whose lock is free belongs to a dead process (a live one holds
//! it). `.pending`: roll back, entry by entry from the last: a backup that
//! exists is renamed back over its target; else a target that is the new
//! file (same device and inode as recorded) is removed; directories the set
//! created are removed when empty. `.committed`: roll forward, delete the
//! backups. Then the journal is deleted. A journal that cannot be read is
//! an error naming it (the outputs beside it may then be a mix; nothing is
//! guessed). Every path in a journal must stay inside the directory, through
//! real directories, with the names above.
//!
//! # Clean-up ([`clean`])
//! A temp whose lock is free (its writer died) is removed. Writers create
//! and lock their temps under a shared lock of the set's directory, and
//! clean-up holds it exclusively, so there an unlocked temp is always a
//! dead writer's; in a subdirectory (or without the directory lock), an
//! empty temp younger than [`FRESH_SECS`] is left alone (it may be a
//! writer's between its `O_EXCL` create and its lock; a later run removes
//! it), and so is an empty temp directory. A backup is removed when no
//! journal of its token is left. A live writer's files are never touched (they are locked), which
//! keeps a score cache directory shared by concurrent shard runs safe.
//! Without working `flock` (some network file systems) nothing is removed.
//!
//! # Durability
//! Every file is `fsync`ed before the journal names it, the journal before
//! the first rename, the directories before the journal is marked
//! committed. Directory `fsync`s are best effort (some file systems refuse
//! them).
//!
//! # Test hook
//! `TRIAGE_TEST_ABORT_AT=<k>` ([`ABORT_ENV`]) makes a commit call
//! [`std::process::abort`] just before its step `k` (from 0: publishing the
//! journal, each rename, marking it committed, each backup deletion,
//! deleting the journal; counted per commit), to test recovery after a
//! kill at every step. Unit tests also inject a failure or a simulated
//! crash at a step.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use tempfile::NamedTempFile;

use crate::error::{Error, Result};
use crate::fsx;

/// Marks a temp file: `.<name>.triage-tmp-XXXXXX`.
pub const TEMP_TAG: &str = ".triage-tmp-";
/// Marks a backup: `.<name>.triage-bak-<token>`.
pub const BACKUP_TAG: &str = ".triage-bak-";
/// Starts a journal's name: `.triage-journal-<token>.pending`.
pub const JOURNAL_PREFIX: &str = ".triage-journal-";
const PENDING: &str = ".pending";
const COMMITTED: &str = ".committed";
/// The list of the last set committed by [`AtomicOutputs::replacing_set`].
pub const SET_LIST: &str = ".triage-outputs.json";
/// The environment variable of the abort test hook (module doc).
pub const ABORT_ENV: &str = "TRIAGE_TEST_ABORT_AT";
/// An empty temp younger than this (seconds) may be a live writer's that
/// has not taken its lock yet: left alone.
pub const FRESH_SECS: u64 = 10;
const JOURNAL_FORMAT: &str = "triage-journal-1";
const SET_FORMAT: &str = "triage-outputs-1";
/// Journals and set lists are read up to this many bytes.
const STATE_LIMIT: u64 = 16 << 20;

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

/// An error of one of [`AtomicOutputs::write_many`]'s files: the `file`-th
/// of its names ([`in_file`]).
#[derive(Debug)]
struct InFile {
    file: usize,
    error: std::io::Error,
}

impl std::fmt::Display for InFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for InFile {}

/// Tag `error` as one of the `file`-th writer of a
/// [`AtomicOutputs::write_many`] fill, so the error names that file. An
/// error already tagged keeps its tag.
pub fn in_file(file: usize, error: std::io::Error) -> std::io::Error {
    if error
        .get_ref()
        .is_some_and(|t| t.downcast_ref::<InFile>().is_some())
    {
        return error;
    }
    std::io::Error::new(error.kind(), InFile { file, error })
}

/// The error [`in_file`] wrapped, or `e` itself.
fn untag(e: std::io::Error) -> std::io::Error {
    if e.get_ref()
        .is_none_or(|t| t.downcast_ref::<InFile>().is_none())
    {
        return e;
    }
    match e.into_inner().map(|t| t.downcast::<InFile>()) {
        Some(Ok(t)) => t.error,
        Some(Err(other)) => std::io::Error::other(other),
        None => std::io::Error::other("write failed"),
    }
}

/// One file written and waiting for the commit.
struct Pending {
    tmp: NamedTempFile,
    /// The target, relative to the set's directory (`/`-separated).
    rel: String,
    sync: Option<Sync>,
}

/// One step of a commit: an old file moved aside and a new one put in its
/// place (`temp` set), or an old file removed (`temp` unset). Paths are
/// relative to the set's directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Entry {
    target: String,
    #[serde(default)]
    temp: Option<String>,
    backup: String,
    /// Device and inode of the new file, to tell it from the old one.
    #[serde(default)]
    file_id: Option<[u64; 2]>,
}

/// The journal of one commit.
#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    format: String,
    entries: Vec<Entry>,
    /// Directories the set created (relative), removed again on roll-back
    /// when empty.
    #[serde(default)]
    dirs: Vec<String>,
}

/// The [`SET_LIST`] file.
#[derive(Debug, Serialize, Deserialize)]
struct SetList {
    format: String,
    files: Vec<String>,
}

/// Test-only faults at a commit step.
#[cfg(test)]
#[derive(Debug, Clone, Copy, Default)]
struct Faults {
    /// Fail (an I/O error) at this step: the commit rolls back.
    fail_at: Option<usize>,
    /// Stop at this step as if the process died there: nothing is undone,
    /// the locks are released, temps and journal stay.
    crash_at: Option<usize>,
}

/// Counts a commit's steps and fires the test hooks.
struct Steps {
    n: usize,
    abort_at: Option<usize>,
    #[cfg(test)]
    faults: Faults,
    #[cfg(test)]
    crashed: bool,
}

impl Steps {
    fn new() -> Self {
        Steps {
            n: 0,
            abort_at: std::env::var(ABORT_ENV)
                .ok()
                .and_then(|v| v.trim().parse().ok()),
            #[cfg(test)]
            faults: Faults::default(),
            #[cfg(test)]
            crashed: false,
        }
    }

    /// Before step `n`: the hooks; then count it.
    fn next(&mut self, path: &Path) -> Result<()> {
        let k = self.n;
        self.n += 1;
        if self.abort_at == Some(k) {
            eprintln!("triage: {ABORT_ENV}={k}: aborting before commit step {k}");
            std::process::abort();
        }
        #[cfg(test)]
        {
            if self.faults.crash_at == Some(k) {
                self.crashed = true;
                return Err(Error::Internal(format!("simulated crash at step {k}")));
            }
            if self.faults.fail_at == Some(k) {
                return Err(Error::io(
                    path,
                    std::io::Error::other(format!("injected failure at step {k}")),
                ));
            }
        }
        let _ = path;
        Ok(())
    }

    /// [`Steps::next`] after the commit mark: an injected failure only
    /// skips this tidying step (`Ok(false)`); a simulated crash stops.
    fn tidy_step(&mut self, path: &Path) -> Result<bool> {
        match self.next(path) {
            Ok(()) => Ok(true),
            #[cfg(test)]
            Err(e) if self.crashed => Err(e),
            Err(_) => Ok(false),
        }
    }
}

/// A set of output files that appear together or not at all (module doc).
pub struct AtomicOutputs {
    dir: PathBuf,
    pending: Vec<Pending>,
    /// Subdirectories this set created, outermost first; removed again if
    /// never committed.
    created: Vec<PathBuf>,
    /// Keep [`SET_LIST`] and remove the old set's files this one lacks.
    replacing: bool,
    /// The commit holds the directory's exclusive lock (temps made now
    /// need no shared one).
    holding: bool,
    #[cfg(test)]
    faults: Faults,
}

impl AtomicOutputs {
    /// Outputs for directory `dir` (created when the first file is added).
    pub fn new(dir: &Path) -> Self {
        AtomicOutputs {
            dir: dir.to_path_buf(),
            pending: Vec::new(),
            created: Vec::new(),
            replacing: false,
            holding: false,
            #[cfg(test)]
            faults: Faults::default(),
        }
    }

    /// Outputs that replace the set committed last by `replacing_set` in
    /// `dir`: the commit also removes the files of that set (as its
    /// [`SET_LIST`] names them) which this one does not write, and writes
    /// the new list. For a directory owned by one run's outputs (`--out`),
    /// never for one shared by several writers.
    pub fn replacing_set(dir: &Path) -> Self {
        let mut o = Self::new(dir);
        o.replacing = true;
        o
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
    /// feed several files, or several threads write their own). As
    /// [`AtomicOutputs::write`], nothing is visible until
    /// [`AtomicOutputs::commit`]. An error from `fill` is reported against
    /// the file [`in_file`] tagged it with, else against the first name.
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
            .map_or_else(|| self.dir.clone(), |(_, rel)| self.dir.join(rel));
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
            fill(arr).map_err(|e| {
                let named = match e.get_ref().and_then(|t| t.downcast_ref::<InFile>()) {
                    Some(t) => opened.get(t.file).map(|(_, rel)| self.dir.join(rel)),
                    None => None,
                };
                Error::io(named.unwrap_or(first), untag(e))
            })?;
            for (w, (_, rel)) in ws.iter_mut().zip(&opened) {
                w.flush().map_err(|e| Error::io(self.dir.join(rel), e))?;
            }
            for (w, (_, rel)) in ws.into_iter().zip(&opened) {
                let early = w
                    .into_inner()
                    .map_err(|e| Error::io(self.dir.join(rel), e.into_error()))?;
                early
                    .finish()
                    .map_err(|e| Error::io(self.dir.join(rel), e))?;
            }
        }
        for (tmp, rel) in opened {
            self.push(tmp, rel)?;
        }
        Ok(())
    }

    /// Take the finished regular file `src` (on the same file system,
    /// typically in a private temp directory inside the set's directory)
    /// into the set as `name`: it is moved to a temp name beside the
    /// target, locked, and committed with the rest.
    pub fn adopt(&mut self, name: &str, src: &Path) -> Result<()> {
        let file = open_nofollow(src).map_err(|e| Error::io(src, e))?;
        let md = file.metadata().map_err(|e| Error::io(src, e))?;
        if !md.is_file() {
            return Err(fsx::refused_link(src, &md.file_type()));
        }
        // A lock on the open file holds for the inode, whatever its name.
        let _ = file.try_lock();
        let (parent, file_name) = self.prepare(name)?;
        let _shared = self.creating();
        let mut tmp = None;
        for _ in 0..16 {
            let candidate = parent.join(format!(".{file_name}{TEMP_TAG}{}", &token()[..12]));
            if matches!(std::fs::symlink_metadata(&candidate), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
            {
                tmp = Some(candidate);
                break;
            }
        }
        let tmp =
            tmp.ok_or_else(|| Error::io(&parent, std::io::Error::other("no free temporary name")))?;
        std::fs::rename(src, &tmp).map_err(|e| Error::io(src, e))?;
        let path = tempfile::TempPath::try_from_path(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let rel = rel_of(name);
        self.push(NamedTempFile::from_parts(file, path), rel)
    }

    /// Queue a written temp for the commit, its `fsync` started.
    fn push(&mut self, tmp: NamedTempFile, rel: String) -> Result<()> {
        let file = tmp
            .as_file()
            .try_clone()
            .map_err(|e| Error::io(self.dir.join(&rel), e))?;
        let sync = std::thread::spawn(move || file.sync_all());
        self.pending.push(Pending {
            tmp,
            rel,
            sync: Some(sync),
        });
        Ok(())
    }

    /// The real directory `name` goes into (its levels created when
    /// missing and recorded; a symbolic link at any level is refused) and
    /// `name`'s file name.
    fn prepare(&mut self, name: &str) -> Result<(PathBuf, String)> {
        let rel = Path::new(name);
        let bad = || Error::Internal(format!("output name {name:?} is not a plain relative path"));
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(bad());
        }
        let file_name = rel
            .file_name()
            .and_then(|f| f.to_str())
            .ok_or_else(bad)?
            .to_string();
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        let made = fsx::real_dirs(&self.dir, parent_rel)?;
        self.created.extend(made);
        Ok((self.dir.join(parent_rel), file_name))
    }

    /// A fresh temporary file beside `name`'s target (`O_EXCL`, locked),
    /// and the target's relative name.
    fn temp_for(&mut self, name: &str) -> Result<(NamedTempFile, String)> {
        let (parent, file_name) = self.prepare(name)?;
        let mut builder = tempfile::Builder::new();
        let prefix = format!(".{file_name}{TEMP_TAG}");
        builder.prefix(&prefix).rand_bytes(6);
        // Ordinary output files are world-readable (subject to the umask);
        // tempfile's default of 0600 would surprise a team sharing a queue.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o644));
        }
        // Created and locked under the directory's shared lock: a clean-up
        // (which holds it exclusively) never sees this temp unlocked.
        let shared = self.creating();
        let tmp: NamedTempFile = builder
            .tempfile_in(&parent)
            .map_err(|e| Error::io(&parent, e))?;
        // Best effort: without flock, clean-up leaves every temp alone.
        let _ = tmp.as_file().try_lock();
        drop(shared);
        Ok((tmp, rel_of(name)))
    }

    /// The directory's shared lock while a temp is created and locked
    /// (none when this set's commit holds it exclusively, or without
    /// flock).
    fn creating(&self) -> Option<File> {
        if self.holding {
            return None;
        }
        let f = File::open(&self.dir).ok()?;
        f.lock_shared().ok()?;
        Some(f)
    }

    /// Commit the set (module doc): afterwards the directory holds every
    /// new file, or, on an error, every old one. Returns the targets
    /// written ([`SET_LIST`] left out).
    pub fn commit(mut self) -> Result<Vec<PathBuf>> {
        // Every file is on disk before anything is renamed.
        for p in &mut self.pending {
            if let Some(handle) = p.sync.take() {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("fsync thread panicked")))
                    .map_err(|e| Error::io(self.dir.join(&p.rel), e))?;
            }
        }
        if self.pending.is_empty() && !self.replacing {
            return Ok(Vec::new());
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let root = self.dir.clone();
        let dir_lock = lock_dir(&root);
        self.holding = dir_lock.is_some();
        recover_locked(&root)?;
        let mut dirs: Vec<PathBuf> = vec![root.clone()];
        for p in &self.pending {
            let d = parent_of(&root, &p.rel);
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        for d in &dirs {
            sweep(d, &root, self.holding && *d == root);
        }
        let mut deletions = Vec::new();
        if self.replacing {
            deletions = self.stale_files(&root);
            let files: Vec<String> = self
                .pending
                .iter()
                .map(|p| p.rel.clone())
                .filter(|r| r != SET_LIST)
                .collect();
            let list = SetList {
                format: SET_FORMAT.into(),
                files,
            };
            self.write(SET_LIST, |w| {
                serde_json::to_writer_pretty(&mut *w, &list)?;
                w.write_all(b"\n")
            })?;
            if let Some(p) = self.pending.last_mut()
                && let Some(handle) = p.sync.take()
            {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("fsync thread panicked")))
                    .map_err(|e| Error::io(root.join(SET_LIST), e))?;
            }
        }
        let mut steps = Steps::new();
        #[cfg(test)]
        {
            steps.faults = self.faults;
        }
        let result = self.run_commit(&root, deletions, &mut steps);
        #[cfg(test)]
        if steps.crashed {
            // As if the process died: nothing undone, temps left behind.
            for p in &mut self.pending {
                p.tmp.disable_cleanup(true);
            }
            self.created.clear();
        }
        let (done, stale_dirs) = result?;
        for p in &mut self.pending {
            // Renamed into place: nothing left to remove at the temp name.
            p.tmp.disable_cleanup(true);
        }
        self.created.clear();
        for d in stale_dirs {
            let _ = std::fs::remove_dir(d);
        }
        Ok(done)
    }

    /// The old set's files that this set lacks, as deletion entries (only
    /// regular files or links at names the old list gives, inside the
    /// directory through real directories).
    fn stale_files(&self, root: &Path) -> Vec<String> {
        let Some(old) = read_set_list(root) else {
            return Vec::new();
        };
        let new: std::collections::HashSet<&str> =
            self.pending.iter().map(|p| p.rel.as_str()).collect();
        let mut stale = Vec::new();
        for name in old.files {
            if name == SET_LIST || new.contains(name.as_str()) || stale.contains(&name) {
                continue;
            }
            let Ok(path) = resolve(root, &name) else {
                continue;
            };
            let own = Path::new(&name)
                .file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| {
                    is_temp_name(f) || backup_token(f).is_some() || journal_state(f).is_some()
                });
            if own {
                continue;
            }
            match std::fs::symlink_metadata(&path) {
                Ok(md) if !md.is_dir() => stale.push(name),
                _ => {}
            }
        }
        stale
    }

    /// Steps 4 to 7 of the commit (module doc). Returns the targets and the
    /// directories of deleted files (to remove when empty).
    fn run_commit(
        &mut self,
        root: &Path,
        deletions: Vec<String>,
        steps: &mut Steps,
    ) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
        // The journal's entries, with a token no file here uses yet.
        let (token, entries) = {
            let mut tries = 0;
            loop {
                let token = token();
                let entries = self.entries(root, &token, &deletions)?;
                let free = |rel: &str| {
                    matches!(std::fs::symlink_metadata(root.join(rel)),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound)
                };
                let journal_free = [PENDING, COMMITTED]
                    .iter()
                    .all(|s| free(&format!("{JOURNAL_PREFIX}{token}{s}")));
                if journal_free && entries.iter().all(|e| free(&e.backup)) {
                    break (token, entries);
                }
                tries += 1;
                if tries > 8 {
                    return Err(Error::io(
                        root,
                        std::io::Error::other("no free journal name"),
                    ));
                }
            }
        };
        let journal = Journal {
            format: JOURNAL_FORMAT.into(),
            entries,
            dirs: self
                .created
                .iter()
                .filter_map(|d| d.strip_prefix(root).ok())
                .filter_map(|d| d.to_str().map(|s| s.replace('\\', "/")))
                .collect(),
        };
        let pending_path = root.join(format!("{JOURNAL_PREFIX}{token}{PENDING}"));
        let committed_path = root.join(format!("{JOURNAL_PREFIX}{token}{COMMITTED}"));
        let mut jtmp = tempfile::Builder::new()
            .prefix(&format!("{JOURNAL_PREFIX}{token}{PENDING}{TEMP_TAG}"))
            .rand_bytes(6)
            .tempfile_in(root)
            .map_err(|e| Error::io(root, e))?;
        let _ = jtmp.as_file().try_lock();
        {
            let bytes =
                serde_json::to_vec(&journal).map_err(|e| Error::io(&pending_path, e.into()))?;
            let f = jtmp.as_file_mut();
            f.write_all(&bytes)
                .and_then(|()| f.sync_all())
                .map_err(|e| Error::io(&pending_path, e))?;
        }
        steps.next(&pending_path)?;
        // The lock stays with the open file through the renames.
        let jfile = jtmp
            .persist_noclobber(&pending_path)
            .map_err(|e| Error::io(&pending_path, e.error))?;
        // A lock taken only now (the temp's failed) is still taken before
        // the first rename.
        let _ = jfile.try_lock();
        sync_dir(root);

        // Step 5, then step 6 (the mark): any failure up to the mark is
        // undone.
        let applied = self.apply(root, &journal.entries, steps).and_then(|()| {
            sync_entry_dirs(root, &journal.entries);
            steps.next(&committed_path)?;
            std::fs::rename(&pending_path, &committed_path)
                .map_err(|e| Error::io(&committed_path, e))
        });
        if let Err(e) = applied {
            #[cfg(test)]
            if steps.crashed {
                return Err(e);
            }
            return Err(match roll_back(root, &journal) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&pending_path);
                    sync_dir(root);
                    e
                }
                Err(undo) => Error::Internal(format!(
                    "{e}; and undoing the commit failed: {undo} (the next run in {} finishes undoing it)",
                    root.display()
                )),
            });
        }
        sync_dir(root);
        // The new set stands; what follows only tidies up (and is finished
        // by the next run if it fails).
        let mut tidy = true;
        for e in &journal.entries {
            let backup = root.join(&e.backup);
            if steps.tidy_step(&backup)? {
                match std::fs::remove_file(&backup) {
                    Ok(()) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(_) => tidy = false,
                }
            } else {
                tidy = false;
            }
        }
        if tidy && steps.tidy_step(&committed_path)? {
            let _ = std::fs::remove_file(&committed_path);
            sync_dir(root);
        }
        drop(jfile);
        let done = self
            .pending
            .iter()
            .filter(|p| p.rel != SET_LIST)
            .map(|p| root.join(&p.rel))
            .collect();
        let stale_dirs = deletions
            .iter()
            .map(|rel| parent_of(root, rel))
            .filter(|d| d != root)
            .collect();
        Ok((done, stale_dirs))
    }

    /// The journal entries: each pending file, then each deletion.
    fn entries(&self, root: &Path, token: &str, deletions: &[String]) -> Result<Vec<Entry>> {
        let mut entries = Vec::with_capacity(self.pending.len() + deletions.len());
        for p in &self.pending {
            let temp_name = p
                .tmp
                .path()
                .file_name()
                .and_then(|f| f.to_str())
                .ok_or_else(|| Error::Internal("temporary file name is not UTF-8".into()))?;
            let md = p
                .tmp
                .as_file()
                .metadata()
                .map_err(|e| Error::io(root.join(&p.rel), e))?;
            entries.push(Entry {
                target: p.rel.clone(),
                temp: Some(sibling(&p.rel, temp_name)),
                backup: backup_rel(&p.rel, token),
                file_id: file_id(&md),
            });
        }
        for rel in deletions {
            entries.push(Entry {
                target: rel.clone(),
                temp: None,
                backup: backup_rel(rel, token),
                file_id: None,
            });
        }
        Ok(entries)
    }

    /// Step 5: every old target to its backup, every temp to its target.
    fn apply(&self, root: &Path, entries: &[Entry], steps: &mut Steps) -> Result<()> {
        for e in entries {
            let target = root.join(&e.target);
            match std::fs::symlink_metadata(&target) {
                Ok(md) if md.is_dir() => return Err(fsx::refused_link(&target, &md.file_type())),
                Ok(_) => {
                    let backup = root.join(&e.backup);
                    steps.next(&target)?;
                    std::fs::rename(&target, &backup).map_err(|err| Error::io(&target, err))?;
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(Error::io(&target, err)),
            }
            if let Some(temp) = &e.temp {
                steps.next(&target)?;
                std::fs::rename(root.join(temp), &target).map_err(|err| Error::io(&target, err))?;
            }
        }
        Ok(())
    }
}

impl Drop for AtomicOutputs {
    fn drop(&mut self) {
        // Temporary files first, then the directories they lived in (only
        // when empty: `remove_dir` leaves anything else alone).
        for p in &mut self.pending {
            if let Some(handle) = p.sync.take() {
                let _ = handle.join();
            }
        }
        self.pending.clear();
        for dir in self.created.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Recover, in `dir`, the commits of processes that died mid-commit (see
/// the module doc): pending ones rolled back, committed ones finished.
/// A journal still locked (its process is alive) is left alone.
pub fn recover(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    let _lock = lock_dir(dir);
    recover_locked(dir)
}

/// [`recover`] `root`, then remove this tool's stale temps (whose lock is
/// free) and backups (whose journal is gone) in `root` and its
/// subdirectories one level down (real ones, never through a link).
/// Returns how many were removed.
pub fn clean(root: &Path) -> Result<usize> {
    if !root.is_dir() {
        return Ok(0);
    }
    let lock = lock_dir(root);
    recover_locked(root)?;
    let mut n = sweep(root, root, lock.is_some());
    if let Ok(rd) = std::fs::read_dir(root) {
        for ent in rd.flatten() {
            let name = ent.file_name();
            if name.to_str().is_some_and(is_temp_name) {
                continue;
            }
            if ent.file_type().is_ok_and(|t| t.is_dir()) {
                n += sweep(&ent.path(), root, false);
            }
        }
    }
    Ok(n)
}

fn recover_locked(root: &Path) -> Result<()> {
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(root, e)),
    };
    let mut journals: Vec<(PathBuf, bool)> = rd
        .flatten()
        .filter_map(|ent| {
            let name = ent.file_name();
            let committed = journal_state(name.to_str()?)?;
            Some((ent.path(), committed))
        })
        .collect();
    journals.sort();
    for (path, committed) in journals {
        recover_one(root, &path, committed)?;
    }
    Ok(())
}

/// Recover one journal, if its owner is dead.
fn recover_one(root: &Path, path: &Path, committed: bool) -> Result<()> {
    let mut f = match open_nofollow(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            if let Ok(md) = std::fs::symlink_metadata(path)
                && !md.is_file()
            {
                return Err(fsx::refused_link(path, &md.file_type()));
            }
            return Err(Error::io(path, e));
        }
    };
    if f.try_lock().is_err() {
        // Alive (or no flock here): not ours to touch.
        return Ok(());
    }
    let md = f.metadata().map_err(|e| Error::io(path, e))?;
    if !md.is_file() {
        return Err(fsx::refused_link(path, &md.file_type()));
    }
    // Finished or replaced by someone else between the listing and the lock.
    match std::fs::symlink_metadata(path) {
        Ok(now) if file_id(&now) == file_id(&md) => {}
        _ => return Ok(()),
    }
    let damaged = |why: String| {
        Error::input(
            path,
            format!(
                "damaged commit journal ({why}); the files beside it may be a mix of two runs: check them, then remove this file"
            ),
        )
    };
    if md.len() > STATE_LIMIT {
        return Err(damaged(format!("{} bytes, over {STATE_LIMIT}", md.len())));
    }
    let mut bytes = Vec::new();
    (&mut f)
        .take(STATE_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    let journal: Journal = serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
    if journal.format != JOURNAL_FORMAT {
        return Err(damaged(format!("format {:?}", journal.format)));
    }
    check_journal(root, &journal).map_err(damaged)?;
    if committed {
        roll_forward(root, &journal)?;
    } else {
        roll_back(root, &journal)?;
    }
    std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
    sync_dir(root);
    Ok(())
}

/// Every name in `journal` is a plain relative path with the names this
/// module gives (backups and temps beside their targets).
fn check_journal(root: &Path, journal: &Journal) -> std::result::Result<(), String> {
    for e in &journal.entries {
        resolve(root, &e.target).map_err(|_| format!("target {:?}", e.target))?;
        let name = file_name_of(&e.target);
        let beside = |rel: &str, tag: &str| -> bool {
            resolve(root, rel).is_ok()
                && parent_rel(rel) == parent_rel(&e.target)
                && file_name_of(rel)
                    .strip_prefix(&format!(".{name}{tag}"))
                    .is_some_and(|rest| {
                        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric())
                    })
        };
        if !beside(&e.backup, BACKUP_TAG) {
            return Err(format!("backup {:?}", e.backup));
        }
        if let Some(t) = &e.temp
            && !beside(t, TEMP_TAG)
        {
            return Err(format!("temp {t:?}"));
        }
    }
    for d in &journal.dirs {
        resolve(root, d).map_err(|_| format!("directory {d:?}"))?;
    }
    Ok(())
}

/// Undo a commit: from the last entry, a backup goes back over its
/// target, else a target that is the new file is removed; then the
/// directories it created, when empty.
fn roll_back(root: &Path, journal: &Journal) -> Result<()> {
    for e in journal.entries.iter().rev() {
        let target = resolve(root, &e.target)?;
        let backup = resolve(root, &e.backup)?;
        if std::fs::symlink_metadata(&backup).is_ok() {
            std::fs::rename(&backup, &target).map_err(|err| Error::io(&target, err))?;
            continue;
        }
        if let Some(id) = e.file_id
            && let Ok(md) = std::fs::symlink_metadata(&target)
            && md.is_file()
            && file_id(&md) == Some(id)
        {
            std::fs::remove_file(&target).map_err(|err| Error::io(&target, err))?;
        }
    }
    sync_entry_dirs(root, &journal.entries);
    for d in journal.dirs.iter().rev() {
        if let Ok(p) = resolve(root, d) {
            let _ = std::fs::remove_dir(p);
        }
    }
    Ok(())
}

/// Finish a commit marked committed: delete its backups.
fn roll_forward(root: &Path, journal: &Journal) -> Result<()> {
    for e in &journal.entries {
        let backup = resolve(root, &e.backup)?;
        match std::fs::remove_file(&backup) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(Error::io(&backup, err)),
        }
    }
    Ok(())
}

/// Remove this tool's stale temps and backups in `dir` (`root` the set's
/// directory: backups' journals are looked for from `dir` up to it).
/// `owned`: `dir` is `root` and its exclusive lock is held, so an unlocked
/// temp file there is a dead writer's even when empty and young (writers
/// create and lock theirs under the shared lock). Best effort; returns how
/// many were removed.
fn sweep(dir: &Path, root: &Path, owned: bool) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for ent in rd.flatten() {
        let name = ent.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let path = ent.path();
        if is_temp_name(name) {
            n += usize::from(remove_if_unlocked(&path, owned));
        } else if let Some(token) = backup_token(name) {
            let mut journal_left = false;
            let mut at = Some(dir);
            while let Some(d) = at {
                journal_left |= [PENDING, COMMITTED].iter().any(|s| {
                    std::fs::symlink_metadata(d.join(format!("{JOURNAL_PREFIX}{token}{s}"))).is_ok()
                });
                at = if d == root { None } else { d.parent() };
            }
            let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
            if !journal_left && !is_dir && std::fs::remove_file(&path).is_ok() {
                n += 1;
            }
        }
    }
    n
}

/// Remove the temp `path` if no live writer holds it (`owned`: see
/// [`sweep`]).
fn remove_if_unlocked(path: &Path, owned: bool) -> bool {
    let f = match open_nofollow(path) {
        Ok(f) => f,
        Err(_) => {
            // A link (never one of ours) or a special file with our name.
            return std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_dir() && !m.is_file())
                && std::fs::remove_file(path).is_ok();
        }
    };
    if f.try_lock().is_err() {
        return false;
    }
    let Ok(md) = f.metadata() else {
        return false;
    };
    let empty = if md.is_dir() {
        std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
    } else {
        md.len() == 0
    };
    let young = md
        .modified()
        .ok()
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .is_none_or(|age| age.as_secs() < FRESH_SECS);
    if empty && young && (md.is_dir() || !owned) {
        return false;
    }
    match std::fs::symlink_metadata(path) {
        Ok(now) if file_id(&now) == file_id(&md) => {}
        _ => return false,
    }
    if md.is_dir() {
        std::fs::remove_dir_all(path).is_ok()
    } else {
        std::fs::remove_file(path).is_ok()
    }
}

/// Read [`SET_LIST`] in `root` (never through a link); `None` when there is
/// none, or it cannot be read (said on stderr: then nothing is deleted).
fn read_set_list(root: &Path) -> Option<SetList> {
    let path = root.join(SET_LIST);
    let warn = |why: String| {
        eprintln!(
            "triage: warning: {}: {why}; files of the earlier run are left in place",
            path.display()
        );
    };
    let mut f = match open_nofollow(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn(e.to_string());
            return None;
        }
    };
    match f.metadata() {
        Ok(md) if md.is_file() && md.len() <= STATE_LIMIT => {}
        Ok(_) => {
            warn("not a regular file of a readable size".into());
            return None;
        }
        Err(e) => {
            warn(e.to_string());
            return None;
        }
    }
    let mut bytes = Vec::new();
    if let Err(e) = (&mut f).take(STATE_LIMIT).read_to_end(&mut bytes) {
        warn(e.to_string());
        return None;
    }
    match serde_json::from_slice::<SetList>(&bytes) {
        Ok(list) if list.format == SET_FORMAT => Some(list),
        Ok(list) => {
            warn(format!("format {:?}", list.format));
            None
        }
        Err(e) => {
            warn(e.to_string());
            None
        }
    }
}

/// `root/rel` for a plain relative `rel` whose every existing parent level
/// is a real directory (no link followed).
fn resolve(root: &Path, rel: &str) -> Result<PathBuf> {
    let bad = || {
        Error::input(
            root,
            format!("{rel:?} is not a plain path inside the directory"),
        )
    };
    let p = Path::new(rel);
    if rel.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(bad());
    }
    let mut at = root.to_path_buf();
    let parts: Vec<_> = p.components().collect();
    for c in &parts[..parts.len() - 1] {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(md) if md.is_dir() => {}
            Ok(md) => return Err(fsx::refused_link(&at, &md.file_type())),
            Err(_) => break,
        }
    }
    Ok(root.join(p))
}

/// Open `path` for reading without following a link at its name
/// (a directory opens too, for its lock).
fn open_nofollow(path: &Path) -> std::io::Result<File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    #[cfg(not(unix))]
    if std::fs::symlink_metadata(path)?.file_type().is_symlink() {
        return Err(std::io::Error::other("a symbolic link"));
    }
    opts.open(path)
}

/// Lock directory `dir` itself (exclusive, waiting for another commit
/// there); `None` where that is not possible (then journals' own locks
/// still tell live commits from dead ones).
fn lock_dir(dir: &Path) -> Option<File> {
    let f = File::open(dir).ok()?;
    f.lock().ok()?;
    Some(f)
}

/// `fsync` each directory that holds a target of `entries`, once.
fn sync_entry_dirs(root: &Path, entries: &[Entry]) {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for e in entries {
        let d = parent_of(root, &e.target);
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    for d in &dirs {
        sync_dir(d);
    }
}

/// `fsync` a directory, best effort.
fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Device and inode numbers (Unix).
fn file_id(md: &std::fs::Metadata) -> Option<[u64; 2]> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some([md.dev(), md.ino()])
    }
    #[cfg(not(unix))]
    {
        let _ = md;
        None
    }
}

/// A fresh 16-hex-digit token (process, time, counter).
fn token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut seed = Vec::with_capacity(40);
    seed.extend_from_slice(&std::process::id().to_le_bytes());
    seed.extend_from_slice(&nanos.to_le_bytes());
    seed.extend_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    seed.extend_from_slice(&(&seed as *const Vec<u8> as usize).to_le_bytes());
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&seed))
}

/// `name` with `\` as `/` (names are `/`-separated).
fn rel_of(name: &str) -> String {
    name.replace('\\', "/")
}

fn parent_rel(rel: &str) -> &str {
    rel.rsplit_once('/').map_or("", |(p, _)| p)
}

fn file_name_of(rel: &str) -> &str {
    rel.rsplit_once('/').map_or(rel, |(_, f)| f)
}

/// `name` in the directory of `rel`.
fn sibling(rel: &str, name: &str) -> String {
    match parent_rel(rel) {
        "" => name.to_string(),
        p => format!("{p}/{name}"),
    }
}

fn backup_rel(rel: &str, token: &str) -> String {
    sibling(rel, &format!(".{}{BACKUP_TAG}{token}", file_name_of(rel)))
}

fn parent_of(root: &Path, rel: &str) -> PathBuf {
    match parent_rel(rel) {
        "" => root.to_path_buf(),
        p => root.join(p),
    }
}

/// `.<name>.triage-tmp-<1 to 16 letters or digits>`.
fn is_temp_name(name: &str) -> bool {
    name.starts_with('.')
        && name.rfind(TEMP_TAG).is_some_and(|i| {
            let rest = &name[i + TEMP_TAG.len()..];
            (1..=16).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// The token of a backup's name `.<name>.triage-bak-<16 hex>`.
fn backup_token(name: &str) -> Option<&str> {
    if !name.starts_with('.') {
        return None;
    }
    let i = name.rfind(BACKUP_TAG)?;
    let rest = &name[i + BACKUP_TAG.len()..];
    (rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_hexdigit())).then_some(rest)
}

/// `Some(committed)` for a journal's name.
fn journal_state(name: &str) -> Option<bool> {
    let rest = name.strip_prefix(JOURNAL_PREFIX)?;
    let (token, committed) = match rest.strip_suffix(PENDING) {
        Some(t) => (t, false),
        None => (rest.strip_suffix(COMMITTED)?, true),
    };
    (token.len() == 16 && token.bytes().all(|b| b.is_ascii_hexdigit())).then_some(committed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn put(out: &mut AtomicOutputs, name: &str, bytes: &[u8]) {
        out.write(name, |w: &mut (dyn Write + Send)| w.write_all(bytes))
            .unwrap();
    }

    /// Every file under `dir` (hidden ones too), relative path → bytes.
    fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        fn walk(root: &Path, at: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
            for e in std::fs::read_dir(at).unwrap() {
                let e = e.unwrap();
                let p = e.path();
                let ft = std::fs::symlink_metadata(&p).unwrap().file_type();
                if ft.is_dir() {
                    walk(root, &p, out);
                } else {
                    let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                    let bytes = if ft.is_symlink() {
                        format!("link to {}", std::fs::read_link(&p).unwrap().display())
                            .into_bytes()
                    } else {
                        std::fs::read(&p).unwrap()
                    };
                    out.insert(rel, bytes);
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(dir, dir, &mut out);
        out
    }

    /// The old set (a, sub/b, c) committed with its list, and a user file
    /// no list names.
    fn old_set(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        std::fs::write(dir.join("keep.txt"), b"the user's").unwrap();
        let mut out = AtomicOutputs::replacing_set(dir);
        put(&mut out, "a.txt", b"old a");
        put(&mut out, "sub/b.txt", b"old b");
        put(&mut out, "c.txt", b"old c");
        let done = out.commit().unwrap();
        assert_eq!(done.len(), 3, "the list is not reported");
        snapshot(dir)
    }

    /// The new set: a and sub/b replaced, d and new/e added, c dropped.
    fn new_set(dir: &Path) -> AtomicOutputs {
        let mut out = AtomicOutputs::replacing_set(dir);
        put(&mut out, "a.txt", b"new a");
        put(&mut out, "sub/b.txt", b"new b");
        put(&mut out, "d.txt", b"new d");
        put(&mut out, "new/e.txt", b"new e");
        out
    }

    /// What the new set leaves, by hand: c.txt gone, the list naming the
    /// new files in order.
    fn expected_new() -> BTreeMap<String, Vec<u8>> {
        let list = "{\n  \"format\": \"triage-outputs-1\",\n  \"files\": [\n    \"a.txt\",\n    \"sub/b.txt\",\n    \"d.txt\",\n    \"new/e.txt\"\n  ]\n}\n";
        [
            ("keep.txt", &b"the user's"[..]),
            ("a.txt", b"new a"),
            ("sub/b.txt", b"new b"),
            ("d.txt", b"new d"),
            ("new/e.txt", b"new e"),
            (SET_LIST, list.as_bytes()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect()
    }

    /// Steps of the new set's commit before the mark, by hand: publishing
    /// the journal (0); a, sub/b and the list each moved aside and
    /// replaced (2 each); d and new/e put in place (1 each); c moved aside
    /// (1); the mark is step 10.
    const MARK: usize = 10;
    /// After the mark: 6 backups deleted, then the journal.
    const LAST: usize = MARK + 7;

    #[test]
    fn a_commit_replaces_the_old_set_and_drops_its_extra_files() {
        let dir = tempfile::tempdir().unwrap();
        let old = old_set(dir.path());
        assert_eq!(old["c.txt"], b"old c");
        assert!(old.contains_key(SET_LIST));
        new_set(dir.path()).commit().unwrap();
        assert_eq!(snapshot(dir.path()), expected_new());
    }

    #[test]
    fn a_failure_at_every_step_leaves_the_old_set() {
        let mut failed = Vec::new();
        for k in 0..=LAST + 1 {
            let dir = tempfile::tempdir().unwrap();
            let old = old_set(dir.path());
            let mut out = new_set(dir.path());
            out.faults.fail_at = Some(k);
            match out.commit() {
                Err(e) => {
                    assert!(e.to_string().contains("injected failure"), "{e}");
                    assert_eq!(snapshot(dir.path()), old, "failure at step {k}");
                    assert!(!dir.path().join("new").exists(), "step {k}");
                    failed.push(k);
                }
                Ok(_) => {
                    // After the mark a failed tidy-up leaves the new set
                    // and a journal the next run finishes.
                    recover(dir.path()).unwrap();
                    assert_eq!(snapshot(dir.path()), expected_new(), "step {k}");
                }
            }
        }
        assert_eq!(failed, (0..=MARK).collect::<Vec<_>>());
    }

    #[test]
    fn a_crash_at_every_step_recovers_to_the_old_or_the_new_set() {
        for k in 0..=LAST + 1 {
            let dir = tempfile::tempdir().unwrap();
            let old = old_set(dir.path());
            let mut out = new_set(dir.path());
            out.faults.crash_at = Some(k);
            let crashed = out.commit().is_err();
            assert_eq!(crashed, k <= LAST, "step {k}");
            if k == 4 {
                // The journal still locked (its process alive): left alone.
                let journal = std::fs::read_dir(dir.path())
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .find(|p| p.to_string_lossy().ends_with(".pending"))
                    .unwrap();
                let held = File::open(&journal).unwrap();
                held.lock().unwrap();
                clean(dir.path()).unwrap();
                assert!(journal.exists());
                assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), b"new a");
                drop(held);
            }
            clean(dir.path()).unwrap();
            let want = if k <= MARK { old } else { expected_new() };
            assert_eq!(snapshot(dir.path()), want, "crash at step {k}");
        }
    }

    #[test]
    fn a_directory_at_a_target_fails_and_keeps_the_old_set() {
        let dir = tempfile::tempdir().unwrap();
        let old = old_set(dir.path());
        std::fs::create_dir_all(dir.path().join("overlays/x.png")).unwrap();
        let old_with_dir = snapshot(dir.path());
        assert_eq!(old_with_dir, old);
        let mut out = AtomicOutputs::replacing_set(dir.path());
        put(&mut out, "a.txt", b"new a");
        put(&mut out, "sub/b.txt", b"new b");
        put(&mut out, "overlays/x.png", b"png");
        put(&mut out, "z.txt", b"new z");
        let e = out.commit().unwrap_err().to_string();
        assert!(e.contains("x.png") && e.contains("directory"), "{e}");
        assert_eq!(snapshot(dir.path()), old);
    }

    #[cfg(unix)]
    #[test]
    fn a_link_at_a_target_is_replaced_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside.csv");
        std::fs::write(&outside, b"precious").unwrap();
        let out_dir = dir.path().join("out");
        std::fs::create_dir(&out_dir).unwrap();
        std::os::unix::fs::symlink(&outside, out_dir.join("queue.csv")).unwrap();
        // A dangling link too: its target is never created.
        std::os::unix::fs::symlink(dir.path().join("made.txt"), out_dir.join("r.txt")).unwrap();
        let mut out = AtomicOutputs::new(&out_dir);
        put(&mut out, "queue.csv", b"new");
        put(&mut out, "r.txt", b"r");
        out.commit().unwrap();
        assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
        assert!(!dir.path().join("made.txt").exists());
        for (name, bytes) in [("queue.csv", &b"new"[..]), ("r.txt", b"r")] {
            let md = std::fs::symlink_metadata(out_dir.join(name)).unwrap();
            assert!(md.is_file(), "{name}");
            assert_eq!(std::fs::read(out_dir.join(name)).unwrap(), bytes);
        }
        // A linked subdirectory is refused, nothing written in its target.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, out_dir.join("overlays")).unwrap();
        let mut out = AtomicOutputs::new(&out_dir);
        let e = out
            .write("overlays/a.png", |w: &mut (dyn Write + Send)| {
                w.write_all(b"x")
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    #[test]
    fn stale_temps_and_backups_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("overlays")).unwrap();
        let dead = [
            ".queue.csv.triage-tmp-abc123",
            "overlays/.x.png.triage-tmp-Zz9999",
            ".queue.csv.triage-bak-0123456789abcdef",
        ];
        for name in dead {
            std::fs::write(d.join(name), b"left by a killed run").unwrap();
        }
        // A dead writer's temp directory (the index dump's).
        std::fs::create_dir_all(d.join(".triage-index.triage-tmp-q1w2e3/x")).unwrap();
        std::fs::write(d.join(".triage-index.triage-tmp-q1w2e3/x/y"), b"dump").unwrap();
        let live = d.join(".report.json.triage-tmp-live01");
        std::fs::write(&live, b"being written").unwrap();
        let held = File::open(&live).unwrap();
        held.lock().unwrap();
        // An empty temp just created in a subdirectory: its writer may not
        // have locked it yet. In the directory itself (locked by the
        // clean-up) an unlocked empty one is a dead writer's.
        std::fs::write(d.join("overlays/.a.png.triage-tmp-fresh1"), b"").unwrap();
        std::fs::write(d.join(".b.png.triage-tmp-empty1"), b"").unwrap();
        // Not this tool's names.
        let users = [".hidden", "notes.triage-tmp-1", ".x.triage-tmp-", "x.txt"];
        for name in users {
            std::fs::write(d.join(name), b"user").unwrap();
        }
        let n = clean(d).unwrap();
        assert_eq!(n, 5);
        assert!(!d.join(".b.png.triage-tmp-empty1").exists());
        for name in dead {
            assert!(!d.join(name).exists(), "{name}");
        }
        assert!(!d.join(".triage-index.triage-tmp-q1w2e3").exists());
        assert!(live.exists() && d.join("overlays/.a.png.triage-tmp-fresh1").exists());
        for name in users {
            assert_eq!(std::fs::read(d.join(name)).unwrap(), b"user", "{name}");
        }
        drop(held);
        assert_eq!(clean(d).unwrap(), 1);
        assert!(!live.exists());
    }

    #[test]
    fn a_damaged_journal_is_named_and_nothing_is_guessed() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir
            .path()
            .join(format!("{JOURNAL_PREFIX}0123456789abcdef{PENDING}"));
        std::fs::write(&j, b"{\"format\":").unwrap();
        let e = clean(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(".triage-journal-") && e.contains("damaged"),
            "{e}"
        );
        // A journal naming a path outside the directory is refused too.
        std::fs::write(
            &j,
            br#"{"format":"triage-journal-1","entries":[{"target":"../x","backup":"../.x.triage-bak-0123456789abcdef"}]}"#,
        )
        .unwrap();
        let e = clean(dir.path()).unwrap_err().to_string();
        assert!(e.contains("damaged") && e.contains("../x"), "{e}");
    }

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
        // An error tagged with its file names that file, with its own message.
        let mut out2 = AtomicOutputs::new(dir.path());
        let err = out2
            .write_many(["c.jsonl", "c.csv", "c.parquet"], |[_, _, p]| {
                p.write_all(b"PAR1")?;
                Err(in_file(2, std::io::Error::other("encoder failed")))
            })
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c.parquet") && !err.contains("c.jsonl"),
            "{err}"
        );
        assert!(err.contains("encoder failed"), "{err}");
        // The first tag wins when an error is tagged twice on its way out.
        let again = in_file(0, in_file(1, std::io::Error::other("x")));
        let mut out3 = AtomicOutputs::new(dir.path());
        let err = out3
            .write_many(["d.jsonl", "d.csv"], |_| Err(again))
            .unwrap_err()
            .to_string();
        assert!(err.contains("d.csv") && !err.contains("d.jsonl"), "{err}");
        drop((out2, out3));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            !names.iter().any(|n| ["b", ".b", "c", ".c", "d", ".d"]
                .iter()
                .any(|p| n.starts_with(p))),
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

    #[test]
    fn adopted_files_join_the_set() {
        let dir = tempfile::tempdir().unwrap();
        let work = tempfile::Builder::new()
            .prefix(".work.triage-tmp-")
            .tempdir_in(dir.path())
            .unwrap();
        std::fs::write(work.path().join("g"), b"graph").unwrap();
        std::fs::write(dir.path().join("index.hnsw.graph"), b"old graph").unwrap();
        let mut out = AtomicOutputs::new(dir.path());
        out.adopt("index.hnsw.graph", &work.path().join("g"))
            .unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("index.hnsw.graph")).unwrap(),
            b"old graph"
        );
        out.commit().unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("index.hnsw.graph")).unwrap(),
            b"graph"
        );
        assert!(!work.path().join("g").exists());
    }
}
