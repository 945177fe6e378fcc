//! ACME HTTP-01 tokens answered on the HTTP listener (RFC 8555 §8.3). The issuer inserts a
//! token's key authorization before asking the CA to validate and removes it afterwards.

use std::collections::HashMap;
use std::sync::RwLock;

/// Path prefix of HTTP-01 challenge requests.
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// token → key authorization.
#[derive(Debug, Default)]
pub struct Http01Tokens {
    tokens: RwLock<HashMap<String, String>>,
}

impl Http01Tokens {
    pub fn insert(&self, token: String, key_authorization: String) {
        if let Ok(mut tokens) = self.tokens.write() {
            tokens.insert(token, key_authorization);
        }
    }

    pub fn remove(&self, token: &str) {
        if let Ok(mut tokens) = self.tokens.write() {
            tokens.remove(token);
        }
    }

    /// The key authorization for `token`, if a challenge is pending.
    pub fn get(&self, token: &str) -> Option<String> {
        self.tokens.read().ok()?.get(token).cloned()
    }
}
