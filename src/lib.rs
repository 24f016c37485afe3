//! pgbackups: a self-hosted backup service for PostgreSQL.
//!
//! The library holds everything the `pgbackups` binary does; the binary only parses its
//! arguments and calls in. See ARCHITECTURE.md for the module map and the data paths.

pub mod api;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypt;
pub mod durable;
pub mod format;
pub mod notify;
pub mod pg;
pub mod pitr;
pub mod proc;
pub mod protect;
pub mod registry;
pub mod schedule;
pub mod secret;
pub mod server;
pub mod service;
pub mod storage;
pub mod stream;
pub mod team;
pub mod transfer;
pub mod wal;

/// Makes rustls use *ring* for every TLS connection (object stores, URL downloads, the CLI's
/// HTTPS). Called before any HTTP client is built; calling it again does nothing.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
