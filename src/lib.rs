//! pgbackups: a self-hosted backup service for PostgreSQL.
//!
//! The library holds everything the `pgbackups` binary does; the binary only parses its
//! arguments and calls in. See ARCHITECTURE.md for the module map and the data paths.

pub mod catalog;
pub mod cli;
pub mod config;
pub mod durable;
pub mod format;
pub mod pg;
pub mod schedule;
pub mod secret;
pub mod server;
pub mod storage;
pub mod transfer;
