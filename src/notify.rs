//! Failure notifications: a JSON POST to a webhook (`--notify-url`) when a transfer fails
//! and when a protected database gets a problem or is rid of it, so that a backup that did not
//! work never goes unnoticed until the day it is needed.
//!
//! Sending never blocks or fails the work that notifies: each event is posted from a task of
//! its own, retried three times (1, 4, 16 s apart), and a failure is logged (with the webhook's
//! host only: its URL often holds a token).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

/// One event, as posted.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// `transfer.failed`, `protection.problem` or `protection.recovered`.
    pub event: &'static str,
    pub database: String,
    /// The transfer (`b012`), for transfer events.
    pub id: Option<String>,
    /// What happened, as `backups:info` or `protection:info` says it.
    pub message: String,
    pub at: Timestamp,
}

/// Why the notifier could not be set up (the URL itself is never quoted: it may hold a token).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("--notify-url must be an http:// or https:// URL")]
    BadUrl,
    #[error("cannot create the notification client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Where events go; without a URL, nowhere.
pub struct Notifier {
    target: Option<(reqwest::Url, reqwest::Client)>,
}

impl Notifier {
    /// A notifier posting to `url` (http or https).
    pub fn new(url: Option<&str>) -> Result<Arc<Notifier>, NotifyError> {
        let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(Notifier::disabled());
        };
        // Never echo the URL: it may hold a token.
        let parsed = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or(NotifyError::BadUrl)?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(NotifyError::Client)?;
        Ok(Arc::new(Notifier {
            target: Some((parsed, client)),
        }))
    }

    /// A notifier that sends nothing (no `--notify-url`).
    pub fn disabled() -> Arc<Notifier> {
        Arc::new(Notifier { target: None })
    }

    /// Whether events go anywhere.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Posts `event` in the background.
    pub fn send(&self, event: Event) {
        let Some((url, client)) = self.target.clone() else {
            return;
        };
        let host = url.host_str().unwrap_or("?").to_string();
        tokio::spawn(async move {
            let mut wait = Duration::from_secs(1);
            for attempt in 1..=3 {
                let sent = client.post(url.clone()).json(&event).send().await;
                match sent {
                    Ok(r) if r.status().is_success() => return,
                    Ok(r) => tracing::warn!(
                        "notification {} to {host} answered {} (attempt {attempt} of 3)",
                        event.event,
                        r.status()
                    ),
                    Err(e) => tracing::warn!(
                        "notification {} to {host} failed: {} (attempt {attempt} of 3)",
                        event.event,
                        e.without_url()
                    ),
                }
                if attempt < 3 {
                    tokio::time::sleep(wait).await;
                    wait *= 4;
                }
            }
            tracing::error!(
                "notification {} for {} was not delivered to {host}",
                event.event,
                event.database
            );
        });
    }
}
