use std::path::Path;

use super::*;

fn issues_of(source: &str) -> Vec<ConfigIssue> {
    Config::parse(source, Path::new("/nonexistent")).expect_err("config should be refused")
}

#[test]
fn minimal_config_takes_defaults() {
    let c = Config::parse(
        "[[site]]\nhost = \"a.test\"\norigins = [\"http://127.0.0.1:8080\"]\n",
        Path::new("/etc/onehttps"),
    )
    .unwrap();
    assert_eq!(c.sites[0].issuer, IssuerKind::Internal);
    assert!(c.sites[0].managed);
    assert_eq!(c.acme.directory, None);
    assert_eq!(c.acme.renew_before, Duration::from_secs(30 * 86_400));
    assert_eq!(
        c.acme.challenges,
        vec![ChallengeKind::TlsAlpn01, ChallengeKind::Http01]
    );
    assert_eq!(c.server.https.port(), 443);
    assert_eq!(c.server.https_public_port, 443);
    assert_eq!(c.tls.hsts.as_deref(), Some(DEFAULT_HSTS));
    assert_eq!(c.sites[0].hsts.as_deref(), Some(DEFAULT_HSTS));
    assert_eq!(c.sites[0].origins[0].to_string(), "http://127.0.0.1:8080");
    assert_eq!(c.server.data_dir, Path::new("/var/lib/onehttps"));
}

#[test]
fn every_problem_is_reported_with_its_line() {
    let src = "[server]\nhttps = \"nope\"\nheader_timeout = \"soon\"\n\n[[site]]\nhost = \"*.com\"\norigins = [\"ftp://x\"]\n";
    let issues = issues_of(src);
    let lines: Vec<(usize, &str)> = issues.iter().map(|i| (i.line, i.key.as_str())).collect();
    assert_eq!(
        lines,
        vec![
            (2, "server.https"),
            (3, "server.header_timeout"),
            (6, "site[0].host"),
            (7, "site[0].origins"),
        ]
    );
}

#[test]
fn unknown_keys_are_errors() {
    let issues = issues_of("[server]\nhttps = \"0.0.0.0:443\"\nlisten = 1\n");
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].line, 3);
    assert!(
        issues[0].message.contains("listen"),
        "{}",
        issues[0].message
    );
}

#[test]
fn site_rules() {
    let table = [
        (
            "[[site]]\nhost = []\norigins = [\"http://a:1\"]\n",
            "at least one host",
        ),
        (
            "[[site]]\nhost = \"a.b\"\norigins = []\n",
            "at least one origin",
        ),
        (
            "[[site]]\nhost = \"a.b\"\norigins = [\"http://a:1/x\"]\n",
            "path",
        ),
        (
            "[[site]]\nhost = \"a.b\"\norigins = [\"http://a:1\"]\ncert = \"c.pem\"\n",
            "`key` is missing",
        ),
        (
            "[[site]]\nhost = \"a.b\"\norigins = [\"http://a:1\"]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
            "cannot read",
        ),
        (
            "[[site]]\nhost = \"a.test\"\norigins = [\"http://a:1\"]\n[[site]]\nhost = \"A.test\"\norigins = [\"http://a:1\"]\n",
            "already a host",
        ),
        (
            "[[site]]\nhost = \"a.b\"\norigins = [\"http://a:1\"]\nhsts = \"preload\"\n",
            "max-age",
        ),
        ("[tls]\ndefault_host = \"x.y\"\n", "not a host of any"),
        ("[tls]\nmin_version = \"1.0\"\n", "not one of"),
        ("[server]\nmax_header_bytes = 10\n", "at least"),
    ];
    for (src, want) in table {
        let issues = issues_of(src);
        assert!(
            issues.iter().any(|i| i.message.contains(want)),
            "{src:?}: wanted {want:?} in {issues:?}"
        );
    }
}

