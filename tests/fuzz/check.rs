//! The properties every fuzz case must keep, and how they are checked:
//!
//! - the process exits 0 or 2: never 101 (a panic), never a signal (an
//!   abort, or an allocation refused by the memory limit below);
//! - no "panicked" in stderr; an exit 2 says why on stderr;
//! - peak resident memory (`ru_maxrss` of the child) under [`Limits::rss`];
//! - it finishes within [`Limits::timeout`];
//! - nothing outside `--out` changes: every entry under the case's root
//!   (path, type, size, xxh3 of the contents, a symlink's target) is
//!   snapshot before and after, and the only differences allowed are under
//!   `--out` (not the run's own inputs when `--out` holds them) and the
//!   writes a command documents (`review-import`: DATASET/reviews.jsonl;
//!   `--cache DIR`, `--index DIR`: DIR).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::common::Measured;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub timeout: Duration,
    pub rss: u64,
}

/// One entry of a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    File {
        len: u64,
        hash: u64,
    },
    Dir,
    Link(PathBuf),
    /// A FIFO, socket or device (by its mode).
    Other(u32),
}

pub type Snapshot = BTreeMap<PathBuf, Entry>;

/// Files larger than this are hashed by their first and last MiB (and
/// size and mtime): sparse 8 GiB inputs are planted on purpose.
const HASH_WHOLE: u64 = 64 << 20;

fn hash_file(p: &Path, meta: &std::fs::Metadata) -> u64 {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;
    let Ok(mut f) = std::fs::File::open(p) else {
        return 0;
    };
    if meta.len() <= HASH_WHOLE {
        let mut v = Vec::new();
        let _ = f.read_to_end(&mut v);
        return xxhash_rust::xxh3::xxh3_64(&v);
    }
    let mut v = vec![0u8; 1 << 20];
    let _ = f.read_exact(&mut v);
    let mut tail = vec![0u8; 1 << 20];
    let _ = f.seek(SeekFrom::End(-(1 << 20)));
    let _ = f.read_exact(&mut tail);
    v.extend_from_slice(&tail);
    v.extend_from_slice(&meta.mtime_nsec().to_le_bytes());
    v.extend_from_slice(&meta.mtime().to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&v)
}

/// Every entry under `root` (not following symlinks).
pub fn snapshot(root: &Path) -> Snapshot {
    let mut s = Snapshot::new();
    walk(root, &mut s);
    s
}

fn walk(dir: &Path, s: &mut Snapshot) {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let ft = meta.file_type();
        let entry = if ft.is_symlink() {
            Entry::Link(std::fs::read_link(&p).unwrap_or_default())
        } else if ft.is_dir() {
            walk(&p, s);
            Entry::Dir
        } else if ft.is_file() {
            Entry::File {
                len: meta.len(),
                hash: hash_file(&p, &meta),
            }
        } else {
            debug_assert!(
                ft.is_fifo() || ft.is_socket() || ft.is_block_device() || ft.is_char_device()
            );
            Entry::Other(meta.mode())
        };
        s.insert(p, entry);
    }
}

/// `p` without `.` and `..` (lexically).
pub fn normalize(p: &Path) -> PathBuf {
    let mut v = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                v.pop();
            }
            c => v.push(c),
        }
    }
    v
}

/// What a command may change.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// `--out` (normalised).
    pub out: Option<PathBuf>,
    /// Other directories the command writes by design (`--cache DIR`).
    pub writable: Vec<PathBuf>,
    /// Single files it writes by design (`review-import`'s reviews.jsonl).
    pub writable_files: Vec<PathBuf>,
    /// The run's inputs (the dataset, `--previous`, the partials): the
    /// entries under these when [`Policy::freeze_inputs`] is called must not
    /// change, even inside `--out`.
    pub protected: Vec<PathBuf>,
    /// Those entries (what a case planted in `--out` later is not among
    /// them).
    pub inputs: std::collections::BTreeSet<PathBuf>,
}

impl Policy {
    /// Record the entries under [`Policy::protected`] as the inputs.
    pub fn freeze_inputs(&mut self) {
        for d in &self.protected {
            if std::fs::symlink_metadata(d).is_ok() {
                self.inputs.insert(d.clone());
            }
            if d.is_dir() {
                self.inputs.extend(snapshot(d).into_keys());
            }
        }
    }
}

