//! `.npz` archives (`np.savez`, `np.savez_compressed`): a zip of `.npy`
//! members named `KEY.npy`, one per array.
//!
//! **Contract.** [`open`] gives the member `KEY.npy` as an [`NpyArray`],
//! checked as a `.npy` file is, within the member's bytes:
//!
//! - a *stored* member (`np.savez`) is read in place: positioned reads at
//!   the member's data offset in the archive, as a `.npy` file is read, so
//!   memory follows the batch, not the array. (Its CRC is not checked: that
//!   would read the whole member once more; the `.npy` header and sizes
//!   are.)
//! - a *deflated* member (`np.savez_compressed`) is inflated into memory,
//!   at most [`MAX_INFLATED_BYTES`]: its declared size is checked against
//!   the limit before anything is allocated, the inflating stops one byte
//!   past the declared size (a member that inflates to more or less than it
//!   says, or fails its CRC, is refused), and the error beyond the limit
//!   says to save with `np.savez`.
//!
//! A missing key is an error that lists the keys the archive holds. Any
//! hostile archive (not a zip, a directory that lies, a member whose sizes
//! or offset lie, another compression method, encryption, a zip bomb)
//! gives an error that names the file and, where it applies, the member;
//! never a panic.

use std::io::Read;
use std::path::Path;

use zip::{CompressionMethod, ZipArchive};

use crate::config::DatasetConfig;
use crate::error::{Error, Result};
use crate::io::npy::{NpyArray, Store};

/// The most bytes a deflated member may inflate to (1 GiB): a larger array
/// is read from a stored member (`np.savez`), in place.
pub const MAX_INFLATED_BYTES: u64 = 1 << 30;

/// The array of a probabilities archive when `triage.toml` names no
/// `probs_key`.
pub const DEFAULT_PROBS_KEY: &str = "probs";

/// The keys a missing-key error lists, at most.
const LISTED_KEYS: usize = 20;

/// True when `path` names a `.npz` archive (by its extension, any case).
pub fn is_npz(path: &Path) -> bool {
    path.extension()
        .is_some_and(|x| x.eq_ignore_ascii_case("npz"))
}

/// The array at `path` of dataset `cfg`, one of its `probs`, `labels` or
/// `embeddings` files: a `.npy` file ([`NpyArray::open`]), or in a `.npz`
/// archive the member `probs_key` (default [`DEFAULT_PROBS_KEY`]) for the
/// probabilities, the archive's only array for the others.
pub fn open_input(cfg: &DatasetConfig, path: &Path) -> Result<NpyArray> {
    if !is_npz(path) {
        return NpyArray::open(path);
    }
    let key = (path == cfg.probs).then(|| cfg.probs_key.as_deref().unwrap_or(DEFAULT_PROBS_KEY));
    open(path, key)
}

