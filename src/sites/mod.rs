//! Sites: what the edge serves for a set of host names — origins, HSTS policy and the
//! certificate currently in service — and how they are built from config and kept fresh.

pub mod cert_files;
pub mod watch;

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use http::HeaderValue;
use rustls::sign::CertifiedKey;

use crate::certs::{CertBundle, HostName};
use crate::config::{CertFiles, SiteConfig};
use crate::proxy::OriginPool;
use cert_files::{CertFileError, FileStamp};

/// Where the certificate in service came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertSource {
    /// PEM files named in the site's config (watched for changes).
    Uploaded,
    /// Generated locally for the demo; no issuer exists for the site yet.
    SelfSigned,
}

/// A certificate in service and where it came from.
#[derive(Debug)]
pub struct ServedCert {
    pub bundle: CertBundle,
    pub source: CertSource,
}

/// One site, shared by the table, connections and background tasks.
pub struct Site {
    config: SiteConfig,
    hsts: Option<HeaderValue>,
    origins: OriginPool,
    cert: ArcSwap<ServedCert>,
    /// Only the certificate file watcher touches this.
    pub(crate) watch: Mutex<watch::WatchState>,
}

impl Site {
    /// Builds a site from its config; without certificate files it gets the demo's
    /// self-signed pair from `data_dir`.
    pub fn build(
        config: SiteConfig,
        data_dir: &std::path::Path,
        origin_down_for: std::time::Duration,
    ) -> Result<Self, CertFileError> {
        let served = match &config.cert {
            Some((_, bundle)) => ServedCert {
                bundle: bundle.clone(),
                source: CertSource::Uploaded,
            },
            None => ServedCert {
                bundle: cert_files::self_signed(data_dir, &config.hosts)?,
                source: CertSource::SelfSigned,
            },
        };
        let stamps = config
            .cert
            .as_ref()
            .and_then(|(files, _)| cert_files::stamps(files));
        Ok(Self {
            hsts: config
                .hsts
                .as_deref()
                .and_then(|v| HeaderValue::from_str(v).ok()),
            origins: OriginPool::new(&config.origins, origin_down_for),
            cert: ArcSwap::from_pointee(served),
            watch: Mutex::new(watch::WatchState::new(stamps)),
            config,
        })
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

    /// The key and chain for the next handshake.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.cert.load().bundle.certified.clone()
    }

    pub fn served_cert(&self) -> Arc<ServedCert> {
        self.cert.load_full()
    }

    /// Puts `cert` in service for new handshakes; open connections keep theirs.
    pub fn replace_cert(&self, cert: ServedCert) {
        self.cert.store(Arc::new(cert));
    }

    pub fn cert_files(&self) -> Option<&CertFiles> {
        self.config.cert.as_ref().map(|(files, _)| files)
    }
}

/// `FileStamp` pairs, re-exported for the watcher.
pub(crate) type Stamps = Option<(FileStamp, FileStamp)>;
