//! A served certificate chain, kept compactly: the leaf is owned by its site, the rest (the
//! CA's intermediates) is one shared allocation for every site with the same intermediates —
//! a million sites from one CA hold the intermediate once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use aws_lc_rs::digest::{Context, SHA256};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Leaf first, then the shared intermediates.
#[derive(Clone)]
pub struct Chain {
    leaf: Box<[u8]>,
    rest: Arc<[CertificateDer<'static>]>,
}

impl Chain {
    /// `None` for an empty chain.
    pub fn new(certs: Vec<CertificateDer<'static>>) -> Option<Self> {
        let mut certs = certs.into_iter();
        let leaf = certs.next()?.as_ref().into();
        Some(Self {
            leaf,
            rest: intern(certs.collect()),
        })
    }

    /// Parses a PEM chain (leaf first). The intermediates are decoded only the first time
    /// their PEM text is seen; later chains with the same text share the decoded copy, which
    /// halves the cost of loading many sites from one CA.
    pub fn from_pem(pem: &[u8]) -> Result<Option<Self>, rustls_pki_types::pem::Error> {
        if let Some((leaf, rest_pem)) = leaf_as_the_edge_writes_it(pem) {
            let rest = shared_rest(rest_pem)?;
            return Ok(Some(Self { leaf, rest }));
        }
        let mut items = CertificateDer::pem_slice_iter(pem);
        let Some(leaf) = items.next().transpose()? else {
            return Ok(None);
        };
        let rest = shared_rest(items.remainder())?;
        Ok(Some(Self {
            leaf: leaf.as_ref().into(),
            rest,
        }))
    }

    pub fn leaf(&self) -> CertificateDer<'_> {
        CertificateDer::from(&self.leaf[..])
    }

    /// The whole chain as rustls wants it (copies the bytes).
    pub fn to_vec(&self) -> Vec<CertificateDer<'static>> {
        let mut chain = Vec::with_capacity(1 + self.rest.len());
        chain.push(CertificateDer::from(self.leaf.to_vec()));
        chain.extend(self.rest.iter().cloned());
        chain
    }

    /// The leaf's issuer, as its common name or else its whole distinguished name (parsed
    /// on demand: the inventory keeps no copy per certificate).
    pub fn issuer(&self) -> Option<String> {
        let (_, leaf) = x509_parser::parse_x509_certificate(&self.leaf).ok()?;
        let issuer = leaf.issuer();
        let common_name = issuer
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok());
        Some(common_name.map_or_else(|| issuer.to_string(), str::to_owned))
    }
}