/// The changes between two snapshots that the policy does not allow,
/// described one a line (`modified ds/items.csv`), paths relative to `base`.
pub fn violations(
    before: &Snapshot,
    after: &Snapshot,
    policy: &Policy,
    base: &Path,
) -> Vec<String> {
    let mut v = Vec::new();
    let mut paths: Vec<&PathBuf> = before.keys().chain(after.keys()).collect();
    paths.sort();
    paths.dedup();
    for p in paths {
        let (b, a) = (before.get(p), after.get(p));
        let what = match (b, a) {
            (Some(x), Some(y)) if x == y => continue,
            (None, Some(_)) => "created",
            (Some(_), None) => "removed",
            (Some(Entry::File { .. }), Some(Entry::File { .. })) => "modified",
            _ => "replaced",
        };
        if policy.writable_files.iter().any(|f| f == p) {
            continue;
        }
        // `--out` and its missing parents are created (`mkdir -p`).
        let on_the_way = b.is_none()
            && matches!(a, Some(Entry::Dir))
            && policy.out.as_ref().is_some_and(|o| o.starts_with(p));
        if on_the_way {
            continue;
        }
        let under = |d: &PathBuf| p.starts_with(d);
        let allowed = policy.out.iter().any(under) || policy.writable.iter().any(under);
        let input = policy.inputs.contains(p);
        if allowed && !input {
            continue;
        }
        let shown = p
            .strip_prefix(base)
            .map(|r| r.display().to_string())
            .unwrap_or_else(|_| {
                let root = base.ancestors().nth(4).unwrap_or(base);
                p.strip_prefix(root)
                    .map(|r| format!("ROOT/{}", r.display()))
                    .unwrap_or_else(|_| p.display().to_string())
            });
        v.push(format!("{what} {shown}"));
    }
    v
}

/// A broken property of one run.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The class: what broke, without the details that vary from case to
    /// case (the same class found twice is reported once).
    pub class: String,
    pub detail: String,
}

/// Where a panic happened and what it said: `file:line: message` (digits
/// of the message as `#`). A panic inside the standard library or a
/// dependency also names the first frame of our own code when stderr has a
/// backtrace (`RUST_BACKTRACE=1`).
fn panic_location(stderr: &str) -> Option<String> {
    let i = stderr.find("panicked at ")?;
    let rest = &stderr[i + "panicked at ".len()..];
    let head = rest.lines().next().unwrap_or("");
    let loc = head.trim_end_matches(':');
    // file:line:col → file:line
    let mut parts: Vec<&str> = loc.rsplitn(3, ':').collect();
    parts.reverse();
    let mut loc = match parts.as_slice() {
        [file, line, _col] => format!("{file}:{line}"),
        _ => loc.to_string(),
    };
    let foreign = |p: &str| p.contains("/rustc/") || p.contains("/.cargo/");
    if let Some(k) = loc.find("/library/").filter(|_| loc.starts_with("/rustc/")) {
        loc = loc[k + 1..].to_string();
    }
    if (foreign(head) || head.starts_with("library/"))
        && let Some(p) = own_frame(stderr)
    {
        loc = format!("{loc} (from {p})");
    }
    let msg: String = rest
        .lines()
        .nth(1)
        .unwrap_or("")
        .chars()
        .take(80)
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect();
    Some(if msg.is_empty() {
        loc
    } else {
        format!("{loc}: {msg}")
    })
}

/// The first frame of our own code (`src/file.rs:line`) in a backtrace on
/// stderr, if there is one (`RUST_BACKTRACE=1`).
fn own_frame(stderr: &str) -> Option<String> {
    let foreign = |p: &str| p.contains("/rustc/") || p.contains("/.cargo/");
    let p = stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("at "))
        .find(|p| !foreign(p) && p.contains("src/"))?;
    let p = &p[p.find("src/").unwrap_or(0)..];
    let p: Vec<&str> = p.rsplitn(2, ':').collect();
    p.last().map(|s| s.to_string())
}

fn signal_name(s: i32) -> &'static str {
    match s {
        libc::SIGABRT => "SIGABRT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGKILL => "SIGKILL",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        _ => "signal",
    }
}

/// Replace digits by `#` (to class writes by their place, not their name).
fn shape_of(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

/// This process's peak RSS (`VmHWM`), bytes; 0 when unknown.
pub fn own_peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb << 10)
}

