//! `/api/v1/sites` and `/api/v1/events`: register a site (validated, normalised, nothing
//! stored on any error), list, show, remove (stops renewal and deletes the key).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::errors::ErrorCode;
use super::wire::{api_host, validity};
use super::{Api, ApiError};
use crate::certs::HostName;
use crate::config::OriginUrl;
use crate::onboarding::policy::check_origin;
use crate::onboarding::{AddError, SiteRecord};

/// Most names one site may have.
const MAX_HOSTS: usize = 100;
/// Most origins one site may have.
const MAX_ORIGINS: usize = 16;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewSite {
    hosts: Vec<String>,
    origins: Vec<String>,
}

/// For fuzzing: what `create` does with a body before it touches any state.
pub(crate) fn check_body(data: &[u8]) {
    let Ok(new) = serde_json::from_slice::<NewSite>(data) else {
        return;
    };
    for host in &new.hosts {
        let _ = api_host(host);
    }
    let own: [std::net::SocketAddr; 1] = [std::net::SocketAddr::from(([127, 0, 0, 1], 9180))];
    for origin in &new.origins {
        if let Ok(origin) = OriginUrl::parse(origin) {
            let _ = check_origin(&origin, false, &own);
        }
    }
}

fn describe(api: &Api, record: &SiteRecord) -> serde_json::Value {
    let mut value = serde_json::to_value(record).unwrap_or_default();
    let acme_record = api.onboarding.dns01_record(record);
    if let Some(object) = value.as_object_mut() {
        object.remove("next_check");
        if let Some(certificate) = served_certificate(api, record) {
            object.insert("certificate".into(), certificate);
        }
        if let Some((name, target)) = &acme_record {
            object.insert(
                "acme_challenge_cname".into(),
                json!({ "name": name, "target": target }),
            );
        }
        object.insert(
            "next_step".into(),
            json!(match record.status {
                crate::onboarding::SiteStatus::PendingDns => match acme_record {
                    Some((name, target)) => format!(
                        "create the DNS records `{} CNAME {}` (traffic) and `{name} CNAME {target}` (certificates, over DNS-01)",
                        record.hosts.primary(), record.cname_target
                    ),
                    None => format!(
                        "create the DNS record `{} CNAME {}` (apex names: A/AAAA to the edge and TXT `_onehttps.{}` = `{}`{})",
                        record.hosts.primary(),
                        record.cname_target,
                        record.hosts.primary(),
                        record.txt_token,
                        api
                            .onboarding
                            .delegation_target(record)
                            .map(|target| format!(
                                ", or instead of the TXT `_acme-challenge.{} CNAME {target}`",
                                record.hosts.primary()
                            ))
                            .unwrap_or_default()
                    ),
                },
                crate::onboarding::SiteStatus::Active => "nothing: the site is served over HTTPS".into(),
                crate::onboarding::SiteStatus::Queued => "wait: the CA's limits hold the order back (see reason); it is placed by itself at next_attempt_at".into(),
                _ => "wait: onehttps is working on it".into(),
            }),
        );
    }
    value
}

/// The certificate a registered site is served with: serial, validity, days left.
fn served_certificate(api: &Api, record: &SiteRecord) -> Option<serde_json::Value> {
    let site = api.table.lookup(Some(record.hosts.first()?))?;
    if site.hosts().first().map(|h| h.as_str()) != record.hosts.first().map(String::as_str) {
        return None;
    }
    let cert = site.served_cert()?;
    Some(validity(&cert.bundle.info, std::time::SystemTime::now()))
}

pub(crate) async fn create(
    State(api): State<Api>,
    body: Result<Json<NewSite>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(new) = body?;
    if new.hosts.is_empty() || new.hosts.len() > MAX_HOSTS {
        return Err(ApiError::bad_request(
            ErrorCode::BadHost,
            format!("give 1 to {MAX_HOSTS} host names"),
        ));
    }
    if new.origins.is_empty() || new.origins.len() > MAX_ORIGINS {
        return Err(ApiError::bad_request(
            ErrorCode::BadOrigin,
            format!("give 1 to {MAX_ORIGINS} origins"),
        ));
    }
    let mut hosts: Vec<HostName> = Vec::new();
    for raw in &new.hosts {
        let host = api_host(raw)?;
        if host.is_wildcard() && !api.onboarding.answers_dns01() {
            return Err(ApiError::bad_request(
                ErrorCode::BadHost,
                format!(
                    "`{raw}`: wildcard names are validated over DNS-01, which this edge does not answer: the operator must set [onboarding] acme_zone (or upload a wildcard certificate)"
                ),
            ));
        }
        if hosts.contains(&host) {
            return Err(ApiError::bad_request(
                ErrorCode::BadHost,
                format!("`{host}` is listed twice"),
            ));
        }
        hosts.push(host);
    }
    let server = &api.server;
    let own = [server.https, server.http, server.admin];
    let allow_private = api.allow_private_origins;
    let origins = new
        .origins
        .iter()
        .map(|o| {
            let origin = OriginUrl::parse(o)?;
            check_origin(&origin, allow_private, &own)?;
            Ok(origin)
        })
        .collect::<Result<Vec<_>, crate::onboarding::policy::OriginRefused>>()
        .map_err(|e| ApiError::bad_request(ErrorCode::BadOrigin, e.to_string()))?;
    let table = api.table.clone();
    let record = api
        .onboarding
        .add(&hosts, &origins, |h| {
            table
                .lookup(Some(h.as_str()))
                .map(|site| site.name().to_owned())
        })
        .map_err(|e| match e {
            AddError::Taken { .. } => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::HostTaken, e.to_string())
            }
            AddError::OwnZone { .. } => ApiError::bad_request(ErrorCode::BadHost, e.to_string()),
            AddError::Disabled => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::OnboardingOff,
                e.to_string(),
            ),
            AddError::Store(store) => ApiError::store(&store),
            AddError::Id(_) | AddError::NoHosts => ApiError::internal(e),
        })?;
    // Not served until its DNS is verified: only its DNS checks start.
    let publisher = api.publisher.clone();
    let (id, names) = (record.id.clone(), record.hosts.clone());
    tokio::task::spawn_blocking(move || publisher.publish_registered(&id, &names))
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(site = %record.hosts.primary(), target = %record.cname_target, "site added");
    Ok((StatusCode::CREATED, Json(describe(&api, &record))))
}

