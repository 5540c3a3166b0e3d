//! The transport against `sagahost broker` (the local Service Bus–compatible broker) on loopback.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use sagahost_broker::{self as broker, BrokerConfig};
use sagahost_transport::dead_letters::DeadLetterQueues;
use sagahost_transport::embedded::EmbeddedQueue;
use sagahost_transport::servicebus::{ServiceBusOptions, ServiceBusTransport};
use sagahost_transport::{OutgoingMessage, Output, ReceivedMessage, Settlement, Transport, TransportError};

struct Broker {
    address: SocketAddr,
    queue: EmbeddedQueue,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: Arc<tempfile::TempDir>,
}

impl Broker {
    async fn start(lock_duration: Duration) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let queue = EmbeddedQueue::open(&dir.path().join("queue.db"), &[]).unwrap();
        Self::serve(queue, dir, "127.0.0.1:0".parse().unwrap(), lock_duration).await
    }

    async fn serve(queue: EmbeddedQueue, dir: Arc<tempfile::TempDir>, at: SocketAddr, lock_duration: Duration) -> Self {
        let listener = TcpListener::bind(at).await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let config = BrokerConfig {
            lock_duration,
            ..BrokerConfig::default()
        };
        let task = tokio::spawn(broker::serve_with(listener, queue.clone(), config, shutdown.clone()));
        Self {
            address,
            queue,
            shutdown,
            task,
            _dir: dir,
        }
    }

    /// Stops the broker (dropping every connection) and starts it again on the same port and data.
    async fn restart(self, lock_duration: Duration) -> Self {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        Self::serve(self.queue, self._dir, self.address, lock_duration).await
    }

    fn connection_string(&self) -> String {
        connection_string(self.address)
    }

    async fn client(&self) -> ServiceBusTransport {
        let options = ServiceBusOptions {
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            ..ServiceBusOptions::default()
        };
        ServiceBusTransport::connect(&self.connection_string(), options)
            .await
            .unwrap()
    }
}

fn connection_string(address: SocketAddr) -> String {
    format!(
        "Endpoint=sb://127.0.0.1:{}/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true",
        address.port()
    )
}

/// A TCP relay for one client connection to the broker that can start swallowing what the
/// client sends (a network that stops delivering one way) and then cut the connection.
struct Relay {
    address: SocketAddr,
    swallow: Arc<std::sync::atomic::AtomicBool>,
    cut: CancellationToken,
}

impl Relay {
    async fn start(broker: SocketAddr) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let swallow = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cut = CancellationToken::new();
        let (swallowing, cutting) = (swallow.clone(), cut.clone());
        tokio::spawn(async move {
            let (client, _) = listener.accept().await.unwrap();
            let server = tokio::net::TcpStream::connect(broker).await.unwrap();
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_server, mut to_server) = server.into_split();
            let upstream = async {
                let mut buffer = vec![0; 64 * 1024];
                loop {
                    let read = from_client.read(&mut buffer).await?;
                    if read == 0 {
                        return std::io::Result::Ok(());
                    }
                    if !swallowing.load(std::sync::atomic::Ordering::Acquire) {
                        to_server.write_all(&buffer[..read]).await?;
                    }
                }
            };
            tokio::select! {
                _ = upstream => {}
                _ = tokio::io::copy(&mut from_server, &mut to_client) => {}
                () = cutting.cancelled() => {}
            }
            // Dropping the sockets (and the listener) closes the client's connection for good.
        });
        Self { address, swallow, cut }
    }
}

fn output(queue: &str, id: &str) -> Output {
    Output {
        queue: queue.into(),
        message: OutgoingMessage {
            message_id: id.into(),
            correlation_id: Some(format!("corr-{id}")),
            content_type: Some("application/json".into()),
            properties: vec![("saga-id".into(), format!("saga-{id}"))],
            body: format!("{{\"id\":\"{id}\"}}").into_bytes(),
            ..OutgoingMessage::default()
        },
    }
}