/// The member `KEY.npy` of the archive `path` (see the module
/// documentation); `key: None` takes the archive's only `.npy` member.
pub fn open(path: &Path, key: Option<&str>) -> Result<NpyArray> {
    let file = crate::fsx::open_input(path)?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let not_zip = |e: zip::result::ZipError| {
        Error::input(
            path,
            format!("not a valid .npz archive (a zip of .npy files, as np.savez writes): {e}"),
        )
    };
    let mut zip = ZipArchive::new(std::io::BufReader::new(&file)).map_err(not_zip)?;
    let keys = || -> Vec<String> {
        zip.file_names()
            .filter_map(|n| n.ok()?.strip_suffix(".npy").map(str::to_string))
            .collect()
    };
    let (member, index) = match key {
        Some(key) => {
            let member = format!("{key}.npy");
            match zip.index_for_name(&member) {
                Some(i) => (member, i),
                None => {
                    return Err(Error::input(
                        path,
                        format!(
                            "the archive has no array {key:?} (no member {member}); it holds {}; \
                             name the array with probs_key in triage.toml's [inputs]",
                            list(&keys())
                        ),
                    )
                    .field("probs_key"));
                }
            }
        }
        None => {
            let all = keys();
            let [only] = &all[..] else {
                return Err(Error::input(
                    path,
                    format!(
                        "the archive holds {}, not exactly one array; save this array alone \
                         (np.savez(path, x)) or as a .npy file",
                        list(&all)
                    ),
                ));
            };
            let member = format!("{only}.npy");
            let i = zip.index_for_name(&member).ok_or_else(|| {
                Error::input(path, format!("the member {member} cannot be found again"))
            })?;
            (member, i)
        }
    };
    let bad = |msg: String| Error::input(path, msg).field(member.clone());
    let (method, size, packed, start) = {
        let entry = zip
            .by_index_raw(index)
            .map_err(|e| bad(format!("the member's header cannot be read: {e}")))?;
        if entry.encrypted() {
            return Err(bad("the member is encrypted".into()));
        }
        (
            entry.compression(),
            entry.size(),
            entry.compressed_size(),
            entry.data_start(),
        )
    };
    match method {
        CompressionMethod::Stored => {
            if packed != size {
                return Err(bad(format!(
                    "a stored member whose sizes disagree: {packed} bytes in the archive, \
                     {size} uncompressed"
                )));
            }
            let start = start.ok_or_else(|| bad("the member's data cannot be found".into()))?;
            if start.checked_add(size).is_none_or(|end| end > file_len) {
                return Err(bad(format!(
                    "the member says {size} bytes from byte {start}, past the archive's end \
                     ({file_len} bytes)"
                )));
            }
            drop(zip);
            NpyArray::parse_in(path, Store::File(file), start, size, Some(&member))
        }
        CompressionMethod::Deflated => {
            if size > MAX_INFLATED_BYTES {
                return Err(bad(format!(
                    "the member is compressed (np.savez_compressed) and says it inflates to \
                     {size} bytes, over the limit of {MAX_INFLATED_BYTES} bytes held in memory; \
                     save with np.savez (stored members are read in place, never held whole)"
                )));
            }
            // Deflate expands at most about 1032:1: a member that claims
            // more than that of its compressed size gets no more room up
            // front than it can fill.
            let room = size.min(packed.saturating_mul(1032).saturating_add(1024));
            let mut bytes = Vec::new();
            bytes
                .try_reserve_exact(room as usize)
                .map_err(|e| bad(format!("no memory for {room} bytes: {e}")))?;
            let entry = zip
                .by_index(index)
                .map_err(|e| bad(format!("the member cannot be read: {e}")))?;
            entry
                .take(size.saturating_add(1))
                .read_to_end(&mut bytes)
                .map_err(|e| bad(format!("the member does not inflate: {e}")))?;
            if bytes.len() as u64 != size {
                let got = if bytes.len() as u64 > size {
                    "more".to_string()
                } else {
                    bytes.len().to_string()
                };
                return Err(bad(format!(
                    "the member says it inflates to {size} bytes but inflates to {got}"
                )));
            }
            NpyArray::parse_in(path, Store::Bytes(bytes), 0, size, Some(&member))
        }
        other => Err(bad(format!(
            "the member is compressed with {other}; triage reads members stored (np.savez) or \
             deflated (np.savez_compressed)"
        ))),
    }
}

