//! A snapshot URL read over several connections (`atlas.download_connections` > 1). On a link
//! whose round trip caps one TCP stream at its window, several ranged GETs in flight fill it.
//! Ranges of [`RANGE_BYTES`] are fetched ahead, at most `connections` at once, each held whole
//! until its turn, and handed on in order, so the hash, the validator and the parts see the
//! same stream a single GET gives.
//!
//! The opening GET (`Range: bytes=N-`, the whole rest, sent by `transfer.rs`) serves the first
//! range. It is let go only when a second GET has served its range in full: until then it is
//! the fallback, and if the second GET is refused (a one-time URL, a server that allows one
//! connection) or fails, the download simply goes on over the opening GET. A URL that allows
//! one GET costs one refused request, nothing else.
//!
//! Must not: retry a range (a range that fails after the opening GET is gone ends the transfer
//! as interrupted, and the pipeline resumes after the journalled parts, like a single GET that
//! breaks), hold more than `connections` ranges (their chunks keep the buffers they were read
//! into: about 8-15 MiB per connection measured), or send anything but the range headers to
//! the URL (no credentials: the client is the download client).

use std::collections::VecDeque;

use bytes::Bytes;
use reqwest::StatusCode;
use tokio::task::JoinHandle;
use tracing::info;

use super::transfer::{
    DownloadFailure, SnapshotUrl, TransferError, body_error, check_status, parse_content_range,
    send_range,
};

/// Bytes per ranged GET: the default part size, so a range in memory costs what a part does.
pub const RANGE_BYTES: u64 = 8 << 20;

/// What the reader hands on next.
pub(super) enum Next {
    /// The next bytes of the stream.
    Chunk(Bytes),
    /// The stream is over (the pump checks its length).
    End,
    /// A second GET was refused or failed before the opening one was let go: the rest comes
    /// over the opening GET alone, starting with `surplus` (bytes it had already sent past
    /// the first range).
    Single {
        /// The opening GET, positioned after `surplus`.
        response: reqwest::Response,
        /// Bytes of the opening GET read past the first range, not yet handed on.
        surplus: Option<Bytes>,
    },
}

/// The opening GET while it is still the fallback.
struct Opening {
    response: reqwest::Response,
    /// Absolute offset of the next byte it serves.
    at: u64,
    /// Where the first range ends (exclusive): the ranged GETs serve from here.
    end: u64,
    surplus: Option<Bytes>,
}

/// Ranges in flight and the one being handed on.
pub(super) struct Ranged {
    client: reqwest::Client,
    url: SnapshotUrl,
    /// A strong validator for `If-Range`, so that a changed object is refused, not spliced.
    etag: Option<String>,
    total: u64,
    connections: usize,
    opening: Option<Opening>,
    /// Start of the next range to request.
    next: u64,
    ahead: VecDeque<JoinHandle<Result<Vec<Bytes>, TransferError>>>,
    current: VecDeque<Bytes>,
}

impl Ranged {
    /// Whether bytes `offset..total` are worth more than one GET: more than one connection
    /// allowed, and more than one range to fetch.
    pub(super) fn worth_it(offset: u64, total: u64, connections: usize) -> bool {
        connections > 1 && offset.saturating_add(RANGE_BYTES) < total
    }

    /// Reads `response` (a 206 from `offset` to the end of `total` bytes) as the opening GET
    /// and starts the ranged GETs after its first range.
    pub(super) fn start(
        client: &reqwest::Client,
        url: &SnapshotUrl,
        response: reqwest::Response,
        offset: u64,
        total: u64,
        etag: Option<String>,
        connections: usize,
    ) -> Self {
        let end = offset.saturating_add(RANGE_BYTES);
        let mut ranged = Self {
            client: client.clone(),
            url: url.clone(),
            etag: etag.filter(|t| !t.starts_with("W/")),
            total,
            connections,
            opening: Some(Opening {
                response,
                at: offset,
                end,
                surplus: None,
            }),
            next: end,
            ahead: VecDeque::new(),
            current: VecDeque::new(),
        };
        ranged.top_up();
        ranged
    }