async fn receive_one(transport: &ServiceBusTransport, queue: &str, wait: Duration) -> Option<ReceivedMessage> {
    let mut batch = transport.receive(queue, 1, wait).await.unwrap();
    assert!(batch.len() <= 1);
    batch.pop()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_in_order_receives_and_completes_concurrently() {
    let broker = Broker::start(Duration::from_secs(30)).await;
    let transport = Arc::new(broker.client().await);
    const COUNT: usize = 500;
    let outputs: Vec<Output> = (0..COUNT).map(|i| output("orders", &format!("m{i}"))).collect();
    let started = Instant::now();
    transport.send(outputs).await.unwrap();
    let sent = started.elapsed();

    let started = Instant::now();
    let mut seen = HashSet::new();
    let mut numbered = Vec::new();
    let mut settles = tokio::task::JoinSet::new();
    while seen.len() < COUNT {
        let batch = transport.receive("orders", 50, Duration::from_secs(5)).await.unwrap();
        assert!(!batch.is_empty(), "ran dry after {} messages", seen.len());
        for message in batch {
            assert!(
                seen.insert(message.message_id.clone()),
                "{} received twice",
                message.message_id
            );
            assert_eq!(message.delivery_count, 1);
            numbered.push((message.sequence_number, message.message_id.clone()));
            assert_eq!(message.correlation_id, Some(format!("corr-{}", message.message_id)));
            assert_eq!(message.content_type.as_deref(), Some("application/json"));
            assert_eq!(
                message.properties,
                vec![("saga-id".to_string(), format!("saga-{}", message.message_id))]
            );
            assert_eq!(
                message.body,
                format!("{{\"id\":\"{}\"}}", message.message_id).into_bytes()
            );
            assert!(message.locked_until > SystemTime::now());
            let transport = transport.clone();
            settles.spawn(async move { transport.settle(&message, Settlement::Complete, vec![]).await });
        }
    }
    while let Some(result) = settles.join_next().await {
        result.unwrap().unwrap();
    }
    let received = started.elapsed();
    eprintln!("{COUNT} messages: sent in {sent:?}, received and completed in {received:?}");
    // One send keeps its order, as a Service Bus sender does: the queue numbers them as sent.
    numbered.sort();
    let in_sequence: Vec<String> = numbered.into_iter().map(|(_, id)| id).collect();
    assert_eq!(in_sequence, (0..COUNT).map(|i| format!("m{i}")).collect::<Vec<_>>());
    assert!(received < Duration::from_secs(20), "too slow: {received:?}");
    // Completions are on the broker once it answers the next request on the connection.
    assert!(
        transport
            .receive("orders", 10, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(broker.queue.queue_depth("orders").await.unwrap().active, 0);
    transport.close().await;
}

#[tokio::test]
async fn abandon_redelivers_and_counts_the_delivery() {
    let broker = Broker::start(Duration::from_secs(30)).await;
    let transport = broker.client().await;
    transport.send(vec![output("q", "a")]).await.unwrap();
    let first = receive_one(&transport, "q", Duration::from_secs(5)).await.unwrap();
    assert_eq!(first.delivery_count, 1);
    transport.settle(&first, Settlement::Abandon, vec![]).await.unwrap();
    let again = receive_one(&transport, "q", Duration::from_secs(5)).await.unwrap();
    assert_eq!(again.message_id, "a");
    assert_eq!(again.sequence_number, first.sequence_number);
    assert_eq!(again.delivery_count, 2);
    assert_ne!(again.lock_token, first.lock_token);
    // The first lock is gone.
    assert!(matches!(
        transport.settle(&first, Settlement::Complete, vec![]).await,
        Err(TransportError::LockLost { .. })
    ));
    transport.settle(&again, Settlement::Complete, vec![]).await.unwrap();
    assert!(matches!(
        transport.settle(&again, Settlement::Complete, vec![]).await,
        Err(TransportError::LockLost { .. })
    ));
    transport.close().await;
}

#[tokio::test]
async fn dead_letters_with_reason_description_and_properties_to_modify() {
    let broker = Broker::start(Duration::from_secs(30)).await;
    let transport = broker.client().await;
    transport.send(vec![output("q", "bad")]).await.unwrap();
    let message = receive_one(&transport, "q", Duration::from_secs(5)).await.unwrap();
    let settlement = Settlement::DeadLetter {
        reason: "DecodeFailed".into(),
        description: "body is not JSON".into(),
        properties: vec![("sagahost-undo-continued".into(), "true".into())],
    };
    transport.settle(&message, settlement, vec![]).await.unwrap();
    let mut dead = Vec::new();
    for _ in 0..50 {
        dead = broker.queue.peek_dead_letters("q", 0, 10).await.unwrap();
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message.message_id, "bad");
    assert_eq!(dead[0].reason, "DecodeFailed");
    assert_eq!(dead[0].description, "body is not JSON");
    assert!(
        dead[0]
            .message
            .properties
            .contains(&("sagahost-undo-continued".into(), "true".into())),
        "{:?}",
        dead[0].message.properties
    );

    // The client reads the dead-letter queue as the embedded queue does (Service Bus records no
    // dead-lettering time).
    let peeked = transport.peek_dead_letters("q", 0, 10).await.unwrap();
    assert_eq!(peeked.len(), 1);
    assert_eq!(
        (peeked[0].reason.as_str(), peeked[0].description.as_str()),
        ("DecodeFailed", "body is not JSON")
    );
    assert_eq!(peeked[0].message.properties, dead[0].message.properties);
    assert_eq!(peeked[0].message.sequence_number, dead[0].message.sequence_number);
    assert_eq!(peeked[0].message.body, dead[0].message.body);
    assert_eq!(peeked[0].dead_lettered_at, None);
    assert!(
        transport
            .peek_dead_letters("q", dead[0].message.sequence_number + 1, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A redrive: the dead letter is completed and its copy sent to the queue, in one transaction.
    let locked = transport
        .receive_dead_letters("q", 0, 10, Duration::from_secs(5))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(locked.reason, "DecodeFailed");
    assert!(
        !locked
            .message
            .properties
            .iter()
            .any(|(name, _)| name == "DeadLetterReason")
    );
    transport
        .settle(&locked.message, Settlement::Complete, vec![output("q", "bad-again")])
        .await
        .unwrap();
    assert!(transport.peek_dead_letters("q", 0, 10).await.unwrap().is_empty());
    let back = receive_one(&transport, "q", Duration::from_secs(5)).await.unwrap();
    assert_eq!(back.message_id, "bad-again");
    transport.close().await;
}

/// Every message now in `queue`, received and completed.
async fn drain_ids(transport: &ServiceBusTransport, queue: &str) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let batch = transport.receive(queue, 10, Duration::from_millis(300)).await.unwrap();
        if batch.is_empty() {
            ids.sort();
            return ids;
        }
        for message in batch {
            ids.push(message.message_id.clone());
            transport.settle(&message, Settlement::Complete, vec![]).await.unwrap();
        }
    }
}

#[tokio::test]
async fn settles_with_outputs_in_one_transaction() {
    let broker = Broker::start(Duration::from_secs(1)).await;
    let transport = broker.client().await;
    transport.send(vec![output("step1", "in")]).await.unwrap();
    let input = receive_one(&transport, "step1", Duration::from_secs(5)).await.unwrap();
    assert!(transport.atomic_settle_and_send());
    let dead_letter = Settlement::DeadLetter {
        reason: "Exhausted".into(),
        description: "compensating".into(),
        properties: Vec::new(),
    };
    transport
        .settle(
            &input,
            dead_letter,
            vec![output("step2", "out1"), output("compensate", "out2")],
        )
        .await
        .unwrap();
    assert_eq!(drain_ids(&transport, "step2").await, ["out1"]);
    assert_eq!(drain_ids(&transport, "compensate").await, ["out2"]);
    // The input was settled by the same commit: past its lock it does not come back.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(drain_ids(&transport, "step1").await.is_empty());
    let letters = broker.queue.peek_dead_letters("step1", 0, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].reason.as_str(), letters[0].description.as_str()),
        ("Exhausted", "compensating")
    );
    transport.close().await;
}

/// Many steps settle at once, each with its outputs in a transaction of its own: the transport
/// lends each its own coordinator link (up to a bound), and every transaction still commits
/// exactly its own input and outputs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transactions_each_commit_their_own_work() {
    const COUNT: usize = 60;
    let broker = Broker::start(Duration::from_secs(30)).await;
    let transport = Arc::new(broker.client().await);
    let inputs: Vec<Output> = (0..COUNT).map(|i| output("step1", &format!("in{i}"))).collect();
    transport.send(inputs).await.unwrap();
    let mut received = Vec::new();
    while received.len() < COUNT {
        let batch = transport.receive("step1", COUNT, Duration::from_secs(5)).await.unwrap();
        assert!(!batch.is_empty(), "ran dry after {} messages", received.len());
        received.extend(batch);
    }
    let settles = received.into_iter().map(|input| {
        let transport = transport.clone();
        async move {
            let id = input.message_id.replace("in", "out");
            transport
                .settle(&input, Settlement::Complete, vec![output("step2", &id)])
                .await
        }
    });
    for result in futures::future::join_all(settles).await {
        result.unwrap();
    }
    let mut expected: Vec<String> = (0..COUNT).map(|i| format!("out{i}")).collect();
    expected.sort();
    assert_eq!(drain_ids(&transport, "step2").await, expected);
    assert_eq!(broker.queue.queue_depth("step1").await.unwrap().active, 0);
    transport.close().await;
}

