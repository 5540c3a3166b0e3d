//! Service Bus connection strings: `Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…`.

use std::fmt;

use anyhow::{Context, bail};

/// How the transport proves who it is to the namespace.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A shared access key: the transport signs its own SAS tokens and refreshes them.
    SharedAccessKey { name: String, key: String },
    /// A ready-made `SharedAccessSignature sr=…` token: used as is, never refreshed.
    SharedAccessSignature(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets.
        match self {
            Self::SharedAccessKey { name, .. } => write!(f, "SharedAccessKey {{ name: {name:?}, key: <redacted> }}"),
            Self::SharedAccessSignature(_) => f.write_str("SharedAccessSignature(<redacted>)"),
        }
    }
}

/// A parsed Service Bus connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// The namespace's host name, e.g. `contoso.servicebus.windows.net`.
    pub host: String,
    /// The AMQP port: the endpoint's port, else 5671 (TLS) or 5672 (development emulator).
    pub port: u16,
    pub credential: Credential,
    /// `EntityPath=`: the connection string is scoped to this one queue.
    pub entity_path: Option<String>,
    /// `UseDevelopmentEmulator=true`: plain AMQP (no TLS) on a local port.
    pub use_development_emulator: bool,
}

impl ConnectionString {
    /// Parses `Key=Value;…` pairs (keys are case-insensitive, empty segments are ignored).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut endpoint = None;
        let mut key_name = None;
        let mut key = None;
        let mut signature = None;
        let mut entity_path = None;
        let mut emulator = false;
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                // Do not echo the segment: it may be a secret.
                bail!("connection string has a segment without `=` (expected `Key=Value;…`)");
            };
            let value = value.trim().to_string();
            match name.trim().to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(value),
                "sharedaccesskeyname" => key_name = Some(value),
                "sharedaccesskey" => key = Some(value),
                "sharedaccesssignature" => signature = Some(value),
                "entitypath" => entity_path = Some(value).filter(|v| !v.is_empty()),
                "usedevelopmentemulator" => {
                    emulator = match value.to_ascii_lowercase().as_str() {
                        "true" => true,
                        "false" => false,
                        _ => bail!(
                            "connection string key `UseDevelopmentEmulator` must be `true` or `false`, not `{value}`"
                        ),
                    }
                }
                // Other keys (TransportType, …) do not change how we connect.
                _ => {}
            }
        }
        let endpoint = endpoint.filter(|e| !e.is_empty()).context(
            "connection string has no `Endpoint` (expected `Endpoint=sb://<namespace>.servicebus.windows.net/`)",
        )?;
        let rest = endpoint
            .split_once("://")
            .map(|(_, rest)| rest)
            .with_context(|| format!("connection string `Endpoint` `{endpoint}` is not a URL like `sb://<host>/`"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => {
                let port = port
                    .parse::<u16>()
                    .with_context(|| format!("connection string `Endpoint` has a bad port `{port}`"))?;
                (host.to_string(), Some(port))
            }
            None => (authority.to_string(), None),
        };
        if host.is_empty() {
            bail!("connection string `Endpoint` `{endpoint}` has no host");
        }
        let credential = match (signature, key_name, key) {
            (Some(signature), _, _) if !signature.is_empty() => Credential::SharedAccessSignature(signature),
            (_, Some(name), Some(key)) if !name.is_empty() && !key.is_empty() => {
                Credential::SharedAccessKey { name, key }
            }
            (_, name, key) => {
                let name_missing = name.is_none_or(|n| n.is_empty());
                let key_missing = key.is_none_or(|k| k.is_empty());
                match (name_missing, key_missing) {
                    (true, true) => bail!(
                        "connection string has no credentials: `SharedAccessKeyName` and `SharedAccessKey` \
                         (or `SharedAccessSignature`) are missing"
                    ),
                    (true, _) => bail!("connection string has no `SharedAccessKeyName`"),
                    _ => bail!("connection string has no `SharedAccessKey`"),
                }
            }
        };
        let port = port.unwrap_or(if emulator { 5672 } else { 5671 });
        Ok(Self {
            host,
            port,
            credential,
            entity_path,
            use_development_emulator: emulator,
        })
    }

    /// The namespace URI that SAS token audiences hang off: `sb://<host>`.
    pub fn namespace_uri(&self) -> String {
        format!("sb://{}", self.host)
    }
}
