//! Unit tests of `onboarding`.

use super::dns::Verdict;
use super::*;
use crate::certs::record::unix;

/// The registry of a fresh fs store with onboarding on (`edge.test`), and its events.
fn onboarding() -> (tempfile::TempDir, Arc<Onboarding>, Arc<Events>) {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::config::Config::parse(
        "[onboarding]\ncname_zone = \"edge.test\"\nnameservers = [\"127.0.0.1:9\"]\nmoved_grace = \"1h\"\n",
        std::path::Path::new("/nonexistent"),
    )
    .unwrap();
    let store = crate::store::Store::open_with(
        &crate::config::StorageSettings::Fs,
        &dir.path().join("data"),
    )
    .unwrap();
    let events = Arc::new(Events::default());
    let certificates = crate::managed::CertManager::new(
        store,
        &config.acme,
        &config.internal_names,
        Arc::new(crate::issue::Challenges::default()),
        events.clone(),
    )
    .unwrap();
    let onboarding = Onboarding::new(
        config.onboarding.clone(),
        config.internal_names.clone(),
        certificates,
        events.clone(),
    );
    (dir, onboarding, events)
}

#[test]
fn a_stored_site_record_whose_names_do_not_parse_is_set_aside_with_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(&crate::config::StorageSettings::Fs, dir.path()).unwrap();
    let good = SiteRecord::new(
        Hosts::try_from(vec!["shop.example.com".to_owned()]).unwrap(),
        vec!["http://192.0.2.1".into()],
        "edge.test",
    )
    .unwrap();
    store.save_json(&SiteRecord::path(&good.id), &good).unwrap();
    let mut json = serde_json::to_value(&good).unwrap();
    for (id, hosts) in [
        ("nohosts", serde_json::json!([])),
        ("badhost", serde_json::json!(["not a host!"])),
    ] {
        json["id"] = serde_json::json!(id);
        json["hosts"] = hosts;
        store.save_json(&SiteRecord::path(id), &json).unwrap();
    }
    let events = Events::default();
    let registry = Onboarding::read_registry(&store, &events);
    assert_eq!(registry.len(), 1);
    assert!(registry.by_name("shop.example.com").is_some());
    let rejected: Vec<crate::events::Event> = events
        .since(0)
        .into_iter()
        .filter(|e| e.kind == "site.record_rejected")
        .collect();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    let kept: Vec<String> = std::fs::read_dir(dir.path().join("sites"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        kept.iter().filter(|n| n.contains(".json.corrupt-")).count(),
        2,
        "{kept:?}"
    );
    // Read again: the set-aside records are not read, nothing more is rejected.
    let again = Events::default();
    assert_eq!(Onboarding::read_registry(&store, &again).len(), 1);
    assert!(again.since(0).is_empty());
}

/// A registered site for `host` in `status`.
fn site(onboarding: &Onboarding, host: &str, status: SiteStatus) -> SiteRecord {
    let mut record = SiteRecord::new(
        Hosts::try_from(vec![host.to_owned()]).unwrap(),
        vec!["http://192.0.2.1".into()],
        "edge.test",
    )
    .unwrap();
    record.status = status;
    onboarding.sync(record.clone());
    record
}

fn kinds(events: &Events) -> Vec<String> {
    events.since(0).into_iter().map(|e| e.kind).collect()
}

#[test]
fn a_pending_site_waits_with_the_reason_and_backs_off_until_its_cname_is_seen() {
    let (_dir, onboarding, events) = onboarding();
    let record = site(&onboarding, "a.example.com", SiteStatus::PendingDns);
    let first = onboarding.after_check(&record, Verdict::Missing).unwrap();
    let now = onboarding.get(&record.id).unwrap();
    assert_eq!(now.status, SiteStatus::PendingDns);
    assert_eq!(
        now.reason.as_deref(),
        Some(&*format!("no CNAME to {} yet", record.cname_target))
    );
    assert_eq!(now.checks, 1);
    let found = Verdict::Elsewhere {
        found: "elsewhere.test".into(),
    };
    let second = onboarding.after_check(&now, found).unwrap();
    let now = onboarding.get(&record.id).unwrap();
    assert!(
        now.reason
            .as_deref()
            .unwrap()
            .starts_with("the name points to elsewhere.test, not ")
    );
    assert_eq!(now.checks, 2);
    assert!(second >= first, "backs off: {first:?} then {second:?}");
    // A resolver that cannot be asked changes nothing but the wait.
    let unavailable = Verdict::Unavailable {
        reason: "timeout".into(),
    };
    let wait = onboarding.after_check(&now, unavailable);
    assert_eq!(wait, Some(onboarding.settings.recheck_min));
    assert_eq!(onboarding.get(&record.id).unwrap().checks, 2);
    // Seen: issuing at once, the site is served (its gate opens) and it is said.
    let now = onboarding.get(&record.id).unwrap();
    assert_eq!(
        onboarding.after_check(&now, Verdict::Verified),
        Some(Duration::ZERO)
    );
    let now = onboarding.get(&record.id).unwrap();
    assert_eq!(now.status, SiteStatus::Issuing);
    assert_eq!(now.checks, 0);
    let (_, gate) = onboarding.site_config(&record.id, None).unwrap();
    assert!(gate.is_open());
    assert_eq!(kinds(&events), ["site.verified"]);
}