/// Each coordinator link declares its next transaction ahead of the settle that takes it. A
/// settle dropped in the middle (its caller gave up) leaves that transaction's work undone, and
/// the settles after it still get transactions of their own. One thread: nothing else runs
/// while the test polls the settle, so where that poll stops does not depend on the machine.
#[tokio::test]
async fn a_settle_dropped_midway_commits_nothing() {
    let broker = Broker::start(Duration::from_secs(30)).await;
    let transport = broker.client().await;
    let inputs = vec![output("step1", "in1"), output("step1", "in2")];
    transport.send(inputs).await.unwrap();
    let first = receive_one(&transport, "step1", Duration::from_secs(5)).await.unwrap();
    transport
        .settle(&first, Settlement::Complete, vec![output("step2", "out1")])
        .await
        .unwrap();
    let second = receive_one(&transport, "step1", Duration::from_secs(5)).await.unwrap();
    // Time for the coordinator link to declare its next transaction.
    tokio::time::sleep(Duration::from_millis(200)).await;
    {
        // One poll takes that transaction and queues the output's transfer in it.
        let settle = transport.settle(&second, Settlement::Complete, vec![output("step2", "dropped")]);
        let mut settle = std::pin::pin!(settle);
        assert!(futures::poll!(settle.as_mut()).is_pending());
    }
    transport
        .settle(&second, Settlement::Complete, vec![output("step2", "out2")])
        .await
        .unwrap();
    assert_eq!(drain_ids(&transport, "step2").await, ["out1", "out2"]);
    assert!(drain_ids(&transport, "step1").await.is_empty());
    transport.close().await;
}

