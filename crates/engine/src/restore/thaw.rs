//! Before a restore reads an archive: the configured SSE-C key must be the one the manifest
//! names, and an archive in a cold storage class must be thawed (`--thaw` asks for it and waits).
//! Must not: read the archive's bytes (that is `fetch`).

use std::time::Duration;

use super::{CatalogEntry, RestoreError};
use crate::store::{ObjectStore, Thaw};

/// `--thaw`: how a cold archive is brought back before it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThawPlan {
    /// Days the thawed copy stays readable.
    pub days: u32,
    /// Wait between two looks at the thaw's progress.
    pub poll: Duration,
}

/// Makes sure `entry`'s archive can be read: the configured SSE-C key is the one it was written
/// with, and an archive in a cold storage class (`GLACIER`, `DEEP_ARCHIVE`) is thawed: with
/// `thaw`, a thaw is asked for (unless one is under way) and waited for, `on_wait` told each
/// time; without, the error says how to thaw it.
pub async fn make_readable(
    store: &ObjectStore,
    entry: &CatalogEntry,
    thaw: Option<ThawPlan>,
    mut on_wait: impl FnMut(&str),
) -> Result<(), RestoreError> {
    // A sharded cluster's snapshot: every component.
    for (_, part) in entry.parts() {
        make_part_readable(store, &part, thaw, &mut on_wait).await?;
    }
    Ok(())
}

async fn make_part_readable(
    store: &ObjectStore,
    entry: &CatalogEntry,
    thaw: Option<ThawPlan>,
    on_wait: &mut impl FnMut(&str),
) -> Result<(), RestoreError> {
    let key = &entry.manifest.object_key;
    if let Some(wanted) = entry
        .manifest
        .encryption
        .as_ref()
        .and_then(|e| e.customer_key_md5.as_ref())
    {
        let held = store
            .protection()
            .encryption
            .customer_key()
            .map(|k| k.md5_base64().to_owned());
        if held.as_ref() != Some(wanted) {
            return Err(RestoreError::CustomerKey {
                key: key.clone(),
                wanted: wanted.clone(),
                found: held.map_or_else(
                    || "the configuration holds no SSE-C key".to_owned(),
                    |md5| format!("the configured key's MD5 is {md5}"),
                ),
            });
        }
    }
    let mut asked = false;
    loop {
        let Some(head) = store.head(key).await? else {
            return Err(RestoreError::NotFound(format!(
                "{key} is no longer in the bucket"
            )));
        };
        let class = head
            .storage_class
            .clone()
            .unwrap_or_else(|| "an archive tier".to_owned());
        let manual = format!(
            "run again with --thaw (asks the store for a readable copy and waits: GLACIER takes hours, DEEP_ARCHIVE up to 48 h), or thaw it yourself with `aws s3api restore-object --bucket {} --key {key} --restore-request Days=7`",
            store.bucket()
        );
        match (head.thaw, thaw) {
            (Thaw::NotNeeded | Thaw::Thawed, _) => return Ok(()),
            (Thaw::Needed, None) => {
                return Err(RestoreError::Cold {
                    key: key.clone(),
                    class,
                    state: "must be thawed before it can be read",
                    hint: manual,
                });
            }
            (Thaw::InProgress, None) => {
                return Err(RestoreError::Cold {
                    key: key.clone(),
                    class,
                    state: "is being thawed",
                    hint: "run again when the thaw is done, or with --thaw to wait for it".into(),
                });
            }
            (Thaw::Needed, Some(plan)) if !asked => {
                store.request_thaw(key, plan.days).await?;
                asked = true;
                on_wait(&format!(
                    "{key} is in {class}: asked the store to thaw it for {} days; waiting",
                    plan.days
                ));
            }
            (_, Some(plan)) => {
                on_wait(&format!(
                    "{key} is being thawed; looking again in {}",
                    humantime::format_duration(plan.poll)
                ));
                tokio::time::sleep(plan.poll).await;
            }
        }
    }
}
