//! The newcomer's first command: `onehttps run` with no config serves the built-in demo over
//! HTTPS on 127.0.0.1:8443 with a certificate from the internal CA kept under ./onehttps-data,
//! and `onehttps ca root` prints the root that verifies it; the console address and token it
//! prints open the dashboard, which shows the demo site active (in headless Chromium).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn run_without_config_serves_the_demo_page() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("edge.log")).unwrap();
    let mut child = Command::new(common::binary())
        .arg("run")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let root = dir.path().join("root.pem");
    let page = loop {
        let ca = Command::new(common::binary())
            .args(["ca", "root"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            ca.status.success(),
            "{}",
            String::from_utf8_lossy(&ca.stderr)
        );
        std::fs::write(&root, &ca.stdout).unwrap();
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(&root)
            .arg("https://localhost:8443/")
            .output()
            .unwrap();
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "demo not reachable: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(dir.path().join("edge.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // The printed console address and token open the dashboard, which shows the demo site
    // active with its certificate.
    let log = std::fs::read_to_string(dir.path().join("edge.log")).unwrap_or_default();
    let printed = log
        .lines()
        .find_map(|line| line.strip_prefix("onehttps console: "))
        .unwrap_or_else(|| panic!("no console address printed:\n{log}"));
    let (url, token) = printed
        .split_once("  (admin token: ")
        .unwrap_or_else(|| panic!("no token printed: {printed}"));
    assert_eq!(url, "http://127.0.0.1:9180/");
    let token = token.trim_end_matches(')');
    let browser = common::browser::Browser::start();
    browser.goto(url);
    browser.type_into("#token-input", token);
    browser.click("#token-submit");
    browser.wait_for("#overview .cards", Duration::from_secs(10));
    browser.click("nav a[data-view=sites]");
    let row = "#configured-sites tr[data-host='localhost'][data-status=active]";
    browser.wait_for(row, Duration::from_secs(10));
    let days = browser.text(&format!("{row} .cert-days"));
    assert!(days.ends_with(" d"), "{days}");
    let shots = std::env::var_os("ONEHTTPS_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console"));
    browser.screenshot(&shots.join("demo-sites.png"));
    drop(browser);

    let data = dir.path().join("onehttps-data");
    // The internal CA's key is sealed inside the one store file.
    let key = data.join("store.redb");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    common::assert_no_plaintext_keys(&data);
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    assert!(page.contains("onehttps is working"), "{page}");
    assert!(page.contains("x-forwarded-proto</td><td>https"), "{page}");
    assert_eq!(mode, 0o600, "private key file mode");
    assert!(
        status.success(),
        "SIGTERM should stop the demo cleanly: {status}"
    );
}
