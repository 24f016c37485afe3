//! A bounded pool of tokio-postgres connections for the catalog, and [`wait`], which runs a
//! client's future to completion on the calling thread.
//!
//! The catalog's methods are synchronous and called from blocking threads (`spawn_blocking`),
//! sometimes from a runtime's own thread (start-up, tests). So the connections' I/O runs on a
//! small runtime of the catalog's own (one worker), and a caller never enters a runtime: it
//! polls the client's future on its own thread, parked until the connection task wakes it.
//! (`Runtime::block_on` would panic when called from inside another runtime; the blocking
//! `postgres` crate does exactly that.)

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, Config, NoTls};

use super::tls::RustlsConnect;

use crate::catalog::CatalogError;

/// How long a caller waits for a connection when every one is in use.
const BUSY_WAIT: Duration = Duration::from_secs(60);

/// Runs `f` to completion on this thread. `f` must not need a runtime's context (a client's
/// request future does not: it talks to its connection task through channels).
pub(super) fn wait<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        // A spurious wake-up only polls again.
        std::thread::park();
    }
}

/// Up to `max` connections, opened when first needed and kept while they work.
pub(super) struct Pool {
    /// Drives the connections; `None` only while dropping.
    rt: Option<tokio::runtime::Runtime>,
    config: Config,
    /// TLS as `sslmode` asked (`None`: never).
    tls: Option<RustlsConnect>,
    /// Where the catalog is, for errors (no password).
    described: String,
    max: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<Client>,
    /// Connections open: idle or lent.
    open: usize,
}

/// A connection lent from the pool; given back when dropped (unless it broke).
pub(super) struct Conn<'a> {
    pool: &'a Pool,
    client: Option<Client>,
}

impl Pool {
    /// A pool of at most `max` connections to `config`; opens none yet.
    pub(super) fn new(
        config: Config,
        tls: Option<RustlsConnect>,
        described: String,
        max: usize,
    ) -> Result<Pool, CatalogError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pgbackups-catalog")
            .enable_all()
            .build()
            .map_err(|e| CatalogError::Database(Box::new(e)))?;
        Ok(Pool {
            rt: Some(rt),
            config,
            tls,
            described,
            max: max.max(1),
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, PoolState> {
        // The state is a list and a count, consistent after every statement: a panic
        // elsewhere while holding the lock leaves nothing half-done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection: an idle one, a new one while fewer than `max` are open, else the first
    /// one given back (waiting up to a minute).
    pub(super) fn get(&self) -> Result<Conn<'_>, CatalogError> {
        let deadline = Instant::now() + BUSY_WAIT;
        let mut st = self.state();
        loop {
            while let Some(client) = st.idle.pop() {
                if !client.is_closed() {
                    return Ok(Conn {
                        pool: self,
                        client: Some(client),
                    });
                }
                st.open -= 1;
            }
            if st.open < self.max {
                st.open += 1;
                drop(st);
                return match self.connect() {
                    Ok(client) => Ok(Conn {
                        pool: self,
                        client: Some(client),
                    }),
                    Err(e) => {
                        self.state().open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CatalogError::Busy(self.max, BUSY_WAIT));
            }
            st = self
                .freed
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Opens one connection; its I/O task runs on the pool's runtime.
    fn connect(&self) -> Result<Client, CatalogError> {
        let Some(rt) = &self.rt else {
            return Err(CatalogError::Busy(self.max, Duration::ZERO));
        };
        let config = self.config.clone();
        let tls = self.tls.clone();
        let task = rt.spawn(async move {
            match tls {
                Some(tls) => {
                    let (client, connection) = config.connect(tls).await?;
                    tokio::spawn(log_end(connection));
                    Ok::<_, tokio_postgres::Error>(client)
                }
                None => {
                    let (client, connection) = config.connect(NoTls).await?;
                    tokio::spawn(log_end(connection));
                    Ok(client)
                }
            }
        });
        match wait(task) {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(CatalogError::Unreachable {
                catalog: self.described.clone(),
                source: with_causes(&e).into(),
            }),
            Err(e) => Err(CatalogError::Database(Box::new(e))),
        }
    }
}

/// `e` and every cause under it, joined: tokio-postgres's own words for a failed handshake
/// ("error performing TLS handshake") leave out why.
fn with_causes(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

/// Drives one connection until it ends; says why when it broke.
async fn log_end(connection: impl Future<Output = Result<(), tokio_postgres::Error>>) {
    if let Err(e) = connection.await {
        tracing::warn!("a connection to the catalog ended: {e}");
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.state().idle.clear();
        // Not `drop(rt)`: dropping a runtime from inside another one panics, and the last
        // reference to the catalog may well go away on a runtime's thread.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client
            .as_ref()
            .expect("a lent connection is only taken when dropped")
    }
}

impl DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client
            .as_mut()
            .expect("a lent connection is only taken when dropped")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        let mut st = self.pool.state();
        match self.client.take() {
            Some(client) if !client.is_closed() => st.idle.push(client),
            _ => st.open -= 1,
        }
        drop(st);
        self.pool.freed.notify_one();
    }
}
