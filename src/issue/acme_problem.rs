//! What a CA's answers and silences mean: RFC 8555 problem documents (a rate limit, an
//! account the CA lost), Retry-After, and a directory out of reach said in words an
//! operator can act on.

use std::time::Duration;

use super::{AcmeStep, IssueError};

/// Problem type of the CA's rate limits.
pub(super) const RATE_LIMITED: &str = "urn:ietf:params:acme:error:rateLimited";

/// Problem type when the CA does not know the account.
pub(super) const ACCOUNT_DOES_NOT_EXIST: &str = "urn:ietf:params:acme:error:accountDoesNotExist";

/// Minimum wait after a rate-limit refusal when the CA gives no Retry-After.
pub(super) const RATE_LIMIT_WAIT: Duration = Duration::from_secs(3600);

/// What a failure to reach the ACME directory at all (no HTTP answer) means, from the
/// error's sources: the sentence an operator can act on, or `None` for anything else.
pub(super) fn transport_cause(
    e: &(dyn std::error::Error + 'static),
    directory: &str,
) -> Option<String> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(rustls::Error::InvalidCertificate(why)) = err.downcast_ref::<rustls::Error>() {
            return Some(format!(
                "the ACME directory's TLS certificate is not trusted ({why:?}): add the root that signed it to acme.ca_roots (directory {directory})"
            ));
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind;
            let cause = match io.kind() {
                ErrorKind::ConnectionRefused => {
                    "nothing accepts connections there (connection refused): is the CA up, is acme.directory right?"
                }
                ErrorKind::TimedOut => {
                    "it did not answer in time: is the CA up and reachable from this machine?"
                }
                ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::UnexpectedEof => "it closed the connection before answering",
                _ => "",
            };
            if !cause.is_empty() {
                return Some(format!(
                    "cannot reach the ACME directory {directory}: {cause}"
                ));
            }
        }
        if err.to_string().starts_with("dns error") {
            return Some(format!(
                "cannot reach the ACME directory {directory}: its host name does not resolve (check acme.directory and this machine's DNS)"
            ));
        }
        // An `io::Error` wrapping another error reports that error's source, not the error
        // itself (hyper-rustls nests the TLS error in two of them): look inside.
        next = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// An instant-acme error with its step, rate limits and Retry-After recognised.
pub(super) fn acme_error(step: AcmeStep, e: &instant_acme::Error) -> IssueError {
    let mut detail = e.to_string();
    match e {
        instant_acme::Error::Api(problem) => {
            for sub in &problem.subproblems {
                if let Some(sub) = &sub.detail {
                    detail.push_str("; ");
                    detail.push_str(sub);
                }
            }
            if problem.r#type.as_deref() == Some(RATE_LIMITED) {
                return IssueError::RateLimited {
                    step,
                    detail,
                    retry_after: RATE_LIMIT_WAIT,
                };
            }
            IssueError::Ca {
                step,
                problem: problem.r#type.clone(),
                detail,
                retry_after: None,
            }
        }
        instant_acme::Error::Timeout(Some(when)) => IssueError::Ca {
            step,
            problem: None,
            detail,
            retry_after: Some(when.saturating_duration_since(std::time::Instant::now())),
        },
        _ => IssueError::Ca {
            step,
            problem: None,
            detail,
            retry_after: None,
        },
    }
}

pub(super) fn is_problem(e: &instant_acme::Error, kind: &str) -> bool {
    matches!(e, instant_acme::Error::Api(p) if p.r#type.as_deref() == Some(kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error as IoError, ErrorKind};

    const DIRECTORY: &str = "https://ca.test/dir";

    #[test]
    fn a_ca_out_of_reach_is_said_in_words() {
        let untrusted = IoError::other(IoError::new(
            ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        let said = transport_cause(&untrusted, DIRECTORY).unwrap();
        assert!(said.contains("not trusted (UnknownIssuer)"), "{said}");
        assert!(
            said.contains("acme.ca_roots") && said.contains(DIRECTORY),
            "{said}"
        );
        let refused = IoError::new(ErrorKind::ConnectionRefused, "tcp connect error");
        let said = transport_cause(&refused, DIRECTORY).unwrap();
        assert!(
            said.contains("connection refused") && said.contains(DIRECTORY),
            "{said}"
        );
        let timed_out = IoError::from(ErrorKind::TimedOut);
        assert!(
            transport_cause(&timed_out, DIRECTORY)
                .unwrap()
                .contains("in time")
        );
        // Anything else keeps its own words.
        let other = IoError::new(ErrorKind::PermissionDenied, "no");
        assert!(transport_cause(&other, DIRECTORY).is_none());
    }
}
