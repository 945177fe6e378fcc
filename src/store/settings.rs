//! The store's own settings: which backend, and for etcd where and how to reach it. The
//! config's `[storage]` section is parsed into these (`config/storage.rs`); the store never
//! reads the config itself.

use std::fmt;
use std::time::Duration;

use zeroize::Zeroizing;

/// Which backend keeps the store (`[storage]`, checked).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StorageSettings {
    /// One file, `server.data_dir/store.redb`.
    #[default]
    Embedded,
    /// One file per entry under `server.data_dir`.
    Fs,
    /// A shared etcd cluster.
    Etcd(Box<EtcdSettings>),
}

/// An etcd cluster shared by a fleet (`[storage] kind = "etcd"`).
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// `http://host:port` of each member; requests go to any that answers.
    pub endpoints: Vec<String>,
    /// Every key of this fleet lives under it (ends with `/`).
    pub prefix: String,
    /// This node's name in the fleet (`GET /api/v1/nodes`, lock holders).
    pub node_id: String,
    /// Optional etcd user and password.
    pub user: Option<(String, String)>,
    /// TLS to the members: set when the endpoints are `https://`.
    pub tls: Option<EtcdTls>,
    /// Longest wait for one store operation before it counts as unavailable.
    pub timeout: Duration,
    /// How long this node's locks outlive it when it dies (its lease's time to live).
    pub lease_ttl: Duration,
}

impl fmt::Debug for EtcdSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdSettings")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("node_id", &self.node_id)
            .field("user", &self.user.as_ref().map(|(user, _)| user))
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .field("lease_ttl", &self.lease_ttl)
            .finish()
    }
}

/// TLS to etcd: the CA its members' certificates chain to and, for mutual TLS, this node's
/// client certificate (PEM, as read from the configured files).
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca_pem: Vec<u8>,
    pub client: Option<ClientIdentity>,
}

/// A client certificate chain and its private key (PEM); the key is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdTls")
            .field("client_certificate", &self.client.is_some())
            .finish_non_exhaustive()
    }
}
