//! Managed identity: tokens from the platform the host runs on, with no secret at all.
//!
//! Two protocols, both a `GET` with the resource in the query:
//! - IMDS on virtual machines and scale sets: `{base}/metadata/identity/oauth2/token`,
//!   `api-version=2018-02-01`, header `Metadata: true`;
//! - App Service, Functions and Container Apps: `IDENTITY_ENDPOINT`, `api-version=2019-08-01`,
//!   header `X-IDENTITY-HEADER` with `IDENTITY_HEADER`'s value.
//!
//! Both take a *resource* where Entra ID takes a *scope*, so `…/.default` loses its suffix.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;

use crate::http::{self, DEFAULT_TIMEOUT};
use crate::{AccessToken, Error, Secret};

/// IMDS's address on every Azure VM.
pub const DEFAULT_IMDS_BASE: &str = "http://169.254.169.254";

/// Which endpoint serves the tokens.
enum Endpoint {
    Imds { base: String },
    AppService { endpoint: String, header: Secret },
}

/// Gets tokens for the host's managed identity (system-assigned, or user-assigned when a
/// client id is given).
pub struct ManagedIdentity {
    endpoint: Endpoint,
    client_id: Option<String>,
    http: reqwest::Client,
    timeout: Duration,
}

impl ManagedIdentity {
    /// The endpoint the platform advertises: App Service's when `IDENTITY_ENDPOINT` and
    /// `IDENTITY_HEADER` are set, IMDS otherwise (at `AZURE_POD_IDENTITY_AUTHORITY_HOST` when
    /// set, as the Azure SDKs honour, else [`DEFAULT_IMDS_BASE`]).
    pub fn from_env(client_id: Option<String>) -> Self {
        Self::from_vars(|name| std::env::var(name).ok(), client_id)
    }

    /// [`from_env`](Self::from_env) with the variables looked up by `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>, client_id: Option<String>) -> Self {
        let set = |name: &str| var(name).filter(|value| !value.is_empty());
        match (set("IDENTITY_ENDPOINT"), set("IDENTITY_HEADER")) {
            (Some(endpoint), Some(header)) => Self::app_service(endpoint, Secret::new(header), client_id),
            _ => Self::imds(
                set("AZURE_POD_IDENTITY_AUTHORITY_HOST").unwrap_or_else(|| DEFAULT_IMDS_BASE.to_string()),
                client_id,
            ),
        }
    }

    /// IMDS at `base` (scheme and authority, e.g. [`DEFAULT_IMDS_BASE`]).
    pub fn imds(base: impl Into<String>, client_id: Option<String>) -> Self {
        let base = base.into().trim_end_matches('/').to_string();
        Self::new(Endpoint::Imds { base }, client_id)
    }

    /// The App Service / Container Apps / Functions endpoint (`IDENTITY_ENDPOINT`) and its
    /// header value (`IDENTITY_HEADER`).
    pub fn app_service(endpoint: impl Into<String>, header: Secret, client_id: Option<String>) -> Self {
        Self::new(
            Endpoint::AppService {
                endpoint: endpoint.into(),
                header,
            },
            client_id,
        )
    }

    fn new(endpoint: Endpoint, client_id: Option<String>) -> Self {
        Self {
            endpoint,
            client_id,
            // The managed identity endpoint is local to the machine; a proxy cannot reach it.
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a client with rustls and no proxy always builds"),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Uses `client` for requests.
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.http = client;
        self
    }

    /// Bounds each token request, body included (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Requests a new token for `scope`; a trailing `/.default` is dropped to name the resource.
    pub async fn token(&self, scope: &str) -> Result<AccessToken, Error> {
        let resource = scope.strip_suffix("/.default").unwrap_or(scope);
        let mut query = vec![("resource", resource)];
        if let Some(client_id) = &self.client_id {
            query.push(("client_id", client_id));
        }
        let identity = match &self.client_id {
            Some(client_id) => format!("user-assigned identity `{client_id}`"),
            None => "system-assigned identity".to_string(),
        };
        let (endpoint, request) = match &self.endpoint {
            Endpoint::Imds { base } => {
                let url = format!("{base}/metadata/identity/oauth2/token");
                query.push(("api-version", "2018-02-01"));
                let request = self.http.get(&url).query(&query).header("Metadata", "true");
                (
                    format!("managed identity endpoint (IMDS) `{url}` for the {identity}"),
                    request,
                )
            }
            Endpoint::AppService { endpoint, header } => {
                query.push(("api-version", "2019-08-01"));
                let request = self
                    .http
                    .get(endpoint)
                    .query(&query)
                    .header("X-IDENTITY-HEADER", header.expose());
                (
                    format!("managed identity endpoint (IDENTITY_ENDPOINT) `{endpoint}` for the {identity}"),
                    request,
                )
            }
        };
        let (status, _, body) = http::send(&endpoint, request, self.timeout).await?;
        // IMDS answers 404 and 410 while it is being updated; Azure's guidance is to retry.
        if matches!(status, StatusCode::NOT_FOUND | StatusCode::GONE) && matches!(self.endpoint, Endpoint::Imds { .. })
        {
            return Err(Error::Transient {
                endpoint,
                detail: format!("HTTP {status} (IMDS is updating)"),
            });
        }
        let fix = format!(
            "check that the {identity} is assigned to this machine or app and that resource `{resource}` is right"
        );
        http::read_token(&endpoint, status, &body, &fix)
    }
}

impl fmt::Debug for ManagedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoint = match &self.endpoint {
            Endpoint::Imds { base } => format!("IMDS {base}"),
            Endpoint::AppService { endpoint, .. } => format!("IDENTITY_ENDPOINT {endpoint}"),
        };
        f.debug_struct("ManagedIdentity")
            .field("endpoint", &endpoint)
            .field("client_id", &self.client_id)
            .field("timeout", &self.timeout)
            .finish()
    }
}
