//! SAS tokens on `$cbs` over real TCP, driven by fe2o3-amqp's client logging in with SASL
//! ANONYMOUS as the Service Bus SDKs do.

use std::time::Duration;

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::SenderAttachError;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::definitions::{AmqpError, ErrorCondition};
use fe2o3_amqp::types::messaging::{ApplicationProperties, Body, Message, Properties};
use fe2o3_amqp::types::primitives::{SimpleValue, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use sagahost_transport::TransportError;
use sagahost_transport::sas::{expiry_from_now, now_unix_secs, sas_token};

use super::tests::{Broker, start};
use super::{BearerToken, BrokerConfig, SharedAccessKey};

const KEY_NAME: &str = "RootManageSharedAccessKey";
const KEY: &str = "SAS_KEY_VALUE";

/// A connection with no token yet, and its `$cbs` request/reply pair.
struct Client {
    connection: ConnectionHandle<()>,
    session: SessionHandle<()>,
    requests: Sender,
    replies: Receiver,
    next_id: u32,
}

impl Client {
    async fn connect(broker: &Broker) -> Self {
        let mut connection = Connection::builder()
            .container_id("sdk-like")
            .sasl_profile(SaslProfile::Anonymous)
            .open(broker.address.as_str())
            .await
            .expect("SASL ANONYMOUS is accepted");
        let mut session = Session::begin(&mut connection).await.unwrap();
        let requests = Sender::attach(&mut session, "cbs-requests", "$cbs").await.unwrap();
        let replies = Receiver::builder()
            .name("cbs-replies")
            .source("$cbs")
            .target("cbs-reply-to")
            .attach(&mut session)
            .await
            .unwrap();
        Self {
            connection,
            session,
            requests,
            replies,
            next_id: 0,
        }
    }

    /// Puts `token` of type `token_type` on `$cbs`; returns the reply's status code and description.
    async fn put(&mut self, token: &str, token_type: &str) -> (i32, String) {
        self.next_id += 1;
        let request = Message::builder()
            .properties(
                Properties::builder()
                    .message_id(format!("put-{}", self.next_id))
                    .reply_to("cbs-reply-to")
                    .build(),
            )
            .application_properties(
                ApplicationProperties::builder()
                    .insert("operation", "put-token")
                    .insert("type", token_type)
                    .insert("name", "sb://127.0.0.1/orders")
                    .build(),
            )
            .value(Value::String(token.to_owned()))
            .build();
        self.requests.send(request).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), self.replies.recv::<Body<Value>>())
            .await
            .expect("a $cbs reply")
            .unwrap();
        self.replies.accept(&reply).await.unwrap();
        let properties = &reply.message().application_properties.as_ref().unwrap().0;
        let Some(SimpleValue::Int(status)) = properties.get("status-code") else {
            panic!("no status-code in {properties:?}");
        };
        let Some(SimpleValue::String(description)) = properties.get("status-description") else {
            panic!("no status-description in {properties:?}");
        };
        (*status, description.clone())
    }

    async fn put_sas(&mut self, token: &str) -> (i32, String) {
        self.put(token, "servicebus.windows.net:sastoken").await
    }

    /// Attaches a sender to `entity` on a session of its own, then closes both: `Ok`, or the error
    /// the broker detached the link with. (fe2o3 can hand a link handle that a refused attach just
    /// freed to the next attach while still releasing it, so refused attaches get fresh sessions.)
    async fn can_send_to(&mut self, entity: &str) -> Result<(), ErrorCondition> {
        let mut session = Session::begin(&mut self.connection).await.unwrap();
        let attached = Sender::attach(&mut session, format!("to-{entity}"), entity).await;
        let result = match attached {
            Ok(sender) => {
                sender.close().await.unwrap();
                Ok(())
            }
            Err(SenderAttachError::RemoteClosedWithError(error)) => Err(error.condition),
            Err(other) => panic!("attaching to {entity} failed otherwise: {other:?}"),
        };
        session.end().await.unwrap();
        result
    }

    async fn close(mut self) {
        self.connection.close().await.unwrap();
    }
}

fn unauthorized() -> ErrorCondition {
    ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess)
}

fn token_for(resource: &str) -> String {
    sas_token(resource, KEY_NAME, KEY, expiry_from_now(Duration::from_secs(600)))
}

#[tokio::test]
async fn a_token_signed_with_the_key_authorizes_its_entity_and_only_that() {
    let broker = start(BrokerConfig::default()).await;
    let mut client = Client::connect(&broker).await;
    assert_eq!(client.can_send_to("orders").await, Err(unauthorized()), "no token yet");

    let (status, description) = client.put_sas(&token_for("sb://127.0.0.1/orders")).await;
    assert_eq!((status, description.as_str()), (202, "Accepted"));
    let mut sender = Sender::attach(&mut client.session, "orders", "orders")
        .await
        .expect("the token covers `orders`");
    let outcome = sender.send(Message::from("hello")).await.unwrap();
    assert!(outcome.is_accepted(), "{outcome:?}");
    sender.close().await.unwrap();
    assert_eq!(broker.queue.queue_depth("orders").await.unwrap().active, 1);
    // Below the entity: its dead-letter queue and management node.
    let dead_letters = Receiver::attach(&mut client.session, "dlq", "orders/$DeadLetterQueue")
        .await
        .expect("the token covers the dead-letter queue");
    dead_letters.close().await.unwrap();
    assert_eq!(client.can_send_to("orders/$management").await, Ok(()));

    // Another entity, and one whose name only starts alike, are refused and not created.
    for other in ["payments", "orders-archive"] {
        assert_eq!(client.can_send_to(other).await, Err(unauthorized()), "{other}");
        assert!(
            matches!(
                broker.queue.queue_depth(other).await,
                Err(TransportError::UnknownQueue(_))
            ),
            "an unauthorized attach created `{other}`"
        );
    }
    client.close().await;
}

