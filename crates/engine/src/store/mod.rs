//! S3-compatible object store through `aws-sdk-s3`: client setup for AWS and other stores, small
//! objects (manifests), HEAD, reads, listings and deletes. Multipart uploads are in
//! [`multipart`], the error type in `error.rs`, locks, thaws and versions in `protect.rs`, what
//! S3 codes mean in `codes.rs`. Part sizing lives here too.
//! Must not: know about Atlas or the journal.
//! Over 500 lines: client setup for every S3 flavour and every small-object, read, listing and
//! delete call, each with its SSE-C headers.

/// Adds the SSE-C headers to a request when objects are encrypted with our own key: every
/// request that writes or reads an object's bytes (HEAD included) must carry them.
macro_rules! with_customer_key {
    ($request:expr, $key:expr) => {{
        let request = $request;
        match $key {
            Some(k) => request
                .sse_customer_algorithm("AES256")
                .sse_customer_key(k.key_base64())
                .sse_customer_key_md5(k.md5_base64()),
            None => request,
        }
    }};
}

/// Adds what [`Protection`] asks of a write (PutObject, CreateMultipartUpload): encryption,
/// the storage class (archives only: manifests stay readable without a thaw) and the lock.
macro_rules! protected_write {
    ($request:expr, $protection:expr, $lock_until:expr, $archive:expr) => {{
        let p: &crate::config::Protection = $protection;
        let mut r = with_customer_key!($request, p.encryption.customer_key());
        match &p.encryption {
            crate::config::Encryption::S3Managed => {
                r = r.server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::Aes256);
            }
            crate::config::Encryption::Kms { key_id } => {
                r = r
                    .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                    .set_ssekms_key_id(key_id.clone());
            }
            crate::config::Encryption::BucketDefault | crate::config::Encryption::Customer(_) => {}
        }
        if $archive && let Some(class) = &p.storage_class {
            r = r.storage_class(aws_sdk_s3::types::StorageClass::from(class.as_str()));
        }
        if let (Some(lock), Some(until)) = (p.object_lock, $lock_until) {
            r = r
                .object_lock_mode(aws_sdk_s3::types::ObjectLockMode::from(lock.mode.s3_name()))
                .object_lock_retain_until_date(crate::store::protect::to_smithy(until));
            if lock.legal_hold {
                r = r.object_lock_legal_hold_status(
                    aws_sdk_s3::types::ObjectLockLegalHoldStatus::On,
                );
            }
        }
        r
    }};
}

mod codes;
mod error;
mod multipart;
mod probe;
mod protect;

pub use probe::Crc32cSupport;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_config::meta::region::ProvideRegion;
use aws_config::profile::ProfileFileRegionProvider;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use crate::config::{
    ChecksumCalculation, CustomerKey, ObjectChecksum, PartSize, Protection, StorageConfig, expose,
};

pub use error::StoreError;
pub use multipart::{CompletedPartInfo, MultipartUpload};
pub use protect::{LockState, Thaw};

/// Longest wait to open a connection to the store.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest object [`ObjectStore::get_small`] reads: our manifests are a few hundred bytes.
pub const MAX_SMALL_OBJECT: i64 = 1 << 20;
/// S3 allows at most this many parts in one upload.
pub const MAX_PARTS: u64 = 10_000;
/// Parts planned from a known length leave this many parts of headroom below [`MAX_PARTS`].
const PLANNED_PARTS: u64 = 9_000;
/// Smallest part chosen by `auto`: big enough for throughput, small enough for a sidecar's memory.
const AUTO_MIN_PART: u64 = 8 << 20;
/// `auto` part size when the download has no `Content-Length`: 10,000 × 16 MiB ≈ 156 GiB, far
/// beyond a Flex cluster's 5 GB, at 64 MiB of part buffers per transfer (32 MiB parts made
/// 256 MiB at two transfers: a sidecar's whole limit, audit L16).
const AUTO_UNKNOWN_LENGTH_PART: u64 = 16 << 20;

