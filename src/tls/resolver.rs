//! rustls' `ResolvesServerCert` over the certificate table: the site the connection already
//! chose for its SNI (see [`with_chosen_site`]) or else a lookup, then the site's decoded key
//! from the key cache (decoded on a miss). No I/O, no lock a writer can hold.

use std::cell::RefCell;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::table::SiteTable;
use crate::certs::KeyCache;
use crate::sites::Site;

thread_local! {
    /// The site a connection routes to, while rustls reads its ClientHello on this thread.
    static CHOSEN: RefCell<Option<Arc<Site>>> = const { RefCell::new(None) };
}

/// Runs `start` — the synchronous step in which rustls reads the ClientHello and asks for a
/// certificate — answering with `site`'s certificate: the certificate and the routing come
/// from one lookup, so a publish between the two cannot pair one site's certificate with
/// another site's origins. (A client sent a HelloRetryRequest answers with a second
/// ClientHello later, on any thread: that one is looked up again.)
pub fn with_chosen_site<T>(site: &Arc<Site>, start: impl FnOnce() -> T) -> T {
    /// Clears the choice even if `start` panics (the thread serves other connections).
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            CHOSEN.with(|chosen| chosen.borrow_mut().take());
        }
    }
    CHOSEN.with(|chosen| *chosen.borrow_mut() = Some(site.clone()));
    let _clear = Clear;
    start()
}

/// Picks the certificate of the site named by the SNI (or the default site).
#[derive(Debug)]
pub struct TableResolver {
    table: Arc<SiteTable>,
    keys: Arc<KeyCache>,
}

impl TableResolver {
    pub fn new(table: Arc<SiteTable>, keys: Arc<KeyCache>) -> Self {
        Self { table, keys }
    }

    /// The certificate for a ClientHello naming `sni`: the chosen site's, or the table's.
    fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let site = CHOSEN
            .with(|chosen| chosen.borrow_mut().take())
            .or_else(|| self.table.lookup(sni))?;
        site.certified_key(&self.keys)
    }
}

impl std::fmt::Debug for SiteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteTable").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for TableResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{CertBundle, HostName, ServedCert, Source, selfsigned};

    /// A site for `pair.localhost` with a certificate of its own.
    fn site() -> Arc<Site> {
        let config = crate::config::Config::parse(
            "[[site]]\nhost = \"pair.localhost\"\norigins = [\"http://127.0.0.1:9\"]\n",
            std::path::Path::new("/nonexistent"),
        )
        .unwrap()
        .sites
        .remove(0);
        let pair = selfsigned::generate(&[HostName::parse("pair.localhost").unwrap()], 30);
        let pair = pair.unwrap();
        let bundle = CertBundle::from_pem(pair.chain_pem.as_bytes(), pair.key_pem.as_bytes());
        let served = ServedCert::new(bundle.unwrap(), Source::Uploaded);
        Arc::new(Site::build(
            config,
            Some(Arc::new(served)),
            std::time::Duration::from_secs(1),
        ))
    }

    #[test]
    fn the_chosen_site_answers_even_after_the_table_moved_on() {
        let (chosen, published) = (site(), site());
        let table = Arc::new(SiteTable::new());
        table.publish(crate::tls::Routes::new(vec![published.clone()], None));
        let resolver = TableResolver::new(table, Arc::new(KeyCache::new(8)));
        let leaf_of = |key: &CertifiedKey| key.end_entity_cert().unwrap().to_vec();
        let leaf = |site: &Site| site.served_cert().unwrap().bundle.chain.leaf().to_vec();
        let answered = with_chosen_site(&chosen, || resolver.pick(Some("pair.localhost")));
        assert_eq!(leaf_of(&answered.unwrap()), leaf(&chosen));
        // The choice is used once: the next handshake on this thread looks the name up.
        let looked_up = resolver.pick(Some("pair.localhost")).unwrap();
        assert_eq!(leaf_of(&looked_up), leaf(&published));
        // And never outlives a step that panicked.
        let panicking =
            std::panic::AssertUnwindSafe(|| with_chosen_site(&chosen, || panic!("in a handshake")));
        assert!(std::panic::catch_unwind(panicking).is_err());
        let looked_up = resolver.pick(Some("pair.localhost")).unwrap();
        assert_eq!(leaf_of(&looked_up), leaf(&published));
    }
}
