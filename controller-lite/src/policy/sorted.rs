//! Operations on sorted, duplicate-free lists of dense entity indices.

/// The values present in every list; empty when `lists` is empty.
pub(super) fn intersect_all(mut lists: Vec<&[u32]>) -> Vec<u32> {
    lists.sort_unstable_by_key(|l| l.len());
    let mut lists = lists.into_iter();
    let Some(smallest) = lists.next() else {
        return Vec::new();
    };
    let mut acc = smallest.to_vec();
    for other in lists {
        acc.retain(|x| other.binary_search(x).is_ok());
        if acc.is_empty() {
            break;
        }
    }
    acc
}

/// The values of both sorted lists, in order, each once.
pub(super) fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    small
        .iter()
        .copied()
        .filter(|x| large.binary_search(x).is_ok())
        .collect()
}

/// Sorts and deduplicates in place.
pub(super) fn normalize(values: &mut Vec<u32>) {
    values.sort_unstable();
    values.dedup();
}

/// A fixed-size bit set used to take unions of many lists without sorting.
#[derive(Debug)]
pub(super) struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    /// A set able to hold `0..len`, empty.
    pub(super) fn new(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(64)],
        }
    }

    /// Adds every value of `values` (each must be below the set's length).
    pub(super) fn extend(&mut self, values: &[u32]) {
        for &v in values {
            if let Some(word) = self.words.get_mut((v / 64) as usize) {
                *word |= 1 << (v % 64);
            }
        }
    }

    /// The members in increasing order; the set is left empty.
    pub(super) fn drain_sorted(&mut self) -> Vec<u32> {
        let mut out = Vec::new();
        for (w, word) in self.words.iter_mut().enumerate() {
            let mut bits = *word;
            while bits != 0 {
                out.push(w as u32 * 64 + bits.trailing_zeros());
                bits &= bits - 1;
            }
            *word = 0;
        }
        out
    }
}
