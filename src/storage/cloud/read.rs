//! Reading objects from an object store: ranged GETs, resumed from the byte where a broken
//! connection stopped.

use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore};

use super::{CloudStorage, CloudStore, READ_RESUMES, explain, retried, run_on};

/// Whether a ranged GET failed because it starts at (or after) the object's end.
pub(super) fn past_the_end(e: &object_store::Error) -> bool {
    let text = e.to_string();
    text.contains("416") || text.contains("InvalidRange")
}

pub(super) enum GetError {
    Store(object_store::Error),
    Io(io::Error),
}

pub(super) fn start_get(
    storage: &CloudStorage,
    path: &Path,
    offset: u64,
) -> Result<BoxStream<'static, object_store::Result<Bytes>>, GetError> {
    let (store, path) = (storage.inner.store.clone(), path.clone());
    let (window, what) = (storage.inner.retry_window, format!("read {path}"));
    storage
        .block(async move {
            retried(window, &what, || {
                get_stream(store.clone(), path.clone(), offset)
            })
            .await
        })
        .map_err(GetError::Io)?
        .map_err(GetError::Store)
}

pub(super) async fn get_stream(
    store: Arc<dyn ObjectStore>,
    path: Path,
    offset: u64,
) -> object_store::Result<BoxStream<'static, object_store::Result<Bytes>>> {
    let options = GetOptions {
        range: (offset > 0).then_some(GetRange::Offset(offset)),
        ..GetOptions::default()
    };
    Ok(store.get_opts(&path, options).await?.into_stream())
}

/// A blocking reader of an object's byte stream. A connection that breaks mid-way is resumed
/// from the byte where it broke (a ranged GET), a few times, before the error is reported.
pub(super) struct CloudReader {
    pub(super) store: Arc<CloudStore>,
    pub(super) rt: Option<tokio::runtime::Handle>,
    pub(super) path: Path,
    pub(super) at: u64,
    pub(super) stream: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    pub(super) chunk: Bytes,
    pub(super) resumes: u32,
}

impl CloudReader {
    fn wait<F, T>(&self, fut: F) -> io::Result<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        run_on(self.rt.as_ref(), fut)
    }
}

impl Read for CloudReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.chunk.is_empty() {
                let n = out.len().min(self.chunk.len());
                out[..n].copy_from_slice(&self.chunk[..n]);
                self.chunk = self.chunk.slice(n..);
                self.at += n as u64;
                return Ok(n);
            }
            let Some(mut stream) = self.stream.take() else {
                let (store, path, at) = (self.store.store.clone(), self.path.clone(), self.at);
                let (window, what) = (self.store.retry_window, format!("read {path}"));
                let fresh = match self.wait(async move {
                    retried(window, &what, || {
                        get_stream(store.clone(), path.clone(), at)
                    })
                    .await
                })? {
                    Ok(f) => f,
                    // Resumed exactly at the end: nothing is left to read.
                    Err(e) if at > 0 && past_the_end(&e) => return Ok(0),
                    Err(e) => return Err(io::Error::other(explain(&e))),
                };
                self.stream = Some(fresh);
                continue;
            };
            let (next, stream) = self.wait(async move {
                let next = stream.next().await;
                (next, stream)
            })?;
            match next {
                None => {
                    // Keep the finished stream: reading again must not ask for a range past
                    // the end (a 416).
                    self.stream = Some(stream);
                    return Ok(0);
                }
                Some(Ok(bytes)) => {
                    self.chunk = bytes;
                    self.stream = Some(stream);
                    // Resumes are counted per stall, not per object: a long read may break
                    // more than a few times in all.
                    self.resumes = 0;
                }
                Some(Err(e)) if self.resumes < READ_RESUMES => {
                    self.resumes += 1;
                    tracing::warn!(
                        "reading {} broke at byte {} ({e}); resuming",
                        self.path,
                        self.at
                    );
                    std::thread::sleep(Duration::from_millis(200 << self.resumes));
                }
                Some(Err(e)) => return Err(io::Error::other(explain(&e))),
            }
        }
    }
}
