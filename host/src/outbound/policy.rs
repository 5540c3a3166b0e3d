//! Per-partner outbound policy: which origins a partner may reach, and limits.

use std::fmt;

use reqwest::Url;
use serde::Deserialize;

/// Default whole-request timeout (connect, send, and read the body).
pub const DEFAULT_TIMEOUT_MS: u32 = 10_000;
/// Default cap on a response body.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 1024 * 1024;
/// Default cap on a request body.
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 1024 * 1024;

/// What one partner's component may do over HTTP.
///
/// ```toml
/// allow = ["https://mdm.example.com", "http://127.0.0.1:8080"]
/// timeout-ms = 5000
/// max-response-bytes = 2097152
/// ```
///
/// The default denies everything: an empty `allow` list reaches no host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct PartnerPolicy {
    /// Origins the partner may reach, as `scheme://host[:port]`. The port
    /// defaults to the scheme's (443 for `https`, 80 for `http`); an entry
    /// without a scheme means `https`. Plain `http` is allowed only for entries
    /// that say `http://`.
    pub allow: Vec<String>,
    /// Whole-request timeout. A request's own `timeout-ms` can only shorten it.
    pub timeout_ms: u32,
    /// Responses with a larger body fail with `too-large`.
    pub max_response_bytes: u64,
    /// Requests with a larger body fail with `invalid`.
    pub max_request_bytes: u64,
}

impl Default for PartnerPolicy {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        }
    }
}

/// A `scheme://host:port` origin, normalised (lowercase host, explicit port).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub scheme: Scheme,
    /// Host as the URL parser normalised it (lowercase, punycode, `[v6]` brackets).
    pub host: String,
    pub port: u16,
}

/// The schemes the host speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme.as_str(), self.host, self.port)
    }
}

impl Origin {
    /// The origin of a request URL. Rejects other schemes, URLs without a
    /// host, and URLs carrying credentials.
    pub fn of_url(url: &Url) -> Result<Self, String> {
        let scheme = match url.scheme() {
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            other => return Err(format!("unsupported URL scheme `{other}` (only http and https)")),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err("URL must not carry credentials; use a secret header".to_string());
        }
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("URL has no host")?;
        let port = url.port_or_known_default().ok_or("URL has no port")?;
        Ok(Self {
            scheme,
            host: host.to_string(),
            port,
        })
    }

    /// Parses an allow-list entry: `https://host[:port]`, `http://host[:port]`, or
    /// `host[:port]` (meaning `https`). A trailing `/` is fine; a path, query,
    /// fragment or credentials are not.
    pub fn parse_allow_entry(entry: &str) -> Result<Self, String> {
        let trimmed = entry.trim();
        if trimmed.is_empty() {
            return Err("empty entry".to_string());
        }
        let text = if trimmed.contains("://") {
            trimmed.to_string()
        } else {
            format!("https://{trimmed}")
        };
        let url = Url::parse(&text).map_err(|err| err.to_string())?;
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err("an entry is an origin (`scheme://host[:port]`), without path, query or fragment".to_string());
        }
        if url.host_str().is_some_and(|h| h.contains('*')) {
            return Err("wildcards are not supported".to_string());
        }
        Self::of_url(&url)
    }
}

/// A partner's parsed policy.
#[derive(Debug, Clone)]
pub(crate) struct CompiledPolicy {
    pub allow: Vec<Origin>,
    pub timeout_ms: u32,
    pub max_response_bytes: u64,
    pub max_request_bytes: u64,
}

impl CompiledPolicy {
    pub fn compile(policy: &PartnerPolicy) -> Result<Self, (String, String)> {
        let allow = policy
            .allow
            .iter()
            .map(|entry| Origin::parse_allow_entry(entry).map_err(|reason| (entry.clone(), reason)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            allow,
            timeout_ms: policy.timeout_ms,
            max_response_bytes: policy.max_response_bytes,
            max_request_bytes: policy.max_request_bytes,
        })
    }

    /// Whether `origin` is allowed: scheme, host and port all match an entry.
    pub fn allows(&self, origin: &Origin) -> bool {
        self.allow.iter().any(|allowed| allowed == origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(url: &str) -> Origin {
        Origin::of_url(&Url::parse(url).unwrap()).unwrap()
    }

    #[test]
    fn defaults_deny_everything() {
        let policy: PartnerPolicy = toml::from_str("").unwrap();
        assert_eq!(policy, PartnerPolicy::default());
        assert!(policy.allow.is_empty());
        assert_eq!(policy.timeout_ms, 10_000);
        assert_eq!(policy.max_response_bytes, 1 << 20);
        assert_eq!(policy.max_request_bytes, 1 << 20);
        let compiled = CompiledPolicy::compile(&policy).unwrap();
        assert!(!compiled.allows(&origin("https://mdm.example.com")));
    }

    #[test]
    fn parses_kebab_case_and_rejects_unknown_fields() {
        let policy: PartnerPolicy = toml::from_str(
            "allow = [\"https://mdm.example.com\"]\ntimeout-ms = 500\nmax-response-bytes = 10\nmax-request-bytes = 20\n",
        )
        .unwrap();
        assert_eq!(policy.timeout_ms, 500);
        assert_eq!(policy.max_response_bytes, 10);
        assert_eq!(policy.max_request_bytes, 20);
        assert!(toml::from_str::<PartnerPolicy>("allowed = []").is_err());
    }

    #[test]
    fn entries_match_scheme_host_and_port() {
        let policy = CompiledPolicy::compile(&PartnerPolicy {
            allow: vec![
                "https://MDM.example.com/".into(),
                "http://127.0.0.1:8080".into(),
                "erp.example.com:8443".into(),
            ],
            ..PartnerPolicy::default()
        })
        .unwrap();
        assert!(policy.allows(&origin("https://mdm.example.com/api?x=1")));
        assert!(policy.allows(&origin("https://mdm.example.com:443/")));
        assert!(!policy.allows(&origin("http://mdm.example.com/")));
        assert!(!policy.allows(&origin("https://mdm.example.com:8443/")));
        assert!(!policy.allows(&origin("https://evil.mdm.example.com/")));
        assert!(policy.allows(&origin("http://127.0.0.1:8080/x")));
        assert!(!policy.allows(&origin("https://127.0.0.1:8080/x")));
        assert!(!policy.allows(&origin("http://127.0.0.1/x")));
        assert!(policy.allows(&origin("https://erp.example.com:8443/")));
        assert!(!policy.allows(&origin("http://erp.example.com:8443/")));
    }

    #[test]
    fn malformed_entries_are_rejected() {
        for bad in [
            "",
            "https://mdm.example.com/api",
            "https://mdm.example.com?x",
            "ftp://mdm.example.com",
            "https://user:pw@mdm.example.com",
            "https://*.example.com",
        ] {
            assert!(Origin::parse_allow_entry(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn request_urls_with_credentials_are_rejected() {
        assert!(Origin::of_url(&Url::parse("https://u:p@mdm.example.com/").unwrap()).is_err());
        assert!(Origin::of_url(&Url::parse("file:///etc/passwd").unwrap()).is_err());
    }
}