/// A page of the registered sites, in id order (see `page.rs`).
pub(crate) async fn list(
    State(api): State<Api>,
    query: super::page::PageRequest,
) -> Result<Json<serde_json::Value>, ApiError> {
    let page = super::page::Page::of(query)?;
    if page.configured.is_some() {
        return Err(ApiError::bad_request(
            ErrorCode::BadPage,
            "kind applies to /api/v1/certificates; /api/v1/sites lists the registered sites only",
        ));
    }
    let onboarding = &api.onboarding;
    let (records, total, matching) = if page.filtered() {
        let (records, matching) =
            onboarding.page_matching(page.after.as_deref(), page.ask(), |record| {
                page.keeps(
                    || record.status.to_string(),
                    record.hosts.iter().map(String::as_str),
                )
            });
        (records, onboarding.site_count(), Some(matching))
    } else {
        let (records, total) = onboarding.page(page.after.as_deref(), page.ask());
        (records, total, None)
    };
    let (records, next) = page.cut(records, |r| r.id.clone());
    let latest = latest_events(&api);
    let sites: Vec<_> = records
        .iter()
        .map(|r| {
            let mut site = describe(&api, r);
            if let Some(event) = latest.get(r.hosts.primary()) {
                site["last_event"] = json!(event);
            }
            site
        })
        .collect();
    let mut body = json!({ "sites": sites, "next": next, "total": total });
    if let Some(matching) = matching {
        body["matching"] = json!(matching);
    }
    Ok(Json(body))
}

/// The newest event of each subject in the log (a page of sites shows each one's).
fn latest_events(api: &Api) -> std::collections::HashMap<String, crate::events::Event> {
    let mut latest = std::collections::HashMap::new();
    for event in api.events.since(0) {
        latest.insert(event.subject.clone(), event);
    }
    latest
}

fn find(api: &Api, host: &str) -> Result<SiteRecord, ApiError> {
    let host = api_host(host)?;
    api.onboarding
        .find(host.as_str())
        .ok_or_else(|| ApiError::not_found(format!("no registered site has the name `{host}`")))
}

pub(crate) async fn show(
    State(api): State<Api>,
    Path(host): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(describe(&api, &find(&api, &host)?)))
}

pub(crate) async fn remove(
    State(api): State<Api>,
    Path(host): Path<String>,
) -> Result<StatusCode, ApiError> {
    let record = find(&api, &host)?;
    api.onboarding
        .remove(&record.id)
        .map_err(|e| ApiError::store(&e))?;
    let (publisher, certificates) = (api.publisher.clone(), api.certificates.clone());
    let hosts: Vec<HostName> = record
        .hosts
        .iter()
        .filter_map(|h| HostName::parse(h).ok())
        .collect();
    let (id, names) = (record.id.clone(), record.hosts.clone());
    tokio::task::spawn_blocking(move || {
        // Publishing without it forgets a served site (record and key deleted); one never
        // verified was not served, but may have a record from an earlier life.
        publisher.publish_registered(&id, &names);
        if let Err(e) = certificates.records().remove(&hosts) {
            tracing::error!(error = %e, "cannot delete the removed site's certificate");
        }
    })
    .await
    .map_err(ApiError::internal)?;
    tracing::info!(site = %record.hosts.primary(), "site removed");
    Ok(StatusCode::NO_CONTENT)
}

/// The longest `GET /api/v1/events?wait=` holds a request open.
const MAX_EVENT_WAIT_SECONDS: u64 = 25;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Since {
    #[serde(default)]
    since: u64,
    /// Seconds to wait for the first event after `since` when there is none yet (a long
    /// poll: the console follows the log with it).
    #[serde(default)]
    wait: u64,
}

/// The events after `since` (a long poll with `wait`), and webhook delivery's state.
pub(crate) async fn events(
    State(api): State<Api>,
    since: Result<Query<Since>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(since) =
        since.map_err(|e| ApiError::bad_request(ErrorCode::BadQuery, e.body_text()))?;
    if since.wait > MAX_EVENT_WAIT_SECONDS {
        return Err(ApiError::bad_request(
            ErrorCode::BadQuery,
            format!(
                "wait is at most {MAX_EVENT_WAIT_SECONDS} seconds, not {}",
                since.wait
            ),
        ));
    }
    let events = if since.wait == 0 {
        api.events.since(since.since)
    } else {
        let wait = std::time::Duration::from_secs(since.wait);
        api.events.wait_since(since.since, wait).await
    };
    Ok(Json(json!({
        "events": events,
        "webhook": api.events.webhook_state(),
    })))
}
