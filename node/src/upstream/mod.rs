//! Connections to upstreams. HTTP/1.1, plain or over TLS (rustls, webpki
//! roots plus an optional private CA), goes over connections the worker
//! owns ([`owned`], [`conn`], TLS by rustls's unbuffered API in
//! [`tls_stream`]), spoken by a codec of our own ([`h1`]); an
//! upstream configured for HTTP/2 (`http2 = true`: by ALPN over TLS, with
//! prior knowledge over `http://`) goes through hyper-util's pooled client.

mod body;
mod conn;
pub(crate) mod h1;
mod owned;
#[cfg(test)]
mod tests;
mod tls_stream;
#[cfg(test)]
mod tls_stream_tests;
#[cfg(test)]
mod tls_tests;
#[cfg(test)]
mod wire_tests;

pub use body::{BodyError, OwnedBody, UpstreamBody};
pub use h1::H1Error;
pub use owned::Owned;

use std::cell::Cell;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use proto::config::{ProxyConfig, UpstreamConfig};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A pooled HTTP client for one upstream.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as data-plane worker `index`, so it uses its own
/// upstream pools and its connections never move between threads.
pub fn set_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

/// The current data-plane worker's index (0 off the data-plane threads).
pub fn worker() -> usize {
    WORKER.with(Cell::get)
}

/// How one upstream's requests go out: over connections the workers own
/// when it speaks HTTP/1.1, else (HTTP/2) through one pooled client per
/// data-plane worker. Never both: a pooled client nothing sends on was
/// about 5 KB per upstream with 16 workers.
pub enum Pools {
    /// An HTTP/1.1 upstream, plain or TLS.
    Owned(Arc<Owned>),
    /// HTTP/2: one client per worker, never empty.
    Pooled(Box<[UpstreamClient]>),
}

impl Pools {
    /// Sends `request` and returns the answer's head, with a body that
    /// reads the rest. On an HTTP/1.1 upstream it goes over a connection
    /// this worker owns, which the body gives back once read to its end;
    /// HTTP/2 goes through the current worker's pooled client (the first
    /// one off the data-plane threads).
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        match self {
            // Boxed, as the pooled client's future is: the request's
            // future stays small, and a stream's (which lives as long as
            // the stream) does not carry this one's space.
            Pools::Owned(owned) => Ok(Box::pin(owned.send(request))
                .await?
                .map(UpstreamBody::Owned)),
            Pools::Pooled(clients) => {
                let Some(client) = clients.get(worker()).or(clients.last()) else {
                    return Err(SendError::Connect("no client for this upstream".into()));
                };
                match client.request(request).await {
                    Ok(response) => Ok(response.map(UpstreamBody::Pooled)),
                    Err(e) => Err(SendError::Pooled(e)),
                }
            }
        }
    }

    /// The owned connections, when the upstream speaks HTTP/1.1.
    #[cfg(test)]
    fn owned(&self) -> Option<&Arc<Owned>> {
        match self {
            Pools::Owned(owned) => Some(owned),
            Pools::Pooled(_) => None,
        }
    }
}

/// Why a request got no answer head.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// From the pooled client: connecting, or the request on a connection.
    #[error("{0}")]
    Pooled(hyper_util::client::legacy::Error),
    /// An owned connection could not be opened.
    #[error("client error (Connect)")]
    Connect(Box<dyn std::error::Error + Send + Sync>),
    /// An owned connection failed the request, or the answer's head.
    #[error("client error (SendRequest)")]
    Exchange(#[source] H1Error),
}

impl SendError {
    /// Whether a connection was made (the request may have reached the
    /// upstream), which decides whether a retry can double a request.
    pub fn connected(&self) -> bool {
        match self {
            Self::Pooled(e) => !e.is_connect(),
            Self::Connect(_) => false,
            Self::Exchange(_) => true,
        }
    }

    /// The chain of causes under this error, outermost first, for the log
    /// and the client's 502: the same for both paths.
    pub fn causes(&self) -> Vec<String> {
        use std::error::Error as _;
        let mut causes = Vec::new();
        let mut source: Option<&(dyn std::error::Error + 'static)> = match self {
            Self::Pooled(e) => e.source(),
            Self::Connect(e) => Some(e.as_ref()),
            Self::Exchange(e) => Some(e),
        };
        while let Some(s) = source {
            causes.push(s.to_string());
            source = s.source();
        }
        causes
    }
}

/// Builds an upstream's pools, one per data-plane worker: `proxy.workers`,
/// which the node's settings resolve at start-up (0, one per CPU, becomes
/// the count; a file not built into settings gets one pool).
pub fn pools_for(uc: &UpstreamConfig, proxy: &ProxyConfig) -> Result<Pools, ClientError> {
    let workers = proxy.workers.max(1);
    // The TLS configuration is built (shared, when the upstream names no
    // CA) for every upstream, plain ones included: a `ca_file` that cannot
    // be used disables the upstream naming that field, whatever its scheme.
    let owned = match uc.base_url.parse::<http::Uri>() {
        Ok(base) if !uc.http2 => Owned::new(
            &base,
            &tls_for(uc, Alpn::Http1)?,
            Duration::from_millis(proxy.connect_timeout_ms),
            http_connector(proxy),
            workers,
            proxy.pool_idle_per_host,
        ),
        _ => None,
    };
    Ok(match owned {
        Some(owned) => Pools::Owned(Arc::new(owned)),
        None => {
            let tls = tls_for(uc, Alpn::Http2)?;
            Pools::Pooled((0..workers).map(|_| client_with(&tls, uc, proxy)).collect())
        }
    })
}

