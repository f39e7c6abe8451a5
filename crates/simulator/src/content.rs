//! Deterministic snapshot archives: a real `.tar.gz` of a plausible `mongod` data directory
//! (`WiredTiger`, `WiredTiger.wt`, `_mdb_catalog.wt`, `journal/…`, `index-*.wt`,
//! `collection-*.wt`), of exactly the size asked for, derived from a seed, served from any offset
//! without being stored. The file content is incompressible (pseudo-random), so the gzip stream
//! is made of deflate *stored* blocks: the archive's size is what the test asks, and any byte of
//! it can be computed from its offset. The gzip header's FEXTRA field absorbs the slack so that
//! every size from [`MIN_ARCHIVE_SIZE`] up is exact. Smaller sizes are served as raw
//! pseudo-random bytes (not an archive), for tests that never download.
//!
//! Must not: share code with the client's validator (`pipeline::validate`): a fake that used the
//! client's parser could not catch the client's bugs.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};

/// The smallest size served as a valid archive: gzip header and trailer, one stored block, and
/// a tar stream of one small file plus the end-of-archive blocks.
pub const MIN_ARCHIVE_SIZE: u64 = 20 + 5 + 2560;

const GZIP_FIXED: usize = 12; // ID1 ID2 CM FLG MTIME(4) XFL OS XLEN(2)
const TRAILER: u64 = 8;
const BLOCK_DATA: u64 = 65_535;
const BLOCK_HEADER: u64 = 5;
const TAR_BLOCK: u64 = 512;

