//! Challenge answers shared across the fleet: the CA may validate through any node the name
//! resolves to, so the node that orders writes each answer to `challenges/<token>` (on its
//! lease) before telling the CA it is ready, and every node serves what it sees there.
//! TLS-ALPN-01 certificates are rebuilt by each node from the key authorization: no key
//! crosses the store.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::Challenges;
use super::challenges::tls_alpn01_cert;
use crate::config::ChallengeKind;
use crate::store::etcd::Change;
use crate::store::{Store, StoreError};

/// One answer as stored.
#[derive(Debug, Serialize, Deserialize)]
struct Shared {
    /// `http-01` or `tls-alpn-01`.
    kind: String,
    name: String,
    token: String,
    key_authorization: String,
}

/// Removes a shared answer when dropped (the order is over).
pub struct SharedGuard {
    store: Arc<Store>,
    key: String,
}

impl Drop for SharedGuard {
    fn drop(&mut self) {
        let store = self.store.clone();
        let key = std::mem::take(&mut self.key);
        tokio::spawn(async move {
            if let Some(etcd) = store.fleet() {
                let _ = etcd.delete_async(&key).await;
            }
        });
    }
}

/// The store key of `token` (tokens are base64url; anything else is refused).
fn key_of(token: &str) -> Option<String> {
    let ok = !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| format!("challenges/{token}"))
}

/// Why an answer could not be shared with the fleet.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("the CA's token is not base64url")]
    BadToken,
    #[error("cannot share the challenge answer with the fleet: {0}")]
    Store(#[source] StoreError),
}

/// Publishes an answer to the fleet; `None` on a single node. Fails when the store cannot
/// take it (the order then fails rather than let the CA find nothing on other nodes).
pub async fn share(
    store: &Arc<Store>,
    kind: ChallengeKind,
    name: &str,
    token: &str,
    key_authorization: &str,
) -> Result<Option<SharedGuard>, ShareError> {
    let Some(etcd) = store.fleet() else {
        return Ok(None);
    };
    let key = key_of(token).ok_or(ShareError::BadToken)?;
    let shared = Shared {
        kind: match kind {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
            ChallengeKind::Dns01 => "dns-01",
        }
        .to_owned(),
        name: name.to_owned(),
        token: token.to_owned(),
        key_authorization: key_authorization.to_owned(),
    };
    // A struct of strings always serialises.
    let json = serde_json::to_vec(&shared).unwrap_or_default();
    etcd.put_leased(&key, &json)
        .await
        .map_err(ShareError::Store)?;
    Ok(Some(SharedGuard {
        store: store.clone(),
        key,
    }))
}

/// Serves the answers other nodes share, for as long as they are in the store.
pub async fn follow(challenges: Arc<Challenges>, mut changes: mpsc::Receiver<Change>) {
    while let Some(change) = changes.recv().await {
        match change {
            Change::Snapshot(entries) => {
                challenges.clear_shared();
                for (_, bytes) in entries {
                    add(&challenges, &bytes);
                }
            }
            Change::Put(_, bytes) => add(&challenges, &bytes),
            Change::Delete(key) => {
                if let Some(token) = key.strip_prefix("challenges/") {
                    challenges.remove_shared(token);
                }
            }
        }
    }
}

fn add(challenges: &Challenges, bytes: &[u8]) {
    let Ok(shared) = serde_json::from_slice::<Shared>(bytes) else {
        tracing::warn!("ignoring an unreadable challenge answer from the store");
        return;
    };
    match shared.kind.as_str() {
        "http-01" => {
            challenges.add_shared_http01(shared.name, shared.token, shared.key_authorization);
        }
        "tls-alpn-01" => {
            let digest = aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                shared.key_authorization.as_bytes(),
            );
            match tls_alpn01_cert(&shared.name, digest.as_ref()) {
                Ok(cert) => challenges.add_shared_tls_alpn01(shared.name, shared.token, cert),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot build a shared TLS-ALPN-01 answer")
                }
            }
        }
        "dns-01" => {
            challenges.add_shared_dns01(shared.name, shared.token, shared.key_authorization)
        }
        other => tracing::warn!(
            kind = other,
            "ignoring a challenge answer of an unknown kind"
        ),
    }
}
