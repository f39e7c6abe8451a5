//! The start-up cleanup: abort the multipart uploads that are certainly ours and that the journal
//! does not own (a crash between CreateMultipartUpload and recording its answer), and those of
//! sharded snapshots' components, which never resume.
//! Must not: touch an upload the journal knows nothing about (audit H1).

use tracing::{info, warn};

use super::{ArchiveError, Archiver};

impl Archiver {
    /// Aborts multipart uploads that are certainly ours and that the journal does not own: those
    /// on the key of a snapshot whose journal row recorded the intent to create an upload but
    /// never its id (a crash in between). Nothing else is touched: an upload the journal knows
    /// nothing about may belong to another writer of the bucket (another instance, another
    /// application; audit H1), and a bucket lifecycle rule that aborts incomplete uploads is the
    /// backstop for those. Stores that cannot list uploads are skipped with a note.
    pub async fn abort_orphan_uploads(&self) -> Result<usize, ArchiveError> {
        let owned = self.journal.owned_uploads().await?;
        let mut aborted = 0;
        // A sharded snapshot's component uploads never resume (their URLs are one-time): the
        // recorded ones are aborted now, and the keys of those intended but never recorded are
        // looked at like a snapshot's.
        let mut pending = self.journal.pending_upload_keys().await?;
        for (object_key, upload_id) in self.journal.component_uploads().await? {
            match upload_id {
                Some(id) => match self.store.abort_multipart(&object_key, &id).await {
                    Ok(()) => {
                        aborted += 1;
                        info!(key = %object_key, "aborted the upload of a component that an interrupted run left");
                    }
                    Err(e) => {
                        warn!(key = %object_key, error = %e, "cannot abort a component's upload; the next attempt of its snapshot does")
                    }
                },
                None => pending.push(object_key),
            }
        }
        for object_key in pending {
            let uploads = match self.store.list_multipart_uploads(&object_key).await {
                Ok(u) => u,
                Err(e) => {
                    warn!(key = %object_key, error = %e, "cannot list multipart uploads; orphan cleanup skipped (add a lifecycle rule that aborts incomplete uploads)");
                    return Ok(aborted);
                }
            };
            for (key, upload_id) in uploads {
                // The listing is by prefix: only the exact key is ours.
                if key != object_key || owned.contains(&upload_id) {
                    continue;
                }
                match self.store.abort_multipart(&key, &upload_id).await {
                    Ok(()) => {
                        aborted += 1;
                        info!(key = %key, "aborted an orphan multipart upload left by an interrupted start");
                    }
                    Err(e) => {
                        warn!(key = %key, error = %e, "cannot abort an orphan multipart upload")
                    }
                }
            }
        }
        Ok(aborted)
    }
}
