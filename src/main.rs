//! The `triage` binary: parse, run, exit code (0 success, 2 error).

/// mimalloc instead of the system allocator: a run allocates and frees
/// millions of small values (rows, reasons, report records), where glibc's
/// malloc spent about a fifth of a 1M-item run (BENCHMARKS.md "Allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_t` (`mimalloc.h`
/// of libmimalloc-sys 0.1.49, which names no constant for it): how many
/// milliseconds freed memory stays resident before it is returned.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// The purge delay this binary runs with, in milliseconds.
const PURGE_DELAY_MS: std::os::raw::c_long = 10;

fn main() {
    // SAFETY: the first statement of `main`: no other thread has started
    // and nothing else reads or writes the environment yet.
    let runtime = unsafe { triage::backend::gpu::private_runtime_dir() };
    // Freed memory goes back to the OS after 10 ms (mimalloc 2's default).
    // mimalloc 3 keeps it for a second (ten in its arenas), so a run's
    // peak RSS counted memory long freed: a segmentation run 101 MB
    // (73 MB at 10 ms, 62 MB at 0 ms but 8 % slower; glibc's malloc 39 MB),
    // a 200 000 × 1000 classification run 199 MB (143 MB) (BENCHMARKS.md
    // "Allocator").
    // SAFETY: sets a process-wide option; mimalloc reads it atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    let code = triage::cli::main_with_args(std::env::args_os());
    // Removed before exiting (`process::exit` runs no destructors).
    drop(runtime);
    std::process::exit(code);
}
