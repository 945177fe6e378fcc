//! The `onehttps` binary: parse arguments, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: per-thread free lists without glibc's arena locks and heap trimming; measured in
/// `benches/load.sh` and `benches/sites.rs` (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    onehttps::cli::main(onehttps::cli::Cli::parse())
}
