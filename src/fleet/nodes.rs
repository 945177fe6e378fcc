//! The fleet's members: each node writes `nodes/<node_id>` on its lease every third of the
//! lease's time to live (so a dead node disappears by itself), and `GET /api/v1/nodes` lists
//! them. On the fs store the edge is a fleet of one.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::certs::record::unix;
use crate::edge::Edge;

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

impl NodeInfo {
    /// This node now.
    pub fn current(edge: &Edge) -> Self {
        let id = edge
            .certificates
            .store()
            .fleet()
            .map_or_else(|| "local".to_owned(), |e| e.settings().node_id.clone());
        Self {
            id,
            address: edge.server_settings().https.to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started: unix(edge.started()),
            last_seen: unix(SystemTime::now()),
            sites: edge.table.len(),
        }
    }
}

/// Every node of the fleet (this one alone on the fs store), by id.
pub fn list(edge: &Edge) -> Result<Vec<NodeInfo>, crate::store::StoreError> {
    let store = edge.certificates.store();
    if store.fleet().is_none() {
        return Ok(vec![NodeInfo::current(edge)]);
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
pub async fn heartbeat(edge: Arc<Edge>) {
    let Some(etcd) = edge.certificates.store().fleet() else {
        return;
    };
    let every = (etcd.settings().lease_ttl / 3).max(Duration::from_millis(500));
    let key = format!("nodes/{}.json", etcd.settings().node_id);
    loop {
        let info = NodeInfo::current(&edge);
        if let Ok(json) = serde_json::to_vec(&info)
            && let Err(e) = etcd.put_leased(&key, &json).await
        {
            tracing::debug!(error = %e, "heartbeat not written");
        }
        tokio::select! {
            () = edge.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
