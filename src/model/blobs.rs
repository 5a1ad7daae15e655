//! The store's blob folders as one sorted list of digests, kept as the store keeps them: one
//! list per prefix folder (`blobs/sha256/<xx>/`). Nothing is copied to join them, a digest is
//! found in its own list only, and each blob has an index, so that marks and plans can name a
//! blob in 4 bytes rather than 32.

use crate::model::digest::Digest;

/// Every blob folder of a store, sorted.
#[derive(Clone, Debug, Default)]
pub struct BlobList {
    /// Per first byte, the digests starting with it, sorted.
    buckets: Vec<Vec<Digest>>,
    /// `starts[b]`: the index of the first digest of bucket `b`; `starts[256]` the length.
    starts: Vec<usize>,
    /// `pairs[p]`: the index of the first digest whose first two bytes are `p` (big-endian);
    /// `pairs[65536]` the length. A lookup searches only those few (a sha256 is uniform), by
    /// integer compares: the binary search of a whole bucket by `memcmp` was half of a warm
    /// `gc`'s user time (perf, 1,000 x 60 store).
    pairs: Vec<u32>,
}

impl BlobList {
    /// From the 256 prefix lists, each holding only digests of its prefix (in any order).
    pub fn from_buckets(mut buckets: Vec<Vec<Digest>>) -> BlobList {
        debug_assert_eq!(buckets.len(), 256);
        let mut starts = Vec::with_capacity(257);
        let mut n = 0;
        for (b, list) in buckets.iter_mut().enumerate() {
            debug_assert!(list.iter().all(|d| usize::from(d.0[0]) == b));
            list.sort_unstable();
            // One digest, one place: a blob listed twice would be marked at one and taken for
            // unused at the other.
            list.dedup();
            list.shrink_to_fit();
            starts.push(n);
            n += list.len();
        }
        starts.push(n);
        let mut pairs = Vec::with_capacity(65537);
        for (list, start) in buckets.iter().zip(&starts) {
            for second in 0..=255u8 {
                pairs.push((start + list.partition_point(|d| d.0[1] < second)) as u32);
            }
        }
        pairs.push(n as u32);
        BlobList { buckets, starts, pairs }
    }

    /// From digests in any order.
    pub fn new(digests: impl IntoIterator<Item = Digest>) -> BlobList {
        let mut buckets = vec![Vec::new(); 256];
        for d in digests {
            buckets[usize::from(d.0[0])].push(d);
        }
        BlobList::from_buckets(buckets)
    }

    pub fn len(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The index of a digest, if it is a blob of the store.
    pub fn position(&self, d: &Digest) -> Option<usize> {
        let b = usize::from(d.0[0]);
        let p = b << 8 | usize::from(d.0[1]);
        let (lo, hi) = (*self.pairs.get(p)? as usize, *self.pairs.get(p + 1)? as usize);
        let start = self.starts[b];
        let key = |x: &Digest| u64::from_be_bytes(x.0[..8].try_into().unwrap_or_default());
        let k = key(d);
        let i = self.buckets[b][lo - start..hi - start]
            .binary_search_by(|x| key(x).cmp(&k).then_with(|| x.0[8..].cmp(&d.0[8..])))
            .ok()?;
        Some(lo + i)
    }

    /// The digest at an index.
    pub fn get(&self, i: usize) -> Digest {
        let b = self.starts.partition_point(|s| *s <= i) - 1;
        self.buckets[b][i - self.starts[b]]
    }

    /// Every digest, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Digest> {
        self.buckets.iter().flatten()
    }
}

/// Digests most of which are blobs of the store: those kept as their 4-byte index in its
/// [`BlobList`], the others (a link to a blob the store lacks) whole.
#[derive(Clone, Debug, Default)]
pub struct Digests {
    indexes: Vec<u32>,
    others: Vec<Digest>,
}

impl Digests {
    pub fn push(&mut self, list: &BlobList, d: Digest) {
        match list.position(&d) {
            Some(i) => self.indexes.push(i as u32),
            None => self.others.push(d),
        }
    }

    pub fn len(&self) -> usize {
        self.indexes.len() + self.others.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The digests, given the list they index.
    pub fn iter<'a>(&'a self, list: &'a BlobList) -> impl Iterator<Item = Digest> + 'a {
        self.indexes.iter().map(|i| list.get(*i as usize)).chain(self.others.iter().copied())
    }

    pub fn shrink_to_fit(&mut self) {
        self.indexes.shrink_to_fit();
        self.others.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_follow_the_sorted_order() {
        let d = |a: u8, b: u8| {
            let mut x = [b; 32];
            x[0] = a;
            Digest(x)
        };
        let all = [d(7, 1), d(0, 9), d(255, 3), d(7, 0), d(0, 2)];
        let list = BlobList::new(all);
        let mut sorted = all.to_vec();
        sorted.sort();
        assert_eq!(list.len(), 5);
        assert_eq!(list.iter().copied().collect::<Vec<_>>(), sorted);
        for (i, x) in sorted.iter().enumerate() {
            assert_eq!(list.position(x), Some(i));
            assert_eq!(list.get(i), *x);
        }
        assert_eq!(list.position(&d(7, 5)), None);
        assert!(BlobList::new([]).is_empty());
        let mut some = Digests::default();
        for x in [d(7, 0), d(7, 5), d(255, 3)] {
            some.push(&list, x);
        }
        assert_eq!(some.len(), 3);
        assert_eq!(
            some.iter(&list).collect::<Vec<_>>(),
            [d(7, 0), d(255, 3), d(7, 5)],
            "a digest outside the list stays whole"
        );
    }

    #[test]
    fn a_lookup_finds_every_member_and_nothing_else() {
        use sha2::{Digest as _, Sha256};
        let digest = |i: u32| Digest(Sha256::digest(i.to_le_bytes()).into());
        // Members share first bytes and first two bytes with others, and with non-members.
        let all: Vec<Digest> = (0..20_000).map(digest).collect();
        let list = BlobList::new(all.iter().copied());
        let mut sorted = all.clone();
        sorted.sort();
        for (i, d) in sorted.iter().enumerate() {
            assert_eq!(list.position(d), Some(i));
        }
        for i in 20_000..40_000 {
            assert_eq!(list.position(&digest(i)), None);
        }
        let mut near = sorted[777];
        near.0[31] ^= 1;
        assert_eq!(list.position(&near), None);
        assert_eq!(BlobList::default().position(&sorted[0]), None);
    }
}
