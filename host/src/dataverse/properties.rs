//! What Dataverse says about a message outside its body: Service Bus
//! application properties and webhook `x-ms-dynamics-*` headers.

/// The webhook header Dataverse sets when it trimmed the context to fit.
const WEBHOOK_SIZE_EXCEEDED_HEADER: &str = "x-ms-dynamics-msg-size-exceeded";
/// The marker Dataverse puts in a Service Bus property when it trimmed the context.
const SIZE_EXCEEDED_MARKER: &str = "MessageMaxSizeExceeded";

/// Whether Dataverse dropped `ParentContext`, `InputParameters` and the images to
/// fit the message under the size limit.
///
/// Service Bus listeners match the marker as a substring of any property name or
/// value, because its exact placement has varied; webhooks send a header.
pub fn message_size_exceeded(properties: &[(String, String)]) -> bool {
    properties.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case(WEBHOOK_SIZE_EXCEEDED_HEADER)
            || name.contains(SIZE_EXCEEDED_MARKER)
            || value.contains(SIZE_EXCEEDED_MARKER)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn detects_the_marker_in_names_values_and_the_webhook_header() {
        assert!(message_size_exceeded(&props(&[("MessageMaxSizeExceeded", "true")])));
        assert!(message_size_exceeded(&props(&[("x", "MessageMaxSizeExceeded")])));
        assert!(message_size_exceeded(&props(&[(
            "X-MS-Dynamics-Msg-Size-Exceeded",
            ""
        )])));
        assert!(!message_size_exceeded(&props(&[(
            "http://schemas.microsoft.com/xrm/2011/Claims/User",
            "u"
        )])));
    }
}
