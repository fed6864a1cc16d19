//! The mutation engine: real seeds bent the ways broken and hostile
//! uploads are (the 400 mutations of issue 13 and more).
//!
//! Hand-written rather than a fuzzing framework: the stable toolchain has
//! no coverage-guided fuzzer, and what matters here is that every case is
//! a plausible damaged real file, replayable from (seed, case number).

/// One edit of a seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Flip one bit.
    BitFlip,
    /// Set a byte to a random or "interesting" value (0, 0xff, 0x7f, 0x80).
    SetByte,
    /// Cut the data short.
    Truncate,
    /// Edit within the first 64 bytes (magic numbers, sizes in headers).
    Header,
    /// Overwrite 2 or 4 bytes with a big or tiny number (dimensions, lengths).
    Number,
    /// Replace the tail with the tail of another seed.
    Splice,
    /// Repeat a chunk in place.
    Repeat,
    /// Remove a range.
    Delete,
    /// Insert random bytes.
    Insert,
}

const EDITS: [Edit; 9] = [
    Edit::BitFlip,
    Edit::SetByte,
    Edit::Truncate,
    Edit::Header,
    Edit::Number,
    Edit::Splice,
    Edit::Repeat,
    Edit::Delete,
    Edit::Insert,
];

/// Deterministic mutations from a seed.
pub struct Mutator {
    rng: fastrand::Rng,
    /// Cap on a mutant's length (repeats and inserts grow data).
    max_len: usize,
}

impl Mutator {
    pub fn new(seed: u64, max_len: usize) -> Self {
        Mutator {
            rng: fastrand::Rng::with_seed(seed),
            max_len,
        }
    }

    pub fn rng(&mut self) -> &mut fastrand::Rng {
        &mut self.rng
    }

    /// A copy of one of `seeds` with one to four edits.
    pub fn mutant(&mut self, seeds: &[Vec<u8>]) -> Vec<u8> {
        let mut data = seeds[self.rng.usize(..seeds.len())].clone();
        for _ in 0..self.rng.usize(1..=4) {
            let edit = EDITS[self.rng.usize(..EDITS.len())];
            self.apply(edit, &mut data, seeds);
        }
        data.truncate(self.max_len);
        data
    }

    /// Applies `edit` to `data`.
    pub fn apply(&mut self, edit: Edit, data: &mut Vec<u8>, seeds: &[Vec<u8>]) {
        let r = &mut self.rng;
        if data.is_empty() && !matches!(edit, Edit::Insert | Edit::Splice) {
            return;
        }
        let len = data.len();
        match edit {
            Edit::BitFlip => {
                let i = r.usize(..len);
                data[i] ^= 1 << r.u8(..8);
            }
            Edit::SetByte => {
                let i = r.usize(..len);
                data[i] = match r.u8(..6) {
                    0 => 0,
                    1 => 0xff,
                    2 => 0x7f,
                    3 => 0x80,
                    _ => r.u8(..),
                };
            }
            Edit::Truncate => {
                // Mostly near the end (cut-off uploads), sometimes anywhere.
                let at = if r.bool() {
                    len.saturating_sub(r.usize(..=len.min(256)))
                } else {
                    r.usize(..=len)
                };
                data.truncate(at);
            }
            Edit::Header => {
                let end = len.min(64);
                let i = r.usize(..end);
                data[i] = r.u8(..);
            }
            Edit::Number => {
                let width = if r.bool() { 2 } else { 4 };
                if len < width {
                    return;
                }
                let i = r.usize(..=(len - width).min(256));
                let value: u32 = match r.u8(..4) {
                    0 => 0,
                    1 => u32::MAX,
                    2 => 1 << r.u32(8..31),
                    _ => r.u32(..),
                };
                let bytes = if r.bool() {
                    value.to_be_bytes()
                } else {
                    value.to_le_bytes()
                };
                data[i..i + width].copy_from_slice(&bytes[4 - width..]);
            }
            Edit::Splice => {
                let other = &seeds[r.usize(..seeds.len())];
                let at = r.usize(..=len);
                let from = r.usize(..=other.len());
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            Edit::Repeat => {
                let start = r.usize(..len);
                let n = r.usize(1..=(len - start).min(4096));
                let chunk = data[start..start + n].to_vec();
                for _ in 0..r.usize(1..=8) {
                    data.splice(start..start, chunk.iter().copied());
                }
            }
            Edit::Delete => {
                let start = r.usize(..len);
                let n = r.usize(1..=(len - start).min(4096));
                data.drain(start..start + n);
            }
            Edit::Insert => {
                let at = r.usize(..=len);
                let n = r.usize(1..=64);
                let bytes: Vec<u8> = (0..n).map(|_| r.u8(..)).collect();
                data.splice(at..at, bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutants_are_deterministic_bounded_and_different() {
        let seeds = vec![(0..=255u8).cycle().take(3000).collect::<Vec<u8>>()];
        let a: Vec<_> = {
            let mut m = Mutator::new(7, 4000);
            (0..200).map(|_| m.mutant(&seeds)).collect()
        };
        let mut m = Mutator::new(7, 4000);
        let b: Vec<_> = (0..200).map(|_| m.mutant(&seeds)).collect();
        assert_eq!(a, b, "same seed, same cases");
        assert!(a.iter().all(|d| d.len() <= 4000));
        let changed = a.iter().filter(|d| **d != seeds[0]).count();
        assert!(changed > 190, "{changed} of 200 differ from the seed");
        for edit in EDITS {
            let mut d = seeds[0].clone();
            m.apply(edit, &mut d, &seeds);
            let mut empty = Vec::new();
            m.apply(edit, &mut empty, &seeds);
        }
    }
}
