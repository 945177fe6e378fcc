//! Certificate selection and routing: one certificate per SNI (exact and wildcard), unknown
//! or missing SNI refused with `unrecognized_name`, Host/SNI mismatch 421, :80 redirects.

mod common;

use common::*;

const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

fn three_sites_and_a_wildcard(ca: &TestCa, origins: &[&Origin]) -> EdgeProcess {
    sites_with(ca, origins, "")
}

fn sites_with(ca: &TestCa, origins: &[&Origin], extra: &str) -> EdgeProcess {
    start_edge(
        ca,
        &[
            (&["a.example.com"], vec![origins[0].url()]),
            (&["b.example.com", "b2.example.com"], vec![origins[1].url()]),
            (&["c.example.org"], vec![origins[2].url()]),
            (&["*.apps.example.net"], vec![origins[3].url()]),
        ],
        extra,
    )
}

/// With room for one decoded key, every handshake below to another site evicts the last key
/// and opens and decodes its own sealed one: the certificate and key served stay right.
#[tokio::test(flavor = "multi_thread")]
async fn each_sni_gets_its_own_certificate_and_site() {
    let ca = TestCa::new();
    let origins = [
        Origin::start("A").await,
        Origin::start("B").await,
        Origin::start("C").await,
        Origin::start("W").await,
    ];
    let edge = sites_with(
        &ca,
        &origins.iter().collect::<Vec<_>>(),
        "[tls]\nkey_cache = 1\n",
    );
    let cases = [
        ("a.example.com", "DNS:a.example.com", "A"),
        (
            "b.example.com",
            "DNS:b.example.com, DNS:b2.example.com",
            "B",
        ),
        (
            "b2.example.com",
            "DNS:b.example.com, DNS:b2.example.com",
            "B",
        ),
        ("c.example.org", "DNS:c.example.org", "C"),
        ("shop.apps.example.net", "DNS:*.apps.example.net", "W"),
        ("API.Apps.Example.NET", "DNS:*.apps.example.net", "W"),
    ];
    for (sni, san, origin) in cases.iter().chain(&cases).copied() {
        // openssl sees the site's certificate…
        let fields = served_cert_fields(edge.https, sni);
        assert!(fields.contains(san), "SNI {sni}: openssl saw {fields}");
        // …and a verifying Rust client reaches the site's origin.
        let got = get_once(
            edge.https_addr(),
            &sni.to_ascii_lowercase(),
            "/x",
            client_config(&ca.root_der, ALPN),
        )
        .await
        .unwrap_or_else(|e| panic!("SNI {sni}: {e}"));
        assert_eq!(got.text(), format!("origin {origin} /x"));
    }
    assert_eq!(edge.count_log("cannot decode the signing key"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_or_missing_sni_is_refused() {
    let ca = TestCa::new();
    let origins = [
        Origin::start("A").await,
        Origin::start("B").await,
        Origin::start("C").await,
        Origin::start("W").await,
    ];
    let edge = three_sites_and_a_wildcard(&ca, &origins.iter().collect::<Vec<_>>());
    for sni in [
        "unknown.example.com",
        "apps.example.net",
        "x.y.apps.example.net",
    ] {
        let out = s_client(edge.https, Some(sni));
        assert!(out.contains("unrecognized name"), "SNI {sni}: {out}");
        assert!(
            !out.contains("BEGIN CERTIFICATE"),
            "a certificate leaked for {sni}"
        );
        let err = tls_connect(
            edge.https_addr(),
            Some(sni),
            client_config(&ca.root_der, ALPN),
        )
        .await
        .expect_err("handshake must fail");
        assert!(err.to_string().contains("UnrecognisedName"), "{err}");
    }
    let out = s_client(edge.https, None);
    assert!(out.contains("unrecognized name"), "no SNI: {out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_sni_is_served_by_the_default_host() {
    let ca = TestCa::new();
    let origin = Origin::start("D").await;
    let edge = start_edge(
        &ca,
        &[(&["default.example.com"], vec![origin.url()])],
        "[tls]\ndefault_host = \"default.example.com\"\n",
    );
    let out = s_client(edge.https, None);
    assert!(
        out.contains("CN=default.example.com") || out.contains("CN = default.example.com"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn host_not_covered_by_the_connection_gets_421() {
    let ca = TestCa::new();
    let origins = [
        Origin::start("A").await,
        Origin::start("B").await,
        Origin::start("C").await,
        Origin::start("W").await,
    ];
    let edge = three_sites_and_a_wildcard(&ca, &origins.iter().collect::<Vec<_>>());
    for alpn in [&[b"h2".as_slice()][..], &[b"http/1.1".as_slice()][..]] {
        let mut conn = HttpConn::open(
            edge.https_addr(),
            "a.example.com",
            client_config(&ca.root_der, alpn),
        )
        .await
        .unwrap();
        let got = conn.get("c.example.org", "/").await.unwrap();
        assert_eq!(got.status, 421, "h2={}", conn.is_h2());
        assert!(
            got.text().contains("421"),
            "short page expected: {}",
            got.text()
        );
        let got = conn.get("a.example.com:443", "/ok").await.unwrap();
        assert_eq!(got.text(), "origin A /ok");
    }
    assert_eq!(origins[2].hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    // curl, Host header differing from SNI.
    let (ok, out) = curl(
        "a.example.com",
        edge.https,
        "/",
        &edge.root_path(),
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Host: b.example.com",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(out, "421");
}

#[tokio::test(flavor = "multi_thread")]
async fn port_80_redirects_keep_path_and_query() {
    let ca = TestCa::new();
    let origin = Origin::start("R").await;
    let edge = start_edge(
        &ca,
        &[(&["r.example.com", "*.r.example.com"], vec![origin.url()])],
        "",
    );
    let redirect = |host: &str, target: &str| {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{redirect_url}",
                "-H",
            ])
            .arg(format!("Host: {host}"))
            .arg(format!("http://127.0.0.1:{}{target}", edge.http))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let port = edge.https;
    assert_eq!(
        redirect("r.example.com", "/a/b?x=1&y=%20z"),
        format!("308 https://r.example.com:{port}/a/b?x=1&y=%20z")
    );
    assert_eq!(
        redirect("WWW.r.example.com:80", "/"),
        format!("308 https://www.r.example.com:{port}/")
    );
    assert_eq!(redirect("other.example.com", "/"), "404 ");
    // The ACME HTTP-01 path is answered by the challenge hook, never redirected.
    assert_eq!(
        redirect("r.example.com", "/.well-known/acme-challenge/nothing"),
        "404 "
    );
}
