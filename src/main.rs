//! The `onehttps` binary: parse arguments, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    onehttps::cli::main(onehttps::cli::Cli::parse())
}