/// Service Bus takes at most 100 messages in one transaction, and so does the broker: a settle
/// with more outputs fails whole, saying why, and the input is there to settle again.
#[tokio::test]
async fn a_settle_with_more_outputs_than_a_transaction_takes_changes_nothing() {
    let broker = Broker::start(Duration::from_secs(30)).await;
    let transport = broker.client().await;
    transport.send(vec![output("step1", "in")]).await.unwrap();
    let input = receive_one(&transport, "step1", Duration::from_secs(5)).await.unwrap();
    let outputs = (0..120).map(|i| output("step2", &format!("out{i}"))).collect();
    let error = transport
        .settle(&input, Settlement::Complete, outputs)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("step2") && error.contains("at most 100 messages"),
        "{error}"
    );
    assert!(drain_ids(&transport, "step2").await.is_empty());
    transport
        .settle(&input, Settlement::Complete, vec![output("step2", "out")])
        .await
        .unwrap();
    assert_eq!(drain_ids(&transport, "step2").await, ["out"]);
    transport.close().await;
}

#[tokio::test]
async fn a_transaction_whose_lock_is_gone_changes_nothing() {
    let broker = Broker::start(Duration::from_secs(30)).await;
    let transport = broker.client().await;
    transport.send(vec![output("step1", "in")]).await.unwrap();
    let input = receive_one(&transport, "step1", Duration::from_secs(5)).await.unwrap();
    // Behind the client's back the lock goes (as when Service Bus loses it early): the client still
    // believes it holds it, so only the broker's commit can notice.
    broker.queue.release(&input).await.unwrap();
    let error = transport
        .settle(&input, Settlement::Complete, vec![output("step2", "out")])
        .await
        .unwrap_err();
    assert!(matches!(error, TransportError::LockLost { .. }), "{error}");
    // Neither half happened: no output, and the input is there to be received again.
    assert!(drain_ids(&transport, "step2").await.is_empty());
    assert_eq!(drain_ids(&transport, "step1").await, ["in"]);
    // The refused commit leaves nothing behind that the next transactions could trip on.
    transport.send(vec![output("step1", "in2")]).await.unwrap();
    for _ in 0..3 {
        let input = receive_one(&transport, "step1", Duration::from_secs(5)).await.unwrap();
        transport
            .settle(&input, Settlement::Abandon, vec![output("step2", "again")])
            .await
            .unwrap();
    }
    assert_eq!(drain_ids(&transport, "step2").await, ["again", "again", "again"]);
    transport.close().await;
}

