//! A small seeded generator (SplitMix64): a bank run is replayable from its `--seed` as far
//! as the kiosks' choices go (the timing of kills and answers is not).

#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// In `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.below(1 << 24) as f32) / (1u32 << 24) as f32
    }

    /// A generator for a sub-task, independent of this one's later draws.
    pub fn fork(&mut self) -> Rng {
        Rng(self.next_u64())
    }
}
