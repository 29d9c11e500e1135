//! TODO(helper): the labelstudio reader.

use std::path::Path;

use super::Doc;
use crate::error::Result;

/// Parse a labelstudio labels file (its bytes, read by [`super::parse`]).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Doc> {
    let _ = bytes;
    Err(super::bad(path, None, "labelstudio", "not yet implemented"))
}

/// Write the items as a labelstudio file the reviewers' tool imports.
pub fn write(meta: &super::ExportMeta, items: &[super::ExportItem]) -> Result<Vec<u8>> {
    let _ = (meta, items);
    Err(crate::error::Error::Internal("not yet implemented".into()))
}

/// The Label Studio labelling config (XML) that fits the tasks [`write`]
/// writes.
pub fn label_config(meta: &super::ExportMeta) -> String {
    let _ = meta;
    String::new()
}
