//! Hamming distances between 256-bit descriptors, with the hardware popcount when the CPU
//! has one (checked at run time: the binary stays portable to any x86-64 or aarch64).
//!
//! The core primitive is [`nearest_two`]: for every row descriptor, the nearest and second
//! nearest column descriptor, and for every column the same over rows, in one pass over the
//! distance matrix without storing it. On x86-64 it picks, at run time, an AVX-512BW build
//! of the row-buffered search, a hand-written AVX2 kernel over transposed descriptors, or
//! plain popcount; every path gives the same answer (tested).

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

/// The instruction-set paths of [`nearest_two`], fastest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Simd {
    Generic,
    Popcnt,
    Avx2,
    Avx512,
}

impl Simd {
    /// What this CPU can run.
    pub fn detect() -> Simd {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512bw") && has!("avx512f") && has!("avx2") && has!("popcnt") {
                return Simd::Avx512;
            }
            if has!("avx2") && has!("popcnt") {
                return Simd::Avx2;
            }
            if has!("popcnt") {
                return Simd::Popcnt;
            }
        }
        Simd::Generic
    }

    /// The path in use: [`Simd::detect`], capped by `PALMLINE_SIMD=generic|popcnt|avx2`
    /// (to measure the slower paths on a fast machine). Decided once per process.
    pub fn current() -> Simd {
        static CURRENT: std::sync::OnceLock<Simd> = std::sync::OnceLock::new();
        *CURRENT.get_or_init(|| {
            let cap = match std::env::var("PALMLINE_SIMD").as_deref() {
                Ok("generic") => Simd::Generic,
                Ok("popcnt") => Simd::Popcnt,
                Ok("avx2") => Simd::Avx2,
                _ => Simd::Avx512,
            };
            Simd::detect().min(cap)
        })
    }
}

/// For each row of `a`, its two nearest in `b`; for each of `b`, its two nearest in `a`.
pub fn nearest_two(a: &[Words], b: &[Words]) -> (Vec<Nearest>, Vec<Nearest>) {
    let mut rows = vec![Nearest::EMPTY; a.len()];
    let mut cols = vec![Nearest::EMPTY; b.len()];
    match Simd::current() {
        // SAFETY (all three): `Simd::detect` found every feature each function is compiled
        // with, and `current` never goes above what was detected.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { nearest_two_avx512(a, b, &mut rows, &mut cols) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { nearest_two_avx2(a, b, &mut rows, &mut cols) },
        #[cfg(target_arch = "x86_64")]
        Simd::Popcnt => unsafe { nearest_two_popcnt(a, b, &mut rows, &mut cols) },
        _ => nearest_two_generic(a, b, &mut rows, &mut cols),
    }
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
    nearest_two_rows(a, b, rows, cols, |wa, d| {
        for (dj, wb) in d.iter_mut().zip(b) {
            *dj = distance(wa, wb) as u16;
        }
    })
}

