//! The Python package's test suite (`python/tests`, pytest) run from
//! `cargo test --release`, the README's test command.
//!
//! It needs a Python with maturin, pytest, numpy and pandas: the venv whose
//! interpreter `TRIAGE_PYTHON` names (`.ci/run` makes one under
//! `target/ci-py-venv`). Without one the test says why and passes as
//! skipped, unless `TRIAGE_REQUIRE_PYTHON=1` (set by `.ci/run` when the venv
//! installed): then it fails.
//!
//! It builds the extension into that venv with `maturin develop` (into
//! `target/python`, a target directory of its own, so it never waits on the
//! lock of the `cargo test` running it) — unless `TRIAGE_PYTHON_PREBUILT=1`
//! says the caller installed it from this tree already (`.ci/run` does, with
//! `maturin develop --release` into `target/` before `cargo test`, sharing
//! the release build's dependencies instead of building them all again in
//! the dev profile) — then runs
//! `python -m pytest python/tests -q` with `TRIAGE_BIN` set to this build's
//! `triage` binary. Any pytest failure fails this test.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `TRIAGE_REQUIRE_PYTHON=1`: a missing Python is a failure, not a skip.
fn required() -> bool {
    std::env::var("TRIAGE_REQUIRE_PYTHON").as_deref() == Ok("1")
}

/// Skip (print why) or, when required, fail.
fn skip(why: &str) {
    assert!(!required(), "TRIAGE_REQUIRE_PYTHON=1 but {why}");
    eprintln!("skipped the Python tests: {why}");
}

/// The venv's interpreter, when it has every package the suite needs.
fn python() -> Result<PathBuf, String> {
    let Some(py) = std::env::var_os("TRIAGE_PYTHON") else {
        return Err(
            "TRIAGE_PYTHON is not set (a venv's python with maturin, pytest, numpy, pandas)".into(),
        );
    };
    let py = PathBuf::from(py);
    let probe = Command::new(&py)
        .args(["-c", "import maturin, pytest, numpy, pandas"])
        .output()
        .map_err(|e| format!("{} does not run: {e}", py.display()))?;
    if !probe.status.success() {
        return Err(format!(
            "{} lacks maturin, pytest, numpy or pandas: {}",
            py.display(),
            String::from_utf8_lossy(&probe.stderr).trim()
        ));
    }
    Ok(py)
}

#[test]
fn python_package_tests() {
    let py = match python() {
        Ok(py) => py,
        Err(why) => return skip(&why),
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv_bin = py
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    // maturin installs into the venv that VIRTUAL_ENV names.
    let venv = venv_bin.parent().unwrap_or(&venv_bin).to_path_buf();
    let path = std::env::join_paths(std::iter::once(venv_bin.clone()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH entries join");
    let prebuilt = std::env::var("TRIAGE_PYTHON_PREBUILT").as_deref() == Ok("1");
    let status = if prebuilt {
        eprintln!("TRIAGE_PYTHON_PREBUILT=1: the extension installed by the caller is tested");
        None
    } else {
        Some(build(&py, root, &venv, &path))
    };
    if let Some(status) = status {
        assert!(status.success(), "maturin develop failed ({status})");
    }
    let status = Command::new(&py)
        .args(["-m", "pytest", "python/tests", "-q", "-rs"])
        .current_dir(root)
        .env("TRIAGE_BIN", env!("CARGO_BIN_EXE_triage"))
        .env("PATH", &path)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .status()
        .expect("pytest runs");
    assert!(status.success(), "the Python tests failed ({status})");
}

/// `maturin develop` of the extension into the venv `venv`, in the dev
/// profile, in `target/python`.
fn build(py: &Path, root: &Path, venv: &Path, path: &std::ffi::OsStr) -> std::process::ExitStatus {
    Command::new(py)
        .args(["-m", "maturin", "develop", "-q", "-m"])
        .arg(root.join("python/Cargo.toml"))
        .current_dir(root)
        .env("CARGO_TARGET_DIR", root.join("target/python"))
        .env("VIRTUAL_ENV", venv)
        .env("PYO3_PYTHON", py)
        .env("PATH", path)
        .status()
        .expect("maturin runs")
}