/// The leaf of a chain that starts as the edge writes one (`-----BEGIN CERTIFICATE-----`, lines
/// of canonical base64, the end line), decoded straight into its own buffer with the `base64`
/// crate (a restart decodes a million leaves; the PEM parser's byte-at-a-time decoder was 6%
/// of it), and the text after it. `None` for anything else, which the PEM parser then reads,
/// so what it accepts or refuses is unchanged.
fn leaf_as_the_edge_writes_it(pem: &[u8]) -> Option<(Box<[u8]>, &[u8])> {
    use base64::Engine;
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    thread_local! {
        static TEXT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let after_begin = pem.strip_prefix(BEGIN)?;
    let after_begin = after_begin
        .strip_prefix(b"\n")
        .or_else(|| after_begin.strip_prefix(b"\r\n"))?;
    let end = memchr::memmem::find(after_begin, END)?;
    let (body, rest) = (&after_begin[..end], &after_begin[end + END.len()..]);
    // The end line starts a line of its own.
    let body = body.strip_suffix(b"\n")?;
    TEXT.with_borrow_mut(|text| {
        text.clear();
        let mut line_start = 0;
        for line_end in memchr::memchr_iter(b'\n', body).chain([body.len()]) {
            let line = &body[line_start..line_end];
            text.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
            line_start = line_end + 1;
        }
        if text.is_empty() || text.len() % 4 != 0 {
            return None;
        }
        let padding = text.iter().rev().take(2).filter(|&&b| b == b'=').count();
        let mut der = vec![0u8; text.len() / 4 * 3 - padding].into_boxed_slice();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode_slice(&text[..], &mut der)
            .ok()?;
        (decoded == der.len()).then_some((der, rest))
    })
}

/// The decoded intermediates of `rest_pem` (the PEM text after the leaf). The chain this
/// thread decoded last is reused when the text is the same — records read in a row mostly
/// come from one CA, so a restart compares bytes instead of hashing and locking per record —
/// else the interned one (decoded the first time its text is seen).
fn shared_rest(
    rest_pem: &[u8],
) -> Result<Arc<[CertificateDer<'static>]>, rustls_pki_types::pem::Error> {
    type Last = Option<(Box<[u8]>, Weak<[CertificateDer<'static>]>)>;
    thread_local! {
        static LAST: std::cell::RefCell<Last> = const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| {
        if let Some((text, rest)) = last
            && **text == *rest_pem
            && let Some(rest) = rest.upgrade()
        {
            return Ok(rest);
        }
        let rest = intern_with(digest_of([rest_pem]), || {
            CertificateDer::pem_slice_iter(rest_pem).collect()
        })?;
        *last = Some((rest_pem.into(), Arc::downgrade(&rest)));
        Ok(rest)
    })
}

fn digest_of<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> [u8; 32] {
    let mut hash = Context::new(&SHA256);
    for part in parts {
        hash.update(&(part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(hash.finish().as_ref());
    digest
}

/// The one shared copy of `rest`: equal chains (by SHA-256 of their DER) get the same `Arc`
/// while any site still holds it.
fn intern(rest: Vec<CertificateDer<'static>>) -> Arc<[CertificateDer<'static>]> {
    let digest = digest_of(rest.iter().map(|c| c.as_ref()));
    let interned = intern_with(digest, || Ok::<_, std::convert::Infallible>(rest));
    interned.unwrap_or_else(|never| match never {})
}

/// The shared chain known by `digest`, or the one `make` builds (then shared).
fn intern_with<E>(
    digest: [u8; 32],
    make: impl FnOnce() -> Result<Vec<CertificateDer<'static>>, E>,
) -> Result<Arc<[CertificateDer<'static>]>, E> {
    type Interned = HashMap<[u8; 32], Weak<[CertificateDer<'static>]>>;
    static INTERNED: Mutex<Option<Interned>> = Mutex::new(None);

    let mut interned = INTERNED.lock().unwrap_or_else(|e| e.into_inner());
    let interned = interned.get_or_insert_with(HashMap::new);
    if let Some(shared) = interned.get(&digest).and_then(Weak::upgrade) {
        return Ok(shared);
    }
    // Chains nobody holds any more are forgotten as the map grows.
    if interned.len() >= 64 && interned.len().is_power_of_two() {
        interned.retain(|_, weak| weak.strong_count() > 0);
    }
    let rest: Vec<CertificateDer<'static>> = make()?
        .into_iter()
        .map(|c| CertificateDer::from(c.as_ref().to_vec()))
        .collect();
    let shared: Arc<[CertificateDer<'static>]> = rest.into();
    interned.insert(digest, Arc::downgrade(&shared));
    Ok(shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Chain {
        fn shares_rest_with(&self, other: &Self) -> bool {
            Arc::ptr_eq(&self.rest, &other.rest)
        }
    }

    fn der(bytes: &[u8]) -> CertificateDer<'static> {
        CertificateDer::from(bytes.to_vec())
    }

    #[test]
    fn equal_intermediates_are_shared_and_the_leaf_is_kept() {
        let a = Chain::new(vec![der(b"leaf-a"), der(b"inter"), der(b"root")]).unwrap();
        let b = Chain::new(vec![der(b"leaf-b"), der(b"inter"), der(b"root")]).unwrap();
        let c = Chain::new(vec![der(b"leaf-c"), der(b"inter2")]).unwrap();
        assert!(a.shares_rest_with(&b));
        assert!(!a.shares_rest_with(&c));
        assert_eq!(a.leaf().as_ref(), b"leaf-a");
        let whole: Vec<Vec<u8>> = b.to_vec().iter().map(|c| c.to_vec()).collect();
        assert_eq!(
            whole,
            vec![b"leaf-b".to_vec(), b"inter".to_vec(), b"root".to_vec()]
        );
        assert!(Chain::new(Vec::new()).is_none());
    }

    #[test]
    fn pem_chains_share_intermediates_and_bad_pem_is_refused() {
        let pem = |der: &[u8]| {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n")
        };
        let a = Chain::from_pem((pem(b"leaf-a") + &pem(b"inter")).as_bytes())
            .unwrap()
            .unwrap();
        let b = Chain::from_pem((pem(b"leaf-b") + &pem(b"inter")).as_bytes())
            .unwrap()
            .unwrap();
        assert!(a.shares_rest_with(&b));
        assert_eq!(b.leaf().as_ref(), b"leaf-b");
        assert_eq!(b.to_vec()[1].as_ref(), b"inter");
        let alone = Chain::from_pem(pem(b"leaf-c").as_bytes()).unwrap().unwrap();
        assert_eq!(alone.to_vec().len(), 1);
        assert!(Chain::from_pem(b"no pem here").unwrap().is_none());
        let broken =
            pem(b"leaf-d") + "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(Chain::from_pem(broken.as_bytes()).is_err());
        let broken_leaf = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(Chain::from_pem(broken_leaf.as_bytes()).is_err());
    }

    #[test]
    fn a_leaf_decodes_the_same_on_the_fast_path_and_the_pem_parser() {
        use base64::Engine;
        let b64 = |der: &[u8]| base64::engine::general_purpose::STANDARD.encode(der);
        // Every padding, wrapped at 64 like the edge writes, with CRLF, and on one line.
        for len in [1, 2, 3, 47, 48, 49, 700, 1201] {
            let der: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let text = b64(&der);
            let wrapped: Vec<&str> = text
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            for body in [wrapped.join("\n"), wrapped.join("\r\n"), text.clone()] {
                let pem =
                    format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n");
                let (fast, rest) = leaf_as_the_edge_writes_it(pem.as_bytes()).expect("fast path");
                assert_eq!(&fast[..], &der[..], "len {len}");
                assert_eq!(rest, b"\n");
                let parsed = Chain::from_pem(pem.as_bytes()).unwrap().unwrap();
                assert_eq!(parsed.leaf().as_ref(), &der[..]);
            }
        }
        // Not canonical (trailing bits set), or junk before the leaf: the PEM parser decides.
        let odd = "-----BEGIN CERTIFICATE-----\nAB==\n-----END CERTIFICATE-----\n";
        assert!(leaf_as_the_edge_writes_it(odd.as_bytes()).is_none());
        let junk = format!(
            "junk\n-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            b64(b"leaf")
        );
        assert!(leaf_as_the_edge_writes_it(junk.as_bytes()).is_none());
        assert_eq!(
            Chain::from_pem(junk.as_bytes())
                .unwrap()
                .unwrap()
                .leaf()
                .as_ref(),
            b"leaf"
        );
    }
}
