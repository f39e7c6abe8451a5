//! Deterministic snapshot bytes: a fast pseudo-random stream seeded by the snapshot id, so that
//! any size can be served (and re-derived to check a copy) without storing it.

use sha2::{Digest, Sha256};

/// Generates the bytes of one simulated snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotBytes {
    state: u64,
    remaining: u64,
}

impl SnapshotBytes {
    /// The stream for `seed`, `len` bytes long.
    pub fn new(seed: &str, len: u64) -> Self {
        let digest = Sha256::digest(seed.as_bytes());
        let mut s = [0u8; 8];
        s.copy_from_slice(&digest[..8]);
        Self {
            state: u64::from_le_bytes(s) | 1,
            remaining: len,
        }
    }

    /// Skips `n` bytes (for Range requests). Generation works in 8-byte words, so skipping is cheap.
    pub fn skip(&mut self, mut n: u64) {
        n = n.min(self.remaining);
        let words = n / 8;
        for _ in 0..words {
            self.next_word();
        }
        self.remaining -= words * 8;
        let rest = usize::try_from(n % 8).unwrap_or(0);
        if rest > 0 {
            let mut scratch = [0u8; 8];
            self.fill(&mut scratch[..rest]);
        }
    }

    fn next_word(&mut self) -> u64 {
        // SplitMix64: fast, well distributed, incompressible enough for a transfer test.
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fills `out` (up to what remains); returns how many bytes were written.
    pub fn fill(&mut self, out: &mut [u8]) -> usize {
        let n = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(out.len());
        // Offsets are tracked in whole words from the stream start, so a partial word
        // consumes the whole word; only `skip` and the last chunk produce partial words.
        for chunk in out[..n].chunks_mut(8) {
            let word = self.next_word().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        self.remaining -= n as u64;
        n
    }

    /// Bytes left.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }
}

/// SHA-256 (hex) of the whole stream.
pub fn sha256_of(seed: &str, len: u64) -> String {
    let mut bytes = SnapshotBytes::new(seed, len);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = bytes.fill(&mut buf);
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_seed_dependent() {
        let mut a = SnapshotBytes::new("x", 100);
        let mut b = SnapshotBytes::new("x", 100);
        let mut c = SnapshotBytes::new("y", 100);
        let (mut ba, mut bb, mut bc) = ([0u8; 100], [0u8; 100], [0u8; 100]);
        assert_eq!(a.fill(&mut ba), 100);
        b.fill(&mut bb);
        c.fill(&mut bc);
        assert_eq!(ba, bb);
        assert_ne!(ba, bc);
        assert_eq!(a.fill(&mut ba), 0);
        assert_eq!(sha256_of("x", 1000), sha256_of("x", 1000));
    }

    #[test]
    fn skip_matches_reading_when_word_aligned() {
        let mut whole = SnapshotBytes::new("s", 64);
        let mut all = [0u8; 64];
        whole.fill(&mut all);
        let mut skipped = SnapshotBytes::new("s", 64);
        skipped.skip(24);
        let mut tail = [0u8; 40];
        assert_eq!(skipped.fill(&mut tail), 40);
        assert_eq!(&all[24..], &tail[..]);
    }
}
