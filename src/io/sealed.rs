//! Sealed lines: the JSON records of `triage`'s own state files (the
//! checkpoint of `--resume`, a shard's partial, the segmentation score
//! cache) each carry a checksum, so a damaged record is seen and never
//! used.
//!
//! **Format.** One record a line: the 16 lowercase hexadecimal digits of
//! the xxh3-64 hash of the record's JSON text, one space, the JSON text
//! (no newline inside), `\n`:
//!
//! ```text
//! 5c1e0a7d3f9b2c41 {"format":"triage-partial/2",...}
//! ```
//!
//! [`open`] gives the JSON text back only when the digits match it. The
//! checksum detects damage (a flipped bit, a zeroed block, a torn or
//! spliced write); it is not a signature and does not detect forgery:
//! anyone can compute it. That is why every reader also checks every field
//! of a record against the run (class indices below the class count,
//! arrays of their declared length, counts that fit), see
//! [`crate::records::ItemResult::validate`] and [`crate::records::check_sums`].
//!
//! Binary records (the classification score cache's) carry the same hash
//! of their other bytes in a field of their own
//! ([`crate::score::cache::RowEntry`]).
//!
//! Lines are read one at a time ([`read_line`]) with a limit on their
//! length, so a file without newlines is refused at the limit instead of
//! being read whole.

use std::io::{BufRead, Write};

use xxhash_rust::xxh3::xxh3_64;

/// The longest sealed line of a partial's item rows (or of a segmentation
/// score cache entry) for a run of `classes` classes: 1 MiB, and 64 bytes
/// a cell of the `classes²` confusion cells a record may list.
pub fn record_limit(classes: usize) -> usize {
    (1usize << 20).saturating_add(classes.saturating_mul(classes).saturating_mul(64))
}

/// Hex digits of the checksum, before the space.
pub const DIGITS: usize = 16;

/// The checksum of `bytes` (xxh3-64).
pub fn checksum(bytes: &[u8]) -> u64 {
    xxh3_64(bytes)
}

/// Write `json` (one line of JSON, no newline) as a sealed line.
pub fn write_json<W: Write + ?Sized>(w: &mut W, json: &[u8]) -> std::io::Result<()> {
    write!(w, "{:016x} ", checksum(json))?;
    w.write_all(json)?;
    w.write_all(b"\n")
}

/// Serialise `value` as JSON and write it as a sealed line.
pub fn write<W: Write + ?Sized, T: serde::Serialize + ?Sized>(
    w: &mut W,
    value: &T,
) -> std::io::Result<()> {
    let json = serde_json::to_vec(value)?;
    write_json(w, &json)
}

/// `value` as a sealed line (with its newline).
pub fn line<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let json = serde_json::to_vec(value)?;
    let mut out = Vec::with_capacity(json.len() + DIGITS + 2);
    write_json(&mut out, &json).map_err(serde_json::Error::io)?;
    Ok(out)
}

/// Why a line is not a whole sealed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// It does not begin with 16 hex digits and a space: not a sealed line
    /// (a file of another format or version, or damaged at its start).
    NoChecksum,
    /// The digits do not match the text: damaged.
    Mismatch,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Damage::NoChecksum => "no checksum (not a sealed record of this triage version)",
            Damage::Mismatch => "checksum mismatch (the record is damaged)",
        })
    }
}

/// The JSON text of the sealed line `line` (its newline removed or not),
/// when its checksum matches.
pub fn open(line: &[u8]) -> Result<&[u8], Damage> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    if line.len() < DIGITS + 1 || line[DIGITS] != b' ' {
        return Err(Damage::NoChecksum);
    }
    let mut want = 0u64;
    for &c in &line[..DIGITS] {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return Err(Damage::NoChecksum),
        };
        want = want << 4 | d as u64;
    }
    let json = &line[DIGITS + 1..];
    if checksum(json) != want {
        return Err(Damage::Mismatch);
    }
    Ok(json)
}

/// What [`read_line`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// The end of the file: no byte.
    End,
    /// A line ending in `\n` (kept in the buffer), of this many bytes.
    Whole(usize),
    /// Bytes at the end of the file without a closing `\n` (a torn write).
    Torn(usize),
    /// More than the limit before a `\n`: not read further.
    TooLong,
    /// Its first bytes are not the 16 hex digits and the space of a sealed
    /// line: not read further (so a file of zeros, or of anything else, is
    /// refused after its first bytes, not read to its end).
    NotSealed,
}

