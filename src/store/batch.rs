//! Entries read from the store in one go, packed into two buffers (keys, values) that are
//! reused batch after batch: a restart reads a million records without allocating (and so
//! first touching) memory for each of them.

/// Keys and values of up to a batch of entries, in the order read.
#[derive(Debug, Default)]
pub struct Batch {
    keys: String,
    values: Vec<u8>,
    /// Where each entry's key and value end in `keys` and `values`; each starts where the
    /// previous one ended.
    ends: Vec<(usize, usize)>,
}

impl Batch {
    /// Appends an entry (copying it).
    pub fn push(&mut self, key: &str, value: &[u8]) {
        self.keys.push_str(key);
        self.values.extend_from_slice(value);
        self.ends.push((self.keys.len(), self.values.len()));
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Empties the batch, keeping its buffers for the next one.
    pub fn clear(&mut self) {
        self.keys.clear();
        self.values.clear();
        self.ends.clear();
    }

    /// The entries, in the order pushed.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &[u8])> {
        let mut from = (0, 0);
        self.ends.iter().map(move |&(key_end, value_end)| {
            let entry = (&self.keys[from.0..key_end], &self.values[from.1..value_end]);
            from = (key_end, value_end);
            entry
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_back_as_pushed_and_a_cleared_batch_is_empty() {
        let mut batch = Batch::default();
        batch.push("certs/a.json", b"{}");
        batch.push("certs/é.json", b"");
        batch.push("sites/b.json", b"\x00\xff");
        let entries: Vec<_> = batch.entries().collect();
        assert_eq!(
            entries,
            [
                ("certs/a.json", &b"{}"[..]),
                ("certs/é.json", &b""[..]),
                ("sites/b.json", &b"\x00\xff"[..]),
            ]
        );
        batch.clear();
        assert!(batch.is_empty());
        assert_eq!(batch.entries().count(), 0);
        batch.push("x", b"y");
        assert_eq!(batch.entries().collect::<Vec<_>>(), [("x", &b"y"[..])]);
    }
}
