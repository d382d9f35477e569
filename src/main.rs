#![forbid(unsafe_code)]

mod cli;

// mimalloc (the default `mimalloc` feature): fewer cycles per request than glibc's
// allocator (docs/BENCHMARKS.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
