//! Starting what runs once the edge is built: the accept loops, the certificate file
//! watcher and self-check, the admin API, the ACME DNS zone, the schedulers, the fleet;
//! each handed the handles it uses.

use std::sync::Arc;

use super::*;

impl Edge {
    /// Starts accept loops, the certificate watcher and the welcome origin.
    pub fn start(self: &Arc<Self>, listeners: Listeners) {
        descriptors::ensure(&self.server);
        let interval = self.lock_config().tls.watch_interval;
        let table = self.table.clone();
        let certificates = self.certificates.clone();
        self.tasks.tracker().spawn(crate::sites::watch::run(
            move || table.sites_with_files(),
            move |site, served| certificates.install(site, served),
            interval,
            self.tasks.token().clone(),
        ));
        self.start_acme_dns();
        self.tasks.tracker().spawn(crate::managed::self_check::run(
            self.table.clone(),
            self.server.self_check,
            self.certificates.changes(),
            self.events.clone(),
            self.tasks.token().clone(),
        ));
        for (listener, kind) in [
            (listeners.https, accept::Kind::Https),
            (listeners.http, accept::Kind::Http),
        ] {
            if let Err(e) = accept::start(self, listener, kind) {
                tracing::error!(error = %e, ?kind, "cannot start accepting: connections are not served");
            }
        }
        let edge = self.clone();
        self.tasks.tracker().spawn(async move {
            loop {
                let changes = tokio::select! {
                    () = edge.tasks.token().cancelled() => return,
                    changes = edge.onboarding.served_changed() => changes,
                };
                let publishing = edge.clone();
                let publish = move || {
                    if changes.all {
                        publishing.republish();
                        return;
                    }
                    for (id, hosts) in &changes.sites {
                        publishing.publish_registered(id, hosts);
                    }
                };
                if let Err(e) = tokio::task::spawn_blocking(publish).await {
                    tracing::error!(error = %e, "cannot publish the sites after a verification");
                }
            }
        });
        let webhook = self.lock_config().events.clone();
        if let Some(url) = webhook.webhook {
            let events = self.events.clone();
            let timeout = webhook.webhook_timeout;
            let cancel = self.tasks.token().clone();
            let allow_private = self.allow_private_origins();
            self.tasks.tracker().spawn(async move {
                events.deliver(url, timeout, allow_private, cancel).await;
            });
        }
        match crate::admin::token(&self.server) {
            Ok(token) => {
                self.announce_console(&token);
                self.tasks.tracker().spawn(crate::admin::serve(
                    self.admin_handles(),
                    listeners.admin,
                    token,
                    self.tasks.token().clone(),
                ));
            }
            Err(e) => tracing::error!(error = %e, "admin API off: cannot read or create its token"),
        }
        if let Some(listener) = listeners.welcome {
            self.tasks
                .tracker()
                .spawn(welcome::serve(listener, self.tasks.token().clone()));
        }
        self.tasks.tracker().spawn(
            self.certificates
                .clone()
                .run_scheduler(self.tasks.token().clone()),
        );
        self.tasks.tracker().spawn(
            self.onboarding
                .clone()
                .run_scheduler(self.certificates.changes(), self.tasks.token().clone()),
        );
        crate::fleet::start(Arc::new(self.fleet_handles()));
    }

    /// What this node says of itself (heartbeat, `GET /api/v1/nodes`).
    pub(super) fn this_node(&self) -> crate::fleet::nodes::ThisNode {
        crate::fleet::nodes::ThisNode {
            store: self.certificates.store().clone(),
            https: self.server.https,
            started: self.started,
            table: self.table.clone(),
        }
    }

    /// The handles the admin API works with.
    pub(super) fn admin_handles(self: &Arc<Self>) -> crate::admin::Handles {
        crate::admin::Handles {
            table: self.table.clone(),
            certificates: self.certificates.clone(),
            onboarding: self.onboarding.clone(),
            events: self.events.clone(),
            node: self.this_node(),
            server: self.server.clone(),
            allow_private_origins: self.allow_private_origins(),
            publisher: self.clone(),
        }
    }

    /// The handles the fleet's watches and heartbeat work with.
    pub(super) fn fleet_handles(&self) -> crate::fleet::Fleet {
        crate::fleet::Fleet {
            certificates: self.certificates.clone(),
            challenges: self.challenges.clone(),
            table: self.table.clone(),
            onboarding: self.onboarding.clone(),
            events: self.events.clone(),
            tickets: self.shared_tickets.clone(),
            node: self.this_node(),
            tasks: self.tasks.clone(),
        }
    }

    /// Says where the console is. The built-in demo (no config file, a loopback admin
    /// address) prints its token too, so a newcomer can paste it; a configured edge says
    /// where the token is instead of writing it to the log.
    pub(super) fn announce_console(&self, token: &str) {
        let server = self.server_settings();
        let (admin, generated) = (server.admin, server.admin_token.is_none());
        let demo = self.lock_config().path.is_none();
        let url = format!("http://{admin}/");
        if demo && admin.ip().is_loopback() {
            eprintln!("onehttps console: {url}  (admin token: {token})");
        }
        let token_at = if generated {
            server
                .data_dir
                .join(crate::admin::TOKEN_FILE)
                .display()
                .to_string()
        } else {
            "server.admin_token".to_owned()
        };
        tracing::info!(%url, token = %token_at, "console and admin API listening");
    }

    /// Serves `[onboarding] acme_zone` (DNS-01 answers) when it is set; a port that cannot
    /// be bound is an ERROR and DNS-01 stays off.
    pub(super) fn start_acme_dns(self: &Arc<Self>) {
        let settings = self.lock_config().onboarding.clone();
        let Some(zone) = settings.acme_zone else {
            return;
        };
        let address = settings.acme_dns;
        let bound = std::net::UdpSocket::bind(address)
            .and_then(|udp| Ok((udp, std::net::TcpListener::bind(address)?)))
            .and_then(|(udp, tcp)| {
                udp.set_nonblocking(true)?;
                tcp.set_nonblocking(true)?;
                Ok((
                    tokio::net::UdpSocket::from_std(udp)?,
                    tokio::net::TcpListener::from_std(tcp)?,
                ))
            });
        let (udp, tcp) = match bound {
            Ok(sockets) => sockets,
            Err(e) => {
                tracing::error!(%address, error = %e, "cannot serve the ACME zone's DNS (onboarding.acme_dns): DNS-01 and wildcard sites will fail");
                return;
            }
        };
        let (onboarding, challenges) = (self.onboarding.clone(), self.challenges.clone());
        let zone = Arc::new(crate::onboarding::acme_dns::Zone {
            name: zone.as_str().to_owned(),
            values: move |id: &str| onboarding.dns01_values(id, &challenges),
        });
        tracing::info!(%address, zone = %zone.name, "serving the ACME zone's DNS (DNS-01 answers)");
        self.tasks
            .tracker()
            .spawn(crate::onboarding::acme_dns::serve(
                zone,
                udp,
                tcp,
                self.tasks.token().clone(),
            ));
    }
}
