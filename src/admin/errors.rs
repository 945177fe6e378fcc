//! API errors: a status and `{"error": <machine code>, "message": <words>}`; also how axum's
//! own extractor rejections (bad JSON, oversize bodies) are turned into that shape.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The machine-readable `error` of a response: a closed set, each spelled on the wire in
/// one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadHost,
    BadOrigin,
    BadPage,
    BadQuery,
    BadCertificate,
    BadJson,
    NotJson,
    BodyTooLarge,
    HostTaken,
    OnboardingOff,
    SiteUnverified,
    NotFound,
    StoreUnavailable,
    Store,
    Internal,
    Unauthorized,
}

impl ErrorCode {
    /// How the code is spelled in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadHost => "bad_host",
            Self::BadOrigin => "bad_origin",
            Self::BadPage => "bad_page",
            Self::BadQuery => "bad_query",
            Self::BadCertificate => "bad_certificate",
            Self::BadJson => "bad_json",
            Self::NotJson => "not_json",
            Self::BodyTooLarge => "body_too_large",
            Self::HostTaken => "host_taken",
            Self::OnboardingOff => "onboarding_off",
            Self::SiteUnverified => "site_unverified",
            Self::NotFound => "not_found",
            Self::StoreUnavailable => "store_unavailable",
            Self::Store => "store",
            Self::Internal => "internal",
            Self::Unauthorized => "unauthorized",
        }
    }
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// 503: the store did not take the change (etcd unreachable); nothing was changed.
    pub fn store(error: &crate::store::StoreError) -> Self {
        if error.is_unavailable() {
            Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::StoreUnavailable,
                format!("{error}; nothing was changed, try again when the store is back"),
            )
        } else {
            Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Store,
                crate::config::error_chain(error),
            )
        }
    }

    /// 500: something inside the edge failed (a worker task panicked); the words say what.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            error.to_string(),
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "send Authorization: Bearer <token> (the token is in data_dir/admin.token)",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({ "error": self.code.as_str(), "message": self.message })),
        )
            .into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::BodyTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::NotJson,
            _ => ErrorCode::BadJson,
        };
        Self::new(status, code, rejection.body_text())
    }
}
