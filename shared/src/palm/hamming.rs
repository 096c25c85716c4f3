//! Hamming distances between 256-bit descriptors, with the hardware popcount when the CPU
//! has one (checked at run time: the binary stays portable to any x86-64 or aarch64).
//!
//! The core primitive is [`nearest_two`]: for every row descriptor, the nearest and second
//! nearest column descriptor, and for every column the same over rows, in one pass over the
//! distance matrix without storing it.

use super::template::Descriptor;

/// Descriptor as four 64-bit words, for fast xor + popcount.
pub type Words = [u64; 4];

pub fn to_words(d: &Descriptor) -> Words {
    let mut w = [0u64; 4];
    for (i, chunk) in d.chunks_exact(8).enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        w[i] = u64::from_le_bytes(b);
    }
    w
}

/// Hamming distance between two descriptors (0..=256).
#[inline]
pub fn distance(a: &Words, b: &Words) -> u32 {
    (a[0] ^ b[0]).count_ones()
        + (a[1] ^ b[1]).count_ones()
        + (a[2] ^ b[2]).count_ones()
        + (a[3] ^ b[3]).count_ones()
}

/// Nearest and second nearest neighbour of one descriptor in the other set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nearest {
    /// Index of the nearest neighbour (the first one on ties, as OpenCV's BFMatcher).
    pub index: u32,
    pub best: u32,
    /// Distance of the second nearest (257 when the other set has one element). Computed for
    /// rows only: for columns it may be left at 257.
    pub second: u32,
}

impl Nearest {
    const EMPTY: Nearest = Nearest {
        index: u32::MAX,
        best: 257,
        second: 257,
    };

    #[inline(always)]
    fn update(&mut self, d: u32, idx: u32) {
        if d < self.best {
            self.second = self.best;
            self.best = d;
            self.index = idx;
        } else if d < self.second {
            self.second = d;
        }
    }
}

/// For each row of `a`, its two nearest in `b`; for each of `b`, its two nearest in `a`.
pub fn nearest_two(a: &[Words], b: &[Words]) -> (Vec<Nearest>, Vec<Nearest>) {
    let mut rows = vec![Nearest::EMPTY; a.len()];
    let mut cols = vec![Nearest::EMPTY; b.len()];
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("popcnt")
        {
            // SAFETY: the CPU has both features the function is compiled with.
            unsafe { nearest_two_avx2(a, b, &mut rows, &mut cols) };
            return (rows, cols);
        }
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has popcnt, the only feature the function is compiled with.
            unsafe { nearest_two_popcnt(a, b, &mut rows, &mut cols) };
            return (rows, cols);
        }
    }
    nearest_two_generic(a, b, &mut rows, &mut cols);
    (rows, cols)
}

#[inline(always)]
fn nearest_two_generic(a: &[Words], b: &[Words], rows: &mut [Nearest], cols: &mut [Nearest]) {
    for (i, (wa, row)) in a.iter().zip(rows.iter_mut()).enumerate() {
        for (j, (wb, col)) in b.iter().zip(cols.iter_mut()).enumerate() {
            let d = distance(wa, wb);
            row.update(d, j as u32);
            col.update(d, i as u32);
        }
    }
}

/// Row-buffered variant: the distances of one row first, then row minimum and second
/// minimum, then a branch-free update of the column minima (all loops the compiler
/// vectorises). Column `second` is not computed (left at 257): nothing uses it.
#[inline(always)]
fn nearest_two_rowbuf(a: &[Words], b: &[Words], rows: &mut [Nearest], cols: &mut [Nearest]) {
    let mut d = vec![0u32; b.len()];
    let mut col_best = vec![257u32; b.len()];
    let mut col_idx = vec![u32::MAX; b.len()];
    for (i, (wa, row)) in a.iter().zip(rows.iter_mut()).enumerate() {
        for (dj, wb) in d.iter_mut().zip(b) {
            *dj = distance(wa, wb);
        }
        let best = d.iter().copied().min().unwrap_or(257);
        let idx = d.iter().position(|&x| x == best).unwrap_or(0);
        let dups = d.iter().filter(|&&x| x == best).count();
        let second = if dups > 1 {
            best
        } else {
            d.iter()
                .copied()
                .filter(|&x| x != best)
                .min()
                .unwrap_or(257)
        };
        if !d.is_empty() {
            *row = Nearest {
                index: idx as u32,
                best,
                second,
            };
        }
        let iu = i as u32;
        for ((&dj, cb), ci) in d.iter().zip(col_best.iter_mut()).zip(col_idx.iter_mut()) {
            let better = dj < *cb;
            *cb = if better { dj } else { *cb };
            *ci = if better { iu } else { *ci };
        }
    }
    for ((c, &b), &i) in cols.iter_mut().zip(&col_best).zip(&col_idx) {
        *c = Nearest {
            index: i,
            best: b,
            second: 257,
        };
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn nearest_two_avx2(a: &[Words], b: &[Words], rows: &mut [Nearest], cols: &mut [Nearest]) {
    nearest_two_rowbuf(a, b, rows, cols)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn nearest_two_popcnt(a: &[Words], b: &[Words], rows: &mut [Nearest], cols: &mut [Nearest]) {
    nearest_two_generic(a, b, rows, cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_neighbours() {
        let z = [0u8; 32];
        let mut one = [0u8; 32];
        one[31] = 0b1000_0001;
        let full = [0xffu8; 32];
        let w: Vec<Words> = [z, one, full].iter().map(to_words).collect();
        assert_eq!(distance(&w[0], &w[1]), 2);
        assert_eq!(distance(&w[0], &w[2]), 256);
        assert_eq!(distance(&w[1], &w[2]), 254);
        let (rows, cols) = nearest_two(&w[..1], &w[1..]);
        assert_eq!(
            rows[0],
            Nearest {
                index: 0,
                best: 2,
                second: 256
            }
        );
        assert_eq!(cols[1].best, 256);
        assert_eq!(cols[1].second, 257);
        let mut r = vec![Nearest::EMPTY; 1];
        let mut c = vec![Nearest::EMPTY; 2];
        nearest_two_generic(&w[..1], &w[1..], &mut r, &mut c);
        assert_eq!(r, rows);
        assert_eq!(c, cols);
        let mut r2 = vec![Nearest::EMPTY; 1];
        let mut c2 = vec![Nearest::EMPTY; 2];
        nearest_two_rowbuf(&w[..1], &w[1..], &mut r2, &mut c2);
        assert_eq!(r2, rows);
        assert_eq!(
            c2.iter().map(|c| (c.index, c.best)).collect::<Vec<_>>(),
            cols.iter().map(|c| (c.index, c.best)).collect::<Vec<_>>()
        );
    }
}