/// `keys` for a message: quoted, the first [`LISTED_KEYS`] and a count of
/// the rest; "no .npy member" when empty.
fn list(keys: &[String]) -> String {
    if keys.is_empty() {
        return "no .npy member".to_string();
    }
    let mut s: Vec<String> = keys
        .iter()
        .take(LISTED_KEYS)
        .map(|k| format!("{k:?}"))
        .collect();
    if keys.len() > LISTED_KEYS {
        s.push(format!("and {} more", keys.len() - LISTED_KEYS));
    }
    format!("the arrays {}", s.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};
    use zip::write::SimpleFileOptions;

    /// A `.npy` file's bytes (version 1.0, as numpy writes it).
    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        let total = 10 + header.len() + 1;
        header.push_str(&" ".repeat((64 - total % 64) % 64));
        header.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(data);
        b
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// A zip of `members` (name, bytes, stored or deflated), as the zip
    /// crate writes it.
    fn zip_of(members: &[(&str, &[u8], CompressionMethod)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, bytes, method) in members {
            let opts = SimpleFileOptions::default().compression_method(*method);
            w.start_file(*name, opts).unwrap();
            w.write_all(bytes).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn err(r: Result<NpyArray>) -> String {
        match r {
            Ok(a) => panic!("expected an error, got an array of shape {:?}", a.shape),
            Err(e) => {
                eprintln!("{e}");
                e.to_string()
            }
        }
    }

    /// Offsets of the local and central headers of the first member.
    fn headers(b: &[u8]) -> (usize, usize) {
        let find = |sig: &[u8]| b.windows(4).position(|w| w == sig).unwrap();
        (find(b"PK\x03\x04"), find(b"PK\x01\x02"))
    }

    fn put32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn stored_and_deflated_members_read_the_same_values() {
        let dir = tempfile::tempdir().unwrap();
        let vals = [0.25f32, 0.5, 0.75, 1.0, 0.125, 0.0];
        let probs = npy("<f4", "(2, 3)", &f32s(&vals));
        let other = npy("<f4", "(1,)", &f32s(&[9.0]));
        for method in [CompressionMethod::Stored, CompressionMethod::Deflated] {
            let p = write(
                dir.path(),
                "a.npz",
                &zip_of(&[("other.npy", &other, method), ("probs.npy", &probs, method)]),
            );
            let mut a = open(&p, Some("probs")).unwrap();
            assert_eq!((a.shape.clone(), a.dtype), (vec![2, 3], Dtype::F32));
            let got = a.read_probs(0, 6).unwrap();
            assert_eq!((0..6).map(|i| got.get(i)).collect::<Vec<_>>(), vals);
            assert_eq!(a.read_bytes(4, 2).unwrap(), f32s(&[0.125, 0.0]));
            let mut o = open(&p, Some("other")).unwrap();
            assert_eq!(o.read_probs(0, 1).unwrap().get(0), 9.0);
            // No key: the only array, else an error listing them.
            let e = err(open(&p, None));
            assert!(
                e.contains("\"other\", \"probs\"") && e.contains("not exactly one"),
                "{e}"
            );
            let p = write(dir.path(), "b.npz", &zip_of(&[("x.npy", &probs, method)]));
            assert_eq!(open(&p, None).unwrap().shape, vec![2, 3]);
        }
    }

    use crate::memory::Dtype;

    #[test]
    fn a_missing_key_lists_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        let a = npy("<f4", "(1,)", &f32s(&[1.0]));
        let p = write(
            dir.path(),
            "p.npz",
            &zip_of(&[
                ("logits.npy", &a, CompressionMethod::Stored),
                ("notes.txt", b"hi", CompressionMethod::Stored),
                ("arr_0.npy", &a, CompressionMethod::Stored),
            ]),
        );
        let e = err(open(&p, Some("probs")));
        assert!(
            e.starts_with(&format!("{}: probs_key: ", p.display())),
            "{e}"
        );
        assert!(
            e.contains("no array \"probs\" (no member probs.npy); it holds the arrays \"logits\", \"arr_0\""),
            "{e}"
        );
        let many: Vec<(String, Vec<u8>)> =
            (0..30).map(|i| (format!("k{i}.npy"), a.clone())).collect();
        let members: Vec<(&str, &[u8], CompressionMethod)> = many
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice(), CompressionMethod::Stored))
            .collect();
        let p = write(dir.path(), "m.npz", &zip_of(&members));
        let e = err(open(&p, Some("probs")));
        assert!(e.contains("\"k19\", and 10 more"), "{e}");
        let p = write(dir.path(), "e.npz", &zip_of(&[]));
        assert!(err(open(&p, Some("probs"))).contains("it holds no .npy member"));
    }

    #[test]
    fn hostile_archives_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let probs = npy("<f4", "(4,)", &f32s(&[0.5; 4]));
        let stored = zip_of(&[("probs.npy", &probs, CompressionMethod::Stored)]);
        let (local, central) = headers(&stored);

        // Not a zip at all, or cut short.
        let p = write(dir.path(), "x.npz", &probs);
        assert!(err(open(&p, Some("probs"))).contains("not a valid .npz archive"));
        let p = write(dir.path(), "x.npz", &stored[..stored.len() / 2]);
        assert!(err(open(&p, Some("probs"))).contains("not a valid .npz archive"));

        // A stored member whose sizes lie, one way or both.
        let mut b = stored.clone();
        put32(&mut b, central + 24, 1 << 30);
        let p = write(dir.path(), "x.npz", &b);
        let e = err(open(&p, Some("probs")));
        assert!(
            e.contains("probs.npy") && e.contains("sizes disagree"),
            "{e}"
        );
        for at in [central + 20, local + 18] {
            put32(&mut b, at, 1 << 30);
        }
        put32(&mut b, local + 22, 1 << 30);
        let p = write(dir.path(), "x.npz", &b);
        let e = err(open(&p, Some("probs")));
        assert!(
            e.contains("probs.npy") && e.contains("past the archive's end"),
            "{e}"
        );
        // Sizes that say less than the array: the .npy inside is cut short.
        let mut b = stored.clone();
        for at in [central + 20, central + 24, local + 18, local + 22] {
            put32(&mut b, at, (probs.len() - 4) as u32);
        }
        let p = write(dir.path(), "x.npz", &b);
        let e = err(open(&p, Some("probs")));
        assert!(
            e.contains("truncated")
                && e.contains(&format!(
                    "the member probs.npy has {} bytes",
                    probs.len() - 4
                )),
            "{e}"
        );
        // A member that is not a .npy.
        let p = write(
            dir.path(),
            "x.npz",
            &zip_of(&[("probs.npy", b"id,label\n", CompressionMethod::Deflated)]),
        );
        let e = err(open(&p, Some("probs")));
        assert!(
            e.contains("the member probs.npy is not a valid .npy file"),
            "{e}"
        );
        // Another compression method.
        let mut b = stored.clone();
        b[central + 10] = 12;
        b[local + 8] = 12;
        let p = write(dir.path(), "x.npz", &b);
        let e = err(open(&p, Some("probs")));
        assert!(e.contains("probs.npy"), "{e}");
    }

    #[test]
    fn deflated_members_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        // A bomb: 64 MiB of zeros deflate to about 64 KiB; the archive says
        // they inflate to 2000 bytes.
        let zeros = vec![0u8; 64 << 20];
        let mut bomb = npy("<f4", "(16777216,)", &[]);
        bomb.extend_from_slice(&zeros);
        let b0 = zip_of(&[("probs.npy", &bomb, CompressionMethod::Deflated)]);
        assert!(b0.len() < 1 << 20);
        let (local, central) = headers(&b0);
        let mut b = b0.clone();
        put32(&mut b, central + 24, 2000);
        put32(&mut b, local + 22, 2000);
        let p = write(dir.path(), "x.npz", &b);
        let e = err(open(&p, Some("probs")));
        // (The zip crate notices first, or this reader does.)
        assert!(
            e.contains("probs.npy")
                && (e.contains("says it inflates to 2000 bytes but inflates to more")
                    || e.contains("larger than its declared uncompressed size")),
            "{e}"
        );
        // Over the limit by its own word: refused before inflating, with
        // the fix.
        let mut b = b0.clone();
        put32(&mut b, central + 24, 0xffff_fff0);
        put32(&mut b, local + 22, 0xffff_fff0);
        let p = write(dir.path(), "x.npz", &b);
        let e = err(open(&p, Some("probs")));
        assert!(
            e.contains("over the limit of 1073741824 bytes") && e.contains("np.savez"),
            "{e}"
        );
        // Says more than it holds.
        let small = npy("<f4", "(4,)", &f32s(&[0.5; 4]));
        let s0 = zip_of(&[("probs.npy", &small, CompressionMethod::Deflated)]);
        let (local, central) = headers(&s0);
        let mut b = s0.clone();
        put32(&mut b, central + 24, 5000);
        put32(&mut b, local + 22, 5000);
        let p = write(dir.path(), "x.npz", &b);
        let e = err(open(&p, Some("probs")));
        assert!(e.contains("probs.npy"), "{e}");
        // A flipped bit in the compressed data: an inflate or CRC error.
        let mut b = s0.clone();
        let data = local
            + 30
            + "probs.npy".len()
            + usize::from(u16::from_le_bytes([s0[local + 28], s0[local + 29]]));
        b[data + 3] ^= 0x10;
        let p = write(dir.path(), "x.npz", &b);
        let e = err(open(&p, Some("probs")));
        assert!(e.contains("probs.npy"), "{e}");
    }

    #[test]
    fn npz_by_extension() {
        assert!(is_npz(Path::new("a/probs.npz")) && is_npz(Path::new("P.NPZ")));
        assert!(!is_npz(Path::new("probs.npy")) && !is_npz(Path::new("npz")));
    }
}
