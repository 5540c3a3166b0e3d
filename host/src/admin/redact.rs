//! What the admin API takes out of text before showing it: the credentials and signed query
//! strings of URLs (a component URL may carry an Azure Storage SAS, a registry URL a password).

/// `text` with the user name, password and query of every URL in it removed: a component URL
/// may carry a signed query (an Azure Storage SAS) or credentials.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.find("://") {
        let start = rest[..found]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[found..]
            .find(|c: char| c.is_whitespace() || matches!(c, '`' | '"' | '\'' | '<' | '>' | ')'))
            .map_or(rest.len(), |i| found + i);
        out.push_str(&rest[..start]);
        let candidate = &rest[start..end];
        match reqwest::Url::parse(candidate) {
            Ok(mut url) if url.query().is_some() || !url.username().is_empty() || url.password().is_some() => {
                let _ = url.set_username("");
                let _ = url.set_password(None);
                let had_query = url.query().is_some();
                url.set_query(None);
                out.push_str(url.as_str());
                if had_query {
                    out.push_str("?[redacted]");
                }
            }
            _ => out.push_str(candidate),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redact_urls;

    #[test]
    fn urls_lose_their_credentials_and_query() {
        assert_eq!(
            redact_urls("pulling `https://acct.blob.core.windows.net/c/mdm.wasm?sv=2024&sig=SECRET` failed"),
            "pulling `https://acct.blob.core.windows.net/c/mdm.wasm?[redacted]` failed"
        );
        assert_eq!(
            redact_urls("oci://user:pass@registry.example/mdm:1 and https://x.example/a"),
            "oci://registry.example/mdm:1 and https://x.example/a"
        );
        assert_eq!(redact_urls("components/mdm.wasm"), "components/mdm.wasm");
    }
}
