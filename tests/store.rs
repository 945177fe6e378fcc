//! The internal CA and the encrypted store, with the real binary: a `*.test` site verifies
//! against `onehttps ca root`; keys never sit in plaintext; a wrong master key is refused
//! with a clear error; a corrupt record is reported, set aside and replaced, and the other
//! sites' certificates are untouched; a data directory in the one-file-per-entry layout moves
//! into the embedded store on first start and keeps every certificate.

mod common;

use common::{EdgePorts, EdgeProcess, curl, served_cert_fields, site_table};
use std::process::Command;
use std::time::Duration;

/// An edge whose sites are local names, so the internal CA issues for them.
/// The store is the one-file-per-entry layout (`kind = "fs"`), so tests can alter records.
fn internal_edge(sites: &[&[&str]]) -> EdgeProcess {
    let dir = tempfile::tempdir().unwrap();
    let ports = EdgePorts::new();
    let mut config = ports.server_table(&dir.path().join("data"));
    config.push_str(common::FS_STORAGE);
    for hosts in sites {
        config.push_str(&site_table(hosts, &["http://127.0.0.1:9".into()], None));
    }
    EdgeProcess::start(dir, &ports, &config)
}

fn ca_root(edge: &EdgeProcess) -> std::path::PathBuf {
    let out = Command::new(common::binary())
        .args(["ca", "root", "--config"])
        .arg(&edge.config_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{text}");
    let path = edge.dir.path().join("internal-root.pem");
    std::fs::write(&path, text).unwrap();
    path
}

fn serial(port: u16, sni: &str) -> String {
    served_cert_fields(port, sni)
        .lines()
        .find_map(|l| l.strip_prefix("serial=").map(str::to_owned))
        .unwrap_or_default()
}

#[test]
fn internal_ca_serves_a_wildcard_test_site_that_verifies_against_ca_root() {
    let edge = internal_edge(&[&["*.shop.test", "shop.test"]]);
    let root = ca_root(&edge);
    for host in ["shop.test", "a.shop.test", "www.shop.test"] {
        // 502: the origin is down, but the TLS handshake and verification succeeded.
        let (ok, out) = curl(
            host,
            edge.https,
            "/",
            &root,
            &["-o", "/dev/null", "-w", "%{http_code}"],
        );
        assert!(ok && out.contains("502"), "{host}: {out}");
    }
    // One label only: a.b.shop.test is not covered and gets no certificate.
    let (ok, _) = curl("a.b.shop.test", edge.https, "/", &root, &[]);
    assert!(!ok);
    common::assert_no_plaintext_keys(&edge.data_dir());

    // The root users are asked to trust can only vouch for local names, never an IP.
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&root)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("Name Constraints"), "{text}");
    for permitted in ["DNS:test", "DNS:localhost", "DNS:internal", "DNS:local"] {
        assert!(text.contains(permitted), "{permitted}: {text}");
    }
    assert!(text.contains("IP:0.0.0.0/0.0.0.0"), "{text}");

    // And a public name cannot be given to it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("public.toml");
    std::fs::write(
        &path,
        "[[site]]\nhost = \"www.example.com\"\norigins = [\"http://127.0.0.1:9\"]\nissuer = \"internal\"\n",
    )
    .unwrap();
    let out = Command::new(common::binary())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("only issues for local names"), "{err}");
}

#[test]
fn a_wrong_master_key_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let ports = EdgePorts::new();
    let mut config = ports.server_table(&dir.path().join("data"));
    config.push_str(&site_table(
        &["a.test"],
        &["http://127.0.0.1:9".into()],
        None,
    ));
    let path = dir.path().join("onehttps.toml");
    std::fs::write(&path, config).unwrap();
    let run = |key: &str, args: &[&str]| {
        let mut cmd = Command::new(common::binary());
        cmd.args(args)
            .arg("--config")
            .arg(&path)
            .env("ONEHTTPS_MASTER_KEY", key);
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.stdout,
        )
    };
    let right = "ab".repeat(32);
    let (code, err, root) = run(&right, &["ca", "root"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        !dir.path().join("data/master.key").exists(),
        "the env key must not be written out"
    );

    let wrong = "cd".repeat(32);
    for args in [&["ca", "root"][..], &["run"][..]] {
        let (code, err, _) = run(&wrong, args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains("master key does not open"), "{args:?}: {err}");
        assert!(err.contains("ONEHTTPS_MASTER_KEY"), "{err}");
    }
    let (code, err, _) = run("not-hex", &["ca", "root"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("must be 64 hexadecimal digits"), "{err}");
    // Nothing was changed by the refused attempts.
    let (code, _, again) = run(&right, &["ca", "root"]);
    assert_eq!((code, again), (Some(0), root));
}

#[test]
fn a_corrupt_record_is_reported_set_aside_and_the_rest_keeps_its_certificates() {
    let mut edge = internal_edge(&[&["a.test"], &["b.test"]]);
    let (a_before, b_before) = (serial(edge.https, "a.test"), serial(edge.https, "b.test"));
    assert!(!a_before.is_empty() && !b_before.is_empty());
    edge.stop();

    let certs = edge.data_dir().join("certs");
    let a_record = std::fs::read_dir(&certs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("a.test-")
        })
        .unwrap();
    std::fs::write(&a_record, "{ this is not json").unwrap();
    // A temporary left by a write that died half-way is never loaded.
    std::fs::write(certs.join(".b.test-x.json.1.1.tmp"), "garbage").unwrap();

    edge.restart();
    let log = edge.log();
    assert!(log.contains("certificate record rejected"), "{log}");
    assert!(
        log.contains(&a_record.display().to_string()),
        "the path is named: {log}"
    );
    let root = ca_root(&edge);
    let (ok, out) = curl("a.test", edge.https, "/", &root, &["-o", "/dev/null"]);
    assert!(ok, "a.test gets a fresh certificate: {out}");
    assert_ne!(serial(edge.https, "a.test"), a_before);
    assert_eq!(
        serial(edge.https, "b.test"),
        b_before,
        "b.test keeps its certificate"
    );
    let names: Vec<String> = std::fs::read_dir(&certs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.contains(".json.corrupt-")),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
}

