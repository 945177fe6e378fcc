//! `onehttps check`: a table of broken configs, each refused with exit code 2 and a message
//! naming the file, line and problem; a good config passes.

mod common;

use std::process::Command;

use common::*;

fn check(config: &str, dir: &std::path::Path) -> (i32, String) {
    let path = dir.join("check.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn broken_configs_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let (cert, key) = ca.write_leaf(dir.path(), "good", &["good.example.com"], 30);
    let (_, other_key) = ca.write_leaf(dir.path(), "other", &["good.example.com"], 30);
    let (expired_cert, expired_key) =
        ca.write_leaf(dir.path(), "expired", &["good.example.com"], -1);
    let site = |extra: &str| {
        format!(
            "[[site]]\nhost = \"good.example.com\"\norigins = [\"http://127.0.0.1:9\"]\n{extra}"
        )
    };
    let with_files = |c: &std::path::Path, k: &std::path::Path| {
        site(&format!(
            "cert = \"{}\"\nkey = \"{}\"\n",
            c.display(),
            k.display()
        ))
    };

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown key",
            "[server]\nhttps = \"127.0.0.1:443\"\nlistn = 1\n".into(),
            ":3:1: `server.listn`: unknown field `listn`",
        ),
        (
            "unknown section",
            "[serverz]\n".into(),
            "unknown field `serverz`",
        ),
        (
            "bad address",
            "[server]\nhttps = \"localhost:https\"\n".into(),
            ":2:9: `server.https`: `localhost:https` is not an address",
        ),
        (
            "bad duration",
            "[server]\nidle_timeout = \"forever\"\n".into(),
            "`server.idle_timeout`",
        ),
        (
            "missing cert file",
            with_files(&dir.path().join("missing.pem"), &key),
            "`site[0].cert`: cannot read",
        ),
        (
            "missing key file",
            with_files(&cert, &dir.path().join("missing.key")),
            "`site[0].key`: cannot read",
        ),
        (
            "key not matching cert",
            with_files(&cert, &other_key),
            "private key does not match the certificate",
        ),
        (
            "expired cert",
            with_files(&expired_cert, &expired_key),
            "certificate expired",
        ),
        (
            "cert not covering host",
            site("").replace("good.example.com", "evil.example.com")
                + &format!(
                    "cert = \"{}\"\nkey = \"{}\"\n",
                    cert.display(),
                    key.display()
                ),
            "does not cover `evil.example.com`",
        ),
        (
            "bad origin URL",
            site("").replace("http://127.0.0.1:9", "127.0.0.1 9"),
            "`site[0].origins`: `127.0.0.1 9` is not a URL",
        ),
        (
            "https origin",
            site("").replace("http://", "https://"),
            "must start with http://",
        ),
        (
            "bad host",
            site("").replace("good.example.com", "bad host"),
            "`site[0].host`",
        ),
        (
            "ip as host",
            site("").replace("good.example.com", "10.0.0.1"),
            "is an IP address",
        ),
        (
            "wrong type",
            "[server]\nmax_connections = \"many\"\n".into(),
            "max_connections",
        ),
        ("not toml", "[[site]\n".into(), ":1:"),
        (
            "managed public site without a CA",
            site(""),
            "this site needs a certificate: set `cert` and `key`, configure `[acme] directory`",
        ),
        (
            "plain-http ACME directory",
            "[acme]\ndirectory = \"http://ca.example/dir\"\n".into(),
            ":2:13: `acme.directory`: `http://ca.example/dir` is not an https:// URL",
        ),
        (
            "unsupported challenge",
            "[acme]\nchallenges = [\"dns-01\"]\n".into(),
            "`acme.challenges`: `dns-01` is not one of",
        ),
        (
            "unknown issuer",
            site("issuer = \"letsencrypt\"\n"),
            "`site[0].issuer`: `letsencrypt` is not one of",
        ),
        (
            "bad key type",
            "[acme]\nkey_type = \"dsa\"\n".into(),
            "`acme.key_type`",
        ),
        (
            "bad contact",
            "[acme]\ncontact = [\"ops@example.com\"]\n".into(),
            "is not a mailto: URL",
        ),
    ];
    for (name, config, want) in cases {
        let (code, out) = check(&config, dir.path());
        assert_eq!(code, 2, "{name}: exit code {code}, output:\n{out}");
        assert!(out.contains(want), "{name}: wanted {want:?} in:\n{out}");
        assert!(
            out.contains("check.toml:"),
            "{name}: message must name the file:\n{out}"
        );
    }

    let (code, out) = check(&with_files(&cert, &key), dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok (1 sites)"), "{out}");
}

#[test]
fn every_error_of_a_file_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = check(
        "[server]\nhttps = \"x\"\nhttp = \"y\"\n[[site]]\nhost = \"a.example\"\norigins = [\"ftp://z\"]\n",
        dir.path(),
    );
    assert_eq!(code, 2);
    assert_eq!(
        out.lines().filter(|l| l.contains("check.toml:")).count(),
        3,
        "{out}"
    );
}

#[test]
fn run_refuses_a_bad_config_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[tls]\nmin_version = \"1.1\"\n").unwrap();
    let out = Command::new(binary())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`tls.min_version`"));
}