#[test]
fn an_active_site_whose_dns_moves_keeps_its_gate_for_the_grace_then_comes_back() {
    let (_dir, onboarding, events) = onboarding();
    let record = site(&onboarding, "b.example.com", SiteStatus::Active);
    let (_, gate) = onboarding.site_config(&record.id, None).unwrap();
    let active_recheck = Some(onboarding.settings.active_recheck);
    assert_eq!(
        onboarding.after_check(&record, Verdict::Verified),
        active_recheck
    );
    assert_eq!(
        onboarding.get(&record.id).unwrap().status,
        SiteStatus::Active
    );
    // Moved away: dns_moved, said once, still served within the grace period.
    assert_eq!(
        onboarding.after_check(&record, Verdict::Missing),
        active_recheck
    );
    let moved = onboarding.get(&record.id).unwrap();
    assert_eq!(moved.status, SiteStatus::DnsMoved);
    assert!(moved.moved_since.is_some());
    assert!(gate.is_open(), "within the grace period the site renews");
    // Past the grace period the gate closes (renewals stop); the site stays served.
    let mut long_ago = moved.clone();
    long_ago.moved_since = Some(unix(SystemTime::now()) - 2 * 3600);
    assert_eq!(
        onboarding.after_check(&long_ago, Verdict::Missing),
        active_recheck
    );
    assert!(!gate.is_open(), "past the grace period renewals stop");
    // Back: active again, the gate opens.
    assert_eq!(
        onboarding.after_check(&moved, Verdict::Verified),
        active_recheck
    );
    let back = onboarding.get(&record.id).unwrap();
    assert_eq!(back.status, SiteStatus::Active);
    assert_eq!(back.moved_since, None);
    assert!(gate.is_open());
    assert_eq!(kinds(&events), ["site.dns_moved", "site.active"]);
}

/// The record of site `id` as the store holds it.
fn stored(onboarding: &Onboarding, id: &str) -> SiteRecord {
    onboarding
        .store
        .load_json_dir::<SiteRecord>("sites")
        .into_iter()
        .map(Result::unwrap)
        .find(|r| r.id == id)
        .unwrap()
}

#[test]
fn a_new_status_is_stored_at_once_and_check_bookkeeping_with_the_next_flush() {
    let (_dir, onboarding, _events) = onboarding();
    let record = site(&onboarding, "c.example.com", SiteStatus::PendingDns);
    onboarding
        .store
        .save_json(&SiteRecord::path(&record.id), &record)
        .unwrap();
    // A failed check keeps the status: counter and reason wait for the flush.
    onboarding.after_check(&record, Verdict::Missing).unwrap();
    assert_eq!(onboarding.get(&record.id).unwrap().checks, 1);
    assert_eq!(stored(&onboarding, &record.id).checks, 0);
    onboarding.store_unsaved();
    let flushed = stored(&onboarding, &record.id);
    assert_eq!(flushed.checks, 1);
    assert!(flushed.reason.is_some());
    // A verified name changes the status: stored before after_check returns.
    let now = onboarding.get(&record.id).unwrap();
    onboarding.after_check(&now, Verdict::Verified).unwrap();
    assert_eq!(stored(&onboarding, &record.id).status, SiteStatus::Issuing);
    // A removed site's unsaved bookkeeping is not written back.
    onboarding.update(&record.id, |r| r.next_check += 60);
    onboarding.remove(&record.id).unwrap();
    onboarding.store_unsaved();
    assert!(
        onboarding
            .store
            .load_json_dir::<SiteRecord>("sites")
            .is_empty()
    );
}
