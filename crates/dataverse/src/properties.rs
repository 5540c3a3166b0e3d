//! What Dataverse says about a message outside its body: Service Bus
//! application properties and webhook `x-ms-dynamics-*` headers.

/// The prefix of the Service Bus properties that carry the message's claims.
const CLAIMS_PREFIX: &str = "http://schemas.microsoft.com/xrm/2011/Claims/";

/// The webhook header Dataverse sends when it trimmed the context to fit.
const WEBHOOK_SIZE_EXCEEDED_HEADER: &str = "x-ms-dynamics-msg-size-exceeded";
/// The application property Dataverse adds to a Service Bus message when it
/// trimmed the context to fit.
const SERVICE_BUS_SIZE_EXCEEDED_PROPERTY: &str = "MessageMaxSizeExceeded";

/// Whether Dataverse dropped `ParentContext`, `InputParameters` and the images to
/// fit the message under the size limit.
///
/// Dataverse says so in one place per channel: the `MessageMaxSizeExceeded`
/// property on Service Bus, the `x-ms-dynamics-msg-size-exceeded` header on a
/// webhook (kept as a property by the ingress). Only those two names are read
/// (without regard to ASCII case), and only a true value counts: `true` in any
/// case, or `1`. So a header replayed as `false`, or a property of someone
/// else's whose value happens to mention the marker, does not make a whole
/// context look trimmed.
pub fn message_size_exceeded(properties: &[(String, String)]) -> bool {
    properties.iter().any(|(name, value)| {
        let named = name.eq_ignore_ascii_case(WEBHOOK_SIZE_EXCEEDED_HEADER)
            || name.eq_ignore_ascii_case(SERVICE_BUS_SIZE_EXCEEDED_PROPERTY);
        named && is_true(value)
    })
}

/// Whether a property value says yes: the Service Bus transport renders an AMQP
/// boolean as `true`/`false`, a .NET sender writes `True`, a header may say `1`.
fn is_true(value: &str) -> bool {
    let value = value.trim();
    value.eq_ignore_ascii_case("true") || value == "1"
}

/// The claims Dataverse sets as Service Bus application properties, each named
/// `http://schemas.microsoft.com/xrm/2011/Claims/<claim>`. They survive when the
/// body was trimmed (see [`message_size_exceeded`]), so a listener can still tell
/// what happened. A claim that is absent or empty is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Claims {
    /// The organization's host name, e.g. `contoso.crm.dynamics.com`.
    pub organization: Option<String>,
    /// The `systemuser` id the step runs as.
    pub user: Option<String>,
    /// The `systemuser` id that started the operation.
    pub initiating_user: Option<String>,
    /// The logical name of the table the operation is on, e.g. `contact`.
    pub entity_logical_name: Option<String>,
    /// The SDK message, e.g. `Update`.
    pub request_name: Option<String>,
    /// The user agent of the client that started the operation.
    pub initiating_user_agent: Option<String>,
}

/// Reads the claims out of Service Bus application properties. Claim names are
/// matched without regard to ASCII case; other properties are ignored, and when a
/// claim repeats the last one wins.
pub fn claims(properties: &[(String, String)]) -> Claims {
    let mut claims = Claims::default();
    for (name, value) in properties {
        let Some(claim) = name
            .get(..CLAIMS_PREFIX.len())
            .filter(|prefix| prefix.eq_ignore_ascii_case(CLAIMS_PREFIX))
            .map(|_| &name[CLAIMS_PREFIX.len()..])
        else {
            continue;
        };
        let slot = match claim.to_ascii_lowercase().as_str() {
            "organization" => &mut claims.organization,
            "user" => &mut claims.user,
            "initiatinguser" => &mut claims.initiating_user,
            "entitylogicalname" => &mut claims.entity_logical_name,
            "requestname" => &mut claims.request_name,
            "initiatinguseragent" => &mut claims.initiating_user_agent,
            _ => continue,
        };
        let value = value.trim();
        *slot = (!value.is_empty()).then(|| value.to_owned());
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_claims_and_ignores_other_properties() {
        let properties = props(&[
            (
                "http://schemas.microsoft.com/xrm/2011/Claims/Organization",
                "contoso.crm.dynamics.com",
            ),
            (
                "http://schemas.microsoft.com/xrm/2011/Claims/User",
                "75c2dd85-e89e-e711-8122-000d3aa2331c",
            ),
            (
                "http://schemas.microsoft.com/xrm/2011/Claims/InitiatingUser",
                "75c2dd85-e89e-e711-8122-000d3aa2331c",
            ),
            (
                "HTTP://schemas.microsoft.com/xrm/2011/Claims/entitylogicalname",
                "contact",
            ),
            ("http://schemas.microsoft.com/xrm/2011/Claims/RequestName", "Update"),
            ("http://schemas.microsoft.com/xrm/2011/Claims/InitiatingUserAgent", " "),
            ("http://schemas.microsoft.com/xrm/2011/Claims/Unknown", "x"),
            ("http://schemas.microsoft.com/xrm/2011/Claims", "x"),
            ("RequestName", "Create"),
            ("é", "multibyte names do not trip the prefix match"),
        ]);
        assert_eq!(
            claims(&properties),
            Claims {
                organization: Some("contoso.crm.dynamics.com".into()),
                user: Some("75c2dd85-e89e-e711-8122-000d3aa2331c".into()),
                initiating_user: Some("75c2dd85-e89e-e711-8122-000d3aa2331c".into()),
                entity_logical_name: Some("contact".into()),
                request_name: Some("Update".into()),
                initiating_user_agent: None,
            }
        );
        assert_eq!(claims(&[]), Claims::default());
    }

    fn props(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn only_a_true_size_exceeded_header_or_property_marks_a_message_trimmed() {
        for name in [
            "x-ms-dynamics-msg-size-exceeded",
            "X-MS-Dynamics-Msg-Size-Exceeded",
            "MessageMaxSizeExceeded",
        ] {
            for value in ["true", "True", "TRUE", " true ", "1"] {
                assert!(message_size_exceeded(&props(&[(name, value)])), "{name} = {value:?}");
            }
            for value in ["false", "False", "0", "", "no", "truely"] {
                assert!(!message_size_exceeded(&props(&[(name, value)])), "{name} = {value:?}");
            }
        }
        assert!(!message_size_exceeded(&[]));
        assert!(!message_size_exceeded(&props(&[
            ("x-ms-dynamics-organization", "contoso.crm.dynamics.com"),
            ("http://schemas.microsoft.com/xrm/2011/Claims/User", "u"),
        ])));
        // Someone else's property that merely mentions the marker, in its value or its name.
        assert!(!message_size_exceeded(&props(&[(
            "note",
            "MessageMaxSizeExceeded: the last one was trimmed"
        )])));
        assert!(!message_size_exceeded(&props(&[(
            "MessageMaxSizeExceededBefore",
            "true"
        )])));
        // A true marker among other properties still counts.
        assert!(message_size_exceeded(&props(&[
            ("note", "x"),
            ("MessageMaxSizeExceeded", "true"),
        ])));
    }
}
