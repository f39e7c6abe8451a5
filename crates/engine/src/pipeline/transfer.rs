//! Streams one snapshot URL into one multipart upload: download and upload overlap, parts are
//! fixed-size, at most `parts_in_flight` uploads run at once, so memory stays near
//! `part_size × (parts_in_flight + 1)` whatever the snapshot's size. SHA-256 and CRC32C are
//! computed as the bytes pass, and each accepted part is journalled with the hash state after it,
//! so that a crash resumes at the end of the contiguous uploaded parts (with a ranged GET) instead
//! of starting over. On a failure the upload is aborted, unless it is left for a resume.
//! Over 500 lines: the download source and the part pump share the stall, length and resume rules; splitting them would split one protocol.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::debug;
use url::Url;

use async_trait::async_trait;

use super::digest::ResumableSha256;
use super::ranged::{Next, Ranged};
use super::validate::{self, ContentError, ContentFacts, Validator};
use crate::journal::PartRecord;
use crate::progress::Ticket;
use crate::reason::Reason;
use crate::store::{CompletedPartInfo, MAX_PARTS, MultipartUpload, StoreError};
use crate::telemetry::error_chain;

/// A snapshot download URL. It is a bearer secret: its path and query never print.
#[derive(Clone)]
pub struct SnapshotUrl(Url);

impl SnapshotUrl {
    /// Parses the URL Atlas returned.
    pub fn parse(text: &str) -> Result<Self, TransferError> {
        let url = Url::parse(text).map_err(|_| TransferError::Download {
            kind: DownloadFailure::BadUrl,
            message: "Atlas returned a snapshotUrl that is not a URL".into(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TransferError::Download {
                kind: DownloadFailure::BadUrl,
                message: format!("Atlas returned a snapshotUrl with scheme {}", url.scheme()),
            });
        }
        Ok(Self(url))
    }
}

impl fmt::Display for SnapshotUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}/<redacted>",
            self.0.scheme(),
            self.0.host_str().unwrap_or("?")
        )
    }
}

impl fmt::Debug for SnapshotUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What went wrong on the download side. The reason code and the retry rule follow from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadFailure {
    /// Atlas's `snapshotUrl` is not an http(s) URL.
    BadUrl,
    /// The URL answered an unexpected status.
    HttpStatus,
    /// The URL could not be reached.
    Connect,
    /// The body broke off.
    Interrupted,
    /// The body stalled past the stall timeout.
    Stalled,
    /// The URL served no bytes.
    Empty,
    /// The HTTP client could not be built.
    ClientSetup,
    /// An upload task ended unexpectedly.
    UploadTask,
}

impl DownloadFailure {
    fn reason(self) -> Reason {
        match self {
            Self::BadUrl => Reason::BadSnapshotUrl,
            Self::HttpStatus => Reason::DownloadHttpStatus,
            Self::Connect => Reason::DownloadConnect,
            Self::Interrupted => Reason::DownloadInterrupted,
            Self::Stalled => Reason::DownloadStalled,
            Self::Empty => Reason::EmptyDownload,
            Self::ClientSetup => Reason::ClientSetup,
            Self::UploadTask => Reason::UploadTask,
        }
    }
}

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The snapshot URL misbehaved.
    #[error("snapshot download failed: {message}")]
    Download {
        /// What kind of failure.
        kind: DownloadFailure,
        /// Details (never the URL's path or query).
        message: String,
    },
    /// The URL was refused as if expired or used up.
    #[error(
        "the snapshot URL was refused (HTTP {status}); it has probably expired, so a new download is requested"
    )]
    UrlRejected {
        /// Status.
        status: u16,
    },
    /// Fewer (or more) bytes than announced.
    #[error(
        "snapshot download ended after {received} bytes but Content-Length announced {expected}"
    )]
    LengthMismatch {
        /// Content-Length.
        expected: u64,
        /// Bytes received.
        received: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Shutdown asked us to stop.
    #[error("transfer cancelled by shutdown")]
    Cancelled,
    /// The source did not honour a ranged request for a resume.
    #[error(
        "the snapshot URL does not support resuming at byte {offset} ({detail}); the upload starts over"
    )]
    RangeRefused {
        /// Requested offset.
        offset: u64,
        /// What came back.
        detail: String,
    },
    /// The journal could not record a part.
    #[error("cannot record an uploaded part in the journal: {0}")]
    PartLog(String),
    /// What was served is not a valid snapshot archive.
    #[error("not archived: {0}")]
    Content(#[from] ContentError),
}

