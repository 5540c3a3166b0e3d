//! The request/response link pair of a node such as `$cbs` or `<queue>/$management`.

use super::*;

/// An answer from a request/response node (`$cbs`, `<queue>/$management`).
#[derive(Debug)]
pub struct Response {
    pub status: i32,
    pub description: String,
    pub condition: Option<String>,
    pub body: Value,
}

struct Request {
    operation: String,
    properties: Vec<(String, SimpleValue)>,
    body: Value,
    reply: oneshot::Sender<anyhow::Result<Response>>,
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<anyhow::Result<Response>>>>>;

/// A request/response link pair to an AMQP management node.
pub struct RequestLink {
    pub node: String,
    commands: mpsc::Sender<Request>,
    stopped: CancellationToken,
}

impl RequestLink {
    pub async fn attach(session: &mut SessionHandle<()>, node: &str) -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4();
        let reply_to = format!("sagahost-reply-{id}");
        let sender = Sender::builder()
            .name(format!("{node}-sender-{id}"))
            .source(reply_to.clone())
            .target(node)
            .sender_settle_mode(SenderSettleMode::Unsettled)
            .attach(session)
            .await
            .map_err(|e| attach_error("a sender", node, &e))?;
        let receiver = Receiver::builder()
            .name(format!("{node}-receiver-{id}"))
            .source(node)
            .target(reply_to.clone())
            .receiver_settle_mode(ReceiverSettleMode::First)
            .credit_mode(CreditMode::Auto(64))
            .auto_accept(true)
            .attach(session)
            .await
            .map_err(|e| attach_error("a receiver", node, &e))?;
        let (commands, rx) = mpsc::channel(256);
        Ok(Self {
            node: node.to_string(),
            commands,
            stopped: spawn_link_task(run_requests(node.to_string(), reply_to, sender, receiver, rx)),
        })
    }

    /// Sends one request and waits (up to `timeout`) for its response.
    pub async fn request(
        &self,
        operation: &str,
        properties: Vec<(String, SimpleValue)>,
        body: Value,
        timeout: Duration,
    ) -> anyhow::Result<Response> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            operation: operation.to_string(),
            properties,
            body,
            reply,
        };
        self.commands
            .send(request)
            .await
            .map_err(|_| anyhow!("the link to `{}` is closed", self.node))?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(response)) => response,
            Ok(Err(_)) => bail!("the link to `{}` closed before `{operation}` was answered", self.node),
            Err(_) => bail!("`{operation}` on `{}` was not answered within {timeout:?}", self.node),
        }
    }
}

enum RequestEvent {
    Command(Option<Request>),
    Response(Box<Result<fe2o3_amqp::link::delivery::Delivery<Body<Value>>, fe2o3_amqp::link::RecvError>>),
}

async fn run_requests(
    node: String,
    reply_to: String,
    mut sender: Sender,
    mut receiver: Receiver,
    mut commands: mpsc::Receiver<Request>,
) {
    let pending: Pending = Arc::default();
    loop {
        let event = tokio::select! {
            command = commands.recv() => RequestEvent::Command(command),
            response = receiver.recv::<Body<Value>>() => RequestEvent::Response(Box::new(response)),
        };
        match event {
            RequestEvent::Command(None) => break,
            RequestEvent::Command(Some(request)) => {
                let id = uuid::Uuid::new_v4().to_string();
                let mut properties = OrderedMap::new();
                properties.insert("operation".to_string(), SimpleValue::String(request.operation));
                for (key, value) in request.properties {
                    properties.insert(key, value);
                }
                let message = Message::builder()
                    .properties(Properties {
                        message_id: Some(MessageId::String(id.clone())),
                        reply_to: Some(reply_to.clone()),
                        ..Properties::default()
                    })
                    .application_properties(ApplicationProperties(properties))
                    .value(request.body)
                    .build();
                pending.lock().expect("not poisoned").insert(id.clone(), request.reply);
                match sender.send_batchable(message).await {
                    Ok(outcome) => {
                        let (pending, node) = (pending.clone(), node.clone());
                        tokio::spawn(async move {
                            let failure = match outcome.await {
                                Ok(Outcome::Accepted(_)) => return,
                                Ok(other) => anyhow!("`{node}` refused the request: {other:?}"),
                                Err(err) => anyhow!("sending a request to `{node}`: {err}"),
                            };
                            if let Some(reply) = pending.lock().expect("not poisoned").remove(&id) {
                                let _ = reply.send(Err(failure));
                            }
                        });
                    }
                    Err(err) => {
                        if let Some(reply) = pending.lock().expect("not poisoned").remove(&id) {
                            let _ = reply.send(Err(anyhow!("sending a request to `{node}`: {err}")));
                        }
                        break;
                    }
                }
            }
            RequestEvent::Response(answer) => {
                let message = match *answer {
                    Ok(delivery) => delivery.into_message(),
                    Err(err) => {
                        link_failed("response", &node, &err.to_string());
                        break;
                    }
                };
                let Some(id) = message
                    .properties
                    .as_ref()
                    .and_then(|p| p.correlation_id.as_ref())
                    .map(dialect::message_id_text)
                else {
                    tracing::warn!(%node, "response without a correlation id ignored");
                    continue;
                };
                if let Some(reply) = pending.lock().expect("not poisoned").remove(&id) {
                    let _ = reply.send(Ok(response(message)));
                }
            }
        }
    }
    for (_, reply) in pending.lock().expect("not poisoned").drain() {
        let _ = reply.send(Err(anyhow!("the link to `{node}` was lost")));
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), sender.close()).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), receiver.close()).await;
}

/// Reads status and body; CBS says `status-code`, management says `statusCode`.
fn response(message: Message<Body<Value>>) -> Response {
    let properties = message.application_properties.map(|a| a.0).unwrap_or_default();
    let find = |names: &[&str]| {
        properties
            .iter()
            .find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n)))
            .map(|(_, v)| v.clone())
    };
    let status = match find(&["statusCode", "status-code"]) {
        Some(SimpleValue::Int(n)) => n,
        Some(SimpleValue::Uint(n)) => i32::try_from(n).unwrap_or(i32::MAX),
        Some(SimpleValue::Long(n)) => i32::try_from(n).unwrap_or(i32::MAX),
        Some(SimpleValue::Short(n)) => i32::from(n),
        Some(SimpleValue::Ushort(n)) => i32::from(n),
        _ => 0,
    };
    let text = |v: Option<SimpleValue>| match v {
        Some(SimpleValue::String(s)) => Some(s),
        Some(SimpleValue::Symbol(s)) => Some(s.0),
        _ => None,
    };
    let description = text(find(&["statusDescription", "status-description"])).unwrap_or_default();
    let condition = text(find(&["errorCondition", "error-condition"]));
    let body = match message.body {
        Body::Value(AmqpValue(v)) => v,
        _ => Value::Null,
    };
    Response {
        status,
        description,
        condition,
        body,
    }
}

impl Link for RequestLink {
    fn stopped(&self) -> &CancellationToken {
        &self.stopped
    }
}
