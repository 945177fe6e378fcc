//! The security headers on every admin response, API and console alike: a Content Security
//! Policy that allows only this origin's own script and style (no inline script, no
//! framing, no form posts elsewhere), `nosniff`, no referrer, no caching. The console keeps
//! its token in the tab's session storage and sends it as a bearer header: there is no
//! cookie, so there is nothing for a cross-site request to ride on.

use axum::http::HeaderValue;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::response::Response;

/// What the console may load: its own script, style and images, and calls to this origin.
pub(crate) const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Adds the headers to `response` (replacing any a handler set).
pub(crate) async fn add(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let fixed: [(_, &'static str); 7] = [
        (CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_VALUE),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (REFERRER_POLICY, "no-referrer"),
        (X_FRAME_OPTIONS, "DENY"),
        (CACHE_CONTROL, "no-store"),
        (
            axum::http::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            axum::http::HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
