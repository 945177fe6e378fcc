//! The console (`/` of the admin address) in a real headless Chromium against a real edge
//! with Pebble as the CA: a wrong token is refused; a site added on the page shows the CNAME
//! to create and follows the site until it is active; a row on the sites page turns active
//! without a reload; "renew now" changes the served serial on the page; a bad PEM upload
//! shows its error inline; and every admin response carries the security headers. The
//! screenshots of each page go to `$ONEHTTPS_SCREENSHOTS` (docs/console when refreshing the
//! README's), else under the target directory.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::EdgePorts;
use common::browser::Browser;
use common::pebble::{Pebble, PebbleOptions};

/// Where screenshots are written.
fn screenshots() -> PathBuf {
    std::env::var_os("ONEHTTPS_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console"))
}

/// `curl -i` of an admin path: (status line and headers lowercased, body).
fn admin_get(port: u16, path: &str, token: Option<&str>) -> (String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--max-time", "10"]);
    if let Some(token) = token {
        cmd.arg("-H").arg(format!("Authorization: Bearer {token}"));
    }
    let out = cmd
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_ascii_lowercase(), body.to_owned())
}

/// A serial as `aa:bb:…` (the API) or `AABB…` (openssl), without leading zeros, uppercase.
fn bare_serial(serial: &str) -> String {
    serial
        .replace(':', "")
        .trim_start_matches('0')
        .to_ascii_uppercase()
}

/// The serial of the certificate the edge serves for `sni`.
fn served_serial(port: u16, sni: &str) -> String {
    let fields = common::served_cert_fields(port, sni);
    let serial = fields
        .lines()
        .find_map(|line| line.strip_prefix("serial="))
        .unwrap_or_else(|| panic!("no serial served for {sni}: {fields}"));
    bare_serial(serial)
}

#[test]
fn every_admin_response_carries_strict_security_headers_and_the_page_no_inline_script() {
    let ca = common::TestCa::new();
    let (_rt, origin) = common::origin_on_own_runtime("headers-origin");
    let edge = common::start_edge(&ca, &[(&["headers.example"], vec![origin.url()])], "");
    let token = edge.token();
    let paths = [
        ("/", None, "200", "text/html"),
        ("/console.js", None, "200", "text/javascript"),
        ("/console.css", None, "200", "text/css"),
        ("/api/v1/sites", None, "401", "application/json"),
        (
            "/api/v1/overview",
            Some(token.as_str()),
            "200",
            "application/json",
        ),
        ("/no/such/page", None, "404", "application/json"),
        ("/healthz", None, "200", "text/plain"),
    ];
    for (path, token, status, content_type) in paths {
        let (head, _) = admin_get(edge.admin, path, token);
        assert!(
            head.starts_with(&format!("http/1.1 {status}")),
            "{path}: {head}"
        );
        assert!(
            head.contains(&format!("content-type: {content_type}")),
            "{path}: {head}"
        );
        for header in [
            "content-security-policy: default-src 'none'; script-src 'self'; style-src 'self';",
            "frame-ancestors 'none'",
            "form-action 'none'",
            "x-content-type-options: nosniff",
            "referrer-policy: no-referrer",
            "x-frame-options: deny",
            "cache-control: no-store",
        ] {
            assert!(head.contains(header), "{path} lacks `{header}`: {head}");
        }
        assert!(!head.contains("set-cookie"), "{path} sets a cookie: {head}");
    }
    // The page loads its one script from this origin and has none inline, no inline style
    // and no inline event handler (the CSP would refuse them anyway).
    let (_, page) = admin_get(edge.admin, "/", None);
    assert_eq!(page.matches("<script").count(), 1, "{page}");
    assert!(
        page.contains("<script src=\"/console.js\" defer></script>"),
        "{page}"
    );
    assert!(!page.contains("style="), "{page}");
    assert!(!page.contains(" onclick="), "{page}");
    // The script writes data as text only: no markup is ever built from a string.
    let (_, script) = admin_get(edge.admin, "/console.js", None);
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
    ] {
        assert!(!script.contains(sink), "console.js uses {sink}");
    }
    // The overview's JSON and the long poll on events answer as the console expects.
    let (code, body) = edge.api("GET", "/api/v1/overview", None);
    assert_eq!(code, 200, "{body}");
    let overview: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        overview["expiring_per_day"].as_array().map(Vec::len),
        Some(90)
    );
    // The one certificate, valid 30 days, is on day 29 or 30 of the timeline.
    let days = overview["expiring_per_day"].as_array().unwrap();
    let around_30: u64 = days[28..=30].iter().filter_map(|d| d.as_u64()).sum();
    assert_eq!(around_30, 1, "{overview}");
    assert!(
        overview["earliest_expiry"]["seconds_left"]
            .as_u64()
            .unwrap()
            > 28 * 86_400
    );
    let started = std::time::Instant::now();
    let (code, body) = edge.api("GET", "/api/v1/events?since=1000000&wait=1", None);
    assert_eq!(code, 200, "{body}");
    assert!(started.elapsed() >= Duration::from_millis(900), "no wait");
    assert!(body.contains("\"events\":[]"), "{body}");
    let (code, body) = edge.api("GET", "/api/v1/events?wait=26", None);
    assert_eq!(code, 400, "{body}");
}