/// Why an upstream's client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The private CA file could not be used.
    #[error("cannot use CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the TLS settings.
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
}

impl ClientError {
    /// The upstream field to fix.
    pub fn field(&self) -> &'static str {
        match self {
            Self::CaFile { .. } => "ca_file",
            Self::Tls(_) => "base_url",
        }
    }
}

/// The largest CA file read: a bundle of a few hundred certificates fits,
/// a device or a huge file does not stall the node.
const MAX_CA_FILE_BYTES: u64 = 1 << 20;

/// The certificates of a private CA file: a regular file of at most 1 MiB
/// holding at least one PEM certificate, every one of which parses.
pub fn load_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let ca_error = |reason: String| ClientError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| ca_error(e.to_string()))?;
    let meta = file.metadata().map_err(|e| ca_error(e.to_string()))?;
    if !meta.is_file() {
        return Err(ca_error("not a regular file".into()));
    }
    if meta.len() > MAX_CA_FILE_BYTES {
        return Err(ca_error(format!("larger than {MAX_CA_FILE_BYTES} bytes")));
    }
    let mut pem = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_CA_FILE_BYTES), &mut pem)
        .map_err(|e| ca_error(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ca_error(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(ca_error("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// The TCP side of every upstream connection: no Nagle delay, the
/// configured connect timeout, TCP keep-alive on idle connections.
fn http_connector(proxy: &ProxyConfig) -> HttpConnector {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_millis(proxy.connect_timeout_ms)));
    http.set_keepalive(Some(Duration::from_secs(60)));
    http
}

/// Builds the client an upstream's requests go through.
pub fn client_for(uc: &UpstreamConfig, proxy: &ProxyConfig) -> Result<UpstreamClient, ClientError> {
    Ok(client_with(&tls_for(uc, Alpn::Http2OrHttp1)?, uc, proxy))
}

/// What a TLS configuration offers by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alpn {
    /// HTTP/1.1 alone: the owned connections speak nothing else, and a
    /// server must not pick HTTP/2 for them.
    Http1 = 0,
    /// HTTP/2 alone: an upstream configured for it is spoken to in
    /// nothing else, and one that cannot fails its handshake plainly.
    Http2 = 1,
    /// HTTP/2 first, then HTTP/1.1: a pooled client that speaks both (the
    /// trace collector's).
    Http2OrHttp1 = 2,
}

/// An upstream's TLS settings: the webpki roots and its private CA, if it
/// names one, offering `alpn`. Every upstream that names no CA shares one
/// configuration per offer: its root store and its session cache (256
/// entries allocated up front) came to about 24 KB per upstream, 2.4 MB of
/// a node's idle memory with 101 upstreams.
fn tls_for(uc: &UpstreamConfig, alpn: Alpn) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    static PUBLIC_ROOTS: [OnceLock<Arc<rustls::ClientConfig>>; 3] = [const { OnceLock::new() }; 3];
    let shared = &PUBLIC_ROOTS[alpn as usize];
    match &uc.ca_file {
        Some(path) => tls_trusting(Some(path.as_path()), alpn),
        None => match shared.get() {
            Some(tls) => Ok(tls.clone()),
            None => {
                let tls = tls_trusting(None, alpn)?;
                Ok(shared.get_or_init(|| tls).clone())
            }
        },
    }
}

/// A TLS configuration trusting the webpki roots and `ca_file`'s CAs.
fn tls_trusting(
    ca_file: Option<&Path>,
    alpn: Alpn,
) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        for cert in load_ca(path)? {
            roots.add(cert).map_err(|e| ClientError::CaFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        }
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = match alpn {
        Alpn::Http1 => vec![b"http/1.1".to_vec()],
        Alpn::Http2 => vec![b"h2".to_vec()],
        Alpn::Http2OrHttp1 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(Arc::new(tls))
}

/// A client over `tls`, shared with the upstream's other clients. Plain
/// `http://` base URLs are allowed (the connector only adds TLS to
/// `https://`), and the pool speaks HTTP/2 when ALPN chose it.
fn client_with(
    tls: &Arc<rustls::ClientConfig>,
    uc: &UpstreamConfig,
    proxy: &ProxyConfig,
) -> UpstreamClient {
    let mut http = http_connector(proxy);
    http.enforce_http(false);
    let connector = HttpsConnector::from((http, tls.clone()));

    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(proxy.pool_idle_per_host)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .http2_keep_alive_while_idle(true);
    if uc.http2 {
        builder.http2_only(true);
    }
    builder.build(connector)
}
