//! Unit tests of `table`.

use super::*;
use crate::config::{IssuerKind, OriginUrl, SiteConfig};

fn site(hosts: &[&str]) -> Arc<Site> {
    let config = SiteConfig {
        hosts: hosts.iter().map(|h| HostName::parse(h).unwrap()).collect(),
        origins: vec![OriginUrl {
            authority: http::uri::Authority::from_static("127.0.0.1:9"),
        }],
        cert: None,
        hsts: None,
        issuer: IssuerKind::Acme,
        managed: true,
        registered: true,
    };
    Arc::new(Site::build(config, None, std::time::Duration::from_secs(1)))
}

#[test]
fn pages_hold_the_smallest_names_after_the_cursor() {
    let names: Vec<String> = (0..300).rev().map(|i| format!("s{i:03}.example")).collect();
    let sites: Vec<Arc<Site>> = names.iter().map(|n| site(&[n.as_str()])).collect();
    let table = SiteTable::new();
    table.publish(Routes::new(sites, None));
    let page = |after: Option<&str>, limit| -> Vec<String> {
        table
            .first_after(after, limit)
            .iter()
            .map(|s| s.name().to_owned())
            .collect()
    };
    assert_eq!(
        page(None, 3),
        ["s000.example", "s001.example", "s002.example"]
    );
    assert_eq!(
        page(Some("s002.example"), 2),
        ["s003.example", "s004.example"]
    );
    // A cursor between names, the end, and an empty page.
    assert_eq!(page(Some("s100"), 1), ["s100.example"]);
    assert_eq!(page(Some("s298.example"), 5), ["s299.example"]);
    assert!(page(Some("s299.example"), 5).is_empty());
    assert!(page(None, 0).is_empty());
    // Walking every page sees every site once, in order.
    let mut walked = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let next = page(after.as_deref(), 7);
        let Some(last) = next.last().cloned() else {
            break;
        };
        walked.extend(next);
        after = Some(last);
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(walked, sorted);
}

/// A site served from certificate files (which are not read here).
fn site_with_files(host: &str) -> Arc<Site> {
    let hosts = vec![HostName::parse(host).unwrap()];
    let pair = crate::certs::selfsigned::generate(&hosts, 30).unwrap();
    let bundle =
        crate::certs::CertBundle::from_pem(pair.chain_pem.as_bytes(), pair.key_pem.as_bytes())
            .unwrap();
    let files = crate::config::CertFiles {
        cert: "/nonexistent/cert.pem".into(),
        key: "/nonexistent/key.pem".into(),
    };
    let config = SiteConfig {
        cert: Some(Box::new((files, bundle))),
        managed: false,
        registered: false,
        ..site(&[host]).config().clone()
    };
    Arc::new(Site::build(config, None, std::time::Duration::from_secs(1)))
}

#[test]
fn the_file_watcher_list_follows_sites_served_from_files() {
    let with_files = site_with_files("files.example.com");
    let table = SiteTable::new();
    table.publish(Routes::new(
        vec![site(&["a.example.com"]), with_files.clone()],
        None,
    ));
    let listed = table.sites_with_files();
    assert_eq!(listed.len(), 1);
    assert!(Arc::ptr_eq(&listed[0], &with_files));
    // A change that touches no file-served site keeps the list as it is.
    table.change(&[], &[site(&["b.example.com"])]);
    assert!(Arc::ptr_eq(&table.sites_with_files(), &listed));
    table.change(std::slice::from_ref(&with_files), &[]);
    assert!(table.sites_with_files().is_empty());
}

fn served_by(table: &SiteTable, name: &str) -> Option<String> {
    table.lookup(Some(name)).map(|s| s.name().to_owned())
}

