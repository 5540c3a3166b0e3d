//! The OAuth 2.0 client-credentials grant, with the three ways a client proves who it is:
//! a client secret, a certificate-signed assertion, and a federated token (AKS workload
//! identity).
//!
//! All three post the same form to the token endpoint and read the same answer; only the
//! proof differs. Workload identity is this grant with the proof read from
//! `AZURE_FEDERATED_TOKEN_FILE`, which the kubelet rotates, so the file is read again for
//! every token request.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::http::{self, DEFAULT_TIMEOUT};
use crate::{AccessToken, ClientCertificate, Error, Secret};

/// The assertion type of a JWT client assertion (RFC 7523), certificate or federated.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The Entra ID authority when `AZURE_AUTHORITY_HOST` is not set.
const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";

/// Entra ID's v2 token endpoint for `tenant` at `authority_host`
/// (`https://login.microsoftonline.com` in the public cloud).
pub fn entra_token_url(authority_host: &str, tenant: &str) -> String {
    format!("{}/{tenant}/oauth2/v2.0/token", authority_host.trim_end_matches('/'))
}

/// How the client proves its identity.
enum ClientAuth {
    Secret(Secret),
    Certificate(Box<ClientCertificate>),
    /// A file holding a JWT from a federated issuer (the AKS cluster's OIDC issuer).
    FederatedTokenFile(PathBuf),
}

/// Gets tokens with the client-credentials grant from one token endpoint for one client.
pub struct ClientCredentials {
    token_url: String,
    client_id: String,
    auth: ClientAuth,
    http: reqwest::Client,
    timeout: Duration,
}

impl ClientCredentials {
    /// A client that authenticates with a client secret.
    pub fn with_secret(token_url: impl Into<String>, client_id: impl Into<String>, secret: Secret) -> Self {
        Self::new(token_url.into(), client_id.into(), ClientAuth::Secret(secret))
    }

    /// A client that authenticates with an assertion signed by `certificate`'s key.
    pub fn with_certificate(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        certificate: ClientCertificate,
    ) -> Self {
        Self::new(
            token_url.into(),
            client_id.into(),
            ClientAuth::Certificate(Box::new(certificate)),
        )
    }

    /// A client that authenticates with the federated token in `file`, read anew for each
    /// request.
    pub fn with_federated_token_file(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        file: impl Into<PathBuf>,
    ) -> Self {
        Self::new(
            token_url.into(),
            client_id.into(),
            ClientAuth::FederatedTokenFile(file.into()),
        )
    }

    /// AKS workload identity, from the variables the workload identity webhook sets in the
    /// pod: `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE` and, optionally,
    /// `AZURE_AUTHORITY_HOST`.
    pub fn workload_identity_from_env() -> Result<Self, Error> {
        Self::workload_identity_from_vars(|name| std::env::var(name).ok())
    }

    /// [`workload_identity_from_env`](Self::workload_identity_from_env) with the variables
    /// looked up by `var` instead of in the process environment.
    pub fn workload_identity_from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let required = |name: &str| {
            var(name).filter(|value| !value.is_empty()).ok_or_else(|| {
                Error::config(
                    "workload identity",
                    format!("the environment variable `{name}` is not set"),
                    "label the pod `azure.workload.identity/use: \"true\"` and give its service account the \
                     `azure.workload.identity/client-id` annotation, so the webhook sets it",
                )
            })
        };
        let client_id = required("AZURE_CLIENT_ID")?;
        let tenant = required("AZURE_TENANT_ID")?;
        let file = required("AZURE_FEDERATED_TOKEN_FILE")?;
        let authority = var("AZURE_AUTHORITY_HOST").filter(|host| !host.is_empty());
        let token_url = entra_token_url(authority.as_deref().unwrap_or(DEFAULT_AUTHORITY_HOST), &tenant);
        Ok(Self::with_federated_token_file(token_url, client_id, file))
    }

    fn new(token_url: String, client_id: String, auth: ClientAuth) -> Self {
        Self {
            token_url,
            client_id,
            auth,
            http: http::default_client(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Uses `client` for requests (the host's, with its proxy settings).
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.http = client;
        self
    }

    /// Bounds each token request, body included (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The client id (application id) this source authenticates as.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Requests a new token for `scope` (e.g. `https://org.crm.dynamics.com/.default`).
    pub async fn token(&self, scope: &str) -> Result<AccessToken, Error> {
        let endpoint = format!("token endpoint `{}` for client `{}`", self.token_url, self.client_id);
        let mut form = vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", self.client_id.clone()),
            ("scope", scope.to_string()),
        ];
        let fix = match &self.auth {
            ClientAuth::Secret(secret) => {
                form.push(("client_secret", secret.expose().to_string()));
                "check the client id, the scope, and that the client secret is the app registration's and has \
                 not expired"
                    .to_string()
            }
            ClientAuth::Certificate(certificate) => {
                form.push(("client_assertion_type", JWT_BEARER.to_string()));
                form.push((
                    "client_assertion",
                    certificate.assertion(&self.client_id, &self.token_url)?,
                ));
                format!(
                    "check the client id, the scope, and that the certificate with thumbprint {} is uploaded to \
                     the app registration and has not expired",
                    certificate.thumbprint()
                )
            }
            ClientAuth::FederatedTokenFile(file) => {
                form.push(("client_assertion_type", JWT_BEARER.to_string()));
                form.push(("client_assertion", read_federated_token(file)?));
                "check the app registration's federated credential: its issuer must be the cluster's OIDC \
                 issuer and its subject `system:serviceaccount:NAMESPACE:NAME` of the pod's service account"
                    .to_string()
            }
        };
        let request = self.http.post(&self.token_url).form(&form);
        let (status, _, body) = http::send(&endpoint, request, self.timeout).await?;
        http::read_token(&endpoint, status, &body, &fix)
    }
}

/// Reads the projected service account token; it rotates, so it is never kept.
fn read_federated_token(file: &PathBuf) -> Result<String, Error> {
    let what = || format!("federated token file `{}`", file.display());
    let token = std::fs::read_to_string(file).map_err(|err| {
        Error::config(
            what(),
            err.to_string(),
            "check AZURE_FEDERATED_TOKEN_FILE and the pod's projected service account token volume",
        )
    })?;
    let token = token.trim();
    if token.is_empty() {
        return Err(Error::config(
            what(),
            "the file is empty",
            "check the pod's projected service account token volume",
        ));
    }
    Ok(token.to_string())
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            ClientAuth::Secret(_) => "client secret".to_string(),
            ClientAuth::Certificate(certificate) => format!("certificate {}", certificate.thumbprint()),
            ClientAuth::FederatedTokenFile(file) => format!("federated token file {}", file.display()),
        };
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("auth", &auth)
            .field("timeout", &self.timeout)
            .finish()
    }
}