#[tokio::test]
async fn without_transactions_sends_the_outputs_first() {
    let broker = Broker::start(Duration::from_secs(30)).await;
    let options = ServiceBusOptions {
        transactions: false,
        ..ServiceBusOptions::default()
    };
    let transport = ServiceBusTransport::connect(&broker.connection_string(), options)
        .await
        .unwrap();
    transport.send(vec![output("step1", "in")]).await.unwrap();
    let input = receive_one(&transport, "step1", Duration::from_secs(5)).await.unwrap();
    assert!(!transport.atomic_settle_and_send());
    transport
        .settle(
            &input,
            Settlement::Complete,
            vec![output("step2", "out1"), output("step2", "out2")],
        )
        .await
        .unwrap();
    assert_eq!(drain_ids(&transport, "step2").await, ["out1", "out2"]);
    assert!(drain_ids(&transport, "step1").await.is_empty());
    transport.close().await;
}

/// A client connected through a [`Relay`], with an operation timeout longer than a test may take:
/// what ends an operation in flight there is its connection ending.
async fn relayed_client(broker: &Broker) -> (Relay, ServiceBusTransport) {
    let relay = Relay::start(broker.address).await;
    let options = ServiceBusOptions {
        operation_timeout: Duration::from_secs(30),
        ..ServiceBusOptions::default()
    };
    let transport = ServiceBusTransport::connect(&connection_string(relay.address), options)
        .await
        .unwrap();
    (relay, transport)
}

