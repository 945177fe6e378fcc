//! Sites: what the edge serves for a set of host names — origins, HSTS policy and the
//! certificate currently in service — and how they are built from config and kept fresh.

pub mod gate;
pub mod watch;

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use tokio_util::sync::CancellationToken;

use crate::certs::HostName;
use crate::certs::ServedCert;
use crate::certs::served::KeyCache;
use crate::config::cert_files::{self, FileStamp};
use crate::config::{CertFiles, SiteConfig};
use crate::proxy::OriginPool;
use rustls::sign::CertifiedKey;

/// One site, shared by the table, connections and background tasks.
pub struct Site {
    config: SiteConfig,
    hsts: Option<HeaderValue>,
    origins: OriginPool,
    /// `None` while a managed site waits for its first certificate (handshakes refused).
    cert: ArcSwapOption<ServedCert>,
    /// Only the certificate file watcher touches this; only sites served from files have
    /// one (a million registered sites would carry 150 bytes each for nothing).
    pub(crate) watch: Option<Box<Mutex<watch::WatchState>>>,
    /// Cancelled when a reload removes or replaces the site: its background tasks stop.
    /// Made on first use (a million sites whose work never waits on it carry none).
    retired: std::sync::OnceLock<CancellationToken>,
    /// For onboarded sites: open while DNS points here, so a certificate may be requested.
    gate: Option<gate::Gate>,
    /// Set by a forced renewal (admin API); taken by the next renewal step, which the
    /// scheduler runs at once (`CertManager::force_renewal`).
    renew_forced: std::sync::atomic::AtomicBool,
}

impl Site {
    /// Builds a site from its config, serving `initial` (`None`: no certificate yet).
    pub fn build(
        config: SiteConfig,
        initial: Option<Arc<ServedCert>>,
        origin_down_for: std::time::Duration,
    ) -> Self {
        let stamps = config
            .cert
            .as_deref()
            .and_then(|(files, _)| cert_files::stamps(files));
        Self {
            hsts: config
                .hsts
                .as_deref()
                .and_then(|v| HeaderValue::from_str(v).ok()),
            origins: OriginPool::new(&config.origins, origin_down_for),
            cert: ArcSwapOption::from(initial),
            watch: config
                .cert
                .is_some()
                .then(|| Box::new(Mutex::new(watch::WatchState::new(stamps)))),
            retired: std::sync::OnceLock::new(),
            gate: None,
            renew_forced: std::sync::atomic::AtomicBool::new(false),
            config,
        }
    }

    /// Makes issuance for this site wait for `gate` to be open.
    pub fn with_gate(mut self, gate: gate::Gate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Marks that the next renewal step renews, whatever the window says (the scheduler is
    /// told by `CertManager::force_renewal`).
    pub fn force_renewal(&self) {
        self.renew_forced
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether a renewal was forced and not yet taken (does not clear it).
    pub fn renewal_requested(&self) -> bool {
        self.renew_forced.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether a renewal was forced since the last call (and clears it).
    pub fn take_forced_renewal(&self) -> bool {
        self.renew_forced
            .swap(false, std::sync::atomic::Ordering::SeqCst)
    }

    /// The issuance gate (`None`: always open).
    pub fn gate(&self) -> Option<&gate::Gate> {
        self.gate.as_ref()
    }

    /// Every host name of the site (exact and wildcard).
    pub fn hosts(&self) -> &[HostName] {
        &self.config.hosts
    }

    /// The first host name: the site's name in logs.
    pub fn name(&self) -> &str {
        self.config.name()
    }

    pub fn config(&self) -> &SiteConfig {
        &self.config
    }

    /// Whether `host` (normalised, lowercase) is one of the site's names.
    pub fn covers(&self, host: &str) -> bool {
        self.config.hosts.iter().any(|h| h.covers(host))
    }

    pub fn origins(&self) -> &OriginPool {
        &self.origins
    }

    pub fn hsts(&self) -> Option<&HeaderValue> {
        self.hsts.as_ref()
    }

    /// The decoded key and chain for the next handshake, from `keys` (decoded on a miss);
    /// `None` before the first certificate. No reference count of the site's certificate is
    /// touched unless the key has to be decoded.
    pub fn certified_key(&self, keys: &KeyCache) -> Option<Arc<CertifiedKey>> {
        keys.certified_key(self.cert.load().as_ref()?)
    }

    /// Whether a certificate is in service (no reference count touched).
    pub fn has_cert(&self) -> bool {
        self.cert.load().is_some()
    }

    pub fn served_cert(&self) -> Option<Arc<ServedCert>> {
        self.cert.load_full()
    }

    /// Puts `cert` in service for new handshakes; open connections keep theirs.
    pub fn replace_cert(&self, cert: ServedCert) {
        self.cert.store(Some(Arc::new(cert)));
    }

    /// Puts the certificate in service back in again (the self-check's retry of a swap
    /// clients did not get).
    pub fn reinstall_cert(&self) {
        self.cert.store(self.cert.load_full());
    }

    /// Cancelled once the site is no longer served (a reload removed or replaced it).
    pub fn retired(&self) -> &CancellationToken {
        self.retired.get_or_init(CancellationToken::new)
    }

    /// Whether the site was retired (without making its token).
    pub fn is_retired(&self) -> bool {
        self.retired
            .get()
            .is_some_and(CancellationToken::is_cancelled)
    }

    pub fn retire(&self) {
        self.retired().cancel();
    }

    pub fn cert_files(&self) -> Option<&CertFiles> {
        self.config.cert.as_deref().map(|(files, _)| files)
    }
}

/// `FileStamp` pairs, re-exported for the watcher.
pub(crate) type Stamps = Option<(FileStamp, FileStamp)>;