#[test]
fn exact_names_win_over_wildcards_and_the_default_serves_no_sni() {
    let table = SiteTable::new();
    let default = HostName::parse("a.example").unwrap();
    table.publish(Routes::new(
        vec![
            site(&["a.example", "www.a.example"]),
            site(&["*.b.example"]),
            site(&["x.b.example"]),
        ],
        Some(&default),
    ));
    assert_eq!(
        served_by(&table, "www.a.example").as_deref(),
        Some("a.example")
    );
    assert_eq!(
        served_by(&table, "WWW.A.example").as_deref(),
        Some("a.example")
    );
    assert_eq!(
        served_by(&table, "y.b.example").as_deref(),
        Some("*.b.example")
    );
    assert_eq!(
        served_by(&table, "x.b.example").as_deref(),
        Some("x.b.example")
    );
    assert_eq!(served_by(&table, "z.y.b.example"), None, "one label only");
    assert_eq!(served_by(&table, "b.example"), None);
    assert_eq!(
        table.lookup(None).map(|s| s.name().to_owned()).as_deref(),
        Some("a.example")
    );
    assert_eq!(table.len(), 3);
}

#[test]
fn built_at_once_routes_as_built_by_changes_and_the_later_duplicate_wins() {
    let mut sites: Vec<Arc<Site>> = (0..3000)
        .map(|i| site(&[&format!("s{i}.example"), &format!("*.w{i}.example")]))
        .collect();
    let later = site(&["s7.example", "other.example"]);
    sites.push(later.clone());
    let at_once = Routes::new(sites.clone(), None);
    let by_change = Routes::default().changed(&[], &sites);
    for name in [
        "s0.example",
        "s2999.example",
        "x.w5.example",
        "other.example",
    ] {
        assert!(
            Arc::ptr_eq(
                at_once.find(name).expect(name),
                by_change.find(name).expect(name)
            ),
            "{name}"
        );
    }
    assert!(Arc::ptr_eq(at_once.find("s7.example").unwrap(), &later));
    assert!(at_once.find("w5.example").is_none());
    let count = |r: &Routes| r.shards.iter().map(|s| s.sites.len()).sum::<usize>();
    assert_eq!(count(&at_once), 3001);
    assert_eq!(count(&at_once), count(&by_change));
}

#[test]
fn a_change_touches_only_its_sites_and_keeps_the_rest_shared() {
    let table = SiteTable::new();
    let many: Vec<Arc<Site>> = (0..2000)
        .map(|i| site(&[&format!("s{i}.example")]))
        .collect();
    let default = HostName::parse("s7.example").unwrap();
    table.publish(Routes::new(many.clone(), Some(&default)));
    let before = table.routes.load_full();

    let added = site(&["new.example", "*.new.example"]);
    table.change(&many[7..8], std::slice::from_ref(&added));
    assert_eq!(served_by(&table, "s7.example"), None, "removed");
    assert_eq!(
        table.lookup(None).map(|s| s.name().to_owned()),
        None,
        "the default was s7"
    );
    assert_eq!(
        served_by(&table, "new.example").as_deref(),
        Some("new.example")
    );
    assert_eq!(
        served_by(&table, "a.new.example").as_deref(),
        Some("new.example")
    );
    assert_eq!(
        served_by(&table, "s8.example").as_deref(),
        Some("s8.example")
    );
    assert_eq!(table.len(), 2000);
    let after = table.routes.load_full();
    let copied = before
        .shards
        .iter()
        .zip(after.shards.iter())
        .filter(|(a, b)| !Arc::ptr_eq(a, b))
        .count();
    assert!(
        copied <= 4,
        "{copied} shards copied for a change of three names"
    );

    // A site whose name another site took since is not taken out with it.
    let replacement = site(&["s8.example"]);
    table.change(&many[8..9], std::slice::from_ref(&replacement));
    table.change(&[many[8].clone()], &[]);
    assert!(
        table
            .lookup(Some("s8.example"))
            .is_some_and(|s| Arc::ptr_eq(&s, &replacement))
    );
}
