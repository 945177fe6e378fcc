//! The record format's tests: round trips, authentication of every field, the migration
//! of untagged records.

use super::*;
use crate::certs::Source;

fn names(list: &[&str]) -> Vec<HostName> {
    list.iter().map(|n| HostName::parse(n).unwrap()).collect()
}

#[test]
fn records_round_trip_and_corrupt_ones_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let records = CertRecords::new(&store);
    let site = names(&["a.test"]);
    assert!(records.load(&site).unwrap().is_none());
    let mut record = CertRecord::pending(&site, Source::Internal);
    record.sealed_key = Some(records.seal_key(&site, b"key bytes").unwrap());
    records.save(&site, &record).unwrap();
    let loaded = records.load(&site).unwrap().unwrap();
    assert_eq!(
        CertRecord {
            auth: None,
            ..loaded.clone()
        },
        record
    );
    let sealed = loaded.sealed_key.unwrap();
    assert_eq!(
        records.open_key(&site, &sealed).unwrap().as_slice(),
        b"key bytes"
    );
    // The key sealed for one site does not open as another's.
    assert!(records.open_key(&names(&["b.test"]), &sealed).is_err());

    let other = names(&["b.test"]);
    let path = dir
        .path()
        .join("certs")
        .join(format!("{}.json", cert_id(&other)));
    std::fs::write(&path, "{ not json").unwrap();
    let err = records.load(&other).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    let all = records.load_all();
    assert_eq!(all.len(), 2);
    assert_eq!(all.iter().filter(|r| r.is_ok()).count(), 1);
}

#[test]
fn any_change_to_a_record_fails_its_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let records = CertRecords::new(&store);
    let site = names(&["a.test"]);
    let mut record = CertRecord::pending(&site, Source::Acme);
    record.chain_pem =
        Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into());
    record.sealed_key = Some(records.seal_key(&site, b"key").unwrap());
    records.save(&site, &record).unwrap();
    let path = dir
        .path()
        .join("certs")
        .join(format!("{}.json", cert_id(&site)));
    let original = std::fs::read_to_string(&path).unwrap();
    for (from, to) in [
        ("AAAA", "AAAB"),
        ("\"pending\"", "\"issued\""),
        ("\"acme\"", "\"uploaded\""),
    ] {
        std::fs::write(&path, original.replacen(from, to, 1)).unwrap();
        let err = records.load(&site).unwrap_err();
        assert!(matches!(err, StoreError::Tampered { .. }), "{from}: {err}");
    }
    // A tag removed, or a whole record copied over another's slot.
    let mut untagged: serde_json::Value = serde_json::from_str(&original).unwrap();
    untagged.as_object_mut().unwrap().remove("auth");
    std::fs::write(&path, untagged.to_string()).unwrap();
    assert!(matches!(
        records.load(&site),
        Err(StoreError::Tampered { .. })
    ));
    let other = names(&["b.test"]);
    let other_path = dir
        .path()
        .join("certs")
        .join(format!("{}.json", cert_id(&other)));
    std::fs::write(&other_path, &original).unwrap();
    assert!(matches!(
        records.load(&other),
        Err(StoreError::Tampered { .. })
    ));
    std::fs::write(&path, &original).unwrap();
    assert!(records.load(&site).unwrap().is_some());
}

#[test]
fn legacy_records_are_tagged_once_and_lose_plaintext_keys() {
    let dir = tempfile::tempdir().unwrap();
    let site = names(&["a.test"]);
    let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let key = "-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n";
    {
        let store = Store::open(dir.path()).unwrap();
        CertRecords::new(&store).migrate().unwrap();
        std::fs::remove_file(dir.path().join(RECORDS_V2)).unwrap();
        let mut record = CertRecord::pending(&site, Source::Uploaded);
        record.chain_pem = Some(format!("{cert}{key}"));
        store.save_json(&key_of(&cert_id(&site)), &record).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let records = CertRecords::new(&store);
    records.migrate().unwrap();
    let migrated = records.load(&site).unwrap().unwrap();
    assert_eq!(migrated.chain_pem.as_deref(), Some(cert));
    let raw = std::fs::read_to_string(records.path(&cert_id(&site))).unwrap();
    assert!(!raw.contains("PRIVATE KEY"), "{raw}");
}
