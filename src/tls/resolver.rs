//! rustls' `ResolvesServerCert` over the certificate table: a lookup, then the site's decoded
//! key from the key cache (decoded on a miss). No I/O, no lock a writer can hold.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::table::SiteTable;
use crate::certs::KeyCache;

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
}

impl std::fmt::Debug for SiteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteTable").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for TableResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.table
            .lookup(hello.server_name())
            .and_then(|site| site.certified_key(&self.keys))
    }
}