/// The row-buffered search; `fill(a_row, d)` writes the distances of `a_row` to every
/// descriptor of `b` into `d`.
#[inline(always)]
fn nearest_two_rows(
    a: &[Words],
    b: &[Words],
    rows: &mut [Nearest],
    cols: &mut [Nearest],
    mut fill: impl FnMut(&Words, &mut [u16]),
) {
    // Distances fit in u16 (≤ 256) and so do indices (templates hold ≤ 320 keypoints, and
    // u16::MAX otherwise falls back to the generic path): twice the lanes of u32.
    if a.len() >= u16::MAX as usize || b.len() >= u16::MAX as usize {
        return nearest_two_generic(a, b, rows, cols);
    }
    let mut d = vec![0u16; b.len()];
    let mut col_best = vec![257u16; b.len()];
    let mut col_idx = vec![u16::MAX; b.len()];
    for (i, (wa, row)) in a.iter().zip(rows.iter_mut()).enumerate() {
        fill(wa, &mut d);
        let Some(best) = d.iter().copied().min() else {
            continue;
        };
        // One pass for the first index of the minimum, how often it occurs, and the
        // smallest other distance (all three vectorised reductions).
        let (mut idx, mut dups, mut other) = (u16::MAX, 0u16, 257u16);
        for (j, &x) in (0u16..).zip(d.iter()) {
            let eq = x == best;
            idx = idx.min(if eq { j } else { u16::MAX });
            dups += u16::from(eq);
            other = other.min(if eq { 257 } else { x });
        }
        *row = Nearest {
            index: u32::from(idx),
            best: u32::from(best),
            second: u32::from(if dups > 1 { best } else { other }),
        };
        let iu = i as u16;
        for ((&dj, cb), ci) in d.iter().zip(col_best.iter_mut()).zip(col_idx.iter_mut()) {
            let better = dj < *cb;
            *cb = if better { dj } else { *cb };
            *ci = if better { iu } else { *ci };
        }
    }
    for ((c, &b), &i) in cols.iter_mut().zip(&col_best).zip(&col_idx) {
        *c = Nearest {
            index: if i == u16::MAX {
                u32::MAX
            } else {
                u32::from(i)
            },
            best: u32::from(b),
            second: 257,
        };
    }
}

/// AVX2: `b` transposed to four arrays of words (word k of every descriptor together), so
/// that one 256-bit register holds word k of four descriptors; xor with word k of the row
/// broadcast, nibble-table popcount (Muła), the four words' byte counts added, and one
/// `vpsadbw` leaves the four distances in the four lanes: no horizontal sums.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn nearest_two_avx2(a: &[Words], b: &[Words], rows: &mut [Nearest], cols: &mut [Nearest]) {
    let n = b.len();
    let mut t: [Vec<u64>; 4] = Default::default();
    for (k, tk) in t.iter_mut().enumerate() {
        *tk = b.iter().map(|w| w[k]).collect();
    }
    nearest_two_rows(a, b, rows, cols, |wa, d| {
        // SAFETY: this closure only runs inside a function compiled for avx2.
        let full = unsafe { row_distances_avx2(wa, &t, d) };
        for j in full..n {
            d[j] = distance(wa, &b[j]) as u16;
        }
    })
}

/// Distances of `wa` to the first `16·⌊n/16⌋` descriptors of the transposed `t`, written to
/// `d` in order; returns how many were written.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_distances_avx2(wa: &Words, t: &[Vec<u64>; 4], d: &mut [u16]) -> usize {
    use std::arch::x86_64::*;
    let n = t[0].len().min(d.len());
    let lut = _mm256_setr_epi8(
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3,
        3, 4,
    );
    let nib = _mm256_set1_epi8(0x0f);
    let zero = _mm256_setzero_si256();
    let aw = [
        _mm256_set1_epi64x(wa[0] as i64),
        _mm256_set1_epi64x(wa[1] as i64),
        _mm256_set1_epi64x(wa[2] as i64),
        _mm256_set1_epi64x(wa[3] as i64),
    ];
    // Byte popcounts of word k of descriptors j..j+4, xor the row's word k.
    let counts = |k: usize, j: usize| {
        // SAFETY: j + 4 <= n <= t[k].len(), checked by the loop below.
        let x = _mm256_xor_si256(aw[k], unsafe {
            _mm256_loadu_si256(t[k].as_ptr().add(j) as *const __m256i)
        });
        let lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(x, nib));
        let hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(x, 4), nib));
        _mm256_add_epi8(lo, hi)
    };
    // Distances of descriptors j..j+4, one per 64-bit lane (each byte sum ≤ 32, no overflow).
    let four = |j: usize| {
        let s = _mm256_add_epi8(
            _mm256_add_epi8(counts(0, j), counts(1, j)),
            _mm256_add_epi8(counts(2, j), counts(3, j)),
        );
        _mm256_sad_epu8(s, zero)
    };
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let mut j = 0;
    while j + 16 <= n {
        // 64-bit lanes hold values < 2^16: two unsigned-saturating packs keep them exact.
        let p01 = _mm256_packus_epi32(four(j), four(j + 4));
        let p23 = _mm256_packus_epi32(four(j + 8), four(j + 12));
        let p = _mm256_packus_epi32(p01, p23);
        let p = _mm256_permutevar8x32_epi32(p, order);
        // SAFETY: j + 16 <= n <= d.len().
        unsafe { _mm256_storeu_si256(d.as_mut_ptr().add(j) as *mut __m256i, p) };
        j += 16;
    }
    j
}

