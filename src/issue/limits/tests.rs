//! Unit tests of `limits`.

use super::*;

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| (*n).to_owned()).collect()
}

fn attempt(at: u64, list: &[&str], outcome: Outcome) -> Attempt {
    Attempt {
        at,
        names: names(list),
        outcome,
        renewal: false,
    }
}

const NOW: u64 = 1_000_000;

#[test]
fn orders_beyond_the_account_limit_wait_until_the_oldest_leaves_the_window() {
    let limits = CaLimits {
        new_orders_per_3h: Some(3),
        ..CaLimits::default()
    };
    let ledger = [
        attempt(NOW - 100, &["a.com"], Outcome::Issued),
        attempt(NOW - 50, &["b.com"], Outcome::Failed),
        attempt(NOW - 3 * HOUR - 1, &["old.com"], Outcome::Issued),
    ];
    let me = names(&["c.com"]);
    assert_eq!(decide(&limits, &ledger, &me, false, 0, NOW), Decision::Now);
    let full = [
        &ledger[..],
        &[attempt(NOW - 10, &["d.com"], Outcome::Placed)],
    ]
    .concat();
    match decide(&limits, &full, &me, false, 0, NOW) {
        Decision::Wait {
            until,
            limit,
            reason,
        } => {
            assert_eq!(limit, Limit::NewOrders);
            assert_eq!(until, NOW - 100 + 3 * HOUR);
            assert!(reason.contains("3 orders for this account"), "{reason}");
            assert!(reason.contains("acme.limits.new_orders_per_3h"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // An order the CA never took counts for nothing.
    let unsent = [
        &ledger[..],
        &[attempt(NOW - 10, &["d.com"], Outcome::NotPlaced)],
    ]
    .concat();
    assert_eq!(decide(&limits, &unsent, &me, false, 0, NOW), Decision::Now);
}

#[test]
fn renewals_waiting_go_before_new_sites() {
    let limits = CaLimits {
        new_orders_per_3h: Some(3),
        ..CaLimits::default()
    };
    let ledger = [attempt(NOW - 100, &["a.com"], Outcome::Issued)];
    let me = names(&["new.com"]);
    // Two renewals wait: one order left of three, and it is theirs.
    assert!(matches!(
        decide(&limits, &ledger, &me, false, 2, NOW),
        Decision::Wait { limit: Limit::NewOrders, ref reason, .. } if reason.contains("kept for renewals")
    ));
    assert_eq!(
        decide(&limits, &ledger, &names(&["a.com"]), true, 2, NOW),
        Decision::Now
    );
    assert_eq!(decide(&limits, &ledger, &me, false, 1, NOW), Decision::Now);
}

#[test]
fn per_domain_duplicate_and_failure_limits_count_their_own_keys() {
    let limits = CaLimits {
        certificates_per_domain_per_week: Some(2),
        duplicates_per_week: Some(1),
        failed_validations_per_hour: Some(2),
        ..CaLimits::default()
    };
    let ledger = [
        attempt(NOW - 5 * HOUR, &["a.example.com"], Outcome::Issued),
        attempt(NOW - 4 * HOUR, &["b.example.com"], Outcome::Issued),
        attempt(NOW - 200, &["x.other.org"], Outcome::FailedValidation),
        attempt(NOW - 100, &["x.other.org"], Outcome::FailedValidation),
    ];
    let held = |list: &[&str]| match decide(&limits, &ledger, &names(list), false, 0, NOW) {
        Decision::Wait { limit, until, .. } => Some((limit, until)),
        _ => None,
    };
    assert_eq!(
        held(&["c.example.com"]),
        Some((Limit::CertificatesPerDomain, NOW - 5 * HOUR + WEEK))
    );
    assert_eq!(held(&["c.example.net"]), None);
    assert_eq!(
        held(&["x.other.org"]),
        Some((Limit::FailedValidations, NOW - 200 + HOUR))
    );
    assert_eq!(held(&["y.other.org"]), None);
    let dup = CaLimits {
        duplicates_per_week: Some(1),
        ..CaLimits::default()
    };
    assert!(matches!(
        decide(&dup, &ledger, &names(&["a.example.com"]), true, 0, NOW),
        Decision::Wait {
            limit: Limit::Duplicates,
            ..
        }
    ));
    // The latest of several holding limits is the one reported.
    let both = [
        &ledger[..],
        &[attempt(NOW - 60, &["x.other.org"], Outcome::Issued)],
    ]
    .concat();
    assert_eq!(
        decide(&limits, &both, &names(&["x.other.org"]), false, 0, NOW),
        decide(
            &CaLimits {
                duplicates_per_week: Some(1),
                ..CaLimits::default()
            },
            &both,
            &names(&["x.other.org"]),
            false,
            0,
            NOW
        )
    );
}

#[test]
fn too_many_names_are_refused_and_lets_encrypt_is_recognised() {
    let limits = CaLimits::default_for("https://acme-v02.api.letsencrypt.org/directory");
    assert_eq!(limits, CaLimits::LETS_ENCRYPT);
    assert_eq!(
        CaLimits::default_for("https://acme-staging-v02.api.letsencrypt.org/directory"),
        CaLimits::LETS_ENCRYPT
    );
    assert_eq!(
        CaLimits::default_for("https://127.0.0.1:14000/dir"),
        CaLimits::default()
    );
    let many: Vec<String> = (0..101).map(|i| format!("n{i}.example.com")).collect();
    assert!(matches!(
        decide(&limits, &[], &many, false, 0, NOW),
        Decision::Never { ref reason } if reason.contains("at most 100")
    ));
}

#[test]
fn use_is_reported_at_the_busiest_key() {
    let ledger = [
        attempt(NOW - 10, &["a.example.com"], Outcome::Issued),
        attempt(NOW - 20, &["b.example.com"], Outcome::Issued),
        attempt(NOW - 30, &["c.other.org"], Outcome::Issued),
        attempt(NOW - WEEK - 1, &["d.other.org"], Outcome::Issued),
    ];
    assert_eq!(used(Limit::NewOrders, &ledger, NOW), (3, None));
    assert_eq!(
        used(Limit::CertificatesPerDomain, &ledger, NOW),
        (2, Some("example.com".into()))
    );
    assert_eq!(used(Limit::FailedValidations, &ledger, NOW), (0, None));
}
