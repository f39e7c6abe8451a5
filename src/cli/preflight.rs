//! `check-config --online`: the preflight. Authenticates to Atlas and lists each target's
//! snapshots; on the bucket, tries each action the configuration needs with harmless probes (an
//! object and a multipart upload under the prefix, removed again) and prints a table: check,
//! result, what to fix. Exit 0 only when every needed check passes.
//! Must not: touch any key but its own probe key, or leave the probe behind unsaid.

use std::process::ExitCode;

use bytes::Bytes;

use super::Failure;
use atlas_archiver_engine::atlas::AtlasClient;
use atlas_archiver_engine::config::{Config, ObjectChecksum};
use atlas_archiver_engine::journal::Journal;
use atlas_archiver_engine::pipeline::kinds::list_snapshots;
use atlas_archiver_engine::store::{ObjectStore, StoreError};

/// How one check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pass,
    /// Works, with a caveat the operator should know; not a failure.
    Warn,
    Fail,
    /// Not needed by this configuration.
    Skip,
}

struct Check {
    name: String,
    outcome: Outcome,
    detail: String,
}

#[derive(Default)]
struct Table(Vec<Check>);

impl Table {
    fn add(&mut self, name: impl Into<String>, outcome: Outcome, detail: impl Into<String>) {
        self.0.push(Check {
            name: name.into(),
            outcome,
            detail: detail.into(),
        });
    }

    fn result<T, E: std::fmt::Display>(
        &mut self,
        name: &str,
        result: Result<T, E>,
        ok: impl FnOnce(&T) -> String,
        fix: &str,
    ) -> Option<T> {
        match result {
            Ok(v) => {
                self.add(name, Outcome::Pass, ok(&v));
                Some(v)
            }
            Err(e) => {
                self.add(name, Outcome::Fail, format!("{e}; {fix}"));
                None
            }
        }
    }

    fn print(&self) {
        let width = self
            .0
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        outln!("{:<width$}  {:<6}  DETAIL / FIX", "CHECK", "RESULT");
        for c in &self.0 {
            let label = match c.outcome {
                Outcome::Pass => "ok",
                Outcome::Warn => "warn",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "skip",
            };
            outln!("{:<width$}  {label:<6}  {}", c.name, c.detail);
        }
        let failed = self.failed();
        outln!(
            "\n{} checks: {failed} failed{}",
            self.0.len(),
            if failed == 0 {
                "; this configuration can archive"
            } else {
                ""
            }
        );
    }

    fn failed(&self) -> usize {
        self.0.iter().filter(|c| c.outcome == Outcome::Fail).count()
    }
}

