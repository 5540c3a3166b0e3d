//! The sender link: sends to a queue, directly or via another entity inside a transaction.

use super::*;

struct SendCommand {
    message: Message<Data>,
    transaction: Option<TransactionId>,
    reply: Reply<()>,
}

/// A sender to one queue, directly or through a via queue (Service Bus send-via, which lets the
/// send join a transaction on the via queue).
pub struct SenderLink {
    pub queue: String,
    commands: mpsc::Sender<SendCommand>,
    stopped: CancellationToken,
}

impl SenderLink {
    /// Attaches a sender to `queue`; with `via`, the link is attached to the via queue and the
    /// messages go on to `queue`.
    pub async fn attach(
        session: &mut SessionHandle<()>,
        queue: &str,
        via: Option<&str>,
    ) -> Result<Self, TransportError> {
        let mut properties = definitions::Fields::new();
        if via.is_some() {
            properties.insert(Symbol::from(TRANSFER_DESTINATION), Value::String(queue.to_string()));
        }
        let sender = Sender::builder()
            .name(format!("sagahost-sender-{queue}-{}", uuid::Uuid::new_v4()))
            .source(format!("sagahost-{}", uuid::Uuid::new_v4()))
            .target(via.unwrap_or(queue))
            .properties(properties)
            .sender_settle_mode(SenderSettleMode::Unsettled)
            .attach(session)
            .await
            .map_err(|e| {
                let text = format!("{e} ({e:?})");
                if is_not_found(&text) {
                    TransportError::UnknownQueue(queue.to_string())
                } else {
                    anyhow!("attaching a sender to queue `{queue}`: {text}").into()
                }
            })?;
        let (commands, rx) = mpsc::channel(256);
        Ok(Self {
            queue: queue.to_string(),
            commands,
            stopped: spawn_link_task(run_sender(queue.to_string(), sender, rx)),
        })
    }

    /// Sends, inside `transaction` if given, and waits for the broker to accept the message (in a
    /// transaction: to accept it provisionally, for when the transaction commits).
    /// Queues `message` on the link and returns the broker's answer to come: messages submitted
    /// one after another go out, and are numbered by the broker, in that order, while their
    /// answers are awaited together.
    pub async fn submit(
        &self,
        message: Message<Data>,
        transaction: Option<&TransactionId>,
    ) -> Result<impl Future<Output = Result<(), TransportError>> + use<>, TransportError> {
        let (reply, answer) = oneshot::channel();
        let transaction = transaction.cloned();
        self.commands
            .send(SendCommand {
                message,
                transaction,
                reply,
            })
            .await
            .map_err(|_| anyhow!("the sender to queue `{}` is closed", self.queue))?;
        let queue = self.queue.clone();
        Ok(async move {
            answer
                .await
                .map_err(|_| anyhow!("the sender to queue `{queue}` closed while sending"))?
        })
    }
}

async fn run_sender(queue: String, mut sender: Sender, mut commands: mpsc::Receiver<SendCommand>) {
    while let Some(SendCommand {
        message,
        transaction,
        reply,
    }) = commands.recv().await
    {
        let sent = match transaction {
            Some(id) => TransactionRef(id)
                .post_batchable(&mut sender, message)
                .await
                .map(|outcome| outcome.map(|result| result.map_err(|e| e.to_string())).boxed())
                .map_err(|e| e.to_string()),
            None => sender
                .send_batchable(message)
                .await
                .map(|outcome| outcome.map(|result| result.map_err(|e| e.to_string())).boxed())
                .map_err(|e| e.to_string()),
        };
        match sent {
            Ok(outcome) => {
                let queue = queue.clone();
                // Many sends are in flight at once; each waits for its own outcome.
                tokio::spawn(async move {
                    let result = match outcome.await {
                        Ok(Outcome::Accepted(_)) => Ok(()),
                        Ok(other) => Err(anyhow!("queue `{queue}` did not accept the message: {other:?}").into()),
                        Err(text) => {
                            if is_not_found(&text) {
                                Err(TransportError::UnknownQueue(queue))
                            } else {
                                Err(anyhow!("sending to queue `{queue}`: {text}").into())
                            }
                        }
                    };
                    let _ = reply.send(result);
                });
            }
            Err(err) => {
                link_failed("sender", &queue, &err.to_string());
                let _ = reply.send(Err(anyhow!("sending to queue `{queue}`: {err}").into()));
                break;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), sender.close()).await;
}

impl Link for SenderLink {
    fn stopped(&self) -> &CancellationToken {
        &self.stopped
    }
}
