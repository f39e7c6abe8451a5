//! An S3-compatible server on loopback that keeps objects as plain files under a directory
//! (`s3s-fs`), so that `demo` exercises the real S3 client path without any cloud. Objects land
//! at `<root>/<bucket>/<key>`.
//! Must not: be used for anything but `demo` and tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Access key of the embedded store.
pub const ACCESS_KEY: &str = "demo-access-key";
/// Secret key of the embedded store (not a real secret).
pub const SECRET_KEY: &str = "demo-secret-key";

/// A running embedded store.
pub struct EmbeddedStore {
    addr: SocketAddr,
    root: PathBuf,
    stop: CancellationToken,
}

impl EmbeddedStore {
    /// Serves `root` on `127.0.0.1` (any free port), with `bucket` created.
    pub async fn start(root: &Path, bucket: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join(bucket))?;
        let fs =
            s3s_fs::FileSystem::new(root).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let service = {
            let mut builder = S3ServiceBuilder::new(fs);
            builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            builder.build()
        };
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let socket = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => socket,
                        Err(_) => continue,
                    },
                    () = stopped.cancelled() => break,
                };
                let conn = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        Ok(Self {
            addr,
            root: root.to_path_buf(),
            stop,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where an object's bytes are on disk.
    pub fn path_of(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.join(bucket).join(key)
    }

    /// Stops serving.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}
