//! Content validation on the side of the stream: a snapshot is a `.tar.gz` of the `mongod` data
//! directory, and Atlas publishes no size or checksum for it, so our own SHA-256 only proves we
//! copied what was served. This checks what was served *is* an archive: the gzip magic and
//! header at the first bytes, the whole stream inflated with each member's CRC-32 and ISIZE
//! matched and the stream ending exactly at EOF (concatenated members allowed), and every tar
//! header walked (checksums valid, sizes consistent, the end-of-archive blocks present). It runs
//! on a blocking thread fed through a bounded channel, so memory stays bounded and it costs wall
//! time only when the cores are busy.
//! Must not: write to disk, or share code with the simulator's archive generator.

use std::io::Read;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Chunks queued for the validator before the transfer waits for it.
const QUEUE: usize = 64;
/// Top-level names recorded in the manifest, at most.
const MAX_TOP_LEVEL: usize = 256;

/// What the validation saw, recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentFacts {
    /// Bytes of the tar stream (inflated).
    pub uncompressed_bytes: u64,
    /// Tar entries (files, directories, links; not the metadata headers).
    pub tar_entries: u64,
    /// The first path component of every entry, sorted, at most 256.
    pub top_level: Vec<String>,
}

/// The top-level names of an archive as the manifest records them: the first path component
/// of each entry (after any `./`), the first [`MAX_TOP_LEVEL`] distinct ones, sorted. A restore
/// collects them the same way to compare.
#[derive(Debug, Default)]
pub(crate) struct TopLevel(Vec<String>);

impl TopLevel {
    /// Notes one entry's name.
    pub(crate) fn add(&mut self, name: &str) {
        if self.0.len() >= MAX_TOP_LEVEL {
            return;
        }
        let first = name
            .trim_start_matches("./")
            .split('/')
            .next()
            .unwrap_or("");
        if !first.is_empty() && !self.0.iter().any(|n| n == first) {
            self.0.push(first.to_owned());
        }
    }

    /// The names, sorted.
    pub(crate) fn into_sorted(mut self) -> Vec<String> {
        self.0.sort();
        self.0
    }
}

/// Why the content is not a snapshot archive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    /// The server said the body is text (an error page).
    #[error(
        "the snapshot URL served `{content_type}`, not an archive (an error page from a proxy or CDN?)"
    )]
    TextContent {
        /// The `Content-Type` header.
        content_type: String,
    },
    /// The first bytes are not a gzip header.
    #[error("the download is not gzip data (first bytes {first_bytes}); a snapshot is a .tar.gz")]
    NotGzip {
        /// Hex of the first bytes.
        first_bytes: String,
    },
    /// Inflating failed: corrupt data, a CRC-32 or ISIZE mismatch, or an early end.
    #[error("the gzip stream is damaged after {inflated} inflated bytes: {detail}")]
    Gzip {
        /// Bytes inflated before the failure.
        inflated: u64,
        /// What the decoder said.
        detail: String,
    },
    /// The tar stream is malformed.
    #[error("the tar archive is malformed at byte {offset}: {detail}")]
    Tar {
        /// Offset in the tar stream.
        offset: u64,
        /// What was wrong.
        detail: String,
    },
    /// The validator thread ended without an answer (a bug).
    #[error("the content validator stopped unexpectedly")]
    Stopped,
}

