#![forbid(unsafe_code)]

mod cli;

// mimalloc: fewer cycles per request than glibc's allocator under many small
// allocations (docs/BENCHMARKS.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
