//! The console: a dashboard for operators and site owners at `/` of the admin address,
//! compiled into the binary (one HTML page, one script, one style sheet; no build step, no
//! CDN). The assets hold no data and need no token; the script asks for the token once,
//! keeps it in the tab's session storage and calls the public API with it, like any client.
//! Every value from the API is put on the page as text, never as markup.

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

/// `GET /`.
pub(crate) async fn page() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("console/index.html"),
    )
}

/// `GET /console.js`.
pub(crate) async fn script() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("console/console.js"),
    )
}

/// `GET /console.css`.
pub(crate) async fn style() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("console/console.css"),
    )
}

/// `GET /favicon.svg`: a padlock.
pub(crate) async fn icon() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "image/svg+xml")],
        include_str!("console/favicon.svg"),
    )
}
