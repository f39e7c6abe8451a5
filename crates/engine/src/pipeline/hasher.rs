//! The stream's SHA-256 on its own thread, off the I/O path: each part is hashed, in order,
//! while it uploads, and the hash state at its end comes back for the journal (a resume starts
//! from it). The part's bytes are shared with the upload (`Bytes`), never copied.
//! Must not: reorder parts, or hold more than the parts the pump has in flight (each part's
//! upload task waits for its checkpoint, so the pump's bound on parts in flight bounds this
//! queue too).

use bytes::Bytes;
use tokio::sync::oneshot;

use super::digest::ResumableSha256;

enum Job {
    /// Hash these bytes; answer with the checkpoint after them.
    Part(Bytes, oneshot::Sender<Option<String>>),
    /// Answer with the digest of everything hashed.
    Finish(oneshot::Sender<String>),
}

/// The hashing thread of one transfer. Dropping it ends the thread once its queue is done.
pub(super) struct Hasher {
    jobs: std::sync::mpsc::Sender<Job>,
}

/// The hashing thread is gone (it cannot panic on its own; only a bug or an abort of the
/// process ends it early).
#[derive(Debug)]
pub(super) struct HasherGone;

impl Hasher {
    /// Starts the thread from `state` (the state after the parts a resume keeps).
    pub(super) fn start(state: ResumableSha256) -> Result<Self, std::io::Error> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sha256".into())
            .spawn(move || {
                let mut sha = state;
                while let Ok(job) = queue.recv() {
                    match job {
                        Job::Part(bytes, reply) => {
                            sha.update(&bytes);
                            // The pump may have given up on the part: nobody to tell.
                            let _ = reply.send(sha.checkpoint());
                        }
                        Job::Finish(reply) => {
                            let _ = reply.send(sha.finalize_hex());
                            return;
                        }
                    }
                }
            })?;
        Ok(Self { jobs })
    }

    /// Queues the next part; the answer is the checkpoint after it (`None` when the state
    /// cannot be saved there, which only a part that is not whole 64-byte blocks causes).
    pub(super) fn part(
        &self,
        bytes: Bytes,
    ) -> impl std::future::Future<Output = Result<Option<String>, HasherGone>> + use<> {
        let (reply, answer) = oneshot::channel();
        let sent = self.jobs.send(Job::Part(bytes, reply)).is_ok();
        async move {
            if !sent {
                return Err(HasherGone);
            }
            answer.await.map_err(|_| HasherGone)
        }
    }

    /// The digest of every part, hex, once the queue is done.
    pub(super) async fn finish(self) -> Result<String, HasherGone> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job::Finish(reply)).map_err(|_| HasherGone)?;
        answer.await.map_err(|_| HasherGone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    #[tokio::test]
    async fn parts_hashed_on_the_thread_give_the_whole_digest_and_each_checkpoint() {
        let data: Vec<u8> = (0..3 * 65_536 + 100)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let hasher = Hasher::start(ResumableSha256::default()).unwrap();
        let parts: Vec<Bytes> = data.chunks(65_536).map(Bytes::copy_from_slice).collect();
        let mut answers = Vec::new();
        for p in &parts {
            answers.push(hasher.part(p.clone()));
        }
        let mut checkpoints = Vec::new();
        for a in answers {
            checkpoints.push(a.await.unwrap());
        }
        assert_eq!(
            hasher.finish().await.unwrap(),
            hex::encode(sha2::Sha256::digest(&data))
        );
        // After the first part: the state a resume restores, and it continues to the same end.
        let mut resumed = ResumableSha256::restore(checkpoints[0].as_deref().unwrap()).unwrap();
        resumed.update(&data[65_536..]);
        assert_eq!(
            resumed.finalize_hex(),
            hex::encode(sha2::Sha256::digest(&data))
        );
        // The last part is not whole blocks: no checkpoint after it.
        assert!(checkpoints[3].is_none());
    }
}
