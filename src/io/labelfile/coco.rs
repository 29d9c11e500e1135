//! TODO(helper): the coco reader.

use std::path::Path;

use super::Doc;
use crate::error::Result;

/// Parse a coco labels file (its bytes, read by [`super::parse`]).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Doc> {
    let _ = bytes;
    Err(super::bad(path, None, "coco", "not yet implemented"))
}