/// Judge one finished run against the properties (`writes`: the
/// snapshot's violations).
pub fn judge(m: &Measured, writes: &[String], limits: &Limits) -> Vec<Failure> {
    use std::os::unix::process::ExitStatusExt;
    let stderr = String::from_utf8_lossy(&m.output.stderr);
    let tail: String = {
        let s: Vec<char> = stderr.chars().collect();
        s[s.len().saturating_sub(1500)..].iter().collect()
    };
    let mut f = Vec::new();
    let mut fail = |class: String, detail: String| f.push(Failure { class, detail });
    if m.timed_out {
        fail(
            format!("hang (killed after {} s)", limits.timeout.as_secs()),
            tail.clone(),
        );
    } else {
        match (m.output.status.code(), m.output.status.signal()) {
            (Some(0), _) => {}
            (Some(2), _) => {
                if stderr.trim().is_empty() {
                    fail("exit 2 with nothing on stderr".into(), String::new());
                }
            }
            (Some(101), _) => fail(
                format!(
                    "panic (exit 101) at {}",
                    panic_location(&stderr).unwrap_or_else(|| "?".into())
                ),
                tail.clone(),
            ),
            (Some(c), _) => fail(format!("exit {c}"), tail.clone()),
            (None, Some(s)) => {
                let why = if stderr.contains("memory allocation of") {
                    match own_frame(&stderr) {
                        Some(f) => format!(": an allocation over the memory limit (OOM) from {f}"),
                        None => ": an allocation over the memory limit (OOM)".to_string(),
                    }
                } else if let Some(loc) = panic_location(&stderr) {
                    format!(": panic at {loc}")
                } else {
                    String::new()
                };
                fail(
                    format!("killed by {} ({s}){why}", signal_name(s)),
                    tail.clone(),
                );
            }
            (None, None) => fail("no exit status".into(), tail.clone()),
        }
        if matches!(m.output.status.code(), Some(0 | 2)) && stderr.contains("panicked") {
            fail(
                format!(
                    "\"panicked\" in stderr at {}",
                    panic_location(&stderr).unwrap_or_else(|| "?".into())
                ),
                tail.clone(),
            );
        }
    }
    // An allocation refused by the memory limit is the same excess, said
    // once.
    let oom = String::from_utf8_lossy(&m.output.stderr).contains("memory allocation of");
    if m.peak_rss > limits.rss && !oom {
        // A child's ru_maxrss is at least this process's own peak RSS (see
        // `limit_memory`): over the bound, it says nothing of the child.
        let own = own_peak_rss();
        if own >= limits.rss {
            fail(
                format!(
                    "memory not judged: this test process peaked at {} MiB itself",
                    own >> 20
                ),
                String::new(),
            );
        } else {
            fail(
                format!("peak RSS over {} MiB", limits.rss >> 20),
                format!("peak RSS {} MiB", m.peak_rss >> 20),
            );
        }
    }
    if !writes.is_empty() {
        let mut classes: Vec<String> = writes.iter().map(|w| shape_of(w)).collect();
        classes.sort();
        classes.dedup();
        classes.truncate(3);
        fail(
            format!("write outside --out: {}", classes.join("; ")),
            writes.join("\n"),
        );
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn measured(raw_status: i32, stderr: &str, rss_mib: u64, timed_out: bool) -> Measured {
        Measured {
            output: std::process::Output {
                status: std::process::ExitStatus::from_raw(raw_status),
                stdout: Vec::new(),
                stderr: stderr.as_bytes().to_vec(),
            },
            peak_rss: rss_mib << 20,
            timed_out,
        }
    }

    const L: Limits = Limits {
        timeout: Duration::from_secs(20),
        rss: 512 << 20,
    };

    /// Each property can fail: hand-made outcomes of each kind are judged
    /// as what they are, and clean ones pass.
    #[test]
    fn judge_classifies_each_broken_property() {
        let classes = |m: Measured, w: &[String]| -> Vec<String> {
            judge(&m, w, &L).into_iter().map(|f| f.class).collect()
        };
        assert!(classes(measured(0, "", 30, false), &[]).is_empty());
        assert!(
            classes(
                measured(2 << 8, "triage: error: x.npy: bad", 30, false),
                &[]
            )
            .is_empty()
        );
        assert_eq!(
            classes(
                measured(
                    101 << 8,
                    "thread 'main' panicked at src/metrics/boundary_iou.rs:88:21:\nindex out of bounds",
                    30,
                    false
                ),
                &[]
            ),
            ["panic (exit 101) at src/metrics/boundary_iou.rs:88: index out of bounds"]
        );
        assert_eq!(
            classes(
                measured(
                    libc::SIGABRT,
                    "memory allocation of 8 bytes failed\n",
                    30,
                    false
                ),
                &[]
            ),
            ["killed by SIGABRT (6): an allocation over the memory limit (OOM)"]
        );
        assert_eq!(
            classes(measured(libc::SIGSEGV, "", 30, false), &[]),
            ["killed by SIGSEGV (11)"]
        );
        assert_eq!(
            classes(measured(libc::SIGKILL, "", 30, true), &[]),
            ["hang (killed after 20 s)"]
        );
        assert_eq!(classes(measured(1 << 8, "x", 30, false), &[]), ["exit 1"]);
        assert_eq!(
            classes(measured(2 << 8, " \n", 30, false), &[]),
            ["exit 2 with nothing on stderr"]
        );
        assert_eq!(
            classes(measured(0, "", 600, false), &[]),
            ["peak RSS over 512 MiB"]
        );
        assert_eq!(
            classes(
                measured(2 << 8, "thread 'x' panicked at src/a.rs:1:2:\n", 30, false),
                &[]
            ),
            ["\"panicked\" in stderr at src/a.rs:1"]
        );
        let std_panic = "thread 'main' panicked at /rustc/abc/library/core/src/iter/traits/accum.rs:149:1:\n\
                         attempt to multiply with overflow\nstack backtrace:\n   0: x\n             at /rustc/abc/library/core/src/x.rs:1:2\n\
                         12: triage::io::npy::open\n             at /work/x/src/io/npy.rs:63:22\n";
        assert_eq!(
            classes(measured(101 << 8, std_panic, 30, false), &[]),
            [
                "panic (exit 101) at library/core/src/iter/traits/accum.rs:149 (from src/io/npy.rs:63): attempt to multiply with overflow"
            ]
        );
        assert_eq!(
            classes(
                measured(0, "", 30, false),
                &["modified ds/masks/s1.png".into()]
            ),
            ["write outside --out: modified ds/masks/s#.png"]
        );
    }

    /// The snapshot sees every kind of change outside `--out`: a file
    /// rewritten with the same size, one created, one removed, one replaced
    /// by a symlink, a directory created; and inside `--out` it allows
    /// anything but the inputs a `--out` holds.
    #[test]
    fn snapshot_sees_every_change_outside_out() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("l1/l2/l3/l4");
        let ds = base.join("ds");
        let out = base.join("out");
        std::fs::create_dir_all(&ds).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(ds.join("a.csv"), "id\n1\n").unwrap();
        std::fs::write(ds.join("b.csv"), "id\n2\n").unwrap();
        std::fs::write(ds.join("c.csv"), "x").unwrap();
        let mut policy = Policy {
            out: Some(out.clone()),
            protected: vec![ds.clone()],
            ..Policy::default()
        };
        policy.freeze_inputs();
        let before = snapshot(tmp.path());
        // Allowed: outputs inside --out.
        std::fs::write(out.join("queue.csv"), "q").unwrap();
        std::fs::create_dir_all(out.join("overlays")).unwrap();
        assert!(violations(&before, &snapshot(tmp.path()), &policy, &base).is_empty());
        // Same size, other bytes.
        std::fs::write(ds.join("a.csv"), "id\n9\n").unwrap();
        std::fs::remove_file(ds.join("b.csv")).unwrap();
        std::fs::remove_file(ds.join("c.csv")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", ds.join("c.csv")).unwrap();
        std::fs::create_dir_all(base.join("w")).unwrap();
        std::fs::write(tmp.path().join("escaped.png"), "p").unwrap();
        let mut v = violations(&before, &snapshot(tmp.path()), &policy, &base);
        v.sort();
        assert_eq!(
            v,
            [
                "created ROOT/escaped.png",
                "created w",
                "modified ds/a.csv",
                "removed ds/b.csv",
                "replaced ds/c.csv",
            ]
        );
        // --out = the dataset: new files are outputs, the old ones inputs.
        let tmp = tempfile::tempdir().unwrap();
        let ds = tmp.path().join("ds");
        std::fs::create_dir_all(&ds).unwrap();
        std::fs::write(ds.join("queue.csv"), "id,label\n").unwrap();
        let mut policy = Policy {
            out: Some(ds.clone()),
            protected: vec![ds.clone()],
            ..Policy::default()
        };
        policy.freeze_inputs();
        // Planted in --out after the inputs were recorded: not an input.
        std::fs::write(ds.join("report.html"), "old").unwrap();
        let before = snapshot(tmp.path());
        std::fs::write(ds.join("report.json"), "{}").unwrap();
        std::fs::write(ds.join("report.html"), "new").unwrap();
        assert!(violations(&before, &snapshot(tmp.path()), &policy, tmp.path()).is_empty());
        std::fs::write(ds.join("queue.csv"), "id,priority\n").unwrap();
        assert_eq!(
            violations(&before, &snapshot(tmp.path()), &policy, tmp.path()),
            ["modified ds/queue.csv"]
        );
        // A documented write is allowed, the same write undocumented is not.
        let mut p2 = Policy::default();
        assert_eq!(
            violations(&before, &snapshot(tmp.path()), &p2, tmp.path()).len(),
            3
        );
        p2.writable_files = vec![
            ds.join("queue.csv"),
            ds.join("report.json"),
            ds.join("report.html"),
        ];
        assert!(violations(&before, &snapshot(tmp.path()), &p2, tmp.path()).is_empty());
    }
}