#[test]
fn hsts_can_be_turned_off_per_site() {
    let c = Config::parse(
        "[tls]\nhsts = \"max-age=60\"\n[[site]]\nhost = \"a.test\"\norigins = [\"http://a:1\"]\nhsts = false\n[[site]]\nhost = \"c.test\"\norigins = [\"http://a:1\"]\n",
        Path::new("."),
    )
    .unwrap();
    assert_eq!(c.sites[0].hsts, None);
    assert_eq!(c.sites[1].hsts.as_deref(), Some("max-age=60"));
}

#[test]
fn public_names_default_to_acme_and_need_a_directory() {
    let site = "[[site]]\nhost = \"shop.example.com\"\norigins = [\"http://a:1\"]\n";
    let issues = issues_of(site);
    assert!(
        issues[0].message.contains("needs a certificate"),
        "{issues:?}"
    );
    let c = Config::parse(
        &format!("[acme]\ndirectory = \"https://ca.example/dir\"\nchallenges = [\"http-01\"]\nrenew_before_days = 10\nkey_type = \"rsa2048\"\n{site}"),
        Path::new("."),
    )
    .unwrap();
    assert_eq!(c.sites[0].issuer, IssuerKind::Acme);
    assert_eq!(c.acme.challenges, vec![ChallengeKind::Http01]);
    assert_eq!(c.acme.renew_before, Duration::from_secs(10 * 86_400));
    assert_eq!(c.acme.key_type, crate::issue::KeyType::Rsa2048);
    // The internal CA is name-constrained to local names: a public name cannot use it.
    let issues = issues_of(&format!("{site}issuer = \"internal\"\n"));
    assert!(
        issues[0].message.contains("only issues for local names"),
        "{issues:?}"
    );
    let local =
        "[[site]]\nhost = \"shop.test\"\norigins = [\"http://a:1\"]\nissuer = \"internal\"\n";
    let internal = Config::parse(local, Path::new(".")).unwrap();
    assert_eq!(internal.sites[0].issuer, IssuerKind::Internal);
    // The operator can add suffixes of their own (the root is then constrained to them too).
    let corp = "[internal_ca]\nnames = [\"corp\", \"home.arpa\"]\n[[site]]\nhost = \"wiki.corp\"\norigins = [\"http://a:1\"]\n";
    let c = Config::parse(corp, Path::new(".")).unwrap();
    assert_eq!(c.sites[0].issuer, IssuerKind::Internal);
    let issues = issues_of("[internal_ca]\nnames = [\"*.corp\"]\n");
    assert!(issues[0].message.contains("not a DNS suffix"), "{issues:?}");
}

#[test]
fn embedded_demo_parses() {
    let c = Config::embedded_demo().unwrap();
    assert!(!c.sites.is_empty());
    assert!(c.server.welcome_page.is_some());
}

#[test]
fn shipped_production_example_parses() {
    let source = include_str!("../../config/production.toml");
    let c = Config::parse(source, Path::new("/etc/onehttps")).unwrap();
    assert_eq!(c.sites.len(), 2);
    assert_eq!(c.sites[0].origins.len(), 2);
    assert!(c.acme.directory.is_some());
}

#[test]
fn ca_limits_default_to_lets_encrypts_for_its_directories_and_each_key_overrides_one() {
    use crate::issue::limits::CaLimits;
    let c = Config::parse(
        "[acme]\ndirectory = \"https://acme-v02.api.letsencrypt.org/directory\"\n",
        Path::new("/etc"),
    )
    .unwrap();
    assert_eq!(c.acme.limits, CaLimits::LETS_ENCRYPT);
    let c = Config::parse(
        "[acme]\ndirectory = \"https://acme-v02.api.letsencrypt.org/directory\"\n[acme.limits]\nnew_orders_per_3h = 10\nrequests_per_second = 0\n",
        Path::new("/etc"),
    )
    .unwrap();
    assert_eq!(c.acme.limits.new_orders_per_3h, Some(10));
    assert_eq!(c.acme.limits.requests_per_second, None);
    assert_eq!(c.acme.limits.duplicates_per_week, Some(5));
    let c = Config::parse(
        "[acme]\ndirectory = \"https://ca.example.net/dir\"\n",
        Path::new("/etc"),
    )
    .unwrap();
    assert_eq!(c.acme.limits, CaLimits::default());
    let issues = Config::parse(
        "[acme]\ndirectory = \"https://ca.example.net/dir\"\n[acme.limits]\norders = 3\n",
        Path::new("/etc"),
    )
    .unwrap_err();
    assert!(format!("{issues:?}").contains("orders"), "{issues:?}");
}

