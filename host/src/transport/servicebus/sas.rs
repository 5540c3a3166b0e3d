//! Shared access signature tokens, as every Azure SDK builds them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::Sha256;

/// Python's `quote_plus` / .NET's `WebUtility.UrlEncode` keep these unescaped.
const URL_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Token type for CBS `put-token` with a SAS token.
pub const SAS_TOKEN_TYPE: &str = "servicebus.windows.net:sastoken";

/// `SharedAccessSignature sr=<enc resource>&sig=<enc base64 HMAC-SHA256>&se=<expiry>&skn=<key name>`,
/// where the HMAC (keyed with the key's UTF-8 bytes) is over `"<enc resource>\n<expiry>"`.
pub fn sas_token(resource: &str, key_name: &str, key: &str, expiry_unix_secs: u64) -> String {
    let resource = utf8_percent_encode(resource, URL_ENCODE).to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{resource}\n{expiry_unix_secs}").as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let signature = utf8_percent_encode(&signature, URL_ENCODE);
    let key_name = utf8_percent_encode(key_name, URL_ENCODE);
    format!("SharedAccessSignature sr={resource}&sig={signature}&se={expiry_unix_secs}&skn={key_name}")
}

/// Unix seconds `ttl` from now.
pub fn expiry_from_now(ttl: Duration) -> u64 {
    (SystemTime::now() + ttl)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}
