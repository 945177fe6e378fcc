//! onehttps: a TLS-terminating edge reverse proxy that gives websites HTTPS in one step.
//!
//! Where things live, top to bottom (a module uses only those below it; docs/architecture.md
//! has the table): `cli` and `admin_client` (commands); `edge` (assembles everything:
//! listeners, the connection pipeline, reload, shutdown); `admin` (the API and console) and
//! `fleet` (what nodes sharing etcd learn from each other), each built with the handles it
//! uses; `onboarding` (registered sites and their DNS steps); `managed` (the owner of
//! certificates: records, issuance, renewal, swaps); `tls` (certificate table, resolver,
//! rustls config) and `proxy` (request forwarding); `issue` (ACME and the internal CA);
//! `sites` (what is served per host name); `events`; `config` (the file, checked); `store`
//! (bytes under keys: embedded, fs or etcd) and `certs` (the certificate model); and the
//! leaves: `seal` (AEAD under the master key), `served_leaf` (what certificate an address
//! serves), `resolver` (DNS), `schedule` (the one time-ordered queue of recurring work),
//! `tasks` (background tasks), `worker` (which connection worker runs the code),
//! `parallel` (start-up passes on every core), `net` (address policy), `net_io`, `stats`,
//! `logging`.

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
