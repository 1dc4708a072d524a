//! Azure OpenAI's path shape, served beside the OpenAI one:
//! `POST /openai/deployments/{deployment}/chat/completions`,
//! `…/completions` and `…/embeddings`, each with the `api-version` query
//! parameter Azure requires (400 without it), the key in `api-key`, and
//! the deployment answering as the model whatever the body names (Azure
//! ignores the body's `model`).

use http::{Response, StatusCode, Uri};

use super::body::{self, Body};
use super::stats::Endpoint;

/// The prefix of every Azure path.
const PREFIX: &str = "/openai/deployments/";

/// The longest deployment name kept (Azure's limit is 64).
const MAX_DEPLOYMENT: usize = 256;

/// An Azure-shaped request, once its path is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AzurePath {
    /// The OpenAI endpoint it is the Azure shape of.
    pub(crate) endpoint: Endpoint,
    /// The deployment, percent-decoded.
    pub(crate) deployment: String,
    /// The `api-version` query parameter, if the request had one.
    pub(crate) api_version: Option<String>,
}

/// The Azure shape of `uri`, or `None` when it is not under
/// `/openai/deployments/` (an Azure path to an unknown endpoint answers
/// as [`Endpoint::Other`]).
pub(crate) fn parse(uri: &Uri) -> Option<AzurePath> {
    let rest = uri.path().strip_prefix(PREFIX)?;
    let (segment, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let endpoint = match tail {
        "chat/completions" => Endpoint::Chat,
        "completions" => Endpoint::Completions,
        "embeddings" => Endpoint::Embeddings,
        _ => Endpoint::Other,
    };
    let deployment = decode(segment)?;
    if deployment.is_empty() || deployment.len() > MAX_DEPLOYMENT {
        return Some(AzurePath {
            endpoint: Endpoint::Other,
            deployment: String::new(),
            api_version: None,
        });
    }
    let api_version = uri.query().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("api-version="))
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    });
    Some(AzurePath {
        endpoint,
        deployment,
        api_version,
    })
}

/// Azure's 400 for a request without its `api-version`, if it has none.
pub(crate) fn refusal(path: &AzurePath) -> Option<Response<Body>> {
    match path.api_version {
        Some(_) => None,
        None => Some(body::error(
            StatusCode::BAD_REQUEST,
            "Missing required query parameter: api-version",
            "invalid_request_error",
            Some("MissingApiVersion"),
        )),
    }
}

/// The deployment in place of the body's `model`: Azure answers as the
/// deployment, whatever the body says.
pub(crate) fn as_model(model: &mut String, deployment: Option<String>) {
    if let Some(deployment) = deployment {
        *model = deployment;
    }
}

/// A percent-decoded path segment, or `None` when an escape is broken or
/// the bytes are not UTF-8.
fn decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn path(uri: &str) -> Option<AzurePath> {
        parse(&uri.parse().unwrap())
    }

    #[test]
    fn azure_paths_name_their_endpoint_deployment_and_version() {
        let p = path("/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21").unwrap();
        assert_eq!(p.endpoint, Endpoint::Chat);
        assert_eq!(p.deployment, "gpt-4o");
        assert_eq!(p.api_version.as_deref(), Some("2024-10-21"));
        let p = path("/openai/deployments/a%2Fb%C3%A9/embeddings").unwrap();
        assert_eq!(p.endpoint, Endpoint::Embeddings);
        assert_eq!(p.deployment, "a/bé");
        assert_eq!(p.api_version, None);
        assert_eq!(
            path("/openai/deployments/d/completions?x=1&api-version=v")
                .unwrap()
                .endpoint,
            Endpoint::Completions
        );
        assert_eq!(
            path("/openai/deployments/d/messages").unwrap().endpoint,
            Endpoint::Other
        );
        assert_eq!(
            path("/openai/deployments//chat/completions")
                .unwrap()
                .endpoint,
            Endpoint::Other
        );
        assert!(path("/openai/deployments/%zz/embeddings").is_none());
        assert!(path("/v1/chat/completions").is_none());
    }
}