/// SplitMix64 word `k` of the stream seeded with `seed`: random access in O(1).
fn word(seed: u64, k: u64) -> u64 {
    let mut z = seed.wrapping_add(k.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `out` with the pseudo-random bytes at `offset..` of the stream `seed`.
fn random_at(seed: u64, offset: u64, out: &mut [u8]) {
    let mut pos = offset;
    let mut i = 0;
    while i < out.len() {
        let w = word(seed, pos / 8).to_le_bytes();
        let from = usize::try_from(pos % 8).unwrap_or(0);
        let n = (8 - from).min(out.len() - i);
        out[i..i + n].copy_from_slice(&w[from..from + n]);
        i += n;
        pos += n as u64;
    }
}

fn seed_of(text: &str) -> u64 {
    let digest = Sha256::digest(text.as_bytes());
    let mut s = [0u8; 8];
    s.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(s)
}

/// What one stretch of the tar stream holds.
#[derive(Debug, Clone)]
enum Piece {
    /// Literal bytes (headers, the small text file, padding).
    Literal(Vec<u8>),
    /// Pseudo-random file content.
    Random { seed: u64 },
    /// Zeros (end-of-archive blocks).
    Zero,
}

#[derive(Debug, Clone)]
struct Segment {
    start: u64,
    len: u64,
    piece: Piece,
}

/// The layout of one archive.
#[derive(Debug)]
struct Layout {
    /// The gzip header, FEXTRA padding included.
    header: Vec<u8>,
    /// Bytes of the tar stream (a multiple of 512).
    tar_len: u64,
    /// The tar stream, as segments in order.
    segments: Vec<Segment>,
    /// Top-level entry names and the number of entries.
    entries: Vec<String>,
}

/// One tar header (ustar).
fn tar_header(name: &str, size: u64, typeflag: u8) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    let name = name.as_bytes();
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    let mode: &[u8] = if typeflag == b'5' {
        b"0000755\0"
    } else {
        b"0000600\0"
    };
    h[100..108].copy_from_slice(mode);
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    if size < 0o77_777_777_777 {
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    } else {
        // GNU base-256: the high bit of the first byte set, the size big-endian after it.
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    h[136..148].copy_from_slice(b"15126573100\0");
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

fn padded(len: u64) -> u64 {
    len.div_ceil(TAR_BLOCK) * TAR_BLOCK
}

impl Layout {
    /// The layout of an archive of exactly `size` bytes (`size >= MIN_ARCHIVE_SIZE`).
    fn new(seed_text: &str, size: u64) -> Self {
        // The largest tar stream that fits, leaving room for an FEXTRA of 0 or 4..=65535 bytes.
        let overhead =
            |tar: u64| GZIP_FIXED as u64 + TRAILER + BLOCK_HEADER * tar.div_ceil(BLOCK_DATA).max(1);
        let mut tar_len = (size.saturating_sub(overhead(size)) / TAR_BLOCK) * TAR_BLOCK;
        while tar_len > 0 && overhead(tar_len) + tar_len > size {
            tar_len -= TAR_BLOCK;
        }
        let mut xlen = size - overhead(tar_len) - tar_len;
        if (1..4).contains(&xlen) {
            tar_len -= TAR_BLOCK;
            xlen = size - overhead(tar_len) - tar_len;
        }
        let mut header = vec![0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0x00, 0x03];
        header.extend_from_slice(&u16::try_from(xlen).unwrap_or(0).to_le_bytes());
        if xlen >= 4 {
            // One subfield, "AA", that readers skip.
            header.extend_from_slice(b"AA");
            header.extend_from_slice(&u16::try_from(xlen - 4).unwrap_or(0).to_le_bytes());
            header.resize(GZIP_FIXED + usize::try_from(xlen).unwrap_or(0), 0);
        }
        let seed = seed_of(seed_text);
        let mut segments = Vec::new();
        let mut entries = Vec::new();
        let mut at = 0u64;
        let mut push = |segments: &mut Vec<Segment>, len: u64, piece: Piece| {
            segments.push(Segment {
                start: at,
                len,
                piece,
            });
            at += len;
        };
        let mut budget = tar_len - 2 * TAR_BLOCK;
        let marker = b"WiredTiger\nWiredTiger 11.3.1: (November 12, 2026)\n".to_vec();
        let small: [(&str, u64, u8); 6] = [
            ("WiredTiger", marker.len() as u64, b'0'),
            ("WiredTiger.wt", 64 << 10, b'0'),
            ("_mdb_catalog.wt", 32 << 10, b'0'),
            ("journal/", 0, b'5'),
            ("journal/WiredTigerLog.0000000001", 100 << 10, b'0'),
            ("index-1-8135713208734598516.wt", 16 << 10, b'0'),
        ];
        for (i, (name, len, typeflag)) in small.iter().enumerate() {
            let cost = TAR_BLOCK + padded(*len);
            // The marker file comes first; the others leave room for the collection's header.
            if budget < cost + if i == 0 { 0 } else { TAR_BLOCK } {
                break;
            }
            budget -= cost;
            push(
                &mut segments,
                TAR_BLOCK,
                Piece::Literal(tar_header(name, *len, *typeflag)),
            );
            if i == 0 {
                let mut text = marker.clone();
                text.resize(usize::try_from(padded(*len)).unwrap_or(0), 0);
                push(&mut segments, padded(*len), Piece::Literal(text));
            } else if *len > 0 {
                push(
                    &mut segments,
                    padded(*len),
                    Piece::Random {
                        seed: seed ^ (i as u64),
                    },
                );
            }
            entries.push((*name).to_owned());
        }
        if budget >= TAR_BLOCK {
            let len = budget - TAR_BLOCK;
            let name = "collection-0-8135713208734598516.wt";
            push(
                &mut segments,
                TAR_BLOCK,
                Piece::Literal(tar_header(name, len, b'0')),
            );
            if len > 0 {
                push(&mut segments, len, Piece::Random { seed });
            }
            entries.push(name.to_owned());
        }
        push(&mut segments, 2 * TAR_BLOCK, Piece::Zero);
        Self {
            header,
            tar_len,
            segments,
            entries,
        }
    }

    fn blocks(&self) -> u64 {
        self.tar_len.div_ceil(BLOCK_DATA).max(1)
    }

    /// Offset in the file where the trailer starts.
    fn trailer_at(&self) -> u64 {
        self.header.len() as u64 + self.blocks() * BLOCK_HEADER + self.tar_len
    }

    /// Fills `out` with the tar stream's bytes at `offset..`.
    fn tar_at(&self, offset: u64, out: &mut [u8]) {
        let mut pos = offset;
        let mut i = 0;
        let mut seg = self.segments.partition_point(|s| s.start + s.len <= pos);
        while i < out.len() && seg < self.segments.len() {
            let s = &self.segments[seg];
            let within = pos - s.start;
            let n = usize::try_from((s.len - within).min((out.len() - i) as u64)).unwrap_or(0);
            let dst = &mut out[i..i + n];
            match &s.piece {
                Piece::Literal(bytes) => {
                    let from = usize::try_from(within).unwrap_or(0);
                    dst.copy_from_slice(&bytes[from..from + n]);
                }
                Piece::Random { seed } => random_at(*seed, within, dst),
                Piece::Zero => dst.fill(0),
            }
            i += n;
            pos += n as u64;
            seg += 1;
        }
    }

    /// CRC-32 and length of the tar stream, computed once per archive.
    fn trailer(&self, key: &(String, u64)) -> [u8; 8] {
        static CACHE: OnceLock<Mutex<HashMap<(String, u64), u32>>> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
        let known = cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .copied();
        let crc = known.unwrap_or_else(|| {
            let mut hasher = crc32fast::Hasher::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut at = 0;
            while at < self.tar_len {
                let n = usize::try_from((self.tar_len - at).min(buf.len() as u64)).unwrap_or(0);
                self.tar_at(at, &mut buf[..n]);
                hasher.update(&buf[..n]);
                at += n as u64;
            }
            let crc = hasher.finalize();
            cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(key.clone(), crc);
            crc
        });
        let mut t = [0u8; 8];
        t[..4].copy_from_slice(&crc.to_le_bytes());
        t[4..].copy_from_slice(&((self.tar_len & 0xffff_ffff) as u32).to_le_bytes());
        t
    }
}

/// Generates the bytes of one simulated snapshot, from any offset.
#[derive(Debug)]
pub struct SnapshotBytes {
    key: (String, u64),
    layout: Option<Layout>,
    seed: u64,
    offset: u64,
    len: u64,
}

impl SnapshotBytes {
    /// The archive for `seed`, `len` bytes long.
    pub fn new(seed: &str, len: u64) -> Self {
        Self {
            key: (seed.to_owned(), len),
            layout: (len >= MIN_ARCHIVE_SIZE).then(|| Layout::new(seed, len)),
            seed: seed_of(seed),
            offset: 0,
            len,
        }
    }

    /// Skips `n` bytes (for Range requests).
    pub fn skip(&mut self, n: u64) {
        self.offset = (self.offset + n).min(self.len);
    }

    /// Fills `out` (up to what remains); returns how many bytes were written.
    pub fn fill(&mut self, out: &mut [u8]) -> usize {
        let n = usize::try_from(self.remaining())
            .unwrap_or(usize::MAX)
            .min(out.len());
        let out = &mut out[..n];
        match &self.layout {
            None => random_at(self.seed, self.offset, out),
            Some(layout) => fill_archive(layout, &self.key, self.offset, out),
        }
        self.offset += n as u64;
        n
    }

    /// Bytes left.
    pub fn remaining(&self) -> u64 {
        self.len - self.offset
    }

    /// The archive's top-level entries (empty for sizes below [`MIN_ARCHIVE_SIZE`]).
    pub fn top_level_entries(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .layout
            .as_ref()
            .map(|l| {
                l.entries
                    .iter()
                    .map(|e| e.split('/').next().unwrap_or(e).to_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names.dedup();
        names
    }

    /// Entries in the archive.
    pub fn entry_count(&self) -> usize {
        self.layout.as_ref().map_or(0, |l| l.entries.len())
    }
}

/// The gzip file's bytes at `offset..`: header, stored blocks (each a 5-byte header and up to
/// 65,535 bytes of the tar stream), trailer.
fn fill_archive(layout: &Layout, key: &(String, u64), offset: u64, out: &mut [u8]) {
    let header_len = layout.header.len() as u64;
    let trailer_at = layout.trailer_at();
    let mut pos = offset;
    let mut i = 0;
    while i < out.len() {
        let rest = out.len() - i;
        if pos < header_len {
            let from = usize::try_from(pos).unwrap_or(0);
            let n = (layout.header.len() - from).min(rest);
            out[i..i + n].copy_from_slice(&layout.header[from..from + n]);
            i += n;
            pos += n as u64;
        } else if pos < trailer_at {
            let rel = pos - header_len;
            let block = rel / (BLOCK_HEADER + BLOCK_DATA);
            let within = rel % (BLOCK_HEADER + BLOCK_DATA);
            let data_start = block * BLOCK_DATA;
            let data_len = (layout.tar_len - data_start).min(BLOCK_DATA);
            if within < BLOCK_HEADER {
                let last = block + 1 == layout.blocks();
                let len = u16::try_from(data_len).unwrap_or(u16::MAX);
                let mut h = [u8::from(last), 0, 0, 0, 0];
                h[1..3].copy_from_slice(&len.to_le_bytes());
                h[3..5].copy_from_slice(&(!len).to_le_bytes());
                let from = usize::try_from(within).unwrap_or(0);
                let n = (5 - from).min(rest);
                out[i..i + n].copy_from_slice(&h[from..from + n]);
                i += n;
                pos += n as u64;
            } else {
                let d = within - BLOCK_HEADER;
                let n = usize::try_from((data_len - d).min(rest as u64)).unwrap_or(0);
                layout.tar_at(data_start + d, &mut out[i..i + n]);
                i += n;
                pos += n as u64;
            }
        } else {
            let t = layout.trailer(key);
            let from = usize::try_from(pos - trailer_at).unwrap_or(0);
            let n = (8 - from).min(rest);
            out[i..i + n].copy_from_slice(&t[from..from + n]);
            i += n;
            pos += n as u64;
        }
    }
}

/// SHA-256 (hex) of the whole archive.
pub fn sha256_of(seed: &str, len: u64) -> String {
    let mut bytes = SnapshotBytes::new(seed, len);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
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
    use std::io::Read;

    use super::*;

    fn whole(seed: &str, len: u64) -> Vec<u8> {
        let mut g = SnapshotBytes::new(seed, len);
        let mut out = vec![0u8; usize::try_from(len).unwrap_or(0)];
        assert_eq!(g.fill(&mut out) as u64, len);
        out
    }

    #[test]
    fn every_size_is_exact_and_a_valid_tar_gz() {
        // Sizes around block and FEXTRA edges, and a multi-block one.
        for len in [
            MIN_ARCHIVE_SIZE,
            MIN_ARCHIVE_SIZE + 1,
            MIN_ARCHIVE_SIZE + 3,
            4096,
            65_535 + 600,
            (1 << 20) + 4321,
            3 << 20,
        ] {
            let bytes = whole("snap", len);
            assert_eq!(bytes.len() as u64, len);
            // An independent reader (flate2 + tar) accepts it: CRC, ISIZE, headers.
            let mut tar = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut tar)
                .unwrap_or_else(|e| panic!("{len}: {e}"));
            let mut archive = tar::Archive::new(&tar[..]);
            let names: Vec<String> = archive
                .entries()
                .unwrap()
                .map(|e| {
                    let e = e.unwrap_or_else(|e| panic!("{len}: {e}"));
                    e.path().unwrap().display().to_string()
                })
                .collect();
            assert!(names.contains(&"WiredTiger".to_owned()), "{len}: {names:?}");
            assert_eq!(names.len(), SnapshotBytes::new("snap", len).entry_count());
        }
    }

    #[test]
    fn any_offset_serves_the_same_bytes_as_reading_from_the_start() {
        let len = (2 << 20) + 77;
        let all = whole("r", len);
        for offset in [0u64, 1, 7, 12, 17, 4099, 65_540, 1 << 20, len - 9, len - 1] {
            let mut g = SnapshotBytes::new("r", len);
            g.skip(offset);
            let mut tail = vec![0u8; usize::try_from(len - offset).unwrap_or(0)];
            assert_eq!(g.fill(&mut tail) as u64, len - offset);
            assert_eq!(
                &all[usize::try_from(offset).unwrap_or(0)..],
                &tail[..],
                "offset {offset}"
            );
        }
        assert_ne!(whole("r", 8192), whole("s", 8192), "seed-dependent");
    }

    #[test]
    fn tiny_sizes_are_raw_bytes() {
        assert_eq!(whole("x", 100).len(), 100);
        assert_eq!(SnapshotBytes::new("x", 100).entry_count(), 0);
    }
}