/// The record of `name` in the edge's data dir.
fn record_path(edge: &EdgeProcess, name: &str) -> std::path::PathBuf {
    std::fs::read_dir(edge.data_dir().join("certs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let file = p.file_name().unwrap().to_string_lossy().into_owned();
            file.starts_with(&format!("{name}-")) && file.ends_with(".json")
        })
        .unwrap()
}

#[test]
fn a_record_altered_on_disk_is_refused_set_aside_and_replaced() {
    let mut edge = internal_edge(&[&["a.test"], &["b.test"]]);
    let (a_before, b_before) = (serial(edge.https, "a.test"), serial(edge.https, "b.test"));
    edge.stop();

    // One base64 character of the chain changes: it still parses, but it is not what the
    // edge wrote. Likewise a state flipped by hand on b's record.
    let a_record = record_path(&edge, "a.test");
    let mut record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&a_record).unwrap()).unwrap();
    let chain = record["chain_pem"].as_str().unwrap().to_owned();
    let at = chain.find('\n').unwrap() + 40;
    let old = chain.as_bytes()[at] as char;
    let new = if old == 'A' { 'B' } else { 'A' };
    let mut altered = chain.clone();
    altered.replace_range(at..at + 1, &new.to_string());
    record["chain_pem"] = serde_json::json!(altered);
    std::fs::write(&a_record, record.to_string()).unwrap();
    let b_record = record_path(&edge, "b.test");
    let b_text = std::fs::read_to_string(&b_record).unwrap();
    std::fs::write(&b_record, b_text.replacen("\"issued\"", "\"failed\"", 1)).unwrap();

    edge.restart();
    let log = edge.log();
    assert!(log.contains("failed authentication"), "{log}");
    assert!(log.contains(&a_record.display().to_string()), "{log}");
    assert_ne!(
        serial(edge.https, "a.test"),
        a_before,
        "the altered chain is not served"
    );
    assert_ne!(serial(edge.https, "b.test"), b_before);
    let (code, shown) = edge.api("GET", "/api/v1/certificates/a.test", None);
    assert_eq!(code, 200, "{shown}");
    assert!(
        shown.contains("failed authentication"),
        "the API says why: {shown}"
    );
    assert!(shown.contains("\"issued\""), "{shown}");
    let names: Vec<String> = std::fs::read_dir(edge.data_dir().join("certs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names
            .iter()
            .filter(|n| n.contains(".json.corrupt-"))
            .count(),
        2,
        "{names:?}"
    );
}

#[test]
fn a_site_removed_from_the_config_loses_its_record_and_key() {
    let mut edge = internal_edge(&[&["a.test"], &["b.test"]]);
    let b_record = record_path(&edge, "b.test");
    let a_record = record_path(&edge, "a.test");
    let config = std::fs::read_to_string(&edge.config_path).unwrap();
    let without_b = config.replace(
        &site_table(&["b.test"], &["http://127.0.0.1:9".into()], None),
        "",
    );
    assert_ne!(config, without_b);
    edge.rewrite_config(&without_b);
    edge.signal("HUP");
    edge.wait_log(
        "its certificate record and key are deleted",
        Duration::from_secs(10),
    );
    assert!(
        !b_record.exists(),
        "b.test's record (and sealed key) is gone"
    );
    assert!(a_record.exists(), "a.test keeps its record");
    assert!(
        serial(edge.https, "b.test").is_empty(),
        "b.test is not served"
    );
    assert!(!serial(edge.https, "a.test").is_empty());
}

#[test]
fn an_fs_data_dir_moves_into_the_embedded_store_and_keeps_its_certificates() {
    let mut edge = internal_edge(&[&["a.test"], &["b.test", "www.b.test"]]);
    let (a_before, b_before) = (serial(edge.https, "a.test"), serial(edge.https, "b.test"));
    assert!(!a_before.is_empty() && !b_before.is_empty());
    let root_before = std::fs::read(ca_root(&edge)).unwrap();
    edge.stop();

    // The same config without `kind = "fs"`: the default, embedded.
    let config = std::fs::read_to_string(&edge.config_path).unwrap();
    edge.rewrite_config(&config.replace(common::FS_STORAGE, ""));
    edge.restart();
    edge.wait_log("moved the store", Duration::from_secs(10));
    assert_eq!(
        serial(edge.https, "a.test"),
        a_before,
        "a.test keeps its certificate"
    );
    assert_eq!(
        serial(edge.https, "b.test"),
        b_before,
        "b.test keeps its certificate"
    );
    assert_eq!(serial(edge.https, "www.b.test"), b_before);
    assert_eq!(
        std::fs::read(ca_root(&edge)).unwrap(),
        root_before,
        "same internal CA"
    );
    let data = edge.data_dir();
    assert!(!data.join("certs").exists(), "the old layout is moved away");
    assert!(data.join("fs-migrated/certs").is_dir(), "and kept");
    assert_eq!(common::stored_records(&data).len(), 2);
    common::assert_no_plaintext_keys(&data);

    // Once: a second start reads the embedded store only.
    edge.restart();
    assert_eq!(serial(edge.https, "a.test"), a_before);
    assert_eq!(edge.count_log("moved the store"), 0, "{}", edge.log());
    assert_eq!(edge.count_log("certificate issued"), 0, "{}", edge.log());
}
