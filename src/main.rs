//! The `triage` binary: parse, run, exit code (0 success, 2 error).

fn main() {
    std::process::exit(triage::cli::main_with_args(std::env::args_os()));
}
