//! Which names are local: the top-level names no public CA validates (`localhost`, `test`,
//! `internal`, `local`, `invalid`) and the operator's own (`[internal_ca] names`), which the
//! internal CA serves and its root is name-constrained to.

use super::HostName;

/// The top-level names no public CA validates; the internal CA's root is name-constrained
/// to these and to the operator's `[internal_ca] names`.
pub const LOCAL_SUFFIXES: [&str; 5] = ["localhost", "test", "internal", "local", "invalid"];

/// Whether no public CA could ever validate `name` (one of [`LOCAL_SUFFIXES`] or under it).
pub fn is_local_name(name: &HostName) -> bool {
    let last = name.as_str().rsplit('.').next().unwrap_or_default();
    LOCAL_SUFFIXES.contains(&last)
}

/// The names the internal CA serves: [`LOCAL_SUFFIXES`] and the operator's extra suffixes
/// (`[internal_ca] names`, e.g. `corp` or `home.arpa`), each with every name under it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalNames {
    extra: Vec<String>,
}

impl LocalNames {
    pub fn new(extra: Vec<String>) -> Self {
        Self { extra }
    }

    /// Every suffix, built-in first: what the root is name-constrained to.
    pub fn suffixes(&self) -> Vec<String> {
        let mut all: Vec<String> = LOCAL_SUFFIXES.iter().map(|s| (*s).to_owned()).collect();
        all.extend(self.extra.iter().cloned());
        all
    }

    /// Whether `name` is a suffix or lies under one (`*.a.corp` under `corp`).
    pub fn contains(&self, name: &HostName) -> bool {
        let name = name.as_str().trim_start_matches("*.");
        LOCAL_SUFFIXES.iter().any(|s| under(name, s)) || self.extra.iter().any(|s| under(name, s))
    }
}

/// `name` is `suffix` or ends with `.suffix`.
fn under(name: &str, suffix: &str) -> bool {
    name == suffix
        || name
            .strip_suffix(suffix)
            .is_some_and(|prefix| prefix.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names() {
        let local = |n: &str| is_local_name(&HostName::parse(n).unwrap());
        assert!(local("localhost"));
        assert!(local("demo.localhost"));
        assert!(local("*.shop.test"));
        assert!(local("db.internal"));
        assert!(!local("example.com"));
        assert!(!local("test.example.com"));
        let names = LocalNames::new(vec!["corp".into(), "home.arpa".into()]);
        let has = |n: &str| names.contains(&HostName::parse(n).unwrap());
        assert!(has("shop.test") && has("*.shop.test") && has("localhost"));
        assert!(has("wiki.corp") && has("nas.home.arpa") && has("*.x.corp"));
        assert!(!has("example.com") && !has("arpa") && !has("xcorp"));
    }
}
