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
    /// Sites onboarded through the running edge (by CNAME).
    Site {
        #[command(subcommand)]
        command: SiteCommand,
        #[command(flatten)]
        target: Target,
    },
    /// The certificate inventory of the running edge. Never prints a private key.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
        #[command(flatten)]
        target: Target,
    },
    /// The nodes of the fleet the running edge belongs to (itself alone on the fs store).
    Node {
        #[command(subcommand)]
        command: NodeCommand,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Every live node: id, address, version, last seen, sites served.
    List,
}

/// Which edge a site/cert command talks to, and how it prints.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The config of the running edge (admin address, data_dir); without it, the demo's.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// Register a site; prints the CNAME target to create.
    Add {
        /// Host name(s) of the site.
        #[arg(required = true)]
        hosts: Vec<String>,
        /// Origin URL (http://host:port); repeat for several.
        #[arg(long = "origin", required = true)]
        origins: Vec<String>,
    },
    /// List registered sites and their status.
    List,
    /// One site's status and next step.
    Show { host: String },
    /// Remove a site: renewal stops and its key is deleted.
    Remove { host: String },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Every certificate in service: source, state, expiry.
    List,
    /// One certificate.
    Show { host: String },
    /// Renew now.
    Renew { host: String },
    /// Install a certificate for the site its names belong to (validated by the edge).
    Upload {
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
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
            let ca = crate::store::Store::open_with(&loaded.storage, &loaded.server.data_dir)
                .map_err(|e| error_chain(&e))
                .and_then(|store| {
                    crate::issue::internal::InternalCa::load_or_create(
                        &store,
                        &loaded.internal_names,
                    )
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
        Command::Site { command, target } => {
            admin_command(&target, |config| site_command(config, command, target.json))
        }
        Command::Cert { command, target } => {
            admin_command(&target, |config| cert_command(config, command, target.json))
        }
        Command::Node {
            command: NodeCommand::List,
            target,
        } => admin_command(&target, |config| node_list(config, target.json)),
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
                Err(e @ crate::edge::EdgeError::Registered(_)) => {
                    eprintln!("error: {}", error_chain(&e));
                    ExitCode::from(EXIT_CONFIG)
                }
                Err(e) => {
                    tracing::error!(error = %error_chain(&e), "onehttps stopped");
                    eprintln!("error: {}", error_chain(&e));
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
    }
}

/// Runs a command against the admin API; prints what it returns, maps errors to exit codes.
fn admin_command(
    target: &Target,
    run: impl FnOnce(&Config) -> Result<String, crate::admin_client::ClientError>,
) -> ExitCode {
    let config = match load_or_demo(target.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return config_failure(&e),
    };
    match run(&config) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(crate::admin_client::ClientError::Api {
            status,
            error,
            message,
        }) if status.is_client_error() => {
            eprintln!("error: {message} ({error})");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn site_command(
    config: &Config,
    command: SiteCommand,
    json: bool,
) -> Result<String, crate::admin_client::ClientError> {
    use crate::admin_client::{call, table};
    use http::Method;
    let path = |host: &str| format!("/api/v1/sites/{host}");
    let value = match &command {
        SiteCommand::Add { hosts, origins } => call(
            config,
            Method::POST,
            "/api/v1/sites",
            Some(serde_json::json!({ "hosts": hosts, "origins": origins })),
        )?,
        SiteCommand::List => crate::admin_client::call_all_pages(config, "/api/v1/sites", "sites")?,
        SiteCommand::Show { host } => call(config, Method::GET, &path(host), None)?,
        SiteCommand::Remove { host } => call(config, Method::DELETE, &path(host), None)?,
    };
    if json {
        return Ok(format!("{value:#}\n"));
    }
    let row = |s: &serde_json::Value| {
        vec![
            crate::admin_client::joined(&s["hosts"]),
            s["status"].as_str().unwrap_or("").to_owned(),
            s["cname_target"].as_str().unwrap_or("").to_owned(),
            s["reason"].as_str().unwrap_or("").to_owned(),
        ]
    };
    const HEAD: [&str; 4] = ["HOSTS", "STATUS", "CNAME TARGET", "REASON"];
    Ok(match command {
        SiteCommand::Add { hosts, .. } => format!(
            "Site added: {}\n\nNext step: at your DNS provider, create\n\n    {} CNAME {}\n\nonehttps checks DNS by itself; once the CNAME is seen it obtains a certificate\nand serves the site over HTTPS. Follow it with: onehttps site show {}\n",
            hosts.join(", "),
            hosts.first().map_or("", String::as_str),
            value["cname_target"].as_str().unwrap_or("?"),
            hosts.first().map_or("", String::as_str),
        ),
        SiteCommand::List => table(
            &HEAD,
            &value["sites"]
                .as_array()
                .map(|a| a.iter().map(row).collect::<Vec<_>>())
                .unwrap_or_default(),
        ),
        SiteCommand::Show { .. } => {
            table(&HEAD, &[row(&value)])
                + &format!(
                    "\nnext step: {}\n",
                    value["next_step"].as_str().unwrap_or("")
                )
        }
        SiteCommand::Remove { host } => {
            format!("Site {host} removed: renewal stopped, key deleted.\n")
        }
    })
}

fn cert_command(
    config: &Config,
    command: CertCommand,
    json: bool,
) -> Result<String, crate::admin_client::ClientError> {
    use crate::admin_client::{call, table};
    use http::Method;
    let value = match &command {
        CertCommand::List => {
            crate::admin_client::call_all_pages(config, "/api/v1/certificates", "certificates")?
        }
        CertCommand::Show { host } => call(
            config,
            Method::GET,
            &format!("/api/v1/certificates/{host}"),
            None,
        )?,
        CertCommand::Renew { host } => call(
            config,
            Method::POST,
            &format!("/api/v1/certificates/{host}/renew"),
            None,
        )?,
        CertCommand::Upload { cert, key } => {
            let read = |p: &std::path::Path| {
                std::fs::read_to_string(p).map_err(|e| crate::admin_client::ClientError::Api {
                    status: http::StatusCode::BAD_REQUEST,
                    error: "unreadable_file".into(),
                    message: format!("cannot read {}: {e}", p.display()),
                })
            };
            let body = serde_json::json!({ "cert": read(cert)?, "key": read(key)? });
            call(config, Method::POST, "/api/v1/certificates", Some(body))?
        }
    };
    if json {
        return Ok(format!("{value:#}\n"));
    }
    let row = |c: &serde_json::Value| {
        vec![
            crate::admin_client::joined(&c["names"]),
            c["source"].as_str().unwrap_or("-").to_owned(),
            c["state"].as_str().unwrap_or("").to_owned(),
            c["not_after"].as_str().unwrap_or("-").to_owned(),
            c["days_left"]
                .as_f64()
                .map_or("-".into(), |d| format!("{d:.1}")),
        ]
    };
    const HEAD: [&str; 5] = ["NAMES", "SOURCE", "STATE", "NOT AFTER", "DAYS LEFT"];
    Ok(match command {
        CertCommand::List => table(
            &HEAD,
            &value["certificates"]
                .as_array()
                .map(|a| a.iter().map(row).collect::<Vec<_>>())
                .unwrap_or_default(),
        ),
        CertCommand::Show { .. } | CertCommand::Upload { .. } => table(&HEAD, &[row(&value)]),
        CertCommand::Renew { host } => format!("Renewal of {host} requested.\n"),
    })
}

fn node_list(config: &Config, json: bool) -> Result<String, crate::admin_client::ClientError> {
    use crate::admin_client::{call, table};
    let value = call(config, http::Method::GET, "/api/v1/nodes", None)?;
    if json {
        return Ok(format!("{value:#}\n"));
    }
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = value["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .map(|n| {
                    vec![
                        text(&n["id"]),
                        text(&n["address"]),
                        text(&n["version"]),
                        text(&n["last_seen_ago_s"]),
                        text(&n["sites"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(table(
        &["NODE", "ADDRESS", "VERSION", "LAST SEEN (S AGO)", "SITES"],
        &rows,
    ))
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
