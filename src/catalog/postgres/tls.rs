//! TLS to the PostgreSQL catalog, on rustls (ring), with libpq's `sslmode` meanings:
//! `disable` (never), `prefer` (the default: when the server offers it) and `require` encrypt
//! without checking who answers, as libpq does; `verify-ca` also checks the server's
//! certificate against `sslrootcert` (a PEM file); `verify-full` checks its host name too.
//!
//! tokio-postgres knows neither `verify-*` nor `sslrootcert`, so [`TlsSettings::from_url`]
//! takes them out of the URL and the connector here does the checking. No channel binding
//! (SCRAM-SHA-256 without `-PLUS`, as with libpq's default `channel_binding=prefer` when the
//! server does not ask for it).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::catalog::CatalogError;

/// What the URL asked for: the mode tokio-postgres applies, and how we check the server.
pub(super) struct TlsSettings {
    /// The URL without `sslmode` and `sslrootcert`.
    pub url: String,
    pub mode: SslMode,
    /// `None` for `disable`.
    pub connector: Option<RustlsConnect>,
}

enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

impl TlsSettings {
    /// Reads `sslmode` and `sslrootcert` from `url` (`described` names it in errors).
    pub(super) fn from_url(url: &str, described: &str) -> Result<TlsSettings, CatalogError> {
        let bad = |why: String| CatalogError::Unreachable {
            catalog: described.to_string(),
            source: why.into(),
        };
        let Ok(mut parsed) = url::Url::parse(url) else {
            // tokio-postgres says what is wrong with it.
            return Ok(TlsSettings {
                url: url.to_string(),
                mode: SslMode::Prefer,
                connector: Some(RustlsConnect::new(Check::Nothing, None)?),
            });
        };
        let mut mode = "prefer".to_string();
        let mut root = None;
        let rest: Vec<(String, String)> = parsed
            .query_pairs()
            .filter_map(|(k, v)| match &*k {
                "sslmode" => {
                    mode = v.into_owned();
                    None
                }
                "sslrootcert" => {
                    root = Some(v.into_owned());
                    None
                }
                _ => Some((k.into_owned(), v.into_owned())),
            })
            .collect();
        if rest.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(rest);
        }
        let (mode, check) = match mode.as_str() {
            "disable" => (SslMode::Disable, None),
            "allow" | "prefer" => (SslMode::Prefer, Some(Check::Nothing)),
            "require" => (SslMode::Require, Some(Check::Nothing)),
            "verify-ca" => (SslMode::Require, Some(Check::Chain)),
            "verify-full" => (SslMode::Require, Some(Check::ChainAndName)),
            other => {
                return Err(bad(format!(
                    "sslmode must be disable, allow, prefer, require, verify-ca or verify-full, not `{other}`"
                )));
            }
        };
        let roots = match (&check, root) {
            (Some(Check::Chain | Check::ChainAndName), None) => {
                return Err(bad(format!(
                    "sslmode={mode} needs sslrootcert=/path/to/ca.pem in the URL (the certificate authority that signed the server's certificate)",
                    mode = if matches!(check, Some(Check::Chain)) {
                        "verify-ca"
                    } else {
                        "verify-full"
                    }
                )));
            }
            (Some(Check::Chain | Check::ChainAndName), Some(path)) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
                    .and_then(|i| i.collect())
                    .map_err(|e| bad(format!("cannot read sslrootcert {path}: {e}")))?;
                let mut store = rustls::RootCertStore::empty();
                let (added, _) = store.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(bad(format!("sslrootcert {path} holds no certificate")));
                }
                Some(Arc::new(store))
            }
            _ => None,
        };
        let connector = match check {
            Some(check) => Some(RustlsConnect::new(check, roots)?),
            None => None,
        };
        Ok(TlsSettings {
            url: parsed.to_string(),
            mode,
            connector,
        })
    }
}

/// Makes rustls connections for tokio-postgres.
#[derive(Clone)]
pub(super) struct RustlsConnect {
    config: Arc<rustls::ClientConfig>,
}

impl RustlsConnect {
    fn new(
        check: Check,
        roots: Option<Arc<rustls::RootCertStore>>,
    ) -> Result<RustlsConnect, CatalogError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls_error = |e: rustls::Error| CatalogError::Database(Box::new(e));
        let verifier: Arc<dyn ServerCertVerifier> = match (check, roots) {
            (Check::Nothing, _) | (_, None) => Arc::new(NoCheck(Arc::clone(&provider))),
            (check, Some(roots)) => {
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                        .build()
                        .map_err(|e| CatalogError::Database(Box::new(e)))?;
                Arc::new(CheckChain {
                    webpki,
                    name_too: matches!(check, Check::ChainAndName),
                })
            }
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(RustlsConnect {
            config: Arc::new(config),
        })
    }
}

/// `prefer` and `require`: encrypted, whoever answers (libpq's meaning). The handshake's
/// signatures are still checked, so the session is with the certificate's key holder.
#[derive(Debug)]
struct NoCheck(Arc<CryptoProvider>);

impl ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca` (the chain) and `verify-full` (the chain and the host name).
#[derive(Debug)]
struct CheckChain {
    webpki: Arc<WebPkiServerVerifier>,
    name_too: bool,
}

impl ServerCertVerifier for CheckChain {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.name_too => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type TlsConnect = Connect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Connect, Self::Error> {
        Ok(Connect {
            connector: tokio_rustls::TlsConnector::from(Arc::clone(&self.config)),
            name: ServerName::try_from(domain.to_string())?,
        })
    }
}

/// One connection's TLS handshake.
pub(super) struct Connect {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move { Ok(Stream(self.connector.connect(self.name, stream).await?)) })
    }
}

/// An encrypted connection to the catalog.
pub(super) struct Stream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for Stream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}
