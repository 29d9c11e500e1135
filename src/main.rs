//! The `triage` binary: parse, run, exit code (0 success, 2 error).

/// mimalloc instead of the system allocator: a run allocates and frees
/// millions of small values (rows, reasons, report records), where glibc's
/// malloc spent about a fifth of a 1M-item run (BENCHMARKS.md "Allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // SAFETY: the first statement of `main`: no other thread has started
    // and nothing else reads or writes the environment yet.
    let runtime = unsafe { triage::backend::gpu::private_runtime_dir() };
    let code = triage::cli::main_with_args(std::env::args_os());
    // Removed before exiting (`process::exit` runs no destructors).
    drop(runtime);
    std::process::exit(code);
}