/// An object being read, chunk by chunk.
pub struct ObjectReader {
    body: ByteStream,
    key: String,
}

impl ObjectReader {
    /// The next chunk, or `None` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, StoreError> {
        let chunk = self
            .body
            .try_next()
            .await
            .map_err(|e| StoreError::Request {
                operation: "GetObject",
                key: self.key.clone(),
                code: None,
                message: e.to_string(),
            })?;
        crate::watchdog::touch();
        Ok(chunk)
    }
}

/// What HEAD says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Size in bytes.
    pub size: u64,
    /// ETag as returned.
    pub etag: Option<String>,
    /// Storage class, when the store names one (AWS omits it for `STANDARD`).
    pub storage_class: Option<String>,
    /// Whether it must be thawed before a GET.
    pub thaw: Thaw,
    /// Its Object Lock.
    pub lock: LockState,
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag as listed.
    pub etag: Option<String>,
}

/// A handle on one bucket. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ObjectStore {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// Full-object CRC32C on uploads; switched off for the process when the store refuses it.
    crc32c: Arc<AtomicBool>,
    /// Whether the store is reached over TLS (AWS, or an https endpoint).
    tls: bool,
    /// Object Lock, storage class and encryption of every write (and SSE-C of every read).
    protection: Arc<Protection>,
    region: Arc<ResolvedRegion>,
}

/// The region of the store's requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedRegion {
    /// The region.
    pub region: Region,
    /// Where it came from, for the preflight: "storage.region or AWS_REGION", ...
    pub source: &'static str,
}

/// The configured region (`storage.region`, `AWS_REGION`, `AWS_DEFAULT_REGION`), else the AWS
/// profile's (`AWS_PROFILE` or `default`, in `AWS_CONFIG_FILE` or `~/.aws/config`), else
/// `us-east-1`. Like the AWS CLI, never the instance metadata: off EC2 that lookup would stall
/// every start on a connect timeout.
async fn resolve_region(configured: Option<&str>) -> ResolvedRegion {
    if let Some(r) = configured {
        return ResolvedRegion {
            region: Region::new(r.to_owned()),
            source: "storage.region, AWS_REGION or AWS_DEFAULT_REGION",
        };
    }
    match ProfileFileRegionProvider::new().region().await {
        Some(region) => ResolvedRegion {
            region,
            source: "the AWS profile",
        },
        None => ResolvedRegion {
            region: Region::new("us-east-1"),
            source: "the default",
        },
    }
}

