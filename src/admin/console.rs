//! The console: a dashboard for operators and site owners at `/` of the admin address,
//! compiled into the binary (one HTML page, one script, one style sheet; no build step, no
//! CDN). The assets hold no data and need no token; the script asks for the token once,
//! keeps it in the tab's session storage and calls the public API with it, like any client.
//! Every value from the API is put on the page as text, never as markup.

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

/// One compiled-in file with its type.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    ([(CONTENT_TYPE, content_type)], body)
}

/// `GET /`.
pub(crate) async fn page() -> impl IntoResponse {
    asset(
        "text/html; charset=utf-8",
        include_str!("console/index.html"),
    )
}

/// `GET /console.js`.
pub(crate) async fn script() -> impl IntoResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("console/console.js"),
    )
}

/// `GET /console.css`.
pub(crate) async fn style() -> impl IntoResponse {
    asset(
        "text/css; charset=utf-8",
        include_str!("console/console.css"),
    )
}

/// `GET /favicon.svg`: a padlock.
pub(crate) async fn icon() -> impl IntoResponse {
    asset("image/svg+xml", include_str!("console/favicon.svg"))
}
