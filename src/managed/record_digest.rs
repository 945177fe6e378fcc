//! The digest a certificate record's tag authenticates — SHA-256 of the record's compact
//! JSON without its tag — taken straight from the stored (pretty) bytes: whitespace outside
//! strings dropped and the trailing `auth` member cut, with no re-serialisation (which was a
//! tenth of a million-record restart). Bytes not laid out as the edge writes them give
//! `None`, and the caller digests the parsed record instead.

use std::cell::RefCell;

use aws_lc_rs::digest::{SHA256, digest};

/// The digest of the untagged record `stored` holds, if it is laid out as the edge writes
/// records (the last member is the tag).
pub(super) fn of_stored(stored: &[u8]) -> Option<Vec<u8>> {
    thread_local! {
        static COMPACT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    COMPACT.with_borrow_mut(|compact| {
        untagged_compact(stored, compact).then(|| digest(&SHA256, compact).as_ref().to_vec())
    })
}

/// `stored` as compact JSON without its trailing `"auth"` member, into `out`; `false` when
/// the bytes are not laid out that way.
fn untagged_compact(stored: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let outside = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend(bytes.iter().filter(|b| !b.is_ascii_whitespace()));
    };
    let mut rest = stored;
    loop {
        let Some(quote) = memchr::memchr(b'"', rest) else {
            outside(out, rest);
            break;
        };
        outside(out, &rest[..=quote]);
        rest = &rest[quote + 1..];
        // Inside a string, up to its closing quote; an escaped byte is copied as it is.
        loop {
            let Some(at) = memchr::memchr2(b'"', b'\\', rest) else {
                return false;
            };
            out.extend_from_slice(&rest[..=at]);
            if rest[at] == b'"' {
                rest = &rest[at + 1..];
                break;
            }
            let Some(&escaped) = rest.get(at + 1) else {
                return false;
            };
            out.push(escaped);
            rest = &rest[at + 2..];
        }
    }
    const TAG: &[u8] = b",\"auth\":\"";
    let Some(at) = memchr::memmem::rfind(out, TAG) else {
        return false;
    };
    let value = &out[at + TAG.len()..];
    let Some(value) = value.strip_suffix(b"\"}") else {
        return false;
    };
    if value.contains(&b'"') || value.contains(&b'\\') {
        return false;
    }
    out.truncate(at);
    out.push(b'}');
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Failure {
        message: String,
        at: u64,
    }

    #[derive(serde::Serialize)]
    struct Record {
        names: Vec<String>,
        chain_pem: String,
        failure: Option<Failure>,
        spaces: String,
        empty: Vec<u8>,
        none: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        auth: Option<String>,
    }

    #[test]
    fn pretty_bytes_compact_to_what_serialising_without_the_tag_gives() {
        let mut record = Record {
            names: vec!["a.test".into(), "b.test".into()],
            chain_pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
            failure: Some(Failure {
                message: "the CA said \"no\", \\ and ,\"auth\":\"x\"}".into(),
                at: 5,
            }),
            spaces: "a  b\t c".into(),
            empty: Vec::new(),
            none: None,
            auth: None,
        };
        let expected = digest(&SHA256, &serde_json::to_vec(&record).unwrap());
        record.auth = Some("onehttps-sealed-v1:abc+/=".into());
        let pretty = serde_json::to_vec_pretty(&record).unwrap();
        assert_eq!(of_stored(&pretty).unwrap(), expected.as_ref());
        let compact = serde_json::to_vec(&record).unwrap();
        assert_eq!(of_stored(&compact).unwrap(), expected.as_ref());
        // Any change to the stored bytes changes the digest.
        let changed = String::from_utf8(pretty)
            .unwrap()
            .replacen("AAAA", "AAAB", 1);
        assert_ne!(of_stored(changed.as_bytes()).unwrap(), expected.as_ref());
    }

    #[test]
    fn bytes_laid_out_otherwise_give_none() {
        assert!(of_stored(br#"{"names":["a.test"]}"#).is_none());
        assert!(of_stored(br#"{"auth":"x","names":[]}"#).is_none());
        assert!(of_stored(br#"{"names":["a.test"],"auth":"x"#).is_none());
        assert!(of_stored(br#"{"names":["a.test\"#).is_none());
    }
}
