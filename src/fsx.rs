//! File access for untrusted paths: the one place that opens what a dataset,
//! a cache, a partial, a checkpoint or an earlier run names.
//!
//! **Contract.**
//! - A file that is read ([`open_input`], [`read_input`]) must be a regular
//!   file: a FIFO, a device (`/dev/zero`), a socket or a directory is refused
//!   with an error naming it, without blocking on it (the open is
//!   non-blocking, the type is checked on the open handle, so a file swapped
//!   after the check is not read either).
//! - A whole-file read is bounded by a stated limit, checked against the
//!   file's size before any byte is read, and enforced while reading (a
//!   file that grows is cut at the limit and refused).
//! - A state file that is written in place ([`open_state`]) is opened
//!   without following a symbolic link at its name (`O_NOFOLLOW`) and must
//!   be a regular file; a link planted there is refused, never written
//!   through.
//! - Directories that outputs go into ([`real_dirs`]) are real directories
//!   inside the output root: a symbolic link planted as `overlays/` is
//!   refused, never followed.

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Open `path` for reading; refuse anything but a regular file.
pub fn open_input(path: &Path) -> Result<File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Non-blocking: opening a FIFO with no writer would otherwise hang
        // here. On a regular file the flag changes nothing.
        opts.custom_flags(libc::O_NONBLOCK);
    }
    #[cfg(not(unix))]
    {
        // No non-blocking open: check the type first.
        let md = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if !md.is_file() {
            return Err(not_regular(path, &md.file_type()));
        }
    }
    let file = opts.open(path).map_err(|e| Error::io(path, e))?;
    let md = file.metadata().map_err(|e| Error::io(path, e))?;
    if !md.is_file() {
        return Err(not_regular(path, &md.file_type()));
    }
    Ok(file)
}

/// The error for a path that is not a regular file.
fn not_regular(path: &Path, ft: &std::fs::FileType) -> Error {
    Error::input(
        path,
        format!(
            "not a regular file (a {}); triage reads only regular files",
            kind_name(ft)
        ),
    )
}

/// A word for the type of a file that is not regular.
pub fn kind_name(ft: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "named pipe";
        }
        if ft.is_char_device() || ft.is_block_device() {
            return "device";
        }
        if ft.is_socket() {
            return "socket";
        }
    }
    if ft.is_dir() {
        "directory"
    } else if ft.is_symlink() {
        "symbolic link"
    } else if ft.is_file() {
        "regular file"
    } else {
        "special file"
    }
}

