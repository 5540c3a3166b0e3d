//! Where the Service Bus client connects and how it proves who it is: a connection string (SAS)
//! or a namespace with a Microsoft Entra ID credential ([`ServiceBusTarget`]), and the
//! [`Endpoint`] both resolve to, which the connection, the token refresher and the entity
//! client read.

use std::fmt;
use std::sync::Arc;

use anyhow::{Context, bail};
use sagahost_identity::{CachedToken, TokenSource};

use super::connection_string::{ConnectionString, Credential};

/// The scope of Entra ID tokens for Service Bus, data plane and entity management alike.
pub const SERVICE_BUS_SCOPE: &str = "https://servicebus.azure.net/.default";

/// Where [`ServiceBusTransport::connect_with`](super::ServiceBusTransport::connect_with) (and
/// [`EntityClient::with_target`](super::entities::EntityClient::with_target)) connect, and as whom.
pub enum ServiceBusTarget {
    /// A parsed connection string: SAS tokens signed with its key, or its ready-made signature.
    ConnectionString(ConnectionString),
    /// A namespace reached with an Entra ID credential, no connection string at all: CBS gets the
    /// credential's tokens as `jwt`, the entity API as `Authorization: Bearer`.
    Entra {
        /// `NAME.servicebus.windows.net` (TLS on 5671; `HOST:PORT` for another port;
        /// `sb://…` and `amqps://…` are accepted too), or `amqp://HOST[:PORT]` for plain TCP
        /// (5672 by default) **to a local broker only**: the token then crosses the wire
        /// unencrypted, as a connection string's does with `UseDevelopmentEmulator=true`.
        namespace: String,
        /// Tokens for [`SERVICE_BUS_SCOPE`]; the transport asks it for a fresh one before the
        /// last one it put expires.
        credential: Arc<CachedToken>,
    },
}

impl ServiceBusTarget {
    /// Parses `text` as a connection string.
    pub fn connection_string(text: &str) -> anyhow::Result<Self> {
        ConnectionString::parse(text).map(Self::ConnectionString)
    }

    /// `namespace` with tokens from `source` for [`SERVICE_BUS_SCOPE`], cached.
    pub fn entra(namespace: impl Into<String>, source: Arc<TokenSource>) -> Self {
        Self::Entra {
            namespace: namespace.into(),
            credential: Arc::new(CachedToken::new(source, SERVICE_BUS_SCOPE)),
        }
    }

    /// Resolves the target into what a connection needs, checking the namespace's form.
    pub(super) fn endpoint(&self) -> anyhow::Result<Endpoint> {
        match self {
            Self::ConnectionString(parsed) => Ok(Endpoint {
                host: parsed.host.clone(),
                port: parsed.port,
                tls: !parsed.use_development_emulator,
                entity_path: parsed.entity_path.clone(),
                auth: Auth::Sas(parsed.credential.clone()),
            }),
            Self::Entra { namespace, credential } => {
                let (host, port, tls) = parse_namespace(namespace)?;
                Ok(Endpoint {
                    host,
                    port,
                    tls,
                    entity_path: None,
                    auth: Auth::Entra(credential.clone()),
                })
            }
        }
    }
}

impl fmt::Debug for ServiceBusTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection string's own Debug redacts its key; a credential prints its scope only.
        match self {
            Self::ConnectionString(parsed) => f.debug_tuple("ConnectionString").field(parsed).finish(),
            Self::Entra { namespace, credential } => f
                .debug_struct("Entra")
                .field("namespace", namespace)
                .field("scope", &credential.scope())
                .finish(),
        }
    }
}

/// `(host, port, tls)` of a namespace given to [`ServiceBusTarget::Entra`].
fn parse_namespace(namespace: &str) -> anyhow::Result<(String, u16, bool)> {
    let trimmed = namespace.trim();
    let (tls, rest) = match trimmed.split_once("://") {
        None => (true, trimmed),
        Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
            "sb" | "amqps" => (true, rest),
            "amqp" => (false, rest),
            _ => bail!(
                "Service Bus namespace `{namespace}` has the scheme `{scheme}`; write `NAME.servicebus.windows.net` \
                 (or `amqp://HOST:PORT` for a local broker)"
            ),
        },
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => {
            let port = port
                .parse::<u16>()
                .with_context(|| format!("Service Bus namespace `{namespace}` has a bad port `{port}`"))?;
            (host, port)
        }
        None => (authority, if tls { 5671 } else { 5672 }),
    };
    if host.is_empty() {
        bail!("Service Bus namespace `{namespace}` has no host; write `NAME.servicebus.windows.net`");
    }
    Ok((host.to_string(), port, tls))
}

/// How the client authorizes: what it puts on `$cbs` and sends to the entity API.
#[derive(Clone)]
pub(super) enum Auth {
    /// SAS tokens from a connection string's key or signature.
    Sas(Credential),
    /// Entra ID tokens, put as `jwt` and sent as `Bearer`.
    Entra(Arc<CachedToken>),
}

/// A resolved target: the socket address, TLS or not, and the credential.
pub(super) struct Endpoint {
    /// The namespace's host name: the open frame's host name and the host of token audiences.
    pub(super) host: String,
    pub(super) port: u16,
    /// TLS unless the target asked for plain TCP to a local broker.
    pub(super) tls: bool,
    /// `EntityPath=`: a connection string scoped to this one entity.
    pub(super) entity_path: Option<String>,
    pub(super) auth: Auth,
}

impl Endpoint {
    /// The namespace URI that token audiences hang off: `sb://<host>`.
    pub(super) fn namespace_uri(&self) -> String {
        format!("sb://{}", self.host)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_namespace;

    #[test]
    fn a_namespace_is_tls_on_5671_unless_it_says_amqp() {
        let parsed = |text: &str| parse_namespace(text).unwrap();
        let cloud = ("contoso.servicebus.windows.net".to_string(), 5671, true);
        assert_eq!(parsed("contoso.servicebus.windows.net"), cloud);
        assert_eq!(parsed("sb://contoso.servicebus.windows.net/"), cloud);
        assert_eq!(parsed("amqps://contoso.servicebus.windows.net"), cloud);
        assert_eq!(parsed("localhost:5673"), ("localhost".to_string(), 5673, true));
        assert_eq!(parsed("amqp://127.0.0.1:5680"), ("127.0.0.1".to_string(), 5680, false));
        assert_eq!(parsed("amqp://127.0.0.1"), ("127.0.0.1".to_string(), 5672, false));
    }

    #[test]
    fn a_bad_namespace_is_named_in_the_error() {
        let error = |text: &str| parse_namespace(text).unwrap_err().to_string();
        assert!(error("http://contoso").contains("`http://contoso` has the scheme `http`"));
        assert!(error("contoso:x").contains("bad port `x`"));
        assert!(error("amqp://").contains("has no host"));
    }
}
