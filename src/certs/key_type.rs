//! The kind of key a certificate is issued for: ECDSA P-256 by default (the cheapest
//! handshakes), RSA 2048 on request for old clients.

/// Kind of key a certificate is issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyType {
    #[default]
    EcdsaP256,
    Rsa2048,
}

impl std::str::FromStr for KeyType {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "ecdsa-p256" => Ok(Self::EcdsaP256),
            "rsa2048" => Ok(Self::Rsa2048),
            _ => Err(()),
        }
    }
}
