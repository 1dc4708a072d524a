//! `[telemetry]`: OpenTelemetry traces, exported over OTLP/HTTP when an
//! endpoint is set. Without one the node builds no span and sends nothing
//! (it still passes a client's valid `traceparent` on, as the W3C asks).

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Where and how the node's traces go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP collector's base URL (`http://` or `https://`, e.g.
    /// `http://127.0.0.1:4318`): spans are posted to `<it>/v1/traces` as
    /// protobuf. None: tracing is off.
    pub otlp_endpoint: Option<String>,
    /// `service.name` on every span, so a collector can tell Meridian's
    /// spans from the application's and the provider's.
    pub service_name: String,
    /// The share of new traces recorded (0.0 to 1.0). A request that comes
    /// with a `traceparent` follows the client's sampled flag instead, so a
    /// trace is never recorded in pieces.
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "meridian".to_owned(),
            sample_ratio: 1.0,
        }
    }
}

impl TelemetryConfig {
    /// The longest endpoint accepted: a URL, not a document.
    pub const MAX_ENDPOINT: usize = 2048;

    /// Whether spans are built and exported at all.
    pub fn enabled(&self) -> bool {
        self.otlp_endpoint.is_some()
    }

    /// The URL spans are posted to: the endpoint with `/v1/traces`, as
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is read by every OpenTelemetry SDK.
    pub fn traces_url(&self) -> Option<String> {
        self.otlp_endpoint
            .as_deref()
            .map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(endpoint) = &self.otlp_endpoint {
            check_endpoint(endpoint)?;
        }
        let name = &self.service_name;
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(ConfigError::new(
                "telemetry.service_name",
                "must be 1 to 128 characters, no control characters",
            ));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(ConfigError::new(
                "telemetry.sample_ratio",
                "must be between 0.0 and 1.0 (the share of new traces recorded)",
            ));
        }
        Ok(())
    }
}

/// An `http://` or `https://` URL with a host, no query, no fragment, no
/// user info: what a collector listens on.
fn check_endpoint(endpoint: &str) -> Result<(), ConfigError> {
    const FIELD: &str = "telemetry.otlp_endpoint";
    let refuse = |why: &str| Err(ConfigError::new(FIELD, why.to_owned()));
    if endpoint.len() > TelemetryConfig::MAX_ENDPOINT
        || endpoint
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        return refuse("must be a URL of at most 2048 characters, without spaces");
    }
    let Ok(uri) = endpoint.parse::<http::Uri>() else {
        return refuse("must be a URL such as http://127.0.0.1:4318");
    };
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return refuse("must start with http:// or https:// (OTLP over HTTP; gRPC is not spoken)");
    }
    match uri.authority() {
        None => refuse("must name the collector's host, e.g. http://127.0.0.1:4318"),
        Some(a) if a.as_str().contains('@') => refuse("must not carry a user or password"),
        Some(_) if uri.query().is_some() || endpoint.contains('#') => {
            refuse("must not carry a query or a fragment")
        }
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn with(endpoint: &str) -> TelemetryConfig {
        TelemetryConfig {
            otlp_endpoint: Some(endpoint.to_owned()),
            ..TelemetryConfig::default()
        }
    }

    #[test]
    fn off_by_default() {
        let config = TelemetryConfig::default();
        assert!(!config.enabled());
        assert_eq!(config.traces_url(), None);
        config.validate().unwrap();
    }

    #[test]
    fn the_traces_path_is_added_to_the_base() {
        let config = with("http://127.0.0.1:4318/");
        config.validate().unwrap();
        assert_eq!(
            config.traces_url().as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        let config = with("https://collector.example/otlp");
        config.validate().unwrap();
        assert_eq!(
            config.traces_url().as_deref(),
            Some("https://collector.example/otlp/v1/traces")
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        for endpoint in [
            "127.0.0.1:4318",
            "grpc://collector:4317",
            "http://",
            "http://user:pw@collector:4318",
            "http://collector:4318?x=1",
            "http://collector:4318/#x",
            "http://collector 4318",
        ] {
            let e = with(endpoint).validate().unwrap_err();
            assert_eq!(e.field, "telemetry.otlp_endpoint", "{endpoint}: {e}");
        }
        let long = format!("http://c/{}", "a".repeat(2100));
        assert_eq!(
            with(&long).validate().unwrap_err().field,
            "telemetry.otlp_endpoint"
        );
        for ratio in [-0.1, 1.5, f64::NAN] {
            let config = TelemetryConfig {
                sample_ratio: ratio,
                ..TelemetryConfig::default()
            };
            assert_eq!(
                config.validate().unwrap_err().field,
                "telemetry.sample_ratio"
            );
        }
        for name in ["", "a\nb"] {
            let config = TelemetryConfig {
                service_name: name.to_owned(),
                ..TelemetryConfig::default()
            };
            assert_eq!(
                config.validate().unwrap_err().field,
                "telemetry.service_name"
            );
        }
    }

    #[test]
    fn the_section_is_read_from_the_file_and_its_fields_named() {
        let node = "[node]\nid = 1\nregion = \"r\"\n";
        let config = crate::Config::from_toml(&format!(
            "{node}[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\nsample_ratio = 0.25\n"
        ))
        .unwrap();
        assert!(config.telemetry.enabled());
        assert_eq!(config.telemetry.sample_ratio, 0.25);
        assert_eq!(config.telemetry.service_name, "meridian");
        assert!(!crate::Config::from_toml(node).unwrap().telemetry.enabled());
        let e = crate::Config::from_toml(&format!("{node}[telemetry]\nsample_ratio = 2.0\n"))
            .unwrap_err();
        assert_eq!(e.field, "telemetry.sample_ratio");
        let e = crate::Config::from_toml(&format!("{node}[telemetry]\nendpoint = \"x\"\n"))
            .unwrap_err();
        assert!(e.field.starts_with("telemetry"), "{e}");
    }
}