/// AVX-512BW: the compiler vectorises the row-buffered search (distances by nibble table on
/// 512-bit registers) better than the hand-written 256-bit kernel runs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw,avx512f,avx2,popcnt")]
unsafe fn nearest_two_avx512(a: &[Words], b: &[Words], rows: &mut [Nearest], cols: &mut [Nearest]) {
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

    /// Every path this CPU can run gives exactly the generic answer, for sizes around the
    /// AVX2 kernel's 16-descriptor blocks, with ties (duplicated descriptors) included.
    #[test]
    fn simd_paths_agree_with_the_generic_one() {
        let mut rng = crate::palm::rng::Rng::new(99);
        let mut random = |n: usize| -> Vec<Words> {
            let mut v: Vec<Words> = (0..n)
                .map(|_| {
                    [
                        rng.next_u64(),
                        rng.next_u64(),
                        rng.next_u64(),
                        rng.next_u64(),
                    ]
                })
                .collect();
            // Near-duplicates and exact duplicates, so that ties and small distances occur.
            for k in (0..n).step_by(7).skip(1) {
                v[k] = v[k - 1];
                v[k][k % 4] ^= 1 << (k % 64);
            }
            if n > 3 {
                v[3] = v[1];
            }
            v
        };
        for (na, nb) in [
            (0, 5),
            (5, 0),
            (1, 1),
            (3, 15),
            (16, 16),
            (17, 33),
            (300, 300),
            (250, 299),
        ] {
            let a = random(na);
            let b = random(nb);
            let mut want_r = vec![Nearest::EMPTY; na];
            let mut want_c = vec![Nearest::EMPTY; nb];
            nearest_two_generic(&a, &b, &mut want_r, &mut want_c);
            let cols_of = |c: &[Nearest]| c.iter().map(|c| (c.index, c.best)).collect::<Vec<_>>();
            let check = |name: &str, r: Vec<Nearest>, c: Vec<Nearest>| {
                assert_eq!(r, want_r, "{name} rows, {na}×{nb}");
                assert_eq!(cols_of(&c), cols_of(&want_c), "{name} columns, {na}×{nb}");
            };
            let (r, c) = nearest_two(&a, &b);
            check("dispatched", r, c);
            let (mut r, mut c) = (vec![Nearest::EMPTY; na], vec![Nearest::EMPTY; nb]);
            nearest_two_rowbuf(&a, &b, &mut r, &mut c);
            check("rowbuf", r, c);
            #[cfg(target_arch = "x86_64")]
            {
                if Simd::detect() >= Simd::Avx2 {
                    let (mut r, mut c) = (vec![Nearest::EMPTY; na], vec![Nearest::EMPTY; nb]);
                    // SAFETY: features checked just above.
                    unsafe { nearest_two_avx2(&a, &b, &mut r, &mut c) };
                    check("avx2", r, c);
                }
                if Simd::detect() >= Simd::Popcnt {
                    let (mut r, mut c) = (vec![Nearest::EMPTY; na], vec![Nearest::EMPTY; nb]);
                    // SAFETY: features checked just above.
                    unsafe { nearest_two_popcnt(&a, &b, &mut r, &mut c) };
                    check("popcnt", r, c);
                }
                if Simd::detect() >= Simd::Avx512 {
                    let (mut r, mut c) = (vec![Nearest::EMPTY; na], vec![Nearest::EMPTY; nb]);
                    // SAFETY: features checked just above.
                    unsafe { nearest_two_avx512(&a, &b, &mut r, &mut c) };
                    check("avx512", r, c);
                }
            }
        }
    }
}
