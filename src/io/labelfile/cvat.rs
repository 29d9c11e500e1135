//! TODO(helper): the cvat reader.

use std::path::Path;

use super::Doc;
use crate::error::Result;

/// Parse a cvat labels file (its bytes, read by [`super::parse`]).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Doc> {
    let _ = bytes;
    Err(super::bad(path, None, "cvat", "not yet implemented"))
}

/// Write the items as a cvat file the reviewers' tool imports.
pub fn write(meta: &super::ExportMeta, items: &[super::ExportItem]) -> Result<Vec<u8>> {
    let _ = (meta, items);
    Err(crate::error::Error::Internal("not yet implemented".into()))
}
