//! The command line: argument parsing and the mapping from outcomes to exit codes
//! (0 ok, 1 runtime failure, 2 usage or config error).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError, error_chain};

/// onehttps: HTTPS in one step — a TLS-terminating edge reverse proxy.
#[derive(Debug, Parser)]
#[command(name = "onehttps", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the edge. Without --config, runs the built-in offline demo (config/demo.toml).
    Run {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a config file (and the certificate files it names), then exit.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The internal CA (certificates for localhost, *.test, *.internal and the demo).
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Print the internal CA's root certificate (PEM), to add to a trust store. Creates the
    /// CA in the data directory if it does not exist yet.
    Root {
        /// The config whose data_dir holds the CA; without it, the demo's.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

pub const EXIT_RUNTIME: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;

/// Runs the parsed command line.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            Ok(c) => {
                println!("{}: ok ({} sites)", config.display(), c.sites.len());
                ExitCode::SUCCESS
            }
            Err(e) => config_failure(&e),
        },
        Command::Ca {
            command: CaCommand::Root { config },
        } => {
            let loaded = match load_or_demo(config.as_deref()) {
                Ok(c) => c,
                Err(e) => return config_failure(&e),
            };
            let ca = crate::store::Store::open(&loaded.server.data_dir)
                .map_err(|e| error_chain(&e))
                .and_then(|store| {
                    crate::issue::internal::InternalCa::load_or_create(&store)
                        .map_err(|e| error_chain(&e))
                });
            match ca {
                Ok(ca) => {
                    print!("{}", ca.root_pem());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
        Command::Run { config } => {
            let loaded = match load_or_demo(config.as_deref()) {
                Ok(c) => c,
                Err(e) => return config_failure(&e),
            };
            crate::logging::init(&loaded.log);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::from(EXIT_RUNTIME);
                }
            };
            match runtime.block_on(crate::edge::run(loaded, config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %error_chain(&e), "onehttps stopped");
                    eprintln!("error: {}", error_chain(&e));
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
    }
}

fn load_or_demo(path: Option<&std::path::Path>) -> Result<Config, ConfigError> {
    match path {
        Some(path) => Config::load(path),
        None => Config::embedded_demo(),
    }
}

fn config_failure(e: &ConfigError) -> ExitCode {
    eprintln!("error: {}", error_chain(e));
    ExitCode::from(EXIT_CONFIG)
}
