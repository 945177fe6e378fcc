//! The CAA pre-flight check (RFC 8659): the relevant record set of a name, found by climbing
//! from the name towards the root (each lookup follows CNAMEs), must let this edge's CA issue
//! (`acme.caa_identities`, by default the directory's `caaIdentities`). A failure is a
//! sentence a site owner can act on: which record, what it says, what it should say.

use hickory_resolver::TokioResolver;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{RData, RecordType};

use crate::certs::HostName;

/// One CAA record, as the check reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CaaRecord {
    pub(super) critical: bool,
    pub(super) tag: String,
    pub(super) value: String,
}

/// CAA property tags a CA understands (RFC 8659, RFC 8657's parameters live in the value).
const KNOWN_TAGS: [&str; 5] = ["issue", "issuewild", "iodef", "issuemail", "issuevmc"];

/// Why the CAA records forbid this edge's CA to issue (each a sentence a site owner can
/// act on), or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CaaError {
    #[error(
        "not ordered: the CAA records of {at} cannot be looked up ({cause}); the CA refuses to issue until they can"
    )]
    Lookup { at: String, cause: NetError },
    #[error(
        "not ordered: the CAA records of {at} have a critical `{tag}` property no CA understands, so no CA may issue for {name}: remove that record"
    )]
    UnknownCritical {
        at: String,
        tag: String,
        name: String,
    },
    #[error(
        "not ordered: the CAA record of {at} (`{tag}`) allows {} to issue certificates for {name}, not this edge's CA ({}): add `{at}. CAA 0 {tag} \"{}\"` or remove the record that excludes it",
        who(.allowed), ours_list(.identities), .identities.first().map_or("<your CA>", String::as_str)
    )]
    OtherCa {
        at: String,
        tag: &'static str,
        name: String,
        /// The CAs the record allows (empty: none at all).
        allowed: Vec<String>,
        identities: Vec<String>,
    },
}

/// Who a CAA record allows, in words.
fn who(allowed: &[String]) -> String {
    if allowed.is_empty() {
        "no CA".to_owned()
    } else {
        format!("only {}", allowed.join(", "))
    }
}

/// This edge's CA identities, or what to set to name them.
fn ours_list(identities: &[String]) -> String {
    if identities.is_empty() {
        "set acme.caa_identities".to_owned()
    } else {
        identities.join(", ")
    }
}

/// Whether a CA named `identities` in CAA records may issue for `name`, asking `resolver`;
/// the reason if not.
pub(super) async fn check(
    resolver: &TokioResolver,
    name: &HostName,
    identities: &[String],
) -> Result<(), CaaError> {
    match relevant_caa(resolver, name.as_str()).await? {
        Some((at, records)) => judge(name.as_str(), &at, &records, identities),
        None => Ok(()),
    }
}

/// The relevant CAA record set of `name`: the first non-empty one on the way from the name
/// (a wildcard's base) to the top-level domain, with where it was found.
async fn relevant_caa(
    resolver: &TokioResolver,
    name: &str,
) -> Result<Option<(String, Vec<CaaRecord>)>, CaaError> {
    let mut current = name.trim_start_matches("*.").to_owned();
    loop {
        let records = match resolver
            .lookup(format!("{current}."), RecordType::CAA)
            .await
        {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::CAA(caa) => Some(CaaRecord {
                        critical: caa.issuer_critical,
                        tag: caa.tag.to_ascii_lowercase(),
                        value: String::from_utf8_lossy(&caa.value).into_owned(),
                    }),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Vec::new(),
            Err(
                e
                @ (NetError::Timeout | NetError::NoConnections | NetError::Io(_) | NetError::Busy),
            ) => {
                // The pre-flight's own resolver is out of reach: that says nothing about what
                // the CA will see, so the CA decides.
                tracing::warn!(name, error = %e, "cannot check CAA (is acme.nameservers reachable?); ordering anyway");
                return Ok(None);
            }
            Err(cause) => return Err(CaaError::Lookup { at: current, cause }),
        };
        if !records.is_empty() {
            return Ok(Some((current, records)));
        }
        match current.split_once('.') {
            Some((_, parent)) if !parent.is_empty() => current = parent.to_owned(),
            _ => return Ok(None),
        }
    }
}

