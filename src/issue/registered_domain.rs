//! The registered domain of a name (`shop.example.co.uk` → `example.co.uk`): what a CA's
//! "certificates per registered domain" limit counts by. Matched against the ICANN section of
//! the Public Suffix List, compiled into the binary (`data/public_suffixes.dat`); the private
//! section is left out, so names are grouped as coarsely as any CA could group them and a
//! count never comes out lower than the CA's.

use std::collections::HashSet;
use std::sync::LazyLock;

/// The list's rules, IDN rules in their ASCII form.
struct Rules {
    /// `co.uk`, `*.ck` (a wildcard rule is kept with its `*.`).
    plain: HashSet<String>,
    /// Exceptions to wildcards, without their `!`: `www.ck`.
    exceptions: HashSet<String>,
}

static RULES: LazyLock<Rules> = LazyLock::new(|| {
    let mut rules = Rules {
        plain: HashSet::new(),
        exceptions: HashSet::new(),
    };
    for line in include_str!("data/public_suffixes.dat").lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        let (set, rule) = match line.strip_prefix('!') {
            Some(rule) => (&mut rules.exceptions, rule),
            None => (&mut rules.plain, line),
        };
        let ascii = match rule.strip_prefix("*.") {
            Some(rest) => idna::domain_to_ascii(rest).map(|r| format!("*.{r}")),
            None => idna::domain_to_ascii(rule),
        };
        if let Ok(ascii) = ascii {
            set.insert(ascii);
        }
    }
    rules
});

/// The registered domain of `name` (lower-case ASCII, no trailing dot; a wildcard's `*.` is
/// ignored): the public suffix plus one label. A name that is itself a public suffix (or has
/// no dot) is its own registered domain.
pub(super) fn registered_domain(name: &str) -> String {
    let name = name.trim_start_matches("*.").trim_end_matches('.');
    let labels: Vec<&str> = name.split('.').collect();
    // Length in labels of the longest public suffix of `name` (the implicit rule `*`: 1).
    let mut suffix_len = 1;
    for take in (1..=labels.len()).rev() {
        let candidate = labels[labels.len() - take..].join(".");
        if RULES.exceptions.contains(&candidate) {
            suffix_len = take - 1;
            break;
        }
        let wildcard = labels[labels.len() - take + 1..].join(".");
        if RULES.plain.contains(&candidate)
            || (take >= 2 && RULES.plain.contains(&format!("*.{wildcard}")))
        {
            suffix_len = take;
            break;
        }
    }
    let take = (suffix_len + 1).min(labels.len());
    labels[labels.len() - take..].join(".")
}

#[cfg(test)]
mod tests {
    use super::registered_domain;

    #[test]
    fn names_group_by_their_registered_domain() {
        for (name, domain) in [
            ("example.com", "example.com"),
            ("shop.example.com", "example.com"),
            ("*.a.b.example.com", "example.com"),
            ("shop.example.co.uk", "example.co.uk"),
            ("example.co.uk", "example.co.uk"),
            ("co.uk", "co.uk"),
            ("com", "com"),
            // A wildcard rule (`*.ck`) and its exception (`!www.ck`).
            ("a.b.c.ck", "b.c.ck"),
            ("x.www.ck", "www.ck"),
            // Not in the list: the last label is the suffix.
            ("a.b.example.zz-unknown", "example.zz-unknown"),
            // An IDN suffix, in its ASCII form (`公司.cn`).
            ("shop.example.xn--55qx5d.cn", "example.xn--55qx5d.cn"),
        ] {
            assert_eq!(registered_domain(name), domain, "{name}");
        }
    }
}