impl ObjectStore {
    /// Builds the client. Credentials come from the config or the standard AWS chain.
    pub async fn connect(config: &StorageConfig) -> Self {
        let region = resolve_region(config.region.as_deref()).await;
        let mut loader =
            aws_config::defaults(BehaviorVersion::v2026_01_12()).region(region.region.clone());
        if let Some((id, secret)) = &config.static_credentials {
            loader = loader.credentials_provider(Credentials::new(
                id.clone(),
                expose(secret).to_owned(),
                None,
                None,
                "atlas-archiver-config",
            ));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.force_path_style)
            // Part bodies are in memory, so the SDK can retry them itself.
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(5)
                    .with_initial_backoff(Duration::from_millis(200)),
            );
        // Every request has a bounded wait (audit H2): aws-config sets only a connect timeout, and
        // its stalled-stream protection stops watching once a request body is sent, so a store
        // that accepts a request and never answers would hang the run forever. The attempt
        // timeout is retried by the SDK like any transient failure.
        builder = builder.timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(config.request_timeout)
                .operation_attempt_timeout(config.request_timeout)
                .build(),
        );
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint.as_str().trim_end_matches('/'));
        }
        match config.checksum_calculation {
            Some(ChecksumCalculation::WhenRequired) => {
                builder = builder
                    .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                    .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
            }
            Some(ChecksumCalculation::WhenSupported) => {
                builder =
                    builder.request_checksum_calculation(RequestChecksumCalculation::WhenSupported);
            }
            None => {}
        }
        Self {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            bucket: config.bucket.clone(),
            crc32c: Arc::new(AtomicBool::new(
                config.object_checksum == ObjectChecksum::Crc32c,
            )),
            tls: config
                .endpoint
                .as_ref()
                .is_none_or(|e| e.scheme() == "https"),
            protection: Arc::new(config.protection.clone()),
            region: Arc::new(region),
        }
    }

    /// The region requests are signed for, and where it came from.
    pub fn region(&self) -> &ResolvedRegion {
        &self.region
    }

    /// What the store is asked to do to every object written.
    pub fn protection(&self) -> &Protection {
        &self.protection
    }

    fn customer_key(&self) -> Option<&CustomerKey> {
        self.protection.encryption.customer_key()
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Checks that the bucket exists and the credentials reach it.
    pub async fn check_bucket(&self) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| StoreError::from_sdk("HeadBucket", &self.bucket, e))
    }

    /// HEAD; `None` when the object does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        let request = self.client.head_object().bucket(&self.bucket).key(key);
        match with_customer_key!(request, self.customer_key())
            .send()
            .await
        {
            Ok(out) => {
                let storage_class = out.storage_class().map(|c| c.as_str().to_owned());
                let thaw = Thaw::from_head(
                    storage_class.as_deref(),
                    out.archive_status().is_some(),
                    out.restore(),
                );
                Ok(Some(ObjectInfo {
                    size: out
                        .content_length()
                        .and_then(|n| u64::try_from(n).ok())
                        .unwrap_or(0),
                    etag: out.e_tag().map(str::to_owned),
                    storage_class,
                    thaw,
                    lock: LockState {
                        mode: out
                            .object_lock_mode()
                            .and_then(|m| crate::config::LockMode::from_s3(m.as_str())),
                        retain_until: out
                            .object_lock_retain_until_date()
                            .and_then(protect::to_chrono),
                        legal_hold: out.object_lock_legal_hold_status()
                            == Some(&aws_sdk_s3::types::ObjectLockLegalHoldStatus::On),
                    },
                }))
            }
            Err(SdkError::ServiceError(e)) if e.err().is_not_found() => Ok(None),
            Err(e) => Err(StoreError::from_sdk("HeadObject", key, e)),
        }
    }

    /// Writes a small object in one PUT (encrypted as configured, never locked: tests and
    /// probes; manifests go through [`ObjectStore::put_manifest`]).
    pub async fn put_small(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), StoreError> {
        self.put_object(key, body, content_type, None).await
    }

    /// Writes a manifest in one PUT: encrypted and, when configured, locked until `lock_until`.
    /// It carries its CRC32C whenever checksums are on (always with a lock: AWS refuses lock
    /// writes without an integrity header).
    pub async fn put_manifest(
        &self,
        key: &str,
        body: Bytes,
        lock_until: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), StoreError> {
        self.put_object(key, body, "application/json", lock_until)
            .await
    }

    async fn put_object(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        lock_until: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), StoreError> {
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type);
        if self.crc32c.load(Ordering::Relaxed) {
            request = request.checksum_crc32_c(multipart::b64(crc32c::crc32c(&body)));
        }
        if lock_until.is_some() {
            // Some stores accept only Content-MD5 as the integrity header of a locked write.
            use base64::Engine as _;
            use md5::Digest as _;
            request = request.content_md5(
                base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body)),
            );
        }
        protected_write!(request, &self.protection, lock_until, false)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| StoreError::from_sdk("PutObject", key, e))
    }

    /// Reads a small object (a manifest) whole; `None` when it does not exist. An object
    /// larger than [`MAX_SMALL_OBJECT`] is refused unread: whatever it is, it is not ours.
    pub async fn get_small(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let request = self.client.get_object().bucket(&self.bucket).key(key);
        match with_customer_key!(request, self.customer_key())
            .send()
            .await
        {
            Ok(out) if out.content_length().is_some_and(|n| n > MAX_SMALL_OBJECT) => {
                Err(StoreError::Request {
                    operation: "GetObject",
                    key: key.to_owned(),
                    code: None,
                    message: format!(
                        "the object is {} bytes; a manifest is at most {MAX_SMALL_OBJECT}",
                        out.content_length().unwrap_or_default()
                    ),
                })
            }
            Ok(out) => out
                .body
                .collect()
                .await
                .map(|b| Some(b.into_bytes()))
                .map_err(|e| StoreError::Request {
                    operation: "GetObject",
                    key: key.to_owned(),
                    code: None,
                    message: e.to_string(),
                }),
            Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() => Ok(None),
            Err(e) => Err(StoreError::from_sdk("GetObject", key, e)),
        }
    }

    /// Streams an object to `sink` chunk by chunk (for `verify` and tests).
    pub async fn read_chunks(
        &self,
        key: &str,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<u64, StoreError> {
        let mut reader = self.open_read(key).await?;
        let mut total = 0u64;
        while let Some(chunk) = reader.next_chunk().await? {
            total += chunk.len() as u64;
            sink(&chunk);
        }
        Ok(total)
    }

    /// Reads bytes `range` of an object into memory (a restore's ranged GETs), as the chunks the
    /// connection delivered (no copy into one buffer). With `if_match`, the store refuses (412)
    /// when the object is no longer the one that ETag names, so that ranges of two different
    /// objects are never joined. A body shorter or longer than the range is an error; a body
    /// cut mid-read is a retryable one.
    pub async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Vec<Bytes>, StoreError> {
        let fail = |message: String| StoreError::Request {
            operation: "GetObject",
            key: key.to_owned(),
            code: None,
            message,
        };
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .set_if_match(if_match.map(str::to_owned));
        let out = with_customer_key!(request, self.customer_key())
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("GetObject", key, e))?;
        let mut body = out.body;
        let want = range.end - range.start;
        let mut chunks = Vec::new();
        let mut got = 0u64;
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| fail(format!("the body of bytes {range:?} was cut: {e}")))?
        {
            got += chunk.len() as u64;
            if got > want {
                return Err(fail(format!(
                    "bytes {range:?} answered with more than {want} bytes (the store ignored the Range header?)"
                )));
            }
            chunks.push(chunk);
            crate::watchdog::touch();
        }
        if got != want {
            return Err(fail(format!(
                "bytes {range:?} answered with {got} bytes, expected {want}"
            )));
        }
        Ok(chunks)
    }

    /// Opens an object for reading, chunk by chunk.
    pub async fn open_read(&self, key: &str) -> Result<ObjectReader, StoreError> {
        let request = self.client.get_object().bucket(&self.bucket).key(key);
        let out = with_customer_key!(request, self.customer_key())
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("GetObject", key, e))?;
        Ok(ObjectReader {
            body: out.body,
            key: key.to_owned(),
        })
    }

    /// Starts a multipart upload of an archive, with a full-object CRC32C when configured, in
    /// the configured storage class, encrypted and (when configured) locked from now. A store
    /// that refuses checksums (400/501 on the checksum headers) gets uploads without them from
    /// then on, unless a lock needs them.
    pub async fn create_multipart(
        &self,
        key: &str,
        content_type: &str,
    ) -> Result<MultipartUpload, StoreError> {
        let crc = self.crc32c.load(Ordering::Relaxed);
        let create = |crc: bool| {
            MultipartUpload::create(
                self.client.clone(),
                &self.bucket,
                key,
                content_type,
                crc,
                &self.protection,
                self.lock_until(chrono::Utc::now()),
            )
        };
        let created = match create(crc).await {
            Err(e) if crc && e.is_checksum_refusal() && self.refuse_checksums(&e) => {
                create(false).await
            }
            other => other,
        };
        created.map(|u| u.on_tls(self.tls))
    }

    /// Called when the store refused checksum headers: later uploads go without them, unless a
    /// lock is configured (lock writes need them; the refusal then stays an error). Returns
    /// whether checksums are off now.
    pub fn refuse_checksums(&self, error: &StoreError) -> bool {
        if self.protection.object_lock.is_some() {
            tracing::error!(error = %error, "the store refuses S3 checksum headers, which Object Lock writes need; archives cannot be written locked");
            return false;
        }
        if self.crc32c.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = %error, "the store refuses S3 checksum headers; continuing without them (SHA-256 and CRC32C are still checked by atlas-archiver; set storage.checksum = \"none\" to skip this probe)");
        }
        true
    }

    /// Reopens an upload by id (to resume it after a crash).
    pub fn existing_multipart(&self, key: &str, upload_id: &str, crc32c: bool) -> MultipartUpload {
        MultipartUpload::existing(
            self.client.clone(),
            &self.bucket,
            key,
            upload_id,
            crc32c,
            self.customer_key().cloned(),
        )
        .on_tls(self.tls)
    }

    /// Aborts an upload by id (after a crash, or when cleaning up).
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        multipart::abort(&self.client, &self.bucket, key, upload_id).await
    }

    /// Lists multipart uploads in progress under `prefix`: `(key, upload_id)`.
    pub async fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await
                .map_err(|e| StoreError::from_sdk("ListMultipartUploads", prefix, e))?;
            for u in page.uploads() {
                if let (Some(k), Some(id)) = (u.key(), u.upload_id()) {
                    out.push((k.to_owned(), id.to_owned()));
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && id_marker.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// Keys under `prefix`, with sizes (for `status`, tests and `verify`).
    pub async fn list_keys(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(self
            .list_objects(prefix)
            .await?
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect())
    }

    /// Every object under `prefix`, page after page.
    pub async fn list_objects(&self, prefix: &str) -> Result<Vec<ListedObject>, StoreError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| StoreError::from_sdk("ListObjectsV2", prefix, e))?;
            for o in page.contents() {
                if let Some(k) = o.key() {
                    out.push(ListedObject {
                        key: k.to_owned(),
                        size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                        etag: o.e_tag().map(str::to_owned),
                    });
                }
            }
            token = page.next_continuation_token().map(str::to_owned);
            if page.is_truncated() != Some(true) || token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// Deletes one object (tests and cleanup).
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| StoreError::from_sdk("DeleteObject", key, e))
    }
}