/// Whether the CAA `records` found at `at` let a CA known as one of `identities` issue for
/// `name` (RFC 8659 §4).
pub(super) fn judge(
    name: &str,
    at: &str,
    records: &[CaaRecord],
    identities: &[String],
) -> Result<(), CaaError> {
    if let Some(unknown) = records
        .iter()
        .find(|r| r.critical && !KNOWN_TAGS.contains(&r.tag.as_str()))
    {
        return Err(CaaError::UnknownCritical {
            at: at.to_owned(),
            tag: unknown.tag.clone(),
            name: name.to_owned(),
        });
    }
    let wildcard = name.starts_with("*.");
    let tag = if wildcard && records.iter().any(|r| r.tag == "issuewild") {
        "issuewild"
    } else {
        "issue"
    };
    let issuers: Vec<String> = records
        .iter()
        .filter(|r| r.tag == tag)
        .map(|r| {
            r.value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .trim_end_matches('.')
                .to_ascii_lowercase()
        })
        .collect();
    if issuers.is_empty() {
        return Ok(());
    }
    if issuers.iter().any(|i| identities.contains(i)) {
        return Ok(());
    }
    let allowed: Vec<String> = issuers.into_iter().filter(|i| !i.is_empty()).collect();
    if identities.is_empty() && !allowed.is_empty() {
        // Who this CA is is unknown: only "no CA at all" can be judged.
        return Ok(());
    }
    Err(CaaError::OtherCa {
        at: at.to_owned(),
        tag,
        name: name.to_owned(),
        allowed,
        identities: identities.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caa(tag: &str, value: &str) -> CaaRecord {
        CaaRecord {
            critical: false,
            tag: tag.into(),
            value: value.into(),
        }
    }

    fn ours() -> Vec<String> {
        vec!["letsencrypt.org".into()]
    }

    #[test]
    fn an_issue_record_for_another_ca_forbids_and_says_what_to_add() {
        let why = judge(
            "shop.example.com",
            "example.com",
            &[caa("issue", "otherca.example; account=1")],
            &ours(),
        )
        .unwrap_err()
        .to_string();
        assert!(why.contains("allows only otherca.example"), "{why}");
        assert!(
            why.contains("add `example.com. CAA 0 issue \"letsencrypt.org\"`"),
            "{why}"
        );
        assert!(
            judge(
                "shop.example.com",
                "example.com",
                &[
                    caa("issue", "otherca.example"),
                    caa("issue", "LetsEncrypt.org.; validationmethods=http-01")
                ],
                &ours()
            )
            .is_ok()
        );
    }

    #[test]
    fn no_issue_property_permits_and_an_empty_one_forbids_everyone() {
        assert!(
            judge(
                "a.example.com",
                "a.example.com",
                &[caa("iodef", "mailto:x@y")],
                &ours()
            )
            .is_ok()
        );
        let why = judge("a.example.com", "a.example.com", &[caa("issue", ";")], &[])
            .unwrap_err()
            .to_string();
        assert!(why.contains("allows no CA"), "{why}");
        // An unknown CA identity cannot judge a record naming some CA.
        assert!(
            judge(
                "a.example.com",
                "a.example.com",
                &[caa("issue", "x.example")],
                &[]
            )
            .is_ok()
        );
    }

    #[test]
    fn wildcards_use_issuewild_when_present_and_critical_unknown_tags_forbid() {
        let records = [caa("issue", "letsencrypt.org"), caa("issuewild", ";")];
        assert!(judge("www.example.com", "example.com", &records, &ours()).is_ok());
        assert!(judge("*.example.com", "example.com", &records, &ours()).is_err());
        assert!(judge("*.example.com", "example.com", &records[..1], &ours()).is_ok());
        let critical = CaaRecord {
            critical: true,
            tag: "tbs".into(),
            value: "x".into(),
        };
        let why = judge("a.example.com", "example.com", &[critical], &ours())
            .unwrap_err()
            .to_string();
        assert!(why.contains("critical `tbs`"), "{why}");
    }
}
