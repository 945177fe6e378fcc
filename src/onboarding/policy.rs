//! What a tenant may register: names nobody else serves and outside the edge's own zones,
//! origins the edge may connect to on a tenant's behalf. Pure checks; the registry applies
//! them under its lock and the connector (`proxy::guard`) checks origins again at connect.

use std::net::{IpAddr, SocketAddr};

use crate::certs::HostName;
use crate::config::OriginUrl;

/// Why an origin given through the API is refused.
#[derive(Debug, thiserror::Error)]
pub enum OriginRefused {
    #[error(transparent)]
    Malformed(#[from] crate::config::OriginUrlError),
    #[error("`{0}` is one of the edge's own listeners")]
    OwnListener(OriginUrl),
    #[error("`{0}` is this machine (a loopback name)")]
    Loopback(OriginUrl),
    #[error(
        "`{origin}` is {why}; origins must be public addresses (the operator can allow \
         private ones with onboarding.allow_private_origins)"
    )]
    NotPublic {
        origin: OriginUrl,
        why: &'static str,
    },
}

/// Why an origin given through the API is refused; `Ok` when it may be used.
/// `own` are the edge's listener addresses: never an origin, even where private addresses
/// are allowed (a site proxied to the admin API or to the edge itself).
pub fn check_origin(
    origin: &OriginUrl,
    allow_private: bool,
    own: &[SocketAddr],
) -> Result<(), OriginRefused> {
    let host = origin.host().to_ascii_lowercase();
    let ip = host.parse::<IpAddr>().ok();
    let local_name = host == "localhost" || host.ends_with(".localhost");
    let points_at_self = own.iter().any(|addr| {
        addr.port() == origin.port()
            && (local_name
                || ip.is_some_and(|ip| ip == addr.ip() || ip.is_loopback() || ip.is_unspecified()))
    });
    if points_at_self {
        return Err(OriginRefused::OwnListener(origin.clone()));
    }
    if allow_private {
        return Ok(());
    }
    if local_name {
        return Err(OriginRefused::Loopback(origin.clone()));
    }
    match ip.and_then(crate::net::non_public_reason) {
        Some(why) => Err(OriginRefused::NotPublic {
            origin: origin.clone(),
            why,
        }),
        None => Ok(()),
    }
}

/// Whether `host` lies in `zone` (is it or a name under it).
pub fn in_zone(host: &HostName, zone: &HostName) -> bool {
    let (host, zone) = (host.as_str(), zone.as_str());
    host == zone
        || host
            .strip_suffix(zone)
            .is_some_and(|prefix| prefix.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(raw: &str) -> OriginUrl {
        OriginUrl::parse(raw).unwrap()
    }

    #[test]
    fn tenant_origins_must_be_public_and_never_the_edge_itself() {
        let own: Vec<SocketAddr> = vec![
            "127.0.0.1:9180".parse().unwrap(),
            "0.0.0.0:443".parse().unwrap(),
        ];
        for bad in [
            "http://127.0.0.1:8080",
            "http://169.254.169.254",
            "http://0.0.0.0:80",
            "http://10.0.0.5:80",
            "http://[::1]:80",
            "http://[fe80::1]:80",
            "http://localhost:3000",
            "http://app.localhost:3000",
        ] {
            assert!(check_origin(&origin(bad), false, &own).is_err(), "{bad}");
        }
        for good in [
            "http://203.0.113.10:8080",
            "http://origin.example.com",
            "http://[2001:db8::1]:80",
        ] {
            assert!(check_origin(&origin(good), false, &own).is_ok(), "{good}");
        }
        // Allowed private origins still never point at the edge's own listeners.
        assert!(check_origin(&origin("http://127.0.0.1:8080"), true, &own).is_ok());
        for own_listener in [
            "http://127.0.0.1:9180",
            "http://localhost:9180",
            "http://127.0.0.1:443",
        ] {
            assert!(
                check_origin(&origin(own_listener), true, &own).is_err(),
                "{own_listener}"
            );
        }
    }

    #[test]
    fn origin_urls_have_a_valid_shape() {
        for bad in [
            "http://a.example:99999",
            "http://a.example:0",
            "http://a.example/#frag",
            "http://a.example#frag",
            "http://user@a.example",
            "http://a.example/path",
            "https://a.example",
            "http://:80",
        ] {
            assert!(OriginUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(origin("http://a.example").port(), 80);
        assert_eq!(origin("http://[2001:db8::1]:8080").host(), "2001:db8::1");
    }

    #[test]
    fn zone_membership() {
        let zone = HostName::parse("edge.example.net").unwrap();
        for (name, inside) in [
            ("edge.example.net", true),
            ("abc.edge.example.net", true),
            ("xedge.example.net", false),
            ("example.net", false),
        ] {
            assert_eq!(
                in_zone(&HostName::parse(name).unwrap(), &zone),
                inside,
                "{name}"
            );
        }
    }
}
