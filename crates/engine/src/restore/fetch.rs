//! One object read with several ranged GETs at once and handed on in order, so that a single
//! connection's window does not cap a restore's throughput. Each range is pinned to the
//! object's ETag (`If-Match`), so ranges of two versions are never joined, and retried alone
//! when its body is cut.
//! Must not: hold more than `parallel` ranges in memory, plus the one the consumer holds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::sync::mpsc;

use crate::retry::Backoff;
use crate::store::{ObjectStore, StoreError};

/// Tries per range (the SDK retries each request as well; this covers cut bodies).
const RANGE_ATTEMPTS: u32 = 4;
const RANGE_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(250),
    max: Duration::from_secs(5),
};

/// How an object is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPlan {
    /// Ranged GETs in flight.
    pub parallel: usize,
    /// Bytes per range.
    pub range_size: u64,
}

impl FetchPlan {
    /// 8 ranges of 8 MiB: 64 MiB of buffers, enough to fill a fast link from one store.
    pub const DEFAULT: FetchPlan = FetchPlan {
        parallel: 8,
        range_size: 8 << 20,
    };

    /// The most archive bytes a restore holds in memory: the ranges in flight, the queue to the
    /// consumer, the range being handed on and the chunks queued for the decoder (at most one
    /// range's worth).
    pub fn memory_bound(&self) -> u64 {
        self.range_size
            .saturating_mul(self.parallel as u64 + super::QUEUE as u64 + 2)
    }
}

/// Reads `size` bytes of `key` and sends them to `tx` in order, one range (as the chunks the
/// connection delivered) per message, adding each range to
/// `progress` as it is handed on. Stops quietly when the receiver is gone (the consumer failed
/// and says why).
pub(crate) async fn fetch_in_order(
    store: &ObjectStore,
    key: &str,
    size: u64,
    etag: Option<&str>,
    plan: FetchPlan,
    tx: mpsc::Sender<Vec<Bytes>>,
    progress: &AtomicU64,
) -> Result<(), StoreError> {
    let step = plan.range_size.max(1);
    let ranges = (0..size.div_ceil(step)).map(|i| i * step..((i + 1) * step).min(size));
    let mut stream = futures_util::stream::iter(ranges)
        .map(|range| fetch_range(store, key, range, etag))
        .buffered(plan.parallel.max(1));
    while let Some(result) = stream.next().await {
        let chunks = result?;
        let n: u64 = chunks.iter().map(|c| c.len() as u64).sum();
        if tx.send(chunks).await.is_err() {
            return Ok(());
        }
        progress.fetch_add(n, Ordering::Relaxed);
    }
    Ok(())
}

async fn fetch_range(
    store: &ObjectStore,
    key: &str,
    range: std::ops::Range<u64>,
    etag: Option<&str>,
) -> Result<Vec<Bytes>, StoreError> {
    let mut attempt = 1;
    loop {
        match store.get_range(key, range.clone(), etag).await {
            Ok(bytes) => return Ok(bytes),
            Err(e) if e.is_retryable() && attempt < RANGE_ATTEMPTS => {
                tracing::debug!(key, attempt, error = %e, "ranged GET failed; retrying");
                tokio::time::sleep(RANGE_BACKOFF.delay(attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