#[test]
fn storage_is_embedded_by_default_and_etcd_is_checked() {
    let c = Config::parse("", Path::new("/etc")).unwrap();
    assert_eq!(c.storage, StorageSettings::Embedded);
    let c = Config::parse("[storage]\nkind = \"fs\"\n", Path::new("/etc")).unwrap();
    assert_eq!(c.storage, StorageSettings::Fs);
    let c = Config::parse(
        "[storage]\nkind = \"etcd\"\nendpoints = [\"http://10.0.0.1:2379/\", \"http://10.0.0.2:2379\"]\nnode_id = \"edge-1\"\nlease_ttl = \"3s\"\n",
        Path::new("/etc"),
    )
    .unwrap();
    let StorageSettings::Etcd(etcd) = c.storage else {
        panic!("etcd expected");
    };
    assert_eq!(
        etcd.endpoints,
        vec!["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
    );
    assert_eq!(etcd.prefix, "/onehttps/");
    assert_eq!(etcd.node_id, "edge-1");
    assert_eq!(etcd.lease_ttl, Duration::from_secs(3));

    for (src, key, words) in [
        (
            "[storage]\nkind = \"etcd\"\n",
            "storage.endpoints",
            "needs endpoints",
        ),
        (
            "[storage]\nkind = \"etcd\"\nendpoints = [\"https://a:2379\"]\n",
            "storage.ca_file",
            "need ca_file",
        ),
        (
            "[storage]\nkind = \"etcd\"\nendpoints = [\"https://a:2379\", \"http://b:2379\"]\nca_file = \"/proc/version\"\n",
            "storage.endpoints",
            "mixes http:// and https://",
        ),
        (
            "[storage]\nkind = \"etcd\"\nendpoints = [\"http://a:2379\"]\nca_file = \"ca.pem\"\n",
            "storage.ca_file",
            "only applies to https://",
        ),
        (
            "[storage]\nkind = \"etcd\"\nendpoints = [\"https://a:2379\"]\nca_file = \"/nonexistent/ca.pem\"\n",
            "storage.ca_file",
            "cannot read /nonexistent/ca.pem",
        ),
        (
            "[storage]\nkind = \"etcd\"\nendpoints = [\"https://a:2379\"]\nca_file = \"/proc/version\"\n",
            "storage.ca_file",
            "holds no PEM certificate",
        ),
        (
            "[storage]\nkind = \"etcd\"\nendpoints = [\"https://a:2379\"]\ncert_file = \"c.pem\"\n",
            "storage.ca_file",
            "need ca_file",
        ),
        (
            "[storage]\nkind = \"etcd\"\nendpoints = [\"10.0.0.1:2379\"]\n",
            "storage.endpoints",
            "not an endpoint",
        ),
        (
            "[storage]\nkind = \"redis\"\n",
            "storage.kind",
            "not a store",
        ),
        (
            "[storage]\nendpoints = [\"http://a:2379\"]\n",
            "storage.endpoints",
            "only applies",
        ),
        (
            "[storage]\nkind = \"etcd\"\nendpoints = [\"http://a:2379\"]\nnode_id = \"a b\"\n",
            "storage.node_id",
            "letters, digits",
        ),
        (
            "[storage]\nkind = \"etcd\"\nendpoints = [\"http://a:2379\"]\nuser = \"u\"\n",
            "storage.user",
            "go together",
        ),
        (
            "[storage]\nkind = \"etcd\"\nendpoints = [\"http://a:2379\"]\nlease_ttl = \"1s\"\n",
            "storage.lease_ttl",
            "at least 2s",
        ),
    ] {
        let issues = issues_of(src);
        assert!(
            issues
                .iter()
                .any(|i| i.key == key && i.message.contains(words)),
            "{src}: {issues:?}"
        );
    }
}
