//! One error type for the whole library.
//!
//! Every input error names the file, and where they apply the item (its id)
//! and the field (column, class, pixel). The binary prints the error and exits
//! with status 2.

use std::fmt;
use std::path::{Path, PathBuf};

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where in the input a problem sits: file, then item, then field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// The file (or directory) that holds the bad value.
    pub file: PathBuf,
    /// The item id, when the problem belongs to one item.
    pub item: Option<String>,
    /// The field: a column name, `class 3`, `pixel (x=4, y=7)`, `shape`, ...
    pub field: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(item) = &self.item {
            write!(f, ": item {item:?}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        Ok(())
    }
}

/// Every failure `triage` reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input data is wrong: bad value, shape, dtype, id, ...
    #[error("{location}: {message}")]
    Input { location: Location, message: String },
    /// Reading or writing a file failed at the OS level.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The command line or the configuration is inconsistent.
    #[error("{0}")]
    Usage(String),
    /// A failure inside `triage` itself, not caused by the input or the
    /// options (a worker thread panicked, an encoder refused its input).
    #[error("internal error: {0}")]
    Internal(String),
    /// The caller stopped the run ([`crate::records::Control::cancel`]);
    /// nothing was written.
    #[error("the run was cancelled; nothing was written")]
    Cancelled,
    /// A compute backend failed (no adapter, device lost, shader error).
    #[error("backend {backend}: {message}")]
    Backend { backend: String, message: String },
}

impl Error {
    /// An input error about `file` as a whole.
    pub fn input(file: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Input {
            location: Location {
                file: file.as_ref().to_path_buf(),
                ..Location::default()
            },
            message: message.into(),
        }
    }

    /// Attach the item id (no-op on non-input errors).
    pub fn item(mut self, id: impl Into<String>) -> Self {
        if let Error::Input { location, .. } = &mut self {
            location.item = Some(id.into());
        }
        self
    }

    /// Attach the field (no-op on non-input errors).
    pub fn field(mut self, field: impl Into<String>) -> Self {
        if let Error::Input { location, .. } = &mut self {
            location.field = Some(field.into());
        }
        self
    }

    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}