impl TransferError {
    /// Short reason code for journal and metrics.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Download { kind, .. } => kind.reason(),
            Self::UrlRejected { .. } => Reason::UrlExpired,
            Self::LengthMismatch { .. } => Reason::TruncatedDownload,
            Self::Store(e) => e.reason(),
            Self::Cancelled => Reason::Cancelled,
            Self::RangeRefused { .. } => Reason::RangeRefused,
            Self::PartLog(_) => Reason::Journal,
            Self::Content(_) => Reason::NotAnArchive,
        }
    }

    /// Whether the upload is worth keeping for a resume (the download side failed; what the
    /// store holds is fine).
    pub fn upload_is_resumable(&self) -> bool {
        matches!(
            self,
            Self::Download {
                kind: DownloadFailure::Interrupted | DownloadFailure::Stalled,
                ..
            }
        ) || matches!(self, Self::LengthMismatch { expected, received } if received < expected)
    }

    /// Whether trying again in the same run may help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Download { kind, .. } => {
                !matches!(kind, DownloadFailure::BadUrl | DownloadFailure::Empty)
            }
            // An error page served as a success may be a passing proxy fault: a new download
            // job is tried (and a later run tries again).
            Self::UrlRejected { .. }
            | Self::LengthMismatch { .. }
            | Self::RangeRefused { .. }
            | Self::Content(_) => true,
            Self::Store(e) => e.is_retryable(),
            Self::Cancelled | Self::PartLog(_) => false,
        }
    }
}

/// Settings of the download side.
#[derive(Debug, Clone, Copy)]
pub struct DownloadSettings {
    /// A stall longer than this fails the download.
    pub read_timeout: Duration,
    /// GETs of one snapshot URL at once (`atlas.download_connections`); 1 is one plain GET.
    pub connections: usize,
}

/// The client for snapshot URLs, and how many connections one download may use.
#[derive(Clone)]
pub struct Downloader {
    client: reqwest::Client,
    connections: usize,
}

