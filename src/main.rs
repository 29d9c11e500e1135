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

fn main() {
    // SAFETY: the first statement of `main`: no other thread has started
    // and nothing else reads or writes the environment yet.
    let runtime = unsafe { triage::backend::gpu::private_runtime_dir() };
    // Freed memory goes back to the OS at once. mimalloc 3 keeps it for a
    // second (ten in its arenas) by default, which held a segmentation
    // run at 108 MB of peak RSS (62 MB with this; 39 MB under glibc's
    // malloc) and a 200 000 × 1000 classification run at 210 MB (143 MB),
    // for no measurable time (BENCHMARKS.md "Allocator").
    // SAFETY: sets a process-wide option; mimalloc reads it atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    let code = triage::cli::main_with_args(std::env::args_os());
    // Removed before exiting (`process::exit` runs no destructors).
    drop(runtime);
    std::process::exit(code);
}
