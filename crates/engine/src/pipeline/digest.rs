//! SHA-256 whose state can be saved at a part boundary and restored after a crash, so that a
//! resumed upload still ends with the hash of the whole object. Built on `sha2`'s compression
//! function (which uses the CPU's SHA extensions when present) and `block-buffer`; part
//! boundaries are whole MiB, hence whole 64-byte blocks, so a saved state is just eight words
//! and a byte count.

use sha2::block_api::compress256;

const BLOCK: u64 = 64;
const INITIAL: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// A resumable SHA-256.
#[derive(Clone)]
pub struct ResumableSha256 {
    state: [u32; 8],
    /// Bytes hashed so far.
    length: u64,
    /// The bytes of the current, incomplete block: `block[..pending]`.
    block: [u8; 64],
    pending: usize,
}

impl Default for ResumableSha256 {
    fn default() -> Self {
        Self {
            state: INITIAL,
            length: 0,
            block: [0; 64],
            pending: 0,
        }
    }
}

impl ResumableSha256 {
    /// Adds bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        self.length += data.len() as u64;
        if self.pending > 0 {
            let take = (64 - self.pending).min(data.len());
            self.block[self.pending..self.pending + take].copy_from_slice(&data[..take]);
            self.pending += take;
            data = &data[take..];
            if self.pending < 64 {
                return;
            }
            compress256(&mut self.state, std::slice::from_ref(&self.block));
            self.pending = 0;
        }
        let (blocks, rest) = data.as_chunks::<64>();
        if !blocks.is_empty() {
            compress256(&mut self.state, blocks);
        }
        self.block[..rest.len()].copy_from_slice(rest);
        self.pending = rest.len();
    }

    /// Bytes hashed so far.
    pub fn hashed_bytes(&self) -> u64 {
        self.length
    }

    /// The saved form, `<64 hex digits>:<length>`; `None` unless at a block boundary.
    pub fn checkpoint(&self) -> Option<String> {
        if self.pending != 0 {
            return None;
        }
        let words: String = self.state.iter().map(|w| format!("{w:08x}")).collect();
        Some(format!("{words}:{}", self.length))
    }

    /// Restores a [`checkpoint`](Self::checkpoint).
    pub fn restore(text: &str) -> Option<Self> {
        let (words, length) = text.split_once(':')?;
        if words.len() != 64 {
            return None;
        }
        let mut state = [0u32; 8];
        for (i, word) in state.iter_mut().enumerate() {
            *word = u32::from_str_radix(words.get(i * 8..i * 8 + 8)?, 16).ok()?;
        }
        let length: u64 = length.parse().ok()?;
        length.is_multiple_of(BLOCK).then_some(Self {
            state,
            length,
            block: [0; 64],
            pending: 0,
        })
    }

    /// The digest, hex.
    pub fn finalize_hex(mut self) -> String {
        // FIPS 180-4 padding: 0x80, zeros, the message length in bits as a big-endian u64.
        let bits = self.length.wrapping_mul(8);
        self.block[self.pending] = 0x80;
        self.block[self.pending + 1..].fill(0);
        if self.pending >= 56 {
            compress256(&mut self.state, std::slice::from_ref(&self.block));
            self.block = [0; 64];
        }
        self.block[56..].copy_from_slice(&bits.to_be_bytes());
        compress256(&mut self.state, std::slice::from_ref(&self.block));
        self.state.iter().map(|w| format!("{w:08x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt as _, SeedableRng};
    use sha2::{Digest, Sha256};

    #[test]
    fn matches_sha2_for_any_split_and_survives_a_checkpoint() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for len in [
            0usize, 1, 55, 56, 63, 64, 65, 127, 128, 1000, 65_536, 200_003,
        ] {
            let data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let expected = hex::encode(Sha256::digest(&data));
            let mut h = ResumableSha256::default();
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = rng.random_range(1..=rest.len().min(5000));
                h.update(&rest[..n]);
                rest = &rest[n..];
            }
            assert_eq!(h.length, len as u64);
            assert_eq!(h.finalize_hex(), expected, "len {len}");

            // Save at a block boundary, restore, continue.
            let cut = len / 64 * 64 / 2 / 64 * 64;
            let mut first = ResumableSha256::default();
            first.update(&data[..cut]);
            let saved = first.checkpoint().unwrap_or_else(|| panic!("boundary"));
            let mut second =
                ResumableSha256::restore(&saved).unwrap_or_else(|| panic!("restore {saved}"));
            second.update(&data[cut..]);
            assert_eq!(second.finalize_hex(), expected, "resumed at {cut} of {len}");
        }
    }

    #[test]
    fn checkpoints_exist_only_at_block_boundaries_and_bad_text_is_refused() {
        let mut h = ResumableSha256::default();
        h.update(&[1; 100]);
        assert!(h.checkpoint().is_none());
        h.update(&[1; 28]);
        assert!(h.checkpoint().is_some());
        assert!(ResumableSha256::restore("xyz").is_none());
        assert!(ResumableSha256::restore(&format!("{}:65", "0".repeat(64))).is_none());
    }
}
