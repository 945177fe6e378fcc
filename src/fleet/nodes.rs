//! The fleet's members: each node writes `nodes/<node_id>` on its lease every third of the
//! lease's time to live (so a dead node disappears by itself), and `GET /api/v1/nodes` lists
//! them. On the fs store the edge is a fleet of one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::Fleet;
use crate::certs::record::unix;
use crate::store::Store;
use crate::tls::SiteTable;

/// One node, as stored and as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    /// Its HTTPS listener.
    pub address: String,
    pub version: String,
    /// Unix seconds.
    pub started: u64,
    pub last_seen: u64,
    /// Sites in its table.
    pub sites: usize,
}

/// What this node says of itself in its heartbeat and in `GET /api/v1/nodes`.
#[derive(Clone)]
pub struct ThisNode {
    pub store: Arc<Store>,
    /// Its HTTPS listener.
    pub https: SocketAddr,
    pub started: SystemTime,
    pub table: Arc<SiteTable>,
}

impl ThisNode {
    /// This node now.
    pub fn info(&self) -> NodeInfo {
        let id = self
            .store
            .fleet()
            .map_or_else(|| "local".to_owned(), |e| e.settings().node_id.clone());
        NodeInfo {
            id,
            address: self.https.to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started: unix(self.started),
            last_seen: unix(SystemTime::now()),
            sites: self.table.len(),
        }
    }
}

/// Every node of the fleet (this one alone on the fs store), by id.
pub fn list(node: &ThisNode) -> Result<Vec<NodeInfo>, crate::store::StoreError> {
    let store = &node.store;
    if store.fleet().is_none() {
        return Ok(vec![node.info()]);
    }
    let mut nodes = Vec::new();
    for node in store.load_json_dir::<NodeInfo>("nodes") {
        match node {
            Ok(node) => nodes.push(node),
            Err(e) if e.is_unavailable() => return Err(e),
            Err(e) => tracing::warn!(error = %e, "skipping an unreadable node entry"),
        }
    }
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(nodes)
}

/// Writes this node's entry until the edge stops.
pub async fn heartbeat(fleet: Arc<Fleet>) {
    let Some(etcd) = fleet.node.store.fleet() else {
        return;
    };
    let every = (etcd.settings().lease_ttl / 3).max(Duration::from_millis(500));
    let key = format!("nodes/{}.json", etcd.settings().node_id);
    loop {
        let info = fleet.node.info();
        if let Ok(json) = serde_json::to_vec(&info)
            && let Err(e) = etcd.put_leased(&key, &json).await
        {
            tracing::debug!(error = %e, "heartbeat not written");
        }
        tokio::select! {
            () = fleet.tasks.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
