//! `.npz` probabilities fuzzed in process: archives as `np.savez` (stored)
//! and `np.savez_compressed` (deflated) write them, mutated by the
//! byte-level strategies of `mutate.rs` (flips, splices of interesting
//! numbers into the zip headers, truncation, duplication), are opened with
//! `triage::io::npz::open` and, when they open, read whole. Every case must
//! return within the time limit, without a panic and without an allocation
//! past this process's data limit ([`crate::limit_memory`]: a zip bomb or
//! a lying size would fail it); an error must name the file. Failing cases
//! are saved under `target/fuzz-failures/npz/`.

use std::io::{Cursor, Write};
use std::time::Instant;

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRunner};
use zip::CompressionMethod;
use zip::write::SimpleFileOptions;

use crate::mutate::{self, Format, Model};

/// A `(2, 3, 4, 5)` float32 `.npy` (numpy's version 1.0 header).
fn npy() -> Vec<u8> {
    let data: Vec<u8> = (0..120)
        .flat_map(|i| (i as f32 / 120.0).to_le_bytes())
        .collect();
    let tmp = tempfile::NamedTempFile::new().unwrap();
    crate::common::write_npy_raw(tmp.path(), "<f4", &[2, 3, 4, 5], &data);
    std::fs::read(tmp.path()).unwrap()
}

fn archive(method: CompressionMethod) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(method);
    w.start_file("other.npy", opts).unwrap();
    w.write_all(&npy()[..100]).unwrap();
    w.start_file("probs.npy", opts).unwrap();
    w.write_all(&npy()).unwrap();
    w.finish().unwrap().into_inner()
}

/// Open and read the whole array; `Err` with the message otherwise.
fn open_and_read(path: &std::path::Path) -> Result<(), String> {
    let mut a = triage::io::npz::open(path, Some("probs")).map_err(|e| e.to_string())?;
    let len = a.len();
    if a.dtype.is_float() {
        a.read_probs(0, len).map_err(|e| e.to_string())?;
    } else {
        a.read_bytes(0, len).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[test]
fn npz() {
    crate::limit_memory();
    let kind = "npz";
    let cases = crate::env_num("TRIAGE_FUZZ_CASES", u64::from(crate::DEFAULT_CASES)) * 5;
    let seed = crate::env_num("TRIAGE_FUZZ_SEED", crate::DEFAULT_SEED);
    let limit = crate::limits().timeout;
    let fixtures = [
        archive(CompressionMethod::Stored),
        archive(CompressionMethod::Deflated),
    ];
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("probs.npz");
    for f in &fixtures {
        std::fs::write(&path, f).unwrap();
        open_and_read(&path).expect("the fixture reads");
    }
    let mut runner = TestRunner::new_with_rng(Config::default(), crate::rng(seed, kind));
    let strategy = crate::spec(Format::Npy);
    let dir = crate::failures_dir(kind);
    let _ = std::fs::remove_dir_all(&dir);
    let (mut ok, mut refused, mut failures) = (0u64, 0u64, Vec::new());
    for case in 0..cases {
        let spec = strategy.new_tree(&mut runner).unwrap().current();
        let mut bytes = fixtures[usize::from(spec.fixture) % fixtures.len()].clone();
        if mutate::apply(&mut bytes, &Model::Bytes, &spec.muts, root.path()).is_some() {
            bytes.clear();
        }
        std::fs::write(&path, &bytes).unwrap();
        let t = Instant::now();
        let got = std::panic::catch_unwind(|| open_and_read(&path));
        let took = t.elapsed();
        let failure = match got {
            Err(_) => Some("panicked".to_string()),
            Ok(_) if took > limit => Some(format!("took {:.1} s", took.as_secs_f64())),
            Ok(Ok(())) => {
                ok += 1;
                None
            }
            Ok(Err(msg)) => {
                refused += 1;
                (!msg.starts_with(&path.display().to_string()))
                    .then(|| format!("an error that does not name the file: {msg}"))
            }
        };
        if let Some(f) = failure {
            std::fs::create_dir_all(&dir).unwrap();
            let saved = dir.join(format!("case-{case}.npz"));
            std::fs::write(&saved, &bytes).unwrap();
            eprintln!(
                "fuzz {kind}: case {case} (seed {seed:#x}): {f}\n  mutations: {:?}\n  saved: {}",
                spec.muts,
                saved.display()
            );
            failures.push(format!("case {case}: {f}"));
        }
    }
    eprintln!(
        "fuzz {kind}: seed {seed:#018x}: {cases} cases: {ok} read, {refused} refused, {} broke a property",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "fuzz {kind}: seed {seed:#x}:\n{}",
        failures.join("\n")
    );
}
