//! Benchmark helper: the fastest plain multipart upload of in-memory data into the store, with
//! the same client settings as atlas-archiver (one buffer, shared by every part, so no source and
//! no copying: what is left is the store and the SDK). Prints seconds and MiB/s.
//! The integrity is the cheapest the store takes: each part carries its CRC32C (computed once
//! per distinct part length, the buffer being constant) with an unsigned payload, and the
//! object a full-object CRC32C combined from the parts'; a store that refuses CRC32C fails
//! the run (`CEILING_SIGNED=1` measures SigV4-signed payloads instead).
//!
//! `upload_ceiling ENDPOINT BUCKET KEY SIZE [PART_SIZE [PARTS_IN_FLIGHT]]`, credentials from
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.

use std::time::Instant;

use atlas_archiver::config::units::parse_byte_size;
use atlas_archiver::config::{ChecksumCalculation, ObjectChecksum, PartSize, StorageConfig};
use atlas_archiver::store::{CompletedPartInfo, ObjectStore, StoreError};
use bytes::Bytes;
use secrecy::SecretString;
use tokio::task::JoinSet;

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        return Err(
            "usage: upload_ceiling ENDPOINT BUCKET KEY SIZE [PART_SIZE [PARTS_IN_FLIGHT]]".into(),
        );
    }
    let size = parse_byte_size(&args[4])?;
    let part_size = parse_byte_size(args.get(5).map_or("8MiB", String::as_str))?;
    let in_flight: usize = args
        .get(6)
        .map_or(Ok(3), |s| s.parse())
        .map_err(|e| format!("{e}"))?;
    let signed = std::env::var_os("CEILING_SIGNED").is_some();
    let env = |k: &str| std::env::var(k).map_err(|_| format!("{k} is not set"));
    let store = ObjectStore::connect(&StorageConfig {
        bucket: args[2].clone(),
        endpoint: Some(args[1].parse().map_err(|e| format!("{e}"))?),
        region: std::env::var("AWS_REGION").ok(),
        prefix: String::new(),
        force_path_style: true,
        static_credentials: Some((
            env("AWS_ACCESS_KEY_ID")?,
            SecretString::from(env("AWS_SECRET_ACCESS_KEY")?),
        )),
        part_size: PartSize::Fixed(part_size),
        parts_in_flight: in_flight,
        checksum_calculation: Some(ChecksumCalculation::WhenRequired),
        object_checksum: if signed {
            ObjectChecksum::None
        } else {
            ObjectChecksum::Crc32c
        },
        probe_checksum: false,
        key_template: "{snapshot_id}".into(),
        max_concurrent_transfers: 1,
        request_timeout: std::time::Duration::from_secs(120),
        validate_archives: false,
        protection: Default::default(),
    })
    .await;
    let buffer = Bytes::from(vec![
        0x5au8;
        usize::try_from(part_size).map_err(|e| e.to_string())?
    ]);
    let started = Instant::now();
    let upload = store
        .create_multipart(&args[3], "application/octet-stream")
        .await
        .map_err(|e| e.to_string())?;
    let mut tasks: JoinSet<Result<CompletedPartInfo, StoreError>> = JoinSet::new();
    let mut parts = Vec::new();
    let mut sent = 0u64;
    let mut number = 0;
    let mut whole_crc = 0u32;
    let full_crc = crc32c::crc32c(&buffer);
    while sent < size {
        let len = (size - sent).min(part_size);
        while tasks.len() >= in_flight {
            if let Some(done) = tasks.join_next().await {
                parts.push(
                    done.map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())?,
                );
            }
        }
        number += 1;
        let body = buffer.slice(..usize::try_from(len).map_err(|e| e.to_string())?);
        let part_crc = if len == part_size {
            full_crc
        } else {
            crc32c::crc32c(&body)
        };
        whole_crc = crc32c::crc32c_combine(whole_crc, part_crc, body.len());
        let upload = upload.clone();
        tasks.spawn(async move { upload.upload_part(number, body, part_crc).await });
        sent += len;
    }
    while let Some(done) = tasks.join_next().await {
        parts.push(
            done.map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?,
        );
    }
    upload
        .complete(&parts, whole_crc)
        .await
        .map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64();
    println!("{secs:.3} s, {:.1} MiB/s", size as f64 / secs / 1_048_576.0);
    store.delete(&args[3]).await.map_err(|e| e.to_string())?;
    Ok(())
}