    /// The next bytes, in order. `received` is the stream's offset so far, for messages.
    pub(super) async fn next(&mut self, received: u64) -> Result<Next, TransferError> {
        loop {
            if let Some(chunk) = self.current.pop_front() {
                return Ok(Next::Chunk(chunk));
            }
            if let Some(opening) = &mut self.opening {
                if opening.at < opening.end {
                    let Some(mut chunk) = opening
                        .response
                        .chunk()
                        .await
                        .map_err(|e| body_error(e, received))?
                    else {
                        // The opening GET ended inside its range: the pump's length check says so.
                        self.stop();
                        return Ok(Next::End);
                    };
                    let room = usize::try_from(opening.end - opening.at).unwrap_or(usize::MAX);
                    if chunk.len() > room {
                        opening.surplus = Some(chunk.split_off(room));
                    }
                    opening.at += chunk.len() as u64;
                    return Ok(Next::Chunk(chunk));
                }
                // The first range is handed on: the second GET decides between the two ways.
                let second = match self.ahead.pop_front() {
                    Some(handle) => joined(handle).await,
                    None => Err(TransferError::Download {
                        kind: DownloadFailure::UploadTask,
                        message: "no ranged GET was started".into(),
                    }),
                };
                match second {
                    Ok(chunks) => {
                        // Dropping the opening response closes its connection.
                        self.opening = None;
                        self.current = chunks.into();
                        self.top_up();
                    }
                    Err(e) => {
                        info!(error = %e, "a second GET of the snapshot URL was not served; the download goes on over one connection");
                        self.stop();
                        let Some(opening) = self.opening.take() else {
                            return Ok(Next::End);
                        };
                        return Ok(Next::Single {
                            response: opening.response,
                            surplus: opening.surplus,
                        });
                    }
                }
                continue;
            }
            let Some(handle) = self.ahead.pop_front() else {
                return Ok(Next::End);
            };
            self.current = joined(handle).await?.into();
            self.top_up();
        }
    }

    /// Keeps `connections` GETs busy: the opening one counts while it serves.
    fn top_up(&mut self) {
        let busy = usize::from(self.opening.is_some());
        while self.ahead.len() + busy < self.connections && self.next < self.total {
            let start = self.next;
            let end = start.saturating_add(RANGE_BYTES).min(self.total);
            self.next = end;
            self.ahead.push_back(tokio::spawn(fetch(
                self.client.clone(),
                self.url.clone(),
                start,
                end,
                self.etag.clone(),
                self.total,
            )));
        }
    }

    /// Stops every ranged GET in flight.
    fn stop(&mut self) {
        for handle in self.ahead.drain(..) {
            handle.abort();
        }
        self.next = self.total;
    }
}

impl Drop for Ranged {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn joined(
    handle: JoinHandle<Result<Vec<Bytes>, TransferError>>,
) -> Result<Vec<Bytes>, TransferError> {
    handle.await.map_err(|e| TransferError::Download {
        kind: DownloadFailure::UploadTask,
        message: format!("a ranged GET ended unexpectedly: {e}"),
    })?
}

/// GETs bytes `start..end` of `total`: only a 206 whose `Content-Range` is exactly that range
/// is taken, and only if it serves exactly its length.
async fn fetch(
    client: reqwest::Client,
    url: SnapshotUrl,
    start: u64,
    end: u64,
    etag: Option<String>,
    total: u64,
) -> Result<Vec<Bytes>, TransferError> {
    let last = end - 1;
    let mut response = send_range(&client, &url, start, Some(last), etag.as_deref()).await?;
    check_status(&url, response.status())?;
    let refused = |detail: String| TransferError::RangeRefused {
        offset: start,
        detail,
    };
    if response.status() != StatusCode::PARTIAL_CONTENT {
        return Err(refused(format!(
            "HTTP {} instead of 206 to bytes={start}-{last}",
            response.status()
        )));
    }
    let range = response
        .headers()
        .get(reqwest::header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| refused("206 without Content-Range".into()))?;
    if parse_content_range(&range) != Some((start, last, Some(total))) {
        return Err(refused(format!(
            "Content-Range {range:?} instead of bytes {start}-{last}/{total}"
        )));
    }
    let want = usize::try_from(end - start).unwrap_or(usize::MAX);
    let mut chunks = Vec::new();
    let mut got = 0usize;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| body_error(e, start + got as u64))?
    {
        got += chunk.len();
        if got > want {
            return Err(TransferError::Download {
                kind: DownloadFailure::Interrupted,
                message: format!("the range from byte {start} served more than its {want} bytes"),
            });
        }
        chunks.push(chunk);
    }
    if got < want {
        return Err(TransferError::Download {
            kind: DownloadFailure::Interrupted,
            message: format!("the range from byte {start} ended after {got} of its {want} bytes"),
        });
    }
    Ok(chunks)
}