impl Relay {
    /// Swallows what the client sends from now on.
    fn swallow(&self) {
        self.swallow.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Cuts the connection a moment from now (while an operation started now is in flight).
    async fn cut_soon(&self) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.cut.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settle_in_flight_ends_with_its_connection() {
    let broker = Broker::start(Duration::from_secs(30)).await;
    let (relay, transport) = relayed_client(&broker).await;
    transport
        .send(vec![output("step1", "first"), output("step1", "second")])
        .await
        .unwrap();
    // The first settle attaches the coordinator and the send-via link.
    let first = receive_one(&transport, "step1", Duration::from_secs(5)).await.unwrap();
    transport
        .settle(&first, Settlement::Complete, vec![output("step2", "from-first")])
        .await
        .unwrap();
    let second = receive_one(&transport, "step1", Duration::from_secs(5)).await.unwrap();

    // The second one's transaction is declared into a network that no longer delivers, and
    // then the connection drops: fe2o3 would wait for the declare's outcome for ever.
    relay.swallow();
    let settle = transport.settle(&second, Settlement::Complete, vec![output("step2", "from-second")]);
    let (settled, ()) = tokio::join!(settle, relay.cut_soon());
    assert!(matches!(settled, Err(TransportError::LockLost { .. })), "{settled:?}");
    // Nothing of the second settle happened: its output was not sent and its input is still
    // there (locked until its lock expires).
    let step2 = broker.queue.queue_depth("step2").await.unwrap();
    let step1 = broker.queue.queue_depth("step1").await.unwrap();
    assert_eq!((step1.active, step2.active), (1, 1));
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_in_flight_fails_with_its_connection() {
    let broker = Broker::start(Duration::from_secs(30)).await;
    let (relay, transport) = relayed_client(&broker).await;
    // Attach the sender first, so that the send below is only waiting for its outcome.
    transport.send(vec![output("orders", "first")]).await.unwrap();
    relay.swallow();
    let send = transport.send(vec![output("orders", "second")]);
    let (sent, ()) = tokio::join!(send, relay.cut_soon());
    let error = sent.unwrap_err().to_string();
    assert!(error.contains("was lost before the messages were accepted"), "{error}");
    assert_eq!(broker.queue.queue_depth("orders").await.unwrap().active, 1);
    transport.close().await;
}

#[tokio::test]
async fn renews_the_lock() {
    let broker = Broker::start(Duration::from_secs(2)).await;
    let transport = broker.client().await;
    transport.send(vec![output("q", "slow")]).await.unwrap();
    let message = receive_one(&transport, "q", Duration::from_secs(5)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let until = transport.renew_lock(&message).await.unwrap();
    assert!(until > message.locked_until, "{until:?} !> {:?}", message.locked_until);
    // Past the first lock's expiry, the renewed lock still holds.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        transport
            .receive("q", 1, Duration::from_millis(100))
            .await
            .unwrap()
            .is_empty()
    );
    transport.settle(&message, Settlement::Complete, vec![]).await.unwrap();
    transport.close().await;
}

#[tokio::test]
async fn an_expired_lock_is_lost() {
    let broker = Broker::start(Duration::from_millis(500)).await;
    let transport = broker.client().await;
    transport.send(vec![output("q", "late")]).await.unwrap();
    let message = receive_one(&transport, "q", Duration::from_secs(5)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(matches!(
        transport.renew_lock(&message).await,
        Err(TransportError::LockLost { .. })
    ));
    assert!(matches!(
        transport.settle(&message, Settlement::Complete, vec![]).await,
        Err(TransportError::LockLost { .. })
    ));
    let again = receive_one(&transport, "q", Duration::from_secs(5)).await.unwrap();
    assert_eq!((again.message_id.as_str(), again.delivery_count), ("late", 2));
    // The link forgot the expired lock it could never settle; it holds only the new one.
    assert_eq!(transport.locks_held("q").await, 1);
    transport.close().await;
}

#[tokio::test]
async fn scheduled_messages_wait_for_their_time() {
    let broker = Broker::start(Duration::from_secs(30)).await;
    let transport = broker.client().await;
    let mut scheduled = output("q", "later");
    let at = SystemTime::now() + Duration::from_millis(1500);
    scheduled.message.scheduled_enqueue_time = Some(at);
    scheduled.message.time_to_live = Some(Duration::from_secs(600));
    transport.send(vec![scheduled]).await.unwrap();
    assert!(
        transport
            .receive("q", 1, Duration::from_millis(700))
            .await
            .unwrap()
            .is_empty()
    );
    let message = receive_one(&transport, "q", Duration::from_secs(5)).await.unwrap();
    assert_eq!(message.message_id, "later");
    assert!(SystemTime::now() + Duration::from_millis(100) >= at);
    transport.settle(&message, Settlement::Complete, vec![]).await.unwrap();
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_connection_drops_without_losing_messages() {
    let broker = Broker::start(Duration::from_secs(1)).await;
    let transport = broker.client().await;
    transport.send(vec![output("q", "survivor")]).await.unwrap();
    let held = receive_one(&transport, "q", Duration::from_secs(5)).await.unwrap();

    let broker = broker.restart(Duration::from_secs(1)).await;
    // The old delivery cannot be settled on the new connection: its lock is lost...
    let mut reconnected = None;
    for _ in 0..100 {
        match transport.receive("q", 1, Duration::from_millis(200)).await {
            Ok(batch) => {
                reconnected = Some(batch);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let mut batch = reconnected.expect("reconnected");
    assert!(matches!(
        transport.settle(&held, Settlement::Complete, vec![]).await,
        Err(TransportError::LockLost { .. })
    ));
    // ...and the message comes back once that lock has expired.
    if batch.is_empty() {
        batch = transport.receive("q", 1, Duration::from_secs(5)).await.unwrap();
    }
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].message_id, "survivor");
    assert_eq!(batch[0].delivery_count, 2);
    transport.settle(&batch[0], Settlement::Complete, vec![]).await.unwrap();
    transport.close().await;
    broker.shutdown.cancel();
}

#[tokio::test]
async fn prefetch_keeps_credit_out_between_receives() {
    let broker = Broker::start(Duration::from_secs(30)).await;
    let options = ServiceBusOptions {
        prefetch: 20,
        ..ServiceBusOptions::default()
    };
    let transport = ServiceBusTransport::connect(&broker.connection_string(), options)
        .await
        .unwrap();
    let outputs: Vec<Output> = (0..30).map(|i| output("q", &format!("p{i}"))).collect();
    transport.send(outputs).await.unwrap();
    let mut ids = HashSet::new();
    while ids.len() < 30 {
        let batch = transport.receive("q", 1, Duration::from_secs(5)).await.unwrap();
        assert_eq!(batch.len(), 1, "after {} messages", ids.len());
        assert!(ids.insert(batch[0].message_id.clone()));
        transport.settle(&batch[0], Settlement::Complete, vec![]).await.unwrap();
    }
    assert!(
        transport
            .receive("q", 1, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );
    transport.close().await;
}

#[tokio::test]
async fn closing_gives_back_what_was_prefetched_at_once() {
    let broker = Broker::start(Duration::from_secs(30)).await;
    let options = ServiceBusOptions {
        prefetch: 20,
        ..ServiceBusOptions::default()
    };
    let first = ServiceBusTransport::connect(&broker.connection_string(), options)
        .await
        .unwrap();
    let outputs: Vec<Output> = (0..5).map(|i| output("q", &format!("p{i}"))).collect();
    first.send(outputs).await.unwrap();
    let taken = first.receive("q", 1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(taken.len(), 1);
    // Let the rest arrive in the prefetch buffer, then close.
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.close().await;

    // Long before the 30 s locks would run out, the four buffered messages are free again.
    let second = broker.client().await;
    let mut ids = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while ids.len() < 4 && Instant::now() < deadline {
        for message in second.receive("q", 10, Duration::from_millis(500)).await.unwrap() {
            ids.insert(message.message_id.clone());
            second.settle(&message, Settlement::Complete, vec![]).await.unwrap();
        }
    }
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert!(!ids.contains(&taken[0].message_id));
    second.close().await;
}

#[tokio::test]
async fn a_cancelled_receive_gives_its_messages_back() {
    let broker = Broker::start(Duration::from_secs(30)).await;
    let transport = broker.client().await;
    // Cancel a receive that is waiting, then send: the message may reach the dropped receive.
    let waiting = tokio::time::timeout(
        Duration::from_millis(100),
        transport.receive("q", 1, Duration::from_secs(5)),
    );
    assert!(waiting.await.is_err());
    transport.send(vec![output("q", "kept")]).await.unwrap();
    let message = receive_one(&transport, "q", Duration::from_secs(5)).await.unwrap();
    assert_eq!(message.message_id, "kept");
    assert_eq!(message.delivery_count, 1);
    transport.settle(&message, Settlement::Complete, vec![]).await.unwrap();
    transport.close().await;
}