/// Chooses the part size for one upload. With a known length: big enough to stay under 9,000
/// parts (headroom below S3's 10,000), at least 8 MiB, rounded up to a whole MiB. Without one:
/// [`AUTO_UNKNOWN_LENGTH_PART`]. A fixed size is used as configured. Every part but the last has this size
/// (R2 requires equal parts).
pub fn plan_part_size(policy: PartSize, content_length: Option<u64>) -> u64 {
    match policy {
        PartSize::Fixed(n) => n,
        PartSize::Auto => match content_length {
            None => AUTO_UNKNOWN_LENGTH_PART,
            Some(len) => {
                let needed = len.div_ceil(PLANNED_PARTS);
                let mib = 1u64 << 20;
                needed
                    .div_ceil(mib)
                    .saturating_mul(mib)
                    .clamp(AUTO_MIN_PART, crate::config::MAX_PART_SIZE)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_part_size_stays_under_the_part_limit() {
        assert_eq!(plan_part_size(PartSize::Auto, Some(3 << 20)), 8 << 20);
        assert_eq!(plan_part_size(PartSize::Auto, None), 16 << 20);
        for gib in [1u64, 8, 32, 100, 500, 2_000, 5_000] {
            let len = gib << 30;
            let part = plan_part_size(PartSize::Auto, Some(len));
            assert!(len.div_ceil(part) <= PLANNED_PARTS, "{gib} GiB -> {part}");
            assert_eq!(part % (1 << 20), 0);
            assert!(part >= 8 << 20);
        }
        assert_eq!(
            plan_part_size(PartSize::Fixed(16 << 20), Some(1 << 40)),
            16 << 20
        );
    }
}