/// `start` (at least `DIGITS + 1` bytes) begins as a sealed line does.
fn sealed_prefix(start: &[u8]) -> bool {
    start[..DIGITS]
        .iter()
        .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        && start[DIGITS] == b' '
}

/// Read one line (up to and including `\n`) into `buf` (cleared first),
/// reading at most `limit` bytes.
pub fn read_line<R: BufRead + ?Sized>(
    r: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Line> {
    buf.clear();
    loop {
        let avail = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok(if buf.is_empty() {
                Line::End
            } else {
                Line::Torn(buf.len())
            });
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(p) => (p + 1, true),
            None => (avail.len(), false),
        };
        if buf.len().saturating_add(take) > limit {
            return Ok(Line::TooLong);
        }
        let checked = buf.len() > DIGITS;
        buf.extend_from_slice(&avail[..take]);
        r.consume(take);
        if !checked && buf.len() > DIGITS && !sealed_prefix(buf) {
            return Ok(Line::NotSealed);
        }
        if done {
            return Ok(Line::Whole(buf.len()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_that_does_not_start_sealed_is_not_read_to_its_end() {
        // 1 GiB of zeros without a newline, as a sparse file reads: refused
        // after its first bytes, the buffer never grows past one fill.
        let mut r = std::io::BufReader::with_capacity(
            4096,
            std::io::Read::take(std::io::repeat(0), 1 << 30),
        );
        let mut buf = Vec::new();
        assert_eq!(
            read_line(&mut r, &mut buf, usize::MAX).unwrap(),
            Line::NotSealed
        );
        assert!(buf.len() <= 4096, "{}", buf.len());
        // Upper-case digits are not this format's either.
        let mut r = &b"ABCDEF0123456789 {}\n"[..];
        assert_eq!(
            read_line(&mut r, &mut buf, usize::MAX).unwrap(),
            Line::NotSealed
        );
        // A sealed line, and a torn one shorter than the prefix, read as before.
        let l = line(&serde_json::json!([1])).unwrap();
        let mut r = &l[..];
        assert_eq!(
            read_line(&mut r, &mut buf, usize::MAX).unwrap(),
            Line::Whole(l.len())
        );
        let mut r = &l[..5];
        assert_eq!(
            read_line(&mut r, &mut buf, usize::MAX).unwrap(),
            Line::Torn(5)
        );
    }

    #[test]
    fn a_sealed_line_opens_only_unchanged() {
        let l = line(&serde_json::json!({"a": [1, 2, 3]})).unwrap();
        let text = std::str::from_utf8(&l).unwrap();
        // The digits are xxh3-64 of the JSON text, by an independent call.
        let json = br#"{"a":[1,2,3]}"#;
        assert_eq!(
            text,
            format!("{:016x} {}\n", xxh3_64(json), "{\"a\":[1,2,3]}")
        );
        assert_eq!(open(&l).unwrap(), json);
        // Every single flipped bit is seen.
        for i in 0..l.len() - 1 {
            for bit in 0..8 {
                let mut m = l.clone();
                m[i] ^= 1 << bit;
                assert!(open(&m).is_err(), "byte {i} bit {bit}");
            }
        }
        assert_eq!(open(b"{\"a\":1}\n"), Err(Damage::NoChecksum));
        assert_eq!(open(b""), Err(Damage::NoChecksum));
        // Upper-case digits are not what triage writes.
        let upper = text.to_uppercase();
        assert_eq!(open(upper.as_bytes()), Err(Damage::NoChecksum));
    }

    #[test]
    fn lines_are_read_whole_torn_or_refused_at_the_limit() {
        let data = b"abc\ndefgh\nij";
        let mut r = std::io::BufReader::with_capacity(2, &data[..]);
        let mut buf = Vec::new();
        assert_eq!(read_line(&mut r, &mut buf, 10).unwrap(), Line::Whole(4));
        assert_eq!(buf, b"abc\n");
        assert_eq!(read_line(&mut r, &mut buf, 5).unwrap(), Line::TooLong);
        let mut r = std::io::BufReader::with_capacity(3, &data[..]);
        read_line(&mut r, &mut buf, 10).unwrap();
        assert_eq!(read_line(&mut r, &mut buf, 6).unwrap(), Line::Whole(6));
        assert_eq!(read_line(&mut r, &mut buf, 6).unwrap(), Line::Torn(2));
        assert_eq!(buf, b"ij");
        assert_eq!(read_line(&mut r, &mut buf, 6).unwrap(), Line::End);
    }
}
