//! Reading a directory in pages of one revision, so a listing of a million keys is
//! consistent and never one huge response.

use etcd_client::GetOptions;

/// Operations per transaction of a bulk write (etcd refuses more than 128 by default).
pub(super) const TXN_OPS: usize = 128;

/// Bytes per transaction of a bulk write (etcd refuses requests over 1.5 MiB by default).
pub(super) const TXN_BYTES: usize = 1024 * 1024;

/// Keys per page of a listing: records are a few KiB, and a response must stay under the
/// client's 4 MiB message limit.
pub(super) const PAGE: i64 = 256;

/// A listing of every key under a prefix, page by page, at the revision of its first page.
pub(super) struct Listing {
    pub(super) end: Vec<u8>,
    /// Where the next page starts; `None` once the last page is in.
    pub(super) next: Option<Vec<u8>>,
    /// 0 until the first page answers.
    pub(super) revision: i64,
    pub(super) entries: Vec<(String, Vec<u8>)>,
}

/// One page from a key up to `end`, at `revision` (0: the current one). Serializable: the
/// member answers from its own copy without a round of consensus per page. That copy may
/// be a moment behind the cluster, but the listing is one revision throughout and the
/// watch that follows replays every change after it, so nothing is missed.
pub(super) fn page_options(end: Vec<u8>, revision: i64) -> GetOptions {
    let options = GetOptions::new()
        .with_range(end)
        .with_limit(PAGE)
        .with_serializable();
    if revision > 0 {
        options.with_revision(revision)
    } else {
        options
    }
}

/// The first key after every key that starts with `prefix` (etcd's range end for a prefix).
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff: to the end of the keyspace.
    vec![0]
}

pub(super) fn relative(key: &[u8], strip: usize) -> Option<String> {
    let key = std::str::from_utf8(key).ok()?;
    key.get(strip..).map(str::to_owned)
}

pub(super) fn entries(kvs: &[etcd_client::KeyValue], strip: usize) -> Vec<(String, Vec<u8>)> {
    kvs.iter()
        .filter_map(|kv| Some((relative(kv.key(), strip)?, kv.value().to_vec())))
        .collect()
}

impl Listing {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            end: prefix_end(prefix.as_bytes()),
            next: Some(prefix.as_bytes().to_vec()),
            revision: 0,
            entries: Vec::new(),
        }
    }

    pub(super) fn next_key(&self) -> Option<Vec<u8>> {
        self.next.clone()
    }

    pub(super) fn take(&mut self, page: etcd_client::GetResponse, strip: usize) {
        if self.revision == 0 {
            self.revision = page.header().map_or(0, |h| h.revision());
        }
        self.entries.extend(entries(page.kvs(), strip));
        self.next = match page.kvs().last() {
            Some(last) if page.more() => {
                let mut after = last.key().to_vec();
                after.push(0);
                Some(after)
            }
            _ => None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    pub(super) fn a_prefix_ends_at_the_next_key_that_does_not_start_with_it() {
        assert_eq!(prefix_end(b"/onehttps/certs/"), b"/onehttps/certs0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }
}