/// Refuses a `text/*` (or HTML/JSON) content type before anything is uploaded.
pub fn check_content_type(content_type: Option<&str>) -> Result<(), ContentError> {
    let Some(ct) = content_type else {
        return Ok(());
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence.starts_with("text/")
        || essence == "application/json"
        || essence == "application/xhtml+xml"
        || essence == "application/xml"
    {
        return Err(ContentError::TextContent {
            content_type: ct.to_owned(),
        });
    }
    Ok(())
}

/// A validation in progress: feed it every chunk in order, then ask for the verdict.
pub struct Validator {
    tx: Option<mpsc::Sender<Bytes>>,
    task: tokio::task::JoinHandle<Result<ContentFacts, ContentError>>,
}

impl Validator {
    /// Starts a validator on a blocking thread.
    pub fn start() -> Self {
        let (tx, rx) = mpsc::channel::<Bytes>(QUEUE);
        let task = tokio::task::spawn_blocking(move || validate(ChannelReader::new(rx)));
        Self { tx: Some(tx), task }
    }

    /// Hands the validator the next chunk. Fails (with the validator's verdict) as soon as the
    /// validator has found the content invalid.
    pub async fn feed(&mut self, chunk: Bytes) -> Result<(), ContentError> {
        let Some(tx) = &self.tx else {
            return Err(ContentError::Stopped);
        };
        if tx.send(chunk).await.is_err() {
            // The validator ended early: it found something wrong.
            self.tx = None;
            return Err(match (&mut self.task).await {
                Ok(Err(e)) => e,
                _ => ContentError::Stopped,
            });
        }
        Ok(())
    }

    /// Ends the stream and returns what the validator found.
    pub async fn finish(mut self) -> Result<ContentFacts, ContentError> {
        self.tx = None;
        (&mut self.task).await.unwrap_or(Err(ContentError::Stopped))
    }
}

/// A `Read` over chunks received from the async side.
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChannelReader {
    pub(crate) fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        Self {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = self.current.len().min(out.len());
        out[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Counts bytes that pass, for error messages and the facts.
struct Counted<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Validates a whole `.tar.gz` stream from `input`.
pub fn validate(mut input: impl Read) -> Result<ContentFacts, ContentError> {
    // The gzip magic and method first, so that an error page fails at once.
    let mut head = [0u8; 3];
    let mut got = 0;
    while got < head.len() {
        match input.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => {
                return Err(ContentError::Gzip {
                    inflated: 0,
                    detail: e.to_string(),
                });
            }
        }
    }
    if head[..got] != [0x1f, 0x8b, 0x08] {
        return Err(ContentError::NotGzip {
            first_bytes: hex::encode(&head[..got]),
        });
    }
    let rejoined = std::io::Cursor::new(head).chain(input);
    let mut inflated = Counted {
        inner: flate2::read::MultiGzDecoder::new(rejoined),
        count: 0,
    };
    let facts = walk_tar(&mut inflated);
    // Whatever the tar walk concluded, the gzip stream must be whole: read it to its end, so
    // that a CRC-32/ISIZE mismatch or trailing garbage is found.
    let mut sink = vec![0u8; 64 << 10];
    loop {
        match inflated.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                return Err(ContentError::Gzip {
                    inflated: inflated.count,
                    detail: e.to_string(),
                });
            }
        }
    }
    let mut facts = facts?;
    facts.uncompressed_bytes = inflated.count;
    Ok(facts)
}

/// Walks the tar headers of `input` up to the end-of-archive blocks.
fn walk_tar(input: &mut Counted<impl Read>) -> Result<ContentFacts, ContentError> {
    let mut block = [0u8; 512];
    let mut entries = 0u64;
    let mut top_level = TopLevel::default();
    let mut long_name: Option<String> = None;
    let mut skip_buf = vec![0u8; 64 << 10];
    loop {
        let offset = input.count;
        if !read_block(input, &mut block)? {
            return Err(ContentError::Tar {
                offset,
                detail: "the archive ends without its end-of-archive blocks".into(),
            });
        }
        if block.iter().all(|b| *b == 0) {
            let offset = input.count;
            if !read_block(input, &mut block)? || block.iter().any(|b| *b != 0) {
                return Err(ContentError::Tar {
                    offset,
                    detail: "a zero block is not followed by a second one".into(),
                });
            }
            // What follows (record padding) must be zeros too.
            loop {
                match input.read(&mut skip_buf) {
                    Ok(0) => break,
                    Ok(n) if skip_buf[..n].iter().all(|b| *b == 0) => {}
                    Ok(_) => {
                        return Err(ContentError::Tar {
                            offset: input.count,
                            detail: "data after the end-of-archive blocks".into(),
                        });
                    }
                    Err(e) => {
                        return Err(ContentError::Gzip {
                            inflated: input.count,
                            detail: e.to_string(),
                        });
                    }
                }
            }
            return Ok(ContentFacts {
                uncompressed_bytes: 0,
                tar_entries: entries,
                top_level: top_level.into_sorted(),
            });
        }
        let header = parse_header(&block).map_err(|detail| ContentError::Tar { offset, detail })?;
        let padded = header.size.div_ceil(512).saturating_mul(512);
        match header.typeflag {
            // GNU long name: the data is the next entry's name.
            b'L' => {
                let mut name = vec![0u8; usize::try_from(header.size.min(64 << 10)).unwrap_or(0)];
                read_exact(input, &mut name)?;
                skip(input, padded - name.len() as u64, &mut skip_buf)?;
                let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
                long_name = Some(String::from_utf8_lossy(&name[..end]).into_owned());
                continue;
            }
            // pax headers and GNU long link names: metadata, skipped.
            b'x' | b'g' | b'K' => {
                skip(input, padded, &mut skip_buf)?;
                continue;
            }
            _ => {}
        }
        let name = long_name.take().unwrap_or(header.name);
        entries += 1;
        top_level.add(&name);
        // Directories, links and devices carry no data whatever their size field says.
        let data = if matches!(header.typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6') {
            0
        } else {
            padded
        };
        skip(input, data, &mut skip_buf)?;
    }
}

struct Header {
    name: String,
    size: u64,
    typeflag: u8,
}

fn parse_header(block: &[u8; 512]) -> Result<Header, String> {
    let stored = parse_octal(&block[148..156]).ok_or("the header checksum field is not octal")?;
    let computed: u64 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(*b)
            }
        })
        .sum();
    if stored != computed {
        return Err(format!(
            "header checksum {stored} does not match the header ({computed})"
        ));
    }
    let size = if block[124] & 0x80 != 0 {
        // GNU base-256.
        block[125..136]
            .iter()
            .try_fold(0u64, |acc, b| {
                acc.checked_mul(256).map(|v| v | u64::from(*b))
            })
            .ok_or("the size field overflows")?
    } else {
        parse_octal(&block[124..136]).ok_or("the size field is not octal")?
    };
    let text = |bytes: &[u8]| {
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    };
    let mut name = text(&block[0..100]);
    if &block[257..262] == b"ustar" {
        let prefix = text(&block[345..500]);
        if !prefix.is_empty() {
            name = format!("{prefix}/{name}");
        }
    }
    Ok(Header {
        name,
        size,
        typeflag: block[156],
    })
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let text: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| *b != 0 && *b != b' ')
        .collect();
    if text.is_empty() {
        return Some(0);
    }
    text.iter().try_fold(0u64, |acc, b| {
        if (b'0'..=b'7').contains(b) {
            acc.checked_mul(8)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Reads one 512-byte block; `false` at a clean end of stream before it.
fn read_block(input: &mut Counted<impl Read>, block: &mut [u8; 512]) -> Result<bool, ContentError> {
    let mut got = 0;
    while got < block.len() {
        match input.read(&mut block[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(ContentError::Tar {
                    offset: input.count,
                    detail: "the archive ends inside a header".into(),
                });
            }
            Ok(n) => got += n,
            Err(e) => {
                return Err(ContentError::Gzip {
                    inflated: input.count,
                    detail: e.to_string(),
                });
            }
        }
    }
    Ok(true)
}

fn read_exact(input: &mut Counted<impl Read>, out: &mut [u8]) -> Result<(), ContentError> {
    input
        .read_exact(out)
        .map_err(|e| truncated(input.count, &e))
}

fn skip(input: &mut Counted<impl Read>, mut n: u64, buf: &mut [u8]) -> Result<(), ContentError> {
    while n > 0 {
        let want = usize::try_from(n.min(buf.len() as u64)).unwrap_or(buf.len());
        match input.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(ContentError::Tar {
                    offset: input.count,
                    detail: format!("the archive ends {n} bytes before the entry's end"),
                });
            }
            Ok(got) => n -= got as u64,
            Err(e) => return Err(truncated(input.count, &e)),
        }
    }
    Ok(())
}

fn truncated(offset: u64, e: &std::io::Error) -> ContentError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        ContentError::Tar {
            offset,
            detail: "the archive ends inside an entry".into(),
        }
    } else {
        ContentError::Gzip {
            inflated: offset,
            detail: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A real archive made by the `tar` and `flate2` crates (not by the simulator).
    fn archive(files: &[(&str, usize)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, size) in files {
            let data: Vec<u8> = (0..*size).map(|i| (i * 7 + 3) as u8).collect();
            let mut header = tar::Header::new_gnu();
            header.set_size(*size as u64);
            header.set_mode(0o600);
            header.set_cksum();
            builder.append_data(&mut header, name, &data[..]).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }

    fn files() -> Vec<(&'static str, usize)> {
        vec![
            ("WiredTiger", 50),
            ("journal/WiredTigerLog.0000000001", 5000),
            ("collection-0-1.wt", 70_000),
        ]
    }

    #[test]
    fn a_real_archive_passes_and_its_facts_are_recorded() {
        let gz = archive(&files());
        let facts = validate(&gz[..]).unwrap();
        assert_eq!(facts.tar_entries, 3);
        assert_eq!(
            facts.top_level,
            vec!["WiredTiger", "collection-0-1.wt", "journal"]
        );
        assert!(facts.uncompressed_bytes > 75_000);
    }

    #[test]
    fn concatenated_members_are_one_stream() {
        // A tar split across two gzip members (as parallel compressors write them).
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_cksum();
        builder.append_data(&mut header, "a", &b"abc"[..]).unwrap();
        let tar = builder.into_inner().unwrap();
        let (first, second) = tar.split_at(700);
        let mut out = Vec::new();
        for part in [first, second] {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(part).unwrap();
            out.extend(gz.finish().unwrap());
        }
        assert!(validate(&out[..]).is_ok());
    }

    #[test]
    fn an_html_page_is_not_gzip() {
        let e = validate(&b"<!DOCTYPE html><html>"[..]);
        assert!(matches!(e, Err(ContentError::NotGzip { .. })), "{e:?}");
        assert!(matches!(
            validate(&b""[..]),
            Err(ContentError::NotGzip { .. })
        ));
    }

    #[test]
    fn a_clean_early_end_is_refused_wherever_it_falls() {
        let gz = archive(&files());
        for cut in [10, 100, gz.len() / 2, gz.len() - 9, gz.len() - 1] {
            let e = validate(&gz[..cut]);
            assert!(e.is_err(), "cut at {cut} of {} passed", gz.len());
        }
    }

    #[test]
    fn a_flipped_byte_or_trailing_garbage_is_refused() {
        let gz = archive(&files());
        let mut flipped = gz.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x40;
        assert!(validate(&flipped[..]).is_err());
        let mut trailing = gz.clone();
        trailing.extend_from_slice(b"garbage after the stream");
        assert!(validate(&trailing[..]).is_err());
        let mut crc = gz;
        let at = crc.len() - 8;
        crc[at] ^= 1;
        let e = validate(&crc[..]);
        assert!(matches!(e, Err(ContentError::Gzip { .. })), "{e:?}");
    }

    #[test]
    fn a_gzip_of_something_else_is_not_a_tar() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&[b'x'; 4096]).unwrap();
        let gz = gz.finish().unwrap();
        let e = validate(&gz[..]);
        assert!(matches!(e, Err(ContentError::Tar { .. })), "{e:?}");
    }

    #[test]
    fn text_content_types_are_refused_early() {
        assert!(check_content_type(Some("text/html; charset=utf-8")).is_err());
        assert!(check_content_type(Some("application/json")).is_err());
        assert!(check_content_type(Some("application/gzip")).is_ok());
        assert!(check_content_type(Some("application/octet-stream")).is_ok());
        assert!(check_content_type(None).is_ok());
    }

    #[tokio::test]
    async fn the_channel_validator_gives_the_same_verdict_and_fails_early() {
        let gz = archive(&files());
        let mut v = Validator::start();
        for chunk in gz.chunks(1000) {
            v.feed(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        let facts = v.finish().await.unwrap();
        assert_eq!(facts.tar_entries, 3);
        // An HTML page fails at the first chunks, long before the end of a big body.
        let mut v = Validator::start();
        let mut failed = None;
        for i in 0..10_000 {
            if let Err(e) = v.feed(Bytes::from_static(b"<html>.......")).await {
                failed = Some((i, e));
                break;
            }
        }
        let (at, e) = failed.unwrap_or_else(|| panic!("never failed"));
        assert!(at < 1000, "failed only after {at} chunks");
        assert!(matches!(e, ContentError::NotGzip { .. }));
    }
}
