//! The CLI's side of the admin API: finds the address and token from the config (or the data
//! directory's `admin.token`), sends one request, and prints a table for humans or the JSON
//! for scripts.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::Config;

/// Longest wait for the edge to answer.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response read.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Why a CLI request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot read the admin token {path} (is the edge running with this config? or set server.admin_token)"
    )]
    Token {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach the edge's admin API at {addr}: {reason} (is `onehttps run` running?)")]
    Unreachable { addr: String, reason: String },
    #[error("{message} ({error}, HTTP {status})")]
    Api {
        status: StatusCode,
        error: String,
        message: String,
    },
}

/// One request to the admin API of the edge configured by `config`.
/// Every page of the list at `path` (`GET`, following each page's `next`): one JSON object
/// with all the items under `field` and the `total`.
pub fn call_all_pages(
    config: &Config,
    path: &str,
    field: &str,
) -> Result<serde_json::Value, ClientError> {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page_path = match &after {
            Some(cursor) => format!("{path}?after={cursor}"),
            None => path.to_owned(),
        };
        let mut page = call(config, Method::GET, &page_path, None)?;
        if let Some(serde_json::Value::Array(part)) =
            page.get_mut(field).map(serde_json::Value::take)
        {
            items.extend(part);
        }
        match page["next"].as_str() {
            Some(next) if after.as_deref() != Some(next) => after = Some(next.to_owned()),
            _ => return Ok(serde_json::json!({ field: items, "total": page["total"] })),
        }
    }
}

pub fn call(
    config: &Config,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, ClientError> {
    let token = match &config.server.admin_token {
        Some(token) => token.clone(),
        None => {
            let path = config.server.data_dir.join(crate::admin::TOKEN_FILE);
            std::fs::read_to_string(&path)
                .map_err(|source| ClientError::Token {
                    path: path.display().to_string(),
                    source,
                })?
                .trim()
                .to_owned()
        }
    };
    let addr = config.server.admin;
    let unreachable = |reason: String| ClientError::Unreachable {
        addr: addr.to_string(),
        reason,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    runtime.block_on(async {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| unreachable(e.to_string()))?;
        let response = tokio::time::timeout(TIMEOUT, client.request(request))
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        let value: serde_json::Value = if body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&body).into_owned())
            })
        };
        if status.is_success() {
            Ok(value)
        } else {
            Err(ClientError::Api {
                status,
                error: value["error"].as_str().unwrap_or("error").to_owned(),
                message: value["message"]
                    .as_str()
                    .unwrap_or("the edge refused the request")
                    .to_owned(),
            })
        }
    })
}

/// A JSON array of strings as `a,b,c` (empty for anything else).
pub fn joined(list: &serde_json::Value) -> String {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(serde_json::Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// A plain-text table of `rows` under `headers`.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.len());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(headers.to_vec()) + "\n";
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}
