//! onehttps: a TLS-terminating edge reverse proxy that gives websites HTTPS in one step.
//!
//! Where things live: `config` (the file, checked), `certs` (certificate model), `tls`
//! (certificate table, resolver, rustls config), `sites` (what is served per host name),
//! `proxy` (request forwarding), `edge` (listeners, connections, reload, shutdown), `store`
//! (persistence: embedded, fs or etcd), `seal` (AEAD under the master key), `fleet` (what nodes sharing etcd learn from each other),
//! `issue` (ACME and the internal CA), `managed` (issuance and renewal
//! per site), `schedule` (the one time-ordered queue of recurring work), `parallel` (start-up passes on every core), `net` (address policy: CIDRs, which addresses tenants may reach), `cli`.

pub mod admin;
pub mod admin_client;
pub mod certs;
pub mod cli;
pub mod config;
pub mod edge;
pub mod events;
pub mod fleet;
#[doc(hidden)]
pub mod fuzzing;
pub mod issue;
pub mod logging;
pub mod managed;
pub mod net;
pub mod net_io;
pub mod onboarding;
pub mod parallel;
pub mod proxy;
pub mod resolver;
pub mod schedule;
pub mod seal;
pub mod served_leaf;
pub mod sites;
pub mod stats;
pub mod store;
pub mod tasks;
pub mod tls;
pub mod worker;
