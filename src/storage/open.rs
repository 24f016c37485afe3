//! Choosing and opening the store from the configuration: `file:///dir` (or nothing: the data
//! directory), `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use object_store::{BackoffConfig, RetryConfig};
use serde::Deserialize;

use super::cloud::{CloudStorage, CloudStore};
use super::{LocalStorage, Storage, StorageError};

/// The `[storage]` section of the configuration file (and the `serve` flags that override it).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` or `file:///dir`;
    /// unset: the `storage` directory inside the data directory.
    pub url: Option<String>,
    /// The S3 endpoint of a store that is not AWS (MinIO, SeaweedFS, R2, ...). Default
    /// (filled in by the configuration loading): `AWS_ENDPOINT_URL` / `AWS_ENDPOINT`, else AWS.
    pub endpoint: Option<String>,
    /// Default: `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`). Default: on with a custom endpoint,
    /// off for AWS (virtual-hosted style).
    pub path_style: Option<bool>,
    /// Size of the first parts of a multipart upload, in MiB (default 8, at least 5). Memory
    /// per upload is about five parts.
    pub part_size_mib: Option<usize>,
    /// How long one request is retried, with exponential backoff, before the transfer fails
    /// (default 180 s).
    pub retry_timeout_secs: Option<u64>,
    /// Any other option of the `object_store` builder for the scheme, by its name, such as
    /// `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`,
    /// `google_service_account`, `azure_storage_account_name`. Credentials are better left to
    /// the environment (`AWS_ACCESS_KEY_ID`, ...), which is read too.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// Opens the configured store. With `probe`, a remote store is probed (a test object
/// written, read and deleted) so that a wrong bucket or bad credentials fail here, with the
/// reason.
pub fn open_storage(
    config: &StorageConfig,
    data_dir: &Path,
    probe: bool,
) -> Result<Arc<dyn Storage>, StorageError> {
    let bad = |msg: String| StorageError::Config(msg);
    let Some(url) = config.url.as_deref().filter(|u| !u.is_empty()) else {
        return Ok(Arc::new(LocalStorage::new(data_dir.join("storage"))?));
    };
    let parsed = url::Url::parse(url).map_err(|e| {
        bad(format!(
            "storage URL `{url}` is not a URL ({e}); use s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or file:///dir"
        ))
    })?;
    if parsed.scheme() == "file" {
        return Ok(Arc::new(LocalStorage::new(parsed.path().into())?));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(
            "put the store's credentials in the environment (AWS_ACCESS_KEY_ID, ...) or the [storage.options] of the configuration file, not in the storage URL".into(),
        ));
    }
    let bucket = parsed
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| bad(format!("storage URL `{url}` names no bucket")))?
        .to_string();
    let prefix = parsed.path().trim_matches('/').to_string();
    crate::install_crypto();
    // Two layers: object_store retries a request a few times at once (a blip costs well
    // under a second), and the driver's own loop (`cloud::retried`) keeps retrying every
    // operation, uploads included, for the whole configured window, and says so in the log.
    let retry_window = Duration::from_secs(config.retry_timeout_secs.unwrap_or(180));
    let retry = RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 3,
        retry_timeout: retry_window.min(Duration::from_secs(10)),
    };
    let part_size = config.part_size_mib.unwrap_or(8).clamp(5, 512) << 20;
    // No limit on a whole request: a part or a long ranged read may take minutes on a slow
    // link. A server that stops sending for 60 s fails the request (then it is retried).
    let client = object_store::ClientOptions::new()
        .with_timeout_disabled()
        .with_connect_timeout(Duration::from_secs(10))
        .with_read_timeout(Duration::from_secs(60));
    let store = match parsed.scheme() {
        "s3" | "s3a" => {
            use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(&bucket)
                .with_retry(retry)
                .with_client_options(client.clone());
            let endpoint = config.endpoint.clone();
            if let Some(e) = &endpoint {
                b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
            }
            if let Some(r) = &config.region {
                b = b.with_region(r);
            }
            let path_style = config.path_style.unwrap_or(endpoint.is_some());
            b = b.with_virtual_hosted_style_request(!path_style);
            for (k, v) in &config.options {
                let key = AmazonS3ConfigKey::from_str(k)
                    .map_err(|_| bad(format!("unknown S3 storage option `{k}`")))?;
                b = b.with_config(key, v);
            }
            let s3 = Arc::new(b.build().map_err(|e| bad(format!("S3 storage: {e}")))?);
            CloudStore {
                url: url.to_string(),
                store: s3.clone(),
                multipart: s3.clone(),
                signer: Some(s3),
                prefix,
                part_size,
                retry_window,
            }
        }
        "gs" => {
            use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
            let mut b = GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(&bucket)
                .with_retry(retry)
                .with_client_options(client.clone());
            for (k, v) in &config.options {
                let key = GoogleConfigKey::from_str(k)
                    .map_err(|_| bad(format!("unknown GCS storage option `{k}`")))?;
                b = b.with_config(key, v);
            }
            let gcs = Arc::new(b.build().map_err(|e| bad(format!("GCS storage: {e}")))?);
            CloudStore {
                url: url.to_string(),
                store: gcs.clone(),
                multipart: gcs.clone(),
                signer: Some(gcs),
                prefix,
                part_size,
                retry_window,
            }
        }
        "az" | "azure" => {
            use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_container_name(&bucket)
                .with_retry(retry)
                .with_client_options(client.clone());
            for (k, v) in &config.options {
                let key = AzureConfigKey::from_str(k)
                    .map_err(|_| bad(format!("unknown Azure storage option `{k}`")))?;
                b = b.with_config(key, v);
            }
            let az = Arc::new(b.build().map_err(|e| bad(format!("Azure storage: {e}")))?);
            CloudStore {
                url: url.to_string(),
                store: az.clone(),
                multipart: az.clone(),
                signer: Some(az),
                prefix,
                part_size,
                retry_window,
            }
        }
        other => {
            return Err(bad(format!(
                "unknown storage scheme `{other}:`; use s3://, gs://, az:// or file://"
            )));
        }
    };
    Ok(Arc::new(CloudStorage::open(
        store,
        data_dir.join("uploads"),
        probe,
    )?))
}
