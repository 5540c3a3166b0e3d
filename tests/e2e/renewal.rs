//! Lock renewal under a slow settle and a failed renewal: the executor keeps renewing, with
//! retries, until the settle has finished, so the message is delivered once.
//!
//! The transport is the real embedded queue behind a wrapper that makes its settle slower
//! than the lock (as a Service Bus settle may be, up to its 60 s operation timeout) and its
//! first renewal fail (as a dropped connection makes it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use sagahost::component::{ComponentSpec, Limits, Registry, Runtime, RuntimeOptions};
use sagahost::config::Config;
use sagahost::outbound::{ConfigSecrets, HttpOutbound};
use sagahost::saga::seal::StateKeys;
use sagahost::saga::{Executor, Partner, Verdict};
use sagahost_transport::embedded::{EmbeddedQueue, QueueSettings};
use sagahost_transport::sessions::{SessionLock, Sessions};
use sagahost_transport::{OutgoingMessage, Output, ReceivedMessage, Settlement, Transport, TransportError};
use tokio_util::sync::CancellationToken;

use crate::support;

const LOCK: Duration = Duration::from_millis(1_000);

/// The embedded queue with a settle that takes 2.5 locks and a first renewal that fails.
struct SlowSettle {
    queue: EmbeddedQueue,
    renewals: AtomicU32,
}

impl Transport for SlowSettle {
    async fn receive(&self, queue: &str, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, TransportError> {
        self.queue.receive(queue, max, wait).await
    }

    async fn settle(
        &self,
        message: &ReceivedMessage,
        settlement: Settlement,
        outputs: Vec<Output>,
    ) -> Result<(), TransportError> {
        tokio::time::sleep(LOCK * 5 / 2).await;
        self.queue.settle(message, settlement, outputs).await
    }

    async fn renew_lock(&self, message: &ReceivedMessage) -> Result<SystemTime, TransportError> {
        if self.renewals.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(TransportError::Other(anyhow::anyhow!("connection reset (injected)")));
        }
        self.queue.renew_lock(message).await
    }

    async fn send(&self, outputs: Vec<Output>) -> Result<(), TransportError> {
        self.queue.send(outputs).await
    }

    fn atomic_settle_and_send(&self) -> bool {
        true
    }

    fn max_message_bytes(&self) -> usize {
        self.queue.max_message_bytes()
    }
}

/// Sessions as the embedded queue has them (the partner here is not ordered: none are used).
impl Sessions for SlowSettle {
    async fn accept_session(
        &self,
        queue: &str,
        session_id: Option<&str>,
        wait: Duration,
    ) -> Result<Option<SessionLock>, TransportError> {
        self.queue.accept_session(queue, session_id, wait).await
    }

    async fn receive_in_session(
        &self,
        session: &SessionLock,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, TransportError> {
        self.queue.receive_in_session(session, max, wait).await
    }

    async fn renew_session_lock(&self, session: &SessionLock) -> Result<SystemTime, TransportError> {
        self.queue.renew_session_lock(session).await
    }

    async fn release_session(&self, session: &SessionLock) -> Result<(), TransportError> {
        self.queue.release_session(session).await
    }

    async fn session_state(&self, session: &SessionLock) -> Result<Option<Vec<u8>>, TransportError> {
        self.queue.session_state(session).await
    }

    async fn set_session_state(&self, session: &SessionLock, state: Option<Vec<u8>>) -> Result<(), TransportError> {
        self.queue.set_session_state(session, state).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settle_slower_than_the_lock_and_a_failed_renewal_cause_no_second_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[partners.p]\ncomponent = {:?}\nqueue = \"in\"\nconfig = {{ attack = \"none\" }}\n",
        support::component("hostile").display().to_string()
    );
    let path = dir.path().join("sagahost.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap().config;
    let settings: Vec<QueueSettings> = config
        .queue_settings()
        .into_iter()
        .map(|mut queue| {
            queue.lock_duration = LOCK;
            queue
        })
        .collect();
    let queue = EmbeddedQueue::open(&dir.path().join("queue.sqlite3"), &settings).unwrap();
    let transport = Arc::new(SlowSettle {
        queue: queue.clone(),
        renewals: AtomicU32::new(0),
    });
    let mut registry = Registry::new(Runtime::new(RuntimeOptions::default()).unwrap());
    let partner = config.partners["p"].clone();
    registry
        .add(
            "p",
            ComponentSpec {
                source: partner.component.clone(),
                limits: Limits::default(),
                config: partner.config.clone(),
            },
        )
        .await
        .unwrap();
    let http = HttpOutbound::new(
        [("p".to_string(), partner.outbound.clone())],
        Arc::new(ConfigSecrets::default()),
    )
    .unwrap();
    let keys = StateKeys::local(dir.path()).unwrap();
    let partners = vec![Partner {
        name: "p".into(),
        config: partner,
    }];
    let executor = Executor::new(transport.clone(), Arc::new(registry), partners, http, keys);
    let mut events = executor.subscribe();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(executor.run(shutdown.clone()));

    let message = OutgoingMessage {
        content_type: Some("application/json".into()),
        body: crate::saga::contact_body(),
        ..Default::default()
    };
    queue
        .send(vec![Output {
            queue: "in".into(),
            message,
        }])
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .expect("the message ends")
        .unwrap();
    assert_eq!(first.verdict, Verdict::Completed);
    // Another lock's worth of time: a redelivery would show as a second event.
    let again = tokio::time::timeout(LOCK * 3, events.recv()).await;
    assert!(again.is_err(), "delivered a second time: {again:?}");
    shutdown.cancel();
    running.await.unwrap();
    assert!(
        transport.renewals.load(Ordering::SeqCst) >= 3,
        "the failed renewal was tried again"
    );
    let depth = queue.queue_depth("in").await.unwrap();
    assert_eq!((depth.active, depth.dead_lettered), (0, 0), "{depth:?}");
}