#[tokio::test]
async fn a_wrong_key_an_expired_token_or_a_foreign_key_name_is_refused_with_401() {
    let broker = start(BrokerConfig::default()).await;
    let mut client = Client::connect(&broker).await;
    let resource = "sb://127.0.0.1/orders";
    let in_ten_minutes = expiry_from_now(Duration::from_secs(600));
    let refused = [
        (
            "wrong key",
            sas_token(resource, KEY_NAME, "guessed", in_ten_minutes),
            "signature",
        ),
        (
            "expired",
            sas_token(resource, KEY_NAME, KEY, now_unix_secs() - 1),
            "expired",
        ),
        (
            "foreign key name",
            sas_token(resource, "SendOnly", KEY, in_ten_minutes),
            "SendOnly",
        ),
        ("not a token", "let me in".to_owned(), "not a `SharedAccessSignature"),
    ];
    for (what, token, reason) in refused {
        let (status, description) = client.put_sas(&token).await;
        assert_eq!(status, 401, "{what}: {description}");
        assert!(description.contains(reason), "{what}: {description}");
        assert_eq!(client.can_send_to("orders").await, Err(unauthorized()), "{what}");
    }
    // An Entra ID token cannot be checked here; it is refused too.
    let (status, _) = client.put("eyJhbGciOiJSUzI1NiJ9.e30.c2ln", "jwt").await;
    assert_eq!(status, 401);
    assert_eq!(client.can_send_to("orders").await, Err(unauthorized()));

    // The refusals left the connection usable. A SAS token put with type `jwt` (as the Python
    // SDK puts it) is checked as the SAS token it is.
    assert_eq!(client.put(&token_for(resource), "jwt").await.0, 202);
    assert_eq!(client.can_send_to("orders").await, Ok(()));
    client.close().await;
}

#[tokio::test]
async fn a_configured_bearer_token_is_accepted_as_a_jwt_and_no_other() {
    let broker = start(BrokerConfig {
        bearer_tokens: vec![BearerToken::new("issued-by-the-test")],
        ..BrokerConfig::default()
    })
    .await;
    let mut client = Client::connect(&broker).await;
    let (status, description) = client.put("issued-by-someone-else", "jwt").await;
    assert_eq!(status, 401);
    assert!(description.contains("not one this broker accepts"), "{description}");
    assert_eq!(client.can_send_to("orders").await, Err(unauthorized()));
    // Put as a SAS token it is checked as one, and is not one.
    assert_eq!(client.put_sas("issued-by-the-test").await.0, 401);
    assert_eq!(client.put("issued-by-the-test", "jwt").await.0, 202);
    assert_eq!(client.can_send_to("orders").await, Ok(()));
    // The grant is the audience's (`name`), not the namespace's.
    assert_eq!(client.can_send_to("payments").await, Err(unauthorized()));
    client.close().await;
}

#[test]
fn a_bearer_token_never_prints() {
    let config = BrokerConfig {
        bearer_tokens: vec![BearerToken::new("issued-by-the-test")],
        ..BrokerConfig::default()
    };
    assert!(!format!("{config:?}").contains("issued-by-the-test"));
}

#[tokio::test]
async fn a_namespace_token_covers_every_entity() {
    let broker = start(BrokerConfig::default()).await;
    let mut client = Client::connect(&broker).await;
    assert_eq!(client.put_sas(&token_for("sb://127.0.0.1:5672/")).await.0, 202);
    assert_eq!(client.can_send_to("orders").await, Ok(()));
    assert_eq!(client.can_send_to("payments").await, Ok(()));
    client.close().await;
}

#[tokio::test]
async fn a_configured_key_replaces_the_emulator_key() {
    let key = SharedAccessKey {
        name: "sagahost".into(),
        key: "a secret nobody guesses".into(),
    };
    let broker = start(BrokerConfig {
        key: key.clone(),
        ..BrokerConfig::default()
    })
    .await;
    let mut client = Client::connect(&broker).await;
    let expiry = expiry_from_now(Duration::from_secs(600));
    let emulator_token = sas_token("sb://127.0.0.1/orders", KEY_NAME, KEY, expiry);
    assert_eq!(client.put_sas(&emulator_token).await.0, 401);
    assert_eq!(client.can_send_to("orders").await, Err(unauthorized()));
    let token = sas_token("sb://127.0.0.1/orders", &key.name, &key.key, expiry);
    assert_eq!(client.put_sas(&token).await.0, 202);
    assert_eq!(client.can_send_to("orders").await, Ok(()));
    client.close().await;

    // SASL PLAIN takes the configured key, not the emulator's.
    let emulator_login = Connection::builder()
        .container_id("plain")
        .sasl_profile(SaslProfile::Plain {
            username: KEY_NAME.into(),
            password: KEY.into(),
        })
        .open(broker.address.as_str())
        .await;
    assert!(emulator_login.is_err());
    let mut login = Connection::builder()
        .container_id("plain")
        .sasl_profile(SaslProfile::Plain {
            username: key.name.clone(),
            password: key.key.clone(),
        })
        .open(broker.address.as_str())
        .await
        .expect("the configured key logs in");
    login.close().await.unwrap();
}
