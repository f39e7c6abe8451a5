//! SHA-256 whose state can be saved at a part boundary and restored after a crash, so that a
//! resumed upload still ends with the hash of the whole object. Built on `sha2`'s compression
//! function (which uses the CPU's SHA extensions when present) and `block-buffer`; part
//! boundaries are whole MiB, hence whole 64-byte blocks, so a saved state is just eight words
//! and a byte count.

use sha2::digest::block_buffer::{BlockBuffer, Eager};
use sha2::digest::typenum::U64;

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
    buffer: BlockBuffer<U64, Eager>,
}

impl Default for ResumableSha256 {
    fn default() -> Self {
        Self {
            state: INITIAL,
            length: 0,
            buffer: BlockBuffer::default(),
        }
    }
}

impl ResumableSha256 {
    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.length += data.len() as u64;
        let state = &mut self.state;
        self.buffer
            .digest_blocks(data, |blocks| sha2::compress256(state, blocks));
    }

    /// The saved form, `<64 hex digits>:<length>`; `None` unless at a block boundary.
    pub fn checkpoint(&self) -> Option<String> {
        if self.buffer.get_pos() != 0 {
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
        length.is_multiple_of(BLOCK).then(|| Self {
            state,
            length,
            buffer: BlockBuffer::default(),
        })
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.length
    }

    /// Whether nothing was hashed yet.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// The digest, hex.
    pub fn finalize_hex(mut self) -> String {
        let state = &mut self.state;
        self.buffer
            .len64_padding_be(self.length.wrapping_mul(8), |block| {
                sha2::compress256(state, std::slice::from_ref(block))
            });
        self.state.iter().map(|w| format!("{w:08x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
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
            assert_eq!(h.len(), len as u64);
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
