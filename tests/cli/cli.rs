//! The command line: `--help` on every command, exit codes for usage errors.

use crate::common::*;

fn stdout(args: &[&str]) -> String {
    let o = triage(args);
    assert_eq!(o.status.code(), Some(0), "{}", describe(args, &o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn help_on_every_command() {
    let top = stdout(&["--help"]);
    assert!(top.contains("run") && top.contains("synth"), "{top}");
    let run = stdout(&["run", "--help"]);
    for flag in [
        "--out",
        "--backend",
        "--batch-size",
        "--top",
        "--logits",
        "cpu",
        "gpu",
        "auto",
    ] {
        assert!(run.contains(flag), "`run --help` lacks {flag}:\n{run}");
    }
    let synth = stdout(&["synth", "--help"]);
    for flag in [
        "--out",
        "--items",
        "--size",
        "--classes",
        "--dtype",
        "--seed",
        "f16",
        "f32",
    ] {
        assert!(
            synth.contains(flag),
            "`synth --help` lacks {flag}:\n{synth}"
        );
    }
    assert!(stdout(&["--version"]).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["run"][..],
        &["run", "x", "--out"][..],
        &["run", "x", "--out", "y", "--backend", "tpu"][..],
        &["synth", "--out", "y", "--size", "64"][..],
        &["frobnicate"][..],
    ] {
        let o = triage(args);
        assert_eq!(o.status.code(), Some(2), "{}", describe(args, &o));
        assert!(
            !o.stderr.is_empty(),
            "an error message on stderr for {args:?}"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let o = triage(&[
        "run",
        "datasets/demo",
        "--out",
        out.to_str().unwrap(),
        "--batch-size",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--batch-size"));
    assert!(!out.exists(), "a usage error writes nothing");
}
