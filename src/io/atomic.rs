//! Outputs are written to a temporary file in the target directory and
//! renamed into place only once every file of the run is complete, so a failed
//! run leaves no half-written results.

use std::io::Write;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::{Error, Result};

/// A set of output files that appear together or not at all.
pub struct AtomicOutputs {
    dir: PathBuf,
    pending: Vec<(NamedTempFile, PathBuf)>,
}

impl AtomicOutputs {
    /// Outputs for directory `dir` (created when the first file is added).
    pub fn new(dir: &Path) -> Self {
        AtomicOutputs {
            dir: dir.to_path_buf(),
            pending: Vec::new(),
        }
    }

    /// Write `name` through `fill` into a temporary file; nothing is visible
    /// under `name` until [`AtomicOutputs::commit`].
    pub fn write(
        &mut self,
        name: &str,
        fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let target = self.dir.join(name);
        let prefix = format!(".{name}.");
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
            .tempfile_in(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))?;
        {
            let mut w = std::io::BufWriter::new(tmp.as_file());
            fill(&mut w)
                .and_then(|_| w.flush())
                .map_err(|e| Error::io(&target, e))?;
        }
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io(&target, e))?;
        self.pending.push((tmp, target));
        Ok(())
    }

    /// Rename every temporary file into place.
    pub fn commit(self) -> Result<Vec<PathBuf>> {
        let mut done = Vec::new();
        for (tmp, target) in self.pending {
            tmp.persist(&target)
                .map_err(|e| Error::io(&target, e.error))?;
            done.push(target);
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_visible_until_commit_and_nothing_left_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = AtomicOutputs::new(dir.path());
        out.write("a.txt", |w: &mut dyn Write| w.write_all(b"hello"))
            .unwrap();
        assert!(!dir.path().join("a.txt").exists());
        out.commit().unwrap();
        assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), b"hello");

        let mut out = AtomicOutputs::new(dir.path());
        out.write("b.txt", |w: &mut dyn Write| w.write_all(b"x"))
            .unwrap();
        let err = out.write("c.txt", |_: &mut dyn Write| {
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
}