#[test]
fn the_console_adds_a_site_follows_it_to_active_renews_and_refuses_bad_input() {
    let (_rt, origin) = common::origin_on_own_runtime("console-origin");
    let ports = EdgePorts::new();
    let pebble = Pebble::start(&ports, PebbleOptions::default());
    let edge = pebble.start_onboarding_edge(&ports, "");
    let shots = screenshots();
    let console = format!("http://127.0.0.1:{}/", ports.admin);
    let browser = Browser::start();

    // A wrong token is refused in words; nothing else is shown.
    browser.goto(&console);
    browser.type_into("#token-input", "not-the-token");
    browser.click("#token-submit");
    let refused = browser.text("#token-refused");
    assert!(refused.contains("Token refused"), "{refused}");
    assert!(browser.find("#overview").is_none());
    browser.screenshot(&shots.join("token-refused.png"));

    // The right one opens the overview.
    browser.type_into("#token-input", &edge.token());
    browser.click("#token-submit");
    browser.wait_for("#overview .cards", Duration::from_secs(10));
    // The page is never reloaded from here on: a marker on the window would not survive.
    browser.script("window.consoleMarker = 'still here'; return true;");

    // Add a site: the page shows the exact record to create, then follows the site.
    browser.click("nav a[data-view=add]");
    browser.type_into("#add-hosts", "console.example.com");
    browser.type_into("#add-origins", &origin.url());
    browser.click("#add-submit");
    let target = browser.text("#record-target");
    assert!(target.ends_with(".edge.test"), "{target}");
    assert_eq!(browser.text("#record-name"), "console.example.com");
    browser.wait_for(
        "#add-steps .step.now[data-step=pending_dns]",
        Duration::from_secs(5),
    );
    browser.screenshot(&shots.join("add-site-pending.png"));
    pebble.set_cname("console.example.com", &target);
    browser.wait_for("#add-active", Duration::from_secs(90));
    assert!(browser.text("#add-active").contains("HTTPS is on"));
    browser.screenshot(&shots.join("add-site-active.png"));

    // A second site, added through the API: its row turns active on the sites page by
    // itself.
    let body = serde_json::json!({ "hosts": ["row.example.com"], "origins": [origin.url()] });
    let (code, out) = edge.api("POST", "/api/v1/sites", Some(&body.to_string()));
    assert_eq!(code, 201, "{out}");
    let added: serde_json::Value = serde_json::from_str(&out).unwrap();
    browser.click("nav a[data-view=sites]");
    browser.wait_for(
        "tr[data-host='row.example.com'][data-status=pending_dns]",
        Duration::from_secs(10),
    );
    pebble.set_cname("row.example.com", added["cname_target"].as_str().unwrap());
    browser.wait_for(
        "tr[data-host='row.example.com'][data-status=active]",
        Duration::from_secs(90),
    );
    browser.wait_until(
        "the certificate's days on the row",
        Duration::from_secs(10),
        |b| {
            b.text("tr[data-host='row.example.com'] .cert-days")
                .contains(" d")
        },
    );
    // The search keeps only matching rows.
    browser.type_into("#site-search", "row.");
    browser.wait_until("the search", Duration::from_secs(10), |b| {
        b.find("tr[data-host='console.example.com']").is_none()
            && b.find("tr[data-host='row.example.com']").is_some()
    });
    browser.type_into("#site-search", "");
    browser.wait_for(
        "tr[data-host='console.example.com']",
        Duration::from_secs(10),
    );
    browser.screenshot(&shots.join("sites.png"));

    // Renew now: the serial on the page changes to the new certificate's.
    browser.click("nav a[data-view=certificates]");
    let row = "tr[data-name='console.example.com']";
    browser.wait_for(
        &format!("{row}[data-state=issued]"),
        Duration::from_secs(10),
    );
    let before = browser.text(&format!("{row} .serial"));
    assert!(before.contains(':'), "{before}");
    assert_eq!(
        bare_serial(&before),
        served_serial(edge.https, "console.example.com"),
        "the page shows the served serial"
    );
    browser.click(&format!("{row} button.renew"));
    browser.wait_for("#renew-requested", Duration::from_secs(10));
    browser.wait_until("a new serial on the page", Duration::from_secs(90), |b| {
        let now = b.text(&format!("{row} .serial"));
        now.contains(':') && now != before
    });
    let after = browser.text(&format!("{row} .serial"));
    assert_eq!(
        bare_serial(&after),
        served_serial(edge.https, "console.example.com"),
        "the page shows the renewed certificate, which is the one served"
    );
    browser.screenshot(&shots.join("certificates.png"));

    // A bad PEM is refused inline, and nothing changes.
    browser.type_into("#upload-cert", "this is not a certificate");
    browser.type_into("#upload-key", "nor is this a key");
    browser.click("#upload-submit");
    let error = browser.text("#upload-error");
    assert!(
        error.contains("certificate") || error.contains("key"),
        "{error}"
    );
    browser.screenshot(&shots.join("upload-error.png"));

    // Fifty more sites: the sites page shows them fifty at a time.
    for i in 0..50 {
        let body = serde_json::json!({ "hosts": [format!("page{i}.example.com")], "origins": [origin.url()] });
        let (code, out) = edge.api("POST", "/api/v1/sites", Some(&body.to_string()));
        assert_eq!(code, 201, "{out}");
    }
    browser.click("nav a[data-view=sites]");
    browser.wait_until("the first page of 52", Duration::from_secs(10), |b| {
        b.text(".page-range") == "1–50 of 52"
    });
    browser.click(".next-page");
    browser.wait_until("the second page", Duration::from_secs(10), |b| {
        b.text(".page-range") == "51–52 of 52"
    });
    browser.select_by_value("#site-status", "active");
    browser.wait_until("the active sites only", Duration::from_secs(10), |b| {
        b.text(".page-range") == "1–2 of 2"
    });

    // The events page shows the log, live.
    browser.click("nav a[data-view=events]");
    browser.wait_for(
        "#events-table tr[data-kind='certificate.issued']",
        Duration::from_secs(10),
    );
    browser.screenshot(&shots.join("events.png"));
    browser.click("nav a[data-view=overview]");
    browser.wait_until("rates from two readings", Duration::from_secs(20), |b| {
        !b.text("#stat-handshakes .value").contains('…')
    });
    browser.screenshot(&shots.join("overview.png"));

    assert_eq!(
        browser.script("return window.consoleMarker;"),
        "still here",
        "the console reloaded the page"
    );
    let shown = browser.script("return document.documentElement.outerHTML;");
    assert!(
        !shown
            .as_str()
            .unwrap_or_default()
            .contains("PRIVATE KEY-----\n"),
        "a private key is on the page"
    );
}