/// Builds the HTTP client for snapshot URLs: it never carries Atlas credentials (no default
/// headers, no cookies), has no total timeout (snapshots take hours) but a stall timeout, and
/// no content decoding (byte counts must match what the server sent).
pub fn download_client(settings: DownloadSettings) -> Result<Downloader, TransferError> {
    let client = reqwest::Client::builder()
        .user_agent(concat!("atlas-archiver/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(settings.read_timeout)
        .tcp_keepalive(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .map_err(|e| TransferError::Download {
            kind: DownloadFailure::ClientSetup,
            message: e.to_string(),
        })?;
    Ok(Downloader {
        client,
        connections: settings.connections.max(1),
    })
}

/// An open download, before the upload starts.
pub struct Source {
    body: Body,
    /// Length of the whole object, when the server said (`Content-Length` of a 200, or the total
    /// of a 206's `Content-Range`).
    pub total_length: Option<u64>,
    /// The server's ETag, for `If-Range` on a later resume.
    pub etag: Option<String>,
}

/// Where the bytes come from.
enum Body {
    /// One GET, and bytes already read from it but not yet handed on.
    Single {
        response: reqwest::Response,
        pending: Option<Bytes>,
    },
    /// Several ranged GETs (`ranged.rs`).
    Ranged(Box<Ranged>),
    /// Nothing left to read (a resume with every byte already uploaded).
    Exhausted,
}

/// GETs the snapshot URL (no credentials) and checks the status. With more than one connection
/// the GET asks for `bytes=0-`: a 206 says the URL honours ranges, and the download is spread
/// over ranged GETs; a 200 is the whole body, read as one GET.
pub async fn open(download: &Downloader, url: &SnapshotUrl) -> Result<Source, TransferError> {
    let spread = download.connections > 1;
    let response = match spread {
        true => send_range(&download.client, url, 0, None, None).await?,
        false => request(download.client.get(url.0.clone()), url).await?,
    };
    check_status(url, response.status())?;
    check_content_type(&response)?;
    if spread && response.status() == StatusCode::PARTIAL_CONTENT {
        let total = continues_at(&response, 0, None)?;
        return Ok(Source::spread(download, url, response, 0, total, None));
    }
    if response.status() != StatusCode::OK {
        return Err(TransferError::Download {
            kind: DownloadFailure::HttpStatus,
            message: format!("{url} answered HTTP {} to a plain GET", response.status()),
        });
    }
    Ok(Source::single(response))
}

/// GETs the rest of the snapshot from `offset` (`Range`, with `If-Range` when the first response
/// had an ETag). Only a 206 whose `Content-Range` starts at `offset` and whose total matches the
/// known length is accepted; anything else means the upload must start over.
pub async fn open_from(
    download: &Downloader,
    url: &SnapshotUrl,
    offset: u64,
    etag: Option<&str>,
    total: Option<u64>,
) -> Result<Source, TransferError> {
    let response = send_range(&download.client, url, offset, None, etag).await?;
    check_status(url, response.status())?;
    check_content_type(&response)?;
    let whole = continues_at(&response, offset, total)?;
    Ok(Source::spread(download, url, response, offset, whole, etag))
}

/// The total length of a 206 that serves `offset` to the end (of `total`, when known); any
/// other answer means the URL does not resume there.
fn continues_at(
    response: &reqwest::Response,
    offset: u64,
    total: Option<u64>,
) -> Result<u64, TransferError> {
    let refused = |detail: String| TransferError::RangeRefused { offset, detail };
    if response.status() != StatusCode::PARTIAL_CONTENT {
        return Err(refused(format!(
            "HTTP {} instead of 206",
            response.status()
        )));
    }
    let range = response
        .headers()
        .get(reqwest::header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refused("206 without Content-Range".into()))?;
    let (start, end, whole) = parse_content_range(range)
        .ok_or_else(|| refused(format!("unreadable Content-Range {range:?}")))?;
    match whole {
        Some(w)
            if start == offset && end.checked_add(1) == Some(w) && total.is_none_or(|t| t == w) =>
        {
            Ok(w)
        }
        _ => Err(refused(format!(
            "Content-Range {range:?} does not continue at {offset} of {total:?}"
        ))),
    }
}

impl Source {
    /// A download with nothing left to read: every one of its `total` bytes is already in the
    /// upload's journalled parts (a crash between the last part and Complete, audit L12). No
    /// request is made; the pump completes the upload from the parts it is given.
    pub fn exhausted(total: u64, etag: Option<String>) -> Self {
        Self {
            body: Body::Exhausted,
            total_length: Some(total),
            etag,
        }
    }

    /// One plain GET (a 200).
    fn single(response: reqwest::Response) -> Self {
        Self {
            total_length: response.content_length(),
            etag: etag_of(&response),
            body: Body::Single {
                response,
                pending: None,
            },
        }
    }

    /// A 206 from `offset` to the end of `total` bytes: spread over ranged GETs when the
    /// download may use several connections and the rest is longer than one range. `known`
    /// is the validator recorded before (a resume's), for a response that sends none: the
    /// ranged GETs carry it in `If-Range` as the opening one did.
    fn spread(
        download: &Downloader,
        url: &SnapshotUrl,
        response: reqwest::Response,
        offset: u64,
        total: u64,
        known: Option<&str>,
    ) -> Self {
        let etag = etag_of(&response).or_else(|| known.map(str::to_owned));
        let body = if Ranged::worth_it(offset, total, download.connections) {
            Body::Ranged(Box::new(Ranged::start(
                &download.client,
                url,
                response,
                offset,
                total,
                etag.clone(),
                download.connections,
            )))
        } else {
            Body::Single {
                response,
                pending: None,
            }
        };
        Self {
            body,
            total_length: Some(total),
            etag,
        }
    }

    /// The next bytes; `received` (the bytes so far) is for messages.
    async fn chunk(&mut self, received: u64) -> Result<Option<Bytes>, TransferError> {
        loop {
            match &mut self.body {
                Body::Exhausted => return Ok(None),
                Body::Single { response, pending } => {
                    if let Some(bytes) = pending.take() {
                        return Ok(Some(bytes));
                    }
                    return response.chunk().await.map_err(|e| body_error(e, received));
                }
                Body::Ranged(ranged) => match ranged.next(received).await? {
                    Next::Chunk(bytes) => return Ok(Some(bytes)),
                    Next::End => return Ok(None),
                    Next::Single { response, surplus } => {
                        self.body = Body::Single {
                            response,
                            pending: surplus,
                        };
                    }
                },
            }
        }
    }
}

/// A body that broke off (or stalled) after `received` bytes.
pub(super) fn body_error(e: reqwest::Error, received: u64) -> TransferError {
    TransferError::Download {
        kind: if e.is_timeout() {
            DownloadFailure::Stalled
        } else {
            DownloadFailure::Interrupted
        },
        message: format!("after {received} bytes: {}", error_chain(&e.without_url())),
    }
}

/// GETs `bytes=START-` (`last: None`) or `bytes=START-LAST`, with `If-Range` when a strong
/// validator is known.
pub(super) async fn send_range(
    client: &reqwest::Client,
    url: &SnapshotUrl,
    start: u64,
    last: Option<u64>,
    etag: Option<&str>,
) -> Result<reqwest::Response, TransferError> {
    let spec = match last {
        Some(last) => format!("bytes={start}-{last}"),
        None => format!("bytes={start}-"),
    };
    let mut request = client
        .get(url.0.clone())
        .header(reqwest::header::RANGE, spec);
    if let Some(tag) = etag.filter(|t| !t.starts_with("W/")) {
        request = request.header(reqwest::header::IF_RANGE, tag);
    }
    self::request(request, url).await
}

async fn request(
    request: reqwest::RequestBuilder,
    url: &SnapshotUrl,
) -> Result<reqwest::Response, TransferError> {
    request.send().await.map_err(|e| TransferError::Download {
        kind: DownloadFailure::Connect,
        message: format!("cannot reach {url}: {}", error_chain(&e.without_url())),
    })
}

pub(super) fn check_status(url: &SnapshotUrl, status: StatusCode) -> Result<(), TransferError> {
    if matches!(
        status,
        StatusCode::FORBIDDEN | StatusCode::NOT_FOUND | StatusCode::GONE | StatusCode::UNAUTHORIZED
    ) {
        return Err(TransferError::UrlRejected {
            status: status.as_u16(),
        });
    }
    if !matches!(status, StatusCode::OK | StatusCode::PARTIAL_CONTENT) {
        return Err(TransferError::Download {
            kind: DownloadFailure::HttpStatus,
            message: format!("{url} answered HTTP {status}"),
        });
    }
    Ok(())
}

/// A `text/*` body is an error page, not a snapshot: refused before anything is uploaded.
fn check_content_type(response: &reqwest::Response) -> Result<(), TransferError> {
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    validate::check_content_type(content_type).map_err(TransferError::Content)
}

fn etag_of(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `bytes START-END/TOTAL` (TOTAL may be `*`).
pub fn parse_content_range(text: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = text.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    if end < start {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start, end, total))
}

/// Where an interrupted upload continues: the parts 1..=k the store and the journal agree on,
/// and the hash state after part k.
pub struct ResumePoint {
    /// Parts already in the store.
    pub parts: Vec<CompletedPartInfo>,
    /// SHA-256 state after them.
    pub sha: ResumableSha256,
    /// CRC32C after them.
    pub crc: u32,
    /// Bytes after them (the offset to download from).
    pub offset: u64,
}

/// Receives each part the store accepted, with the hash state after it; implemented over the
/// journal by the pipeline.
#[async_trait]
pub trait PartLog: Send + Sync {
    /// Records the part durably.
    async fn part_done(&self, part: PartRecord) -> Result<(), String>;

    /// The store accepted a part of `bytes` (every part, the last one too, which
    /// [`PartLog::part_done`] does not see).
    fn uploaded(&self, _bytes: u64) {}
}

/// What a finished transfer measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferOutcome {
    /// Bytes of the whole object.
    pub bytes: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// CRC32C, hex.
    pub crc32c: String,
    /// Parts in the object.
    pub parts: Vec<CompletedPartInfo>,
    /// What the content validation saw, when it watched the whole stream (not on a resume).
    pub content: Option<ContentFacts>,
}

/// How a transfer streams.
#[derive(Debug, Clone, Copy)]
pub struct PumpOptions {
    /// Bytes per part.
    pub part_size: u64,
    /// Parts uploading at once.
    pub parts_in_flight: usize,
    /// Validate the content as a `.tar.gz` on the side of the stream.
    pub validate: bool,
}

/// Pumps `source` into `upload` (continuing from `resume`) and hands the outcome back; the
/// caller records it, then completes the upload. On failure the part tasks are stopped and the
/// upload is left as it is: the caller decides between resuming it and aborting it.
pub async fn pump(
    mut source: Source,
    upload: &MultipartUpload,
    options: PumpOptions,
    cancel: &CancellationToken,
    log: &dyn PartLog,
    resume: Option<ResumePoint>,
    progress: &Ticket,
) -> Result<TransferOutcome, TransferError> {
    // A resumed stream starts mid-archive, where no validator can pick it up: the pipeline
    // validates the completed object instead.
    let validator = (options.validate && resume.is_none()).then(Validator::start);
    let mut state = PumpState::new(options.part_size, options.parts_in_flight.max(1), resume);
    state.validator = validator;
    let result = tokio::select! {
        r = state.run(&mut source, upload, log, progress) => r,
        () = cancel.cancelled() => Err(TransferError::Cancelled),
    };
    match result {
        Ok(outcome) => Ok(outcome),
        Err(e) if e.upload_is_resumable() => {
            // The download broke, not the store: let the parts already on their way land and be
            // journalled, so that a resume starts after them.
            while let Some(joined) = state.in_flight.join_next().await {
                if let Err(part_error) = state.finish_part(joined, log).await {
                    debug!(error = %part_error, "a part in flight failed after the download broke");
                }
            }
            Err(e)
        }
        Err(e) => {
            state.in_flight.abort_all();
            while state.in_flight.join_next().await.is_some() {}
            Err(e)
        }
    }
}

/// A part on its way to the store, with the hash state at its end.
struct PartDone {
    info: CompletedPartInfo,
    sha256_state: String,
    part_crc32c: u32,
    crc32c_after: u32,
    bytes_after: u64,
}

struct PumpState {
    part_size: usize,
    parts_in_flight: usize,
    buffer: Vec<u8>,
    pool: BufferPool,
    in_flight: JoinSet<Result<PartDone, StoreError>>,
    done: Vec<CompletedPartInfo>,
    next_part: i32,
    sha: ResumableSha256,
    crc: u32,
    part_crc: u32,
    bytes: u64,
    validator: Option<Validator>,
}

impl PumpState {
    fn new(part_size: u64, parts_in_flight: usize, resume: Option<ResumePoint>) -> Self {
        let part_size = usize::try_from(part_size).unwrap_or(usize::MAX);
        let (done, sha, crc, bytes) = match resume {
            Some(r) => (r.parts, r.sha, r.crc, r.offset),
            None => (Vec::new(), ResumableSha256::default(), 0, 0),
        };
        Self {
            part_size,
            parts_in_flight,
            buffer: Vec::new(),
            pool: BufferPool::new(part_size, parts_in_flight + 1),
            in_flight: JoinSet::new(),
            next_part: i32::try_from(done.len()).unwrap_or(i32::MAX),
            done,
            sha,
            crc,
            part_crc: 0,
            bytes,
            validator: None,
        }
    }

    async fn run(
        &mut self,
        source: &mut Source,
        upload: &MultipartUpload,
        log: &dyn PartLog,
        progress: &Ticket,
    ) -> Result<TransferOutcome, TransferError> {
        while let Some(chunk) = source.chunk(self.bytes).await? {
            if let Some(validator) = &mut self.validator {
                validator.feed(chunk.clone()).await?;
            }
            // Split at part boundaries before hashing, so that the hash state at the end of
            // each part is known (and journalled) for a resume.
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                if self.buffer.capacity() == 0 {
                    self.buffer = self.pool.take();
                }
                let take = (self.part_size - self.buffer.len()).min(rest.len());
                let piece = &rest[..take];
                self.sha.update(piece);
                // One CRC32C pass, of the part: the object's is combined from the parts'.
                self.part_crc = crc32c::crc32c_append(self.part_crc, piece);
                self.bytes += take as u64;
                self.buffer.extend_from_slice(piece);
                rest = &rest[take..];
                if self.buffer.len() == self.part_size {
                    self.submit(upload, log).await?;
                }
            }
            crate::fault::bytes(self.bytes);
            crate::watchdog::touch();
            progress.add(chunk.len() as u64);
            // Journal parts as soon as they land, not only when a slot is needed: the journal's
            // record is what a resume after a crash can start from.
            while let Some(joined) = self.in_flight.try_join_next() {
                self.finish_part(joined, log).await?;
            }
        }
        if let Some(expected) = source.total_length
            && expected != self.bytes
        {
            return Err(TransferError::LengthMismatch {
                expected,
                received: self.bytes,
            });
        }
        if self.bytes == 0 {
            return Err(TransferError::Download {
                kind: DownloadFailure::Empty,
                message: "the snapshot URL served no bytes; a snapshot archive is never empty"
                    .into(),
            });
        }
        // The verdict on the content before the last part goes out: nothing invalid is completed.
        let content = match self.validator.take() {
            Some(validator) => Some(validator.finish().await?),
            None => None,
        };
        if !self.buffer.is_empty() {
            self.submit(upload, log).await?;
        }
        while let Some(joined) = self.in_flight.join_next().await {
            self.finish_part(joined, log).await?;
        }
        self.done.sort_by_key(|p| p.number);
        let sha = std::mem::take(&mut self.sha);
        Ok(TransferOutcome {
            bytes: self.bytes,
            sha256: sha.finalize_hex(),
            crc32c: format!("{:08x}", self.crc),
            parts: std::mem::take(&mut self.done),
            content,
        })
    }

    /// Hands the full buffer to an upload task, first waiting for a free slot. The hash state
    /// now is the state at the end of this part.
    async fn submit(
        &mut self,
        upload: &MultipartUpload,
        log: &dyn PartLog,
    ) -> Result<(), TransferError> {
        if u64::try_from(self.next_part).unwrap_or(u64::MAX) >= MAX_PARTS {
            return Err(StoreError::TooManyParts {
                part_size: self.part_size as u64,
            }
            .into());
        }
        while self.in_flight.len() >= self.parts_in_flight {
            if let Some(joined) = self.in_flight.join_next().await {
                self.finish_part(joined, log).await?;
            }
        }
        self.next_part += 1;
        let body = self.pool.wrap(std::mem::take(&mut self.buffer));
        let upload = upload.clone();
        let number = self.next_part;
        let part_crc = std::mem::take(&mut self.part_crc);
        self.crc = crc32c::crc32c_combine(self.crc, part_crc, body.len());
        let sha256_state = self.sha.checkpoint().unwrap_or_default();
        let (crc32c_after, bytes_after) = (self.crc, self.bytes);
        self.in_flight.spawn(async move {
            let info = upload.upload_part(number, body, part_crc).await?;
            Ok(PartDone {
                info,
                sha256_state,
                part_crc32c: part_crc,
                crc32c_after,
                bytes_after,
            })
        });
        Ok(())
    }

    /// Records a finished part in the journal (with its hash state) and keeps it for Complete.
    async fn finish_part(
        &mut self,
        joined: Result<Result<PartDone, StoreError>, tokio::task::JoinError>,
        log: &dyn PartLog,
    ) -> Result<(), TransferError> {
        let part = match joined {
            Ok(Ok(part)) => {
                crate::watchdog::touch();
                part
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(e) => {
                return Err(TransferError::Download {
                    kind: DownloadFailure::UploadTask,
                    message: format!("an upload task ended unexpectedly: {e}"),
                });
            }
        };
        log.uploaded(part.info.size);
        if !part.sha256_state.is_empty() {
            log.part_done(PartRecord {
                number: part.info.number,
                size: part.info.size,
                etag: part.info.etag.clone(),
                sha256_state: part.sha256_state,
                part_crc32c: part.part_crc32c,
                crc32c_after: part.crc32c_after,
                bytes_after: part.bytes_after,
            })
            .await
            .map_err(TransferError::PartLog)?;
        }
        self.done.push(part.info);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parsing() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, 199, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 0-0/*"), Some((0, 0, None)));
        assert_eq!(parse_content_range("bytes 5-4/10"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range("bytes a-b/c"), None);
    }
}

/// Part buffers, reused: a full buffer goes to the SDK as `Bytes` whose owner hands the
/// allocation back here when the last reference is dropped (after the part's request, retries
/// included). Steady state allocates nothing, so memory stays at
/// `part_size × (parts_in_flight + 1)` however long the transfer, instead of drifting with the
/// allocator's handling of many large short-lived blocks.
#[derive(Clone)]
struct BufferPool {
    part_size: usize,
    keep: usize,
    free: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl BufferPool {
    fn new(part_size: usize, keep: usize) -> Self {
        Self {
            part_size,
            keep,
            free: std::sync::Arc::new(std::sync::Mutex::new(Vec::with_capacity(keep))),
        }
    }

    /// An empty buffer with room for one part.
    fn take(&self) -> Vec<u8> {
        let reused = self.free.lock().ok().and_then(|mut free| free.pop());
        reused.unwrap_or_else(|| Vec::with_capacity(self.part_size))
    }

    /// Turns a filled buffer into `Bytes` that return it to the pool when dropped.
    fn wrap(&self, data: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            data,
            pool: self.clone(),
        })
    }
}

/// A buffer on loan to the SDK.
struct Pooled {
    data: Vec<u8>,
    pool: BufferPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut data = std::mem::take(&mut self.data);
        data.clear();
        if let Ok(mut free) = self.pool.free.lock()
            && free.len() < self.pool.keep
            && data.capacity() >= self.pool.part_size
        {
            free.push(data);
        }
    }
}