/// Read all of the regular file `path`, at most `limit` bytes; `what` names
/// the input in the error (`"the items CSV"`).
pub fn read_input(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let file = open_input(path)?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let too_big = |n: u64| {
        Error::input(
            path,
            format!("{what} is {n} bytes, over the limit of {limit} bytes (docs/threat-model.md)"),
        )
    };
    if len > limit {
        return Err(too_big(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// [`read_input`] as UTF-8 text.
pub fn read_input_string(path: &Path, limit: u64, what: &str) -> Result<String> {
    let bytes = read_input(path, limit, what)?;
    String::from_utf8(bytes).map_err(|e| {
        Error::input(
            path,
            format!(
                "{what} is not UTF-8 text (byte {} is not)",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// The longest line of a streamed text input (`items.csv`,
/// `annotations.csv`, review decisions): a file without newlines (a sparse
/// or zero-filled one) is refused here instead of growing one record
/// without end.
pub const MAX_LINE_BYTES: u64 = 16 << 20;

/// A reader that fails (`InvalidData`, naming the limit) once more than
/// `limit` bytes follow the last newline; see [`open_text`].
pub struct LineLimit<R> {
    inner: R,
    since_newline: u64,
    limit: u64,
}

impl<R: Read> Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let got = &buf[..n];
        self.since_newline = match got.iter().rposition(|&b| b == b'\n') {
            Some(at) => (n - at - 1) as u64,
            None => self.since_newline + n as u64,
        };
        if self.since_newline > self.limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "a line of more than {} bytes (docs/threat-model.md): not a text table",
                    self.limit
                ),
            ));
        }
        Ok(n)
    }
}

/// [`open_input`] for a text table read as a stream: lines of at most
/// [`MAX_LINE_BYTES`].
pub fn open_text(path: &Path) -> Result<LineLimit<File>> {
    Ok(line_limited(open_input(path)?, MAX_LINE_BYTES))
}

/// `inner` with lines of at most `limit` bytes.
pub fn line_limited<R: Read>(inner: R, limit: u64) -> LineLimit<R> {
    LineLimit {
        inner,
        since_newline: 0,
        limit,
    }
}

/// Open (creating it when missing) the state file `path` for reading and
/// writing in place, without following a symbolic link at its name; it
/// must be a regular file.
pub fn open_state(path: &Path) -> Result<File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    #[cfg(not(unix))]
    if let Ok(md) = std::fs::symlink_metadata(path)
        && !md.is_file()
    {
        return Err(refused_link(path, &md.file_type()));
    }
    let file = match opts.open(path) {
        Ok(f) => f,
        Err(e) => {
            // ELOOP: the name is a symbolic link (O_NOFOLLOW).
            if let Ok(md) = std::fs::symlink_metadata(path)
                && !md.is_file()
            {
                return Err(refused_link(path, &md.file_type()));
            }
            return Err(Error::io(path, e));
        }
    };
    let md = file.metadata().map_err(|e| Error::io(path, e))?;
    if !md.is_file() {
        return Err(refused_link(path, &md.file_type()));
    }
    Ok(file)
}

/// The error for a state or output path that is not a regular file.
pub fn refused_link(path: &Path, ft: &std::fs::FileType) -> Error {
    Error::input(
        path,
        format!(
            "is a {} where triage writes a file of its own; refusing to write through it (remove it)",
            kind_name(ft)
        ),
    )
}

/// Make sure `root/rel` is a real directory inside `root`: every level of
/// `rel` is created when missing and must not be a symbolic link or a file
/// (`rel` must be relative and must not climb out with `..`). Returns the
/// directories this call created, outermost first.
pub fn real_dirs(root: &Path, rel: &Path) -> Result<Vec<PathBuf>> {
    let mut created = Vec::new();
    let mut at = root.to_path_buf();
    for comp in rel.components() {
        match comp {
            Component::Normal(name) => at.push(name),
            Component::CurDir => continue,
            _ => {
                return Err(Error::Internal(format!(
                    "output path {} leaves the output directory",
                    rel.display()
                )));
            }
        }
        match std::fs::symlink_metadata(&at) {
            Ok(md) if md.is_dir() => {}
            Ok(md) => return Err(refused_link(&at, &md.file_type())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match std::fs::create_dir(&at) {
                    Ok(()) => created.push(at.clone()),
                    // Another writer made it meanwhile: check it again.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let md = std::fs::symlink_metadata(&at).map_err(|e| Error::io(&at, e))?;
                        if !md.is_dir() {
                            return Err(refused_link(&at, &md.file_type()));
                        }
                    }
                    Err(e) => return Err(Error::io(&at, e)),
                }
            }
            Err(e) => return Err(Error::io(&at, e)),
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn devices_fifos_and_directories_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let e = open_input(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(e.contains("/dev/zero") && e.contains("device"), "{e}");
        let e = open_input(dir.path()).unwrap_err().to_string();
        assert!(e.contains("directory"), "{e}");
        let fifo = dir.path().join("pipe");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // No writer: a blocking open would hang this test.
        let e = open_input(&fifo).unwrap_err().to_string();
        assert!(e.contains("named pipe"), "{e}");
    }

    #[test]
    fn whole_reads_stop_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, b"0123456789").unwrap();
        assert_eq!(read_input(&p, 10, "the file").unwrap(), b"0123456789");
        let e = read_input(&p, 9, "the file").unwrap_err().to_string();
        assert!(e.contains("10 bytes") && e.contains("limit of 9"), "{e}");
        std::fs::write(&p, [0xff, 0xfe]).unwrap();
        let e = read_input_string(&p, 10, "the file")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not UTF-8"), "{e}");
    }

    #[test]
    fn text_lines_are_bounded() {
        let text = b"id,label\na,1\n";
        let mut ok = String::new();
        line_limited(&text[..], 8).read_to_string(&mut ok).unwrap();
        assert_eq!(ok.as_bytes(), text);
        // Nine bytes after the last newline, limit eight.
        let long = b"id\n123456789";
        let mut sink = Vec::new();
        let e = line_limited(&long[..], 8)
            .read_to_end(&mut sink)
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("more than 8 bytes"), "{e}");
        // Zeros without a newline (a sparse file) stop at the limit.
        let zeros = std::io::repeat(0).take(1 << 20);
        let e = line_limited(zeros, 4096)
            .read_to_end(&mut sink)
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(sink.len() < 1 << 20);
    }

    #[cfg(unix)]
    #[test]
    fn state_files_and_output_dirs_never_follow_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside.txt");
        std::fs::write(&outside, b"keep").unwrap();
        let link = dir.path().join("state");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let e = open_state(&link).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        // A dangling link does not create its target.
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("made.txt"), &dangling).unwrap();
        assert!(open_state(&dangling).is_err());
        assert!(!dir.path().join("made.txt").exists());
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
        // A fresh name is created as a regular file.
        assert!(open_state(&dir.path().join("fresh")).is_ok());

        let root = dir.path().join("out");
        std::fs::create_dir(&root).unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join("overlays")).unwrap();
        let e = real_dirs(&root, Path::new("overlays"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("overlays") && e.contains("symbolic link"), "{e}");
        let made = real_dirs(&root, Path::new("a/b")).unwrap();
        assert_eq!(made, vec![root.join("a"), root.join("a/b")]);
        assert!(real_dirs(&root, Path::new("a/b")).unwrap().is_empty());
        assert!(real_dirs(&root, Path::new("../x")).is_err());
    }
}
