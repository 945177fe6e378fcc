//! Origin URLs (`http://host:port`, nothing else) and the webhook URL, parsed into checked
//! types with an error that says what is wrong with the text.

use super::*;

/// A plain-HTTP origin: `http://host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginUrl {
    pub authority: http::uri::Authority,
}

/// Why a text is not an origin URL: the text, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("`{raw}` {why}")]
pub struct OriginUrlError {
    pub raw: String,
    pub why: OriginUrlProblem,
}

/// What is wrong with an origin URL.
#[derive(Debug, thiserror::Error)]
pub enum OriginUrlProblem {
    #[error("must not have a fragment")]
    Fragment,
    #[error("is not a URL: {0}")]
    NotAUrl(http::uri::InvalidUri),
    #[error("must start with http:// (origins are reached over plain HTTP)")]
    NotHttp,
    #[error("must not have a path or query: requests keep their own path")]
    Path,
    #[error("has no host")]
    NoHost,
    #[error("must not carry credentials")]
    Credentials,
    #[error("has a port outside 1-65535")]
    Port,
}

/// Why a webhook URL is refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookUrlError {
    #[error("`{0}` is not an http:// URL")]
    NotHttp(String),
    #[error("webhook {0}")]
    Origin(OriginUrlError),
    #[error("`{0}` must not have a fragment")]
    Fragment(String),
    #[error("`{raw}` is {why}: set onboarding.allow_private_origins = true to send events there")]
    NotPublic { raw: String, why: &'static str },
}

/// The webhook: an `http://host:port/path` URL (no fragment, no credentials, a valid port);
/// a private, loopback or link-local IP only with `onboarding.allow_private_origins`.
pub(super) fn webhook_url(
    raw: &str,
    onboarding: &OnboardingSettings,
) -> Result<http::Uri, WebhookUrlError> {
    let uri: http::Uri = raw
        .parse()
        .ok()
        .filter(|u: &http::Uri| u.scheme_str() == Some("http"))
        .ok_or_else(|| WebhookUrlError::NotHttp(raw.to_owned()))?;
    let origin = OriginUrl::parse(&format!(
        "http://{}",
        uri.authority().map_or("", http::uri::Authority::as_str)
    ))
    .map_err(WebhookUrlError::Origin)?;
    if raw.contains('#') {
        return Err(WebhookUrlError::Fragment(raw.to_owned()));
    }
    if !onboarding.allow_private_origins
        && let Some(why) = origin
            .host()
            .parse()
            .ok()
            .and_then(crate::net::non_public_reason)
    {
        return Err(WebhookUrlError::NotPublic {
            raw: raw.to_owned(),
            why,
        });
    }
    Ok(uri)
}

impl std::fmt::Display for OriginUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}", self.authority)
    }
}

impl OriginUrl {
    /// The port connected to (80 when the URL names none).
    pub fn port(&self) -> u16 {
        self.authority.port_u16().unwrap_or(80)
    }

    /// The host as written, without the brackets of an IPv6 literal.
    pub fn host(&self) -> &str {
        self.authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
    }

    /// `http://host:port`, nothing else: no path, no query, no fragment, no credentials, a
    /// port in 1-65535.
    pub fn parse(raw: &str) -> Result<Self, OriginUrlError> {
        let fail = |why| OriginUrlError {
            raw: raw.to_owned(),
            why,
        };
        if raw.contains('#') {
            return Err(fail(OriginUrlProblem::Fragment));
        }
        let uri: http::Uri = raw
            .parse()
            .map_err(|e| fail(OriginUrlProblem::NotAUrl(e)))?;
        if uri.scheme_str() != Some("http") {
            return Err(fail(OriginUrlProblem::NotHttp));
        }
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(fail(OriginUrlProblem::Path));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| fail(OriginUrlProblem::NoHost))?;
        if authority.as_str().contains('@') {
            return Err(fail(OriginUrlProblem::Credentials));
        }
        if authority.host().is_empty() {
            return Err(fail(OriginUrlProblem::NoHost));
        }
        // `http` drops a port it cannot read as u16 (`:99999`), so look at the text.
        let text = authority.as_str();
        let port = (!text.ends_with(']'))
            .then(|| text.rsplit_once(':').map(|(_, port)| port))
            .flatten();
        if port.is_some_and(|p| !p.parse::<u16>().is_ok_and(|p| p > 0)) {
            return Err(fail(OriginUrlProblem::Port));
        }
        Ok(Self { authority })
    }
}
