//! Streams one snapshot URL into one multipart upload: download and upload overlap, parts are
//! fixed-size, at most `parts_in_flight` uploads run at once, so memory stays near
//! `part_size × (parts_in_flight + 1)` whatever the snapshot's size. SHA-256 and CRC32C are
//! computed as the bytes pass. On any failure the upload is aborted: no orphan parts remain.

use std::fmt;
use std::time::Duration;

use bytes::BytesMut;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use url::Url;

use crate::store::{CompletedPartInfo, MAX_PARTS, MultipartUpload, StoreError};

/// A snapshot download URL. It is a bearer secret: its path and query never print.
#[derive(Clone)]
pub struct SnapshotUrl(Url);

impl SnapshotUrl {
    /// Parses the URL Atlas returned.
    pub fn parse(text: &str) -> Result<Self, TransferError> {
        let url = Url::parse(text).map_err(|_| TransferError::Download {
            reason: "BAD_SNAPSHOT_URL",
            message: "Atlas returned a snapshotUrl that is not a URL".into(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TransferError::Download {
                reason: "BAD_SNAPSHOT_URL",
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

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The snapshot URL misbehaved.
    #[error("snapshot download failed: {message}")]
    Download {
        /// Short reason code.
        reason: &'static str,
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
}

impl TransferError {
    /// Short reason code for journal and metrics.
    pub fn reason(&self) -> String {
        match self {
            Self::Download { reason, .. } => (*reason).to_owned(),
            Self::UrlRejected { .. } => "URL_EXPIRED".into(),
            Self::LengthMismatch { .. } => "TRUNCATED_DOWNLOAD".into(),
            Self::Store(e) => e.reason(),
            Self::Cancelled => "CANCELLED".into(),
        }
    }

    /// Whether trying again in the same run may help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Download { reason, .. } => {
                *reason != "BAD_SNAPSHOT_URL" && *reason != "EMPTY_DOWNLOAD"
            }
            Self::UrlRejected { .. } | Self::LengthMismatch { .. } => true,
            Self::Store(StoreError::Request { code, .. }) => !matches!(
                code.as_deref(),
                Some(
                    "NoSuchBucket"
                        | "AccessDenied"
                        | "InvalidAccessKeyId"
                        | "SignatureDoesNotMatch"
                )
            ),
            Self::Store(_) | Self::Cancelled => false,
        }
    }
}

/// Settings of the download side.
#[derive(Debug, Clone, Copy)]
pub struct DownloadSettings {
    /// A stall longer than this fails the download.
    pub read_timeout: Duration,
}

/// Builds the HTTP client for snapshot URLs: it never carries Atlas credentials (no default
/// headers, no cookies), has no total timeout (snapshots take hours) but a stall timeout, and
/// no content decoding (byte counts must match what the server sent).
pub fn download_client(settings: DownloadSettings) -> Result<reqwest::Client, TransferError> {
    reqwest::Client::builder()
        .user_agent(concat!("atlas-archiver/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(settings.read_timeout)
        .tcp_keepalive(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .map_err(|e| TransferError::Download {
            reason: "CLIENT_SETUP",
            message: e.to_string(),
        })
}

/// An open download, before the upload starts.
pub struct Source {
    response: reqwest::Response,
    /// `Content-Length`, when the server sent one.
    pub content_length: Option<u64>,
}

/// GETs the snapshot URL (no credentials) and checks the status.
pub async fn open(client: &reqwest::Client, url: &SnapshotUrl) -> Result<Source, TransferError> {
    let response = client
        .get(url.0.clone())
        .send()
        .await
        .map_err(|e| TransferError::Download {
            reason: "DOWNLOAD_CONNECT",
            message: format!("cannot reach {url}: {}", e.without_url()),
        })?;
    let status = response.status();
    if matches!(
        status,
        StatusCode::FORBIDDEN | StatusCode::NOT_FOUND | StatusCode::GONE | StatusCode::UNAUTHORIZED
    ) {
        return Err(TransferError::UrlRejected {
            status: status.as_u16(),
        });
    }
    if status != StatusCode::OK {
        return Err(TransferError::Download {
            reason: "DOWNLOAD_HTTP_STATUS",
            message: format!("{url} answered HTTP {status}"),
        });
    }
    let content_length = response.content_length();
    Ok(Source {
        response,
        content_length,
    })
}

/// What a finished transfer measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferOutcome {
    /// Bytes streamed.
    pub bytes: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// CRC32C, hex.
    pub crc32c: String,
    /// Parts uploaded.
    pub parts: usize,
}

/// Pumps `source` into `upload` and completes it; aborts the upload on any failure.
pub async fn pump(
    mut source: Source,
    upload: &MultipartUpload,
    part_size: u64,
    parts_in_flight: usize,
    cancel: &CancellationToken,
) -> Result<TransferOutcome, TransferError> {
    let mut state = PumpState::new(part_size, parts_in_flight.max(1));
    let result = tokio::select! {
        r = state.run(&mut source, upload) => r,
        () = cancel.cancelled() => Err(TransferError::Cancelled),
    };
    match result {
        Ok(outcome) => Ok(outcome),
        Err(e) => {
            state.in_flight.abort_all();
            while state.in_flight.join_next().await.is_some() {}
            if let Err(abort_error) = upload.abort().await {
                warn!(error = %abort_error, "could not abort the multipart upload; it is retried at the next start");
            } else {
                debug!(upload_id = upload.upload_id(), "multipart upload aborted");
            }
            Err(e)
        }
    }
}

struct PumpState {
    part_size: usize,
    parts_in_flight: usize,
    buffer: BytesMut,
    in_flight: JoinSet<Result<CompletedPartInfo, StoreError>>,
    done: Vec<CompletedPartInfo>,
    next_part: i32,
    sha: Sha256,
    crc: u32,
    bytes: u64,
}

impl PumpState {
    fn new(part_size: u64, parts_in_flight: usize) -> Self {
        let part_size = usize::try_from(part_size).unwrap_or(usize::MAX);
        Self {
            part_size,
            parts_in_flight,
            buffer: BytesMut::with_capacity(part_size),
            in_flight: JoinSet::new(),
            done: Vec::new(),
            next_part: 0,
            sha: Sha256::new(),
            crc: 0,
            bytes: 0,
        }
    }

    async fn run(
        &mut self,
        source: &mut Source,
        upload: &MultipartUpload,
    ) -> Result<TransferOutcome, TransferError> {
        while let Some(chunk) =
            source
                .response
                .chunk()
                .await
                .map_err(|e| TransferError::Download {
                    reason: if e.is_timeout() {
                        "DOWNLOAD_STALLED"
                    } else {
                        "DOWNLOAD_INTERRUPTED"
                    },
                    message: format!(
                        "after {} bytes: {}",
                        self.bytes,
                        error_chain(&e.without_url())
                    ),
                })?
        {
            self.sha.update(&chunk);
            self.crc = crc32c::crc32c_append(self.crc, &chunk);
            self.bytes += chunk.len() as u64;
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let take = (self.part_size - self.buffer.len()).min(rest.len());
                self.buffer.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if self.buffer.len() == self.part_size {
                    self.submit(upload).await?;
                }
            }
        }
        if let Some(expected) = source.content_length
            && expected != self.bytes
        {
            return Err(TransferError::LengthMismatch {
                expected,
                received: self.bytes,
            });
        }
        if self.bytes == 0 {
            return Err(TransferError::Download {
                reason: "EMPTY_DOWNLOAD",
                message: "the snapshot URL served no bytes; a snapshot archive is never empty"
                    .into(),
            });
        }
        if !self.buffer.is_empty() {
            self.submit(upload).await?;
        }
        while let Some(joined) = self.in_flight.join_next().await {
            self.done.push(joined_part(joined)?);
        }
        upload.complete(&self.done).await?;
        let sha = std::mem::take(&mut self.sha);
        Ok(TransferOutcome {
            bytes: self.bytes,
            sha256: hex::encode(sha.finalize()),
            crc32c: format!("{:08x}", self.crc),
            parts: self.done.len(),
        })
    }

    /// Hands the full buffer to an upload task, first waiting for a free slot.
    async fn submit(&mut self, upload: &MultipartUpload) -> Result<(), TransferError> {
        if u64::try_from(self.next_part).unwrap_or(u64::MAX) >= MAX_PARTS {
            return Err(StoreError::TooManyParts {
                part_size: self.part_size as u64,
            }
            .into());
        }
        while self.in_flight.len() >= self.parts_in_flight {
            if let Some(joined) = self.in_flight.join_next().await {
                self.done.push(joined_part(joined)?);
            }
        }
        self.next_part += 1;
        let body =
            std::mem::replace(&mut self.buffer, BytesMut::with_capacity(self.part_size)).freeze();
        let upload = upload.clone();
        let number = self.next_part;
        self.in_flight
            .spawn(async move { upload.upload_part(number, body).await });
        Ok(())
    }
}

fn joined_part(
    joined: Result<Result<CompletedPartInfo, StoreError>, tokio::task::JoinError>,
) -> Result<CompletedPartInfo, TransferError> {
    match joined {
        Ok(Ok(part)) => Ok(part),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(TransferError::Download {
            reason: "UPLOAD_TASK",
            message: format!("an upload task ended unexpectedly: {e}"),
        }),
    }
}

/// `error: source: source` in one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
