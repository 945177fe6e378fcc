//! Unit tests of `managed`.

use super::first_cert::recorded_info;
use super::*;

/// A manager on a fresh fs store and its one site, `app.localhost`, served by the
/// internal CA (renewal window: `acme.renew_before`, 30 days by default).
fn manager_and_site() -> (tempfile::TempDir, Arc<CertManager>, crate::sites::Site) {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::config::Config::parse(
        "[[site]]\nhost = \"app.localhost\"\norigins = [\"http://127.0.0.1:9\"]\n",
        std::path::Path::new("/nonexistent"),
    )
    .unwrap();
    let store = Store::open_with(
        &crate::config::StorageSettings::Fs,
        &dir.path().join("data"),
    )
    .unwrap();
    let manager = CertManager::new(
        store,
        &config.acme,
        &config.internal_names,
        Arc::new(Challenges::default()),
        Arc::new(crate::events::Events::default()),
    )
    .unwrap();
    let site_config = config.sites[0].clone();
    let first = manager.initial_cert(&site_config);
    let site = crate::sites::Site::build(site_config, first, std::time::Duration::from_secs(1));
    (dir, manager, site)
}

#[test]
fn a_certificate_state_comes_from_its_own_record_or_else_from_its_dates() {
    let (_dir, manager, site) = manager_and_site();
    let info = site.served_cert().unwrap().bundle.info.clone();
    let record = |source, state| inventory::RecordStatus {
        source,
        state,
        failure: None,
        recovered: None,
        replaced: None,
        queued: None,
    };
    let fresh = info.not_before + std::time::Duration::from_secs(60);
    let internal = Some(Source::Internal);
    assert_eq!(
        manager.state(&site, None, fresh),
        (CertState::Issued, internal)
    );
    // Inside the renewal window, and past the end.
    let late = info.not_after - std::time::Duration::from_secs(3600);
    assert_eq!(
        manager.state(&site, None, late),
        (CertState::Expiring, internal)
    );
    assert_eq!(
        manager.state(&site, None, info.not_after),
        (CertState::Expired, internal)
    );
    // The record of the served certificate says more (a failed renewal)…
    let failed = record(Source::Internal, CertState::Failed);
    assert_eq!(
        manager.state(&site, Some(&failed), fresh),
        (CertState::Failed, internal)
    );
    // …but a record of another source (an order pending for an upload) does not.
    let other = record(Source::Acme, CertState::Failed);
    assert_eq!(
        manager.state(&site, Some(&other), fresh),
        (CertState::Issued, internal)
    );
    let pending = record(Source::Internal, CertState::Pending);
    assert_eq!(
        manager.state(&site, Some(&pending), fresh),
        (CertState::Issued, internal)
    );
    // Nothing served: the record's state, or pending.
    let unserved = crate::sites::Site::build(
        site.config().clone(),
        None,
        std::time::Duration::from_secs(1),
    );
    assert_eq!(
        manager.state(&unserved, None, fresh),
        (CertState::Pending, None)
    );
    assert_eq!(
        manager.state(&unserved, Some(&other), fresh),
        (CertState::Failed, Some(Source::Acme))
    );
}

#[test]
fn a_first_step_is_queued_for_when_it_has_something_to_do() {
    let (_dir, manager, site) = manager_and_site();
    let info = site.served_cert().unwrap().bundle.info.clone();
    let hour = std::time::Duration::from_secs(3600);
    // Just issued: not due for a long time, so the first look comes within the hour,
    // spread by the serial (not all million sites in the same second).
    let fresh = info.not_before;
    let at = renewal::first_step_at(&manager, &site, fresh);
    assert!(at > fresh && at <= fresh + hour, "{at:?}");
    // Due, expired, forced, or nothing served: at once.
    assert_eq!(
        renewal::first_step_at(&manager, &site, info.not_after),
        info.not_after
    );
    let unserved = crate::sites::Site::build(
        site.config().clone(),
        None,
        std::time::Duration::from_secs(1),
    );
    assert_eq!(renewal::first_step_at(&manager, &unserved, fresh), fresh);
    site.force_renewal();
    assert_eq!(renewal::first_step_at(&manager, &site, fresh), fresh);
}

#[test]
fn an_install_serves_the_certificate_and_tells_the_subscribers_whose_it_is() {
    let (_dir, manager, site) = manager_and_site();
    let mut changes = manager.changes();
    let bundle = site.served_cert().unwrap().bundle.clone();
    let serial = bundle.info.serial.clone();
    manager.install(&site, ServedCert::new(bundle, Source::Uploaded));
    assert_eq!(site.served_cert().unwrap().source, Source::Uploaded);
    assert_eq!(
        changes.try_recv().unwrap(),
        CertChange {
            names: site.hosts().to_vec(),
            source: Source::Uploaded,
            state: CertState::Issued,
            serial: Some(serial),
            installed: true,
        }
    );
    assert!(changes.try_recv().is_err(), "one notice per install");
    // A state written to the record is a change too.
    manager.set_state(site.hosts(), Source::Acme, |r| {
        r.set_failed(crate::certs::record::Failure {
            reason: "refused".into(),
            attempts: 1,
            next_retry: 0,
        });
    });
    let change = changes.try_recv().unwrap();
    assert_eq!((change.state, change.installed), (CertState::Failed, false));
    assert_eq!(change.names, site.hosts().to_vec());
}

#[test]
fn a_record_of_an_issued_certificate_holds_what_parsing_its_leaf_finds() {
    let hosts = ["b.example", "a.example"].map(|h| HostName::parse(h).unwrap());
    let pair = crate::certs::selfsigned::generate(&hosts, 30).unwrap();
    let bundle = CertBundle::from_pem(pair.chain_pem.as_bytes(), pair.key_pem.as_bytes());
    let parsed = bundle.unwrap().info;
    let mut record = CertRecord::pending(&hosts, Source::Acme);
    record.set_issued(pair.chain_pem.clone(), "sealed".into(), &parsed);
    let recorded = recorded_info(&record).unwrap();
    assert_eq!(recorded.serial, parsed.serial);
    assert_eq!(recorded.not_before, parsed.not_before);
    assert_eq!(recorded.not_after, parsed.not_after);
    let sorted = |names: &[String]| {
        let mut names = names.to_vec();
        names.sort();
        names
    };
    assert_eq!(sorted(&recorded.names), sorted(&parsed.names));
    // An upload may name more than its site: its leaf is parsed.
    record.source = Source::Uploaded;
    assert!(recorded_info(&record).is_none());
    // Nothing issued yet: nothing to take.
    assert!(recorded_info(&CertRecord::pending(&hosts, Source::Acme)).is_none());
}
