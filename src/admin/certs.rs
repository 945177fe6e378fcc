//! `/api/v1/certificates`: the inventory of every certificate in service (source, state,
//! names, validity, days left, last failure) and a forced renewal. Never a private key.

use std::time::SystemTime;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::json;

use super::errors::ErrorCode;
use super::wire::{api_host, validity};
use super::{Api, ApiError};
use crate::certs::CertState;
use crate::sites::Site;

/// One inventory entry.
pub(crate) fn describe(api: &Api, site: &Site) -> serde_json::Value {
    let names: Vec<&str> = site.hosts().iter().map(|h| h.as_str()).collect();
    let record = api.certificates.status(site.hosts());
    let served = site.served_cert();
    let now = SystemTime::now();
    let (state, source) = api.certificates.state(site, record.as_deref(), now);
    let origins: Vec<String> = site
        .config()
        .origins
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut entry = json!({
        "names": names,
        "state": state,
        "source": source,
        "configured": !site.config().registered,
        "origins": origins,
    });
    if let Some(cert) = &served {
        if let (Some(entry), serde_json::Value::Object(validity)) =
            (entry.as_object_mut(), validity(&cert.bundle.info, now))
        {
            entry.extend(validity);
        }
        entry["issuer"] = json!(cert.bundle.chain.issuer());
    }
    if let Some(record) = &record {
        entry["failure"] = json!(record.failure);
        if let Some(recovered) = &record.recovered {
            entry["record_rejected"] = json!(recovered);
        }
        if let Some(replaced) = &record.replaced {
            entry["replaced_upload"] = json!(replaced);
        }
        if let Some(queued) = record
            .queued
            .as_ref()
            .filter(|_| state == CertState::Queued)
        {
            entry["queued"] = json!(queued);
            entry["next_attempt_at"] = json!(queued.next_attempt_at);
        }
    }
    entry
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Upload {
    /// PEM chain, leaf first.
    cert: String,
    /// PEM private key.
    key: String,
}

impl Drop for Upload {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

/// For fuzzing: what `upload` does with a body before it touches any state.
pub(crate) fn check_body(data: &[u8]) {
    let Ok(upload) = serde_json::from_slice::<Upload>(data) else {
        return;
    };
    if let Ok(Some(key)) = crate::certs::PlainKey::from_pem(upload.key.as_bytes()) {
        let _ = crate::certs::CertBundle::from_chain_pem(upload.cert.as_bytes(), &key.as_der());
    }
}

/// Installs an uploaded chain + key for the site its names belong to, after every check a
/// file upload gets (parses, key matches, valid now, covers every name of the site).
pub(crate) async fn upload(
    State(api): State<Api>,
    body: Result<Json<Upload>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(upload) = body?;
    let invalid =
        |e: &dyn std::fmt::Display| ApiError::bad_request(ErrorCode::BadCertificate, e.to_string());
    let key = crate::certs::PlainKey::from_pem(upload.key.as_bytes()).map_err(|e| invalid(&e))?;
    // Without a key, `from_pem` reports the chain's problem first, then the missing key.
    let bundle = match &key {
        Some(key) => {
            crate::certs::CertBundle::from_chain_pem(upload.cert.as_bytes(), &key.as_der())
        }
        None => crate::certs::CertBundle::from_pem(upload.cert.as_bytes(), b""),
    }
    .map_err(|e| invalid(&e))?;
    let key = key.ok_or_else(|| invalid(&crate::certs::CertError::NoKey))?;
    let site = bundle
        .info
        .names
        .iter()
        .find_map(|n| api.table.lookup(Some(n)))
        .ok_or_else(|| {
            let pending = bundle
                .info
                .names
                .iter()
                .find_map(|n| api.onboarding.find(n));
            match pending {
                Some(site) => ApiError::new(
                    StatusCode::CONFLICT,
                    ErrorCode::SiteUnverified,
                    format!(
                        "the site `{}` is not served until its DNS points here ({})",
                        site.hosts.primary(),
                        site.reason.unwrap_or_default()
                    ),
                ),
                None => ApiError::not_found(format!(
                    "no site serves any of {}",
                    bundle.info.names.join(", ")
                )),
            }
        })?;
    bundle
        .check_serves(site.hosts(), SystemTime::now())
        .map_err(|e| invalid(&e))?;
    let installed = api
        .certificates
        .install_upload(&site, upload.cert.clone(), &key, bundle)
        .map_err(|e| ApiError::store(&e))?;
    if !installed {
        return Err(ApiError::not_found(format!(
            "the site `{}` was removed while its upload was checked",
            site.name()
        )));
    }
    api.events.record(
        crate::events::EventKind::CertificateUploaded,
        site.name(),
        "uploaded certificate in service",
    );
    tracing::info!(site = site.name(), "uploaded certificate in service");
    Ok((StatusCode::CREATED, Json(describe(&api, &site))))
}

/// A page of the certificates in service, one per site, in order of the site's first name
/// (see `page.rs`; the cursor is that name).
pub(crate) async fn list(
    State(api): State<Api>,
    query: super::page::PageRequest,
) -> Result<Json<serde_json::Value>, ApiError> {
    let page = super::page::Page::of(query)?;
    let now = SystemTime::now();
    let certificates = &api.certificates;
    let (sites, matching) =
        api.table
            .first_after_matching(page.after.as_deref(), page.ask(), |site| {
                page.configured
                    .is_none_or(|configured| configured != site.config().registered)
                    && page.keeps(
                        || {
                            let record = certificates.status(site.hosts());
                            certificates
                                .state(site, record.as_deref(), now)
                                .0
                                .to_string()
                        },
                        site.hosts().iter().map(|h| h.as_str()),
                    )
            });
    let (sites, next) = page.cut(sites, |s| s.name().to_owned());
    let certs: Vec<_> = sites.iter().map(|s| describe(&api, s)).collect();
    let mut body = json!({
        "certificates": certs,
        "next": next,
        "total": api.table.len(),
    });
    if page.filtered() {
        body["matching"] = json!(matching);
    }
    Ok(Json(body))
}

fn site_for(api: &Api, host: &str) -> Result<std::sync::Arc<Site>, ApiError> {
    let host = api_host(host)?;
    api.table
        .lookup(Some(host.as_str()))
        .ok_or_else(|| ApiError::not_found(format!("no site serves `{host}`")))
}

pub(crate) async fn show(
    State(api): State<Api>,
    Path(host): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let site = site_for(&api, &host)?;
    Ok(Json(describe(&api, &site)))
}

pub(crate) async fn renew(
    State(api): State<Api>,
    Path(host): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let site = site_for(&api, &host)?;
    api.certificates.force_renewal(&site);
    Ok((
        StatusCode::ACCEPTED,
        Json(
            json!({ "names": site.hosts().iter().map(|h| h.as_str()).collect::<Vec<_>>(), "renewal": "requested" }),
        ),
    ))
}
