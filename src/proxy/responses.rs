//! Responses the edge writes itself: short error pages and redirects.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::ProxyBody;

/// A short HTML page for `status`, with one sentence of `detail`.
pub fn error_page(status: StatusCode, detail: &str) -> Response<ProxyBody> {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1><p>{detail}</p><hr><p>onehttps</p></body></html>\n"
    );
    let mut response = Response::new(full(html));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `308 Permanent Redirect` to `location` (method and body are kept by the client).
pub fn permanent_redirect(location: &str) -> Response<ProxyBody> {
    let mut response = error_page(
        StatusCode::PERMANENT_REDIRECT,
        "This site is served over HTTPS.",
    );
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// A body from bytes in memory.
pub fn full(data: impl Into<Bytes>) -> ProxyBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}
