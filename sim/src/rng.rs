//! The one source of randomness: xoshiro256** seeded through splitmix64.
//! Every choice a run makes comes from here, so one `u64` seed names one run
//! on any machine. No clocks, no thread RNGs.

/// xoshiro256** (Blackman and Vigna), state filled by splitmix64.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        let mut sm = seed;
        let mut next = || {
            sm = sm.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = sm;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (0 when `n` is 0), by multiply-shift.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }

    /// Uniform `usize` in `lo..=hi`.
    pub fn range_usize(&mut self, lo: usize, hi: usize) -> usize {
        self.range(lo as u64, hi as u64) as usize
    }

    /// True with probability `permille / 1000`.
    pub fn chance(&mut self, permille: u32) -> bool {
        self.below(1000) < u64::from(permille)
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// One item of `table`, each with probability `weight / total`, from a
    /// single `below(total)` mapped onto consecutive ranges in table order:
    /// a table whose weights sum to 100 draws exactly as `below(100)` and a
    /// `match` over `0..=w0-1, w0..=w0+w1-1, ...` would.
    ///
    /// # Panics
    /// If every weight is 0.
    pub fn weighted<T: Copy>(&mut self, table: &[(T, u64)]) -> T {
        let total: u64 = table.iter().map(|&(_, w)| w).sum();
        assert!(total > 0, "a weighted table needs a positive weight");
        let mut x = self.below(total);
        for &(item, w) in table {
            if x < w {
                return item;
            }
            x -= w;
        }
        unreachable!("below(total) is under the sum of the weights")
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }

    /// A size skewed toward small values: `0..=max`, log-uniform-ish.
    pub fn size(&mut self, max: usize) -> usize {
        if max == 0 {
            return 0;
        }
        let bits = 64 - (max as u64).leading_zeros() as u64;
        let cap = (1u64 << self.range(0, bits)).min(max as u64 + 1);
        self.below(cap) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_same_seed_same_stream() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(Rng::new(7).next_u64(), Rng::new(8).next_u64());
    }

    #[test]
    fn rng_bounds_hold() {
        let mut r = Rng::new(1);
        for _ in 0..10_000 {
            assert!(r.below(10) < 10);
            let x = r.range(3, 5);
            assert!((3..=5).contains(&x));
            assert!(r.size(100) <= 100);
        }
    }

    #[test]
    fn rng_weighted_maps_one_draw_onto_ranges() {
        let table = [('a', 15), ('b', 0), ('c', 80), ('d', 5)];
        let (mut r, mut plain) = (Rng::new(3), Rng::new(3));
        for _ in 0..10_000 {
            let want = match plain.below(100) {
                0..=14 => 'a',
                15..=94 => 'c',
                _ => 'd',
            };
            assert_eq!(r.weighted(&table), want);
        }
    }
}