/// Runs every check; prints the table.
pub(super) async fn run(config: &Config) -> Result<ExitCode, Failure> {
    let mut table = Table::default();
    atlas_checks(config, &mut table).await;
    bucket_checks(config, &mut table).await;
    table.print();
    Ok(if table.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn atlas_checks(config: &Config, table: &mut Table) {
    let client = match AtlasClient::new(&config.atlas) {
        Ok(c) => c,
        Err(e) => {
            table.add("Atlas client", Outcome::Fail, e.to_string());
            return;
        }
    };
    let journal = config
        .journal
        .path
        .exists()
        .then(|| Journal::open_read_only(&config.journal.path).ok())
        .flatten();
    for target in &config.targets {
        let choice = config.cluster_options(target).kind;
        table.result(
            &format!("Atlas: list snapshots of {target}"),
            list_snapshots(&client, journal.as_ref(), target, choice, false).await,
            |(kind, s)| format!("{} cluster, {} snapshots listed", kind.name(), s.len()),
            "the service account needs the Project Backup Export Operator role on the project",
        );
    }
}

async fn bucket_checks(config: &Config, table: &mut Table) {
    let s = &config.storage;
    let store = ObjectStore::connect(s).await;
    let region = store.region();
    table.add(
        "region",
        Outcome::Pass,
        format!("{} (from {})", region.region, region.source),
    );
    if table
        .result(
            "bucket reachable (HeadBucket)",
            store.check_bucket().await,
            |()| format!("bucket {}", s.bucket),
            "fix storage.bucket, storage.endpoint, storage.region or the credentials",
        )
        .is_none()
    {
        return;
    }
    table.result(
        "list the prefix (s3:ListBucket)",
        store.list_keys(&s.prefix).await,
        |keys| format!("{} objects under `{}`", keys.len(), s.prefix),
        "grant s3:ListBucket on the bucket",
    );
    if s.protection.object_lock.is_some() {
        table.result(
            "Object Lock (s3:GetBucketObjectLockConfiguration)",
            store.check_object_lock().await,
            |()| "enabled on the bucket".to_owned(),
            "see README \"Immutability\"",
        );
    } else {
        table.add(
            "Object Lock",
            Outcome::Skip,
            "not configured ([storage.object_lock])",
        );
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let probe = format!(
        "{}.atlas-archiver-preflight-{}-{nanos:08x}",
        s.prefix,
        std::process::id()
    );
    object_probe(config, &store, &probe, table).await;
    multipart_probe(config, &store, &probe, table).await;
}

async fn object_probe(config: &Config, store: &ObjectStore, probe: &str, table: &mut Table) {
    let body = Bytes::from_static(b"atlas-archiver preflight probe\n");
    if table
        .result(
            "write an object (s3:PutObject)",
            store.put_small(probe, body.clone(), "text/plain").await,
            |()| format!("wrote {probe}"),
            "grant s3:PutObject on the prefix",
        )
        .is_none()
    {
        return;
    }
    table.result(
        "read it back (s3:GetObject)",
        store.get_small(probe).await.map(|b| b == Some(body)),
        |same| {
            if *same {
                "GET gives the bytes written".to_owned()
            } else {
                "the store answered other bytes".to_owned()
            }
        },
        "grant s3:GetObject on the prefix",
    );
    let needed = config.retention.default.is_some() || !config.retention.overrides.is_empty();
    match store.delete(probe).await {
        Ok(()) => table.add(
            "delete it (s3:DeleteObject)",
            Outcome::Pass,
            "removed the probe",
        ),
        Err(e) => table.add(
            "delete it (s3:DeleteObject)",
            if needed { Outcome::Fail } else { Outcome::Warn },
            format!(
                "{e}; the probe {probe} is left behind; grant s3:DeleteObject on the prefix ({})",
                if needed {
                    "prune needs it"
                } else {
                    "needed once you configure [retention]"
                }
            ),
        ),
    }
}

async fn multipart_probe(config: &Config, store: &ObjectStore, probe: &str, table: &mut Table) {
    let key = format!("{probe}.multipart");
    let Some(upload) = table.result(
        "start a multipart upload (s3:PutObject)",
        store
            .create_multipart(&key, "application/octet-stream")
            .await,
        |u| {
            if u.verifies_crc32c() {
                "created, with a full-object CRC32C".to_owned()
            } else {
                "created".to_owned()
            }
        },
        "grant s3:PutObject on the prefix",
    ) else {
        return;
    };
    if config.storage.object_checksum == ObjectChecksum::Crc32c && !upload.verifies_crc32c() {
        table.add(
            "full-object CRC32C",
            Outcome::Warn,
            "the store refused it: uploads go without a store-verified checksum (set storage.checksum = \"none\" to skip this probe)",
        );
    }
    let part = Bytes::from_static(b"probe");
    table.result(
        "upload a part",
        upload
            .upload_part(1, part.clone(), crc32c::crc32c(&part))
            .await,
        |_| "accepted".to_owned(),
        "grant s3:PutObject on the prefix; if the store refuses the checksum, set storage.checksum = \"none\"",
    );
    let name = "list its parts (s3:ListMultipartUploadParts)";
    match upload.list_parts().await {
        Ok(parts) => table.add(
            name,
            Outcome::Pass,
            format!("{} part listed (resuming after a crash works)", parts.len()),
        ),
        // An answer without an S3 error code is one the SDK could not read (moto's ListParts):
        // a resume then trusts the journal's record of the parts.
        Err(StoreError::Request { code: None, message, .. }) => table.add(
            name,
            Outcome::Warn,
            format!("{message}: the store's answer cannot be read; a resume after a crash trusts the journal's record of the parts"),
        ),
        Err(e) => table.add(
            name,
            Outcome::Fail,
            format!("{e}; grant s3:ListMultipartUploadParts on the prefix (resuming after a crash needs it)"),
        ),
    }
    match store.list_multipart_uploads(&config.storage.prefix).await {
        Ok(uploads) if uploads.iter().any(|(k, _)| *k == key) => table.add(
            "list uploads (s3:ListBucketMultipartUploads)",
            Outcome::Pass,
            "the probe upload is listed (the start-up sweep can find interrupted uploads)",
        ),
        Ok(_) => table.add(
            "list uploads (s3:ListBucketMultipartUploads)",
            Outcome::Warn,
            "the store does not list the probe upload: interrupted uploads are found from the journal only (add a lifecycle rule that aborts incomplete uploads)",
        ),
        Err(e) => table.add(
            "list uploads (s3:ListBucketMultipartUploads)",
            Outcome::Warn,
            format!("{e}; interrupted uploads are found from the journal only (grant s3:ListBucketMultipartUploads, or add a lifecycle rule that aborts incomplete uploads)"),
        ),
    }
    table.result(
        "abort it (s3:AbortMultipartUpload)",
        upload.abort().await,
        |()| "aborted; nothing left behind".to_owned(),
        &format!(
            "grant s3:AbortMultipartUpload on the prefix; abort upload {} of {key} by hand",
            upload.upload_id()
        ),
    );
}
