//! Watches uploaded certificate files and hands a new pair to the certificate owner when they
//! change. A pair that fails its checks twice in a row (so not merely caught half-written) is
//! refused with an ERROR naming the file and why; the certificate in service stays.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Site, Stamps};
use crate::certs::ServedCert;
use crate::certs::Source;
use crate::config::cert_files;
use crate::config::error_chain;

/// What the watcher last saw of a site's files.
#[derive(Debug)]
pub(crate) struct WatchState {
    /// Stamps whose content is in service, or was refused and logged.
    settled: Stamps,
    /// Stamps that failed once; retried at the next tick before complaining.
    failed_once: Option<Stamps>,
}

impl WatchState {
    pub(crate) fn new(settled: Stamps) -> Self {
        Self {
            settled,
            failed_once: None,
        }
    }
}

/// Polls the certificate files of the sites `with_files` names (asked again at each pass)
/// each `interval` until `cancel`; a changed pair that checks out goes to `install` (the
/// certificate owner swaps it in and tells its subscribers).
pub async fn run(
    with_files: impl Fn() -> Arc<[Arc<Site>]>,
    install: impl Fn(&Site, ServedCert) + Clone + Send + 'static,
    interval: Duration,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let sites = with_files();
        if sites.is_empty() {
            continue;
        }
        // File reads and PEM parsing are blocking work: keep them off the reactor.
        let install = install.clone();
        let pass = move || {
            for site in sites.iter() {
                if let Some(served) = check_site(site) {
                    install(site, served);
                }
            }
        };
        if let Err(e) = tokio::task::spawn_blocking(pass).await {
            tracing::error!(error = %e, "certificate watcher pass panicked");
        }
    }
}

/// The new pair of `site`'s files, when they changed and it checks out.
fn check_site(site: &Site) -> Option<ServedCert> {
    let files = site.cert_files()?;
    let Some(Ok(mut state)) = site.watch.as_ref().map(|w| w.lock()) else {
        return None;
    };
    let current = cert_files::stamps(files);
    if current == state.settled {
        return None;
    }
    match cert_files::load(files, site.hosts()) {
        Ok(bundle) => {
            tracing::info!(
                site = site.name(),
                file = %files.cert.display(),
                serial = %bundle.info.serial,
                not_after = %humantime::format_rfc3339_seconds(bundle.info.not_after),
                "certificate files changed: new certificate in service"
            );
            *state = WatchState::new(current);
            return Some(ServedCert::new(bundle, Source::Uploaded));
        }
        Err(e) if state.failed_once == Some(current) => {
            tracing::error!(
                site = site.name(),
                file = %files.cert.display(),
                reason = %error_chain(&e),
                "refused new certificate files; the previous certificate keeps serving"
            );
            *state = WatchState::new(current);
        }
        Err(_) => state.failed_once = Some(current),
    }
    None
}
