//! Size limits over real TCP, from a client that writes its own frames: fe2o3-amqp's sender
//! refuses to send a message over the link's `max-message-size` itself, so only a hand-made
//! client can push one at the broker.

use std::time::Duration;

use fe2o3_amqp::frames::amqp::{FrameBody, FrameDecoder};
use fe2o3_amqp::types::definitions::{ConnectionError, ErrorCondition, Handle, LinkError, Role};
use fe2o3_amqp::types::messaging::{DeliveryState, Message, Target, TargetArchetype};
use fe2o3_amqp::types::performatives::{Attach, Begin, Detach, Open, Transfer};
use fe2o3_amqp::types::primitives::Binary;
use fe2o3_amqp::types::sasl::{SaslCode, SaslInit, SaslOutcome};
use fe2o3_amqp::{Sender, Session};
use sagahost_transport::embedded::QueueDepth;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::Decoder;

use super::BrokerConfig;
use super::connection::frame;
use super::tests::{Broker, assert_still_serves, connect, start, wait_for_depth};

const FRAME_TYPE_AMQP: u8 = 0;
const FRAME_TYPE_SASL: u8 = 1;
const MAX_MESSAGE_SIZE: u64 = 64 * 1024;
const CHUNK: usize = 16 * 1024;

/// One client connection, logged in with SASL PLAIN and the emulator's key, session on channel 0.
struct RawClient {
    stream: TcpStream,
}

impl RawClient {
    async fn connect(broker: &Broker) -> Self {
        let stream = TcpStream::connect(broker.address.trim_start_matches("amqp://"))
            .await
            .unwrap();
        let mut client = Self { stream };
        client.stream.write_all(b"AMQP\x03\x01\x00\x00").await.unwrap();
        assert_eq!(&client.header().await, b"AMQP\x03\x01\x00\x00");
        let _mechanisms = client.raw_frame().await;
        let init = SaslInit {
            mechanism: "PLAIN".into(),
            initial_response: Some(Binary::from(b"\0RootManageSharedAccessKey\0SAS_KEY_VALUE".to_vec())),
            hostname: None,
        };
        client.write(FRAME_TYPE_SASL, &init, &[]).await;
        let outcome = client.raw_frame().await;
        let outcome: SaslOutcome = serde_amqp::from_slice(&outcome[8..]).unwrap();
        assert_eq!(outcome.code, SaslCode::Ok);
        client.stream.write_all(b"AMQP\x00\x01\x00\x00").await.unwrap();
        assert_eq!(&client.header().await, b"AMQP\x00\x01\x00\x00");
        let open = Open {
            container_id: "raw".into(),
            hostname: None,
            max_frame_size: (1024 * 1024).into(),
            channel_max: 0.into(),
            idle_time_out: None,
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        client.write(FRAME_TYPE_AMQP, &open, &[]).await;
        assert!(matches!(client.next().await, FrameBody::Open(_)));
        let begin = Begin {
            remote_channel: None,
            next_outgoing_id: 0,
            incoming_window: 1 << 20,
            outgoing_window: 1 << 20,
            handle_max: Handle(1024),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        client.write(FRAME_TYPE_AMQP, &begin, &[]).await;
        assert!(matches!(client.next().await, FrameBody::Begin(_)));
        client
    }

    async fn header(&mut self) -> [u8; 8] {
        let mut header = [0u8; 8];
        self.stream.read_exact(&mut header).await.unwrap();
        header
    }

    async fn write<T: Serialize>(&mut self, frame_type: u8, performative: &T, payload: &[u8]) {
        let bytes = frame(frame_type, 0, performative, payload).unwrap();
        self.stream.write_all(&bytes).await.unwrap();
    }

    /// One frame, size included.
    async fn raw_frame(&mut self) -> Vec<u8> {
        let size = self.stream.read_u32().await.unwrap() as usize;
        let mut frame = vec![0u8; size];
        frame[..4].copy_from_slice(&(size as u32).to_be_bytes());
        self.stream.read_exact(&mut frame[4..]).await.unwrap();
        frame
    }

    /// The next AMQP frame's body that is not an empty (heartbeat) frame.
    async fn next(&mut self) -> FrameBody {
        loop {
            let raw = tokio::time::timeout(Duration::from_secs(10), self.raw_frame())
                .await
                .expect("the broker answers");
            let mut body = BytesMut::from(&raw[4..]);
            let decoded = FrameDecoder {}.decode(&mut body).unwrap().unwrap();
            if !matches!(decoded.body, FrameBody::Empty) {
                return decoded.body;
            }
        }
    }

    /// Attaches a sending link to `queue`; returns the max-message-size the broker advertised.
    async fn attach_sender(&mut self, handle: u32, queue: &str) -> Option<u64> {
        let attach = Attach {
            name: format!("raw-{handle}"),
            handle: Handle(handle),
            role: Role::Sender,
            snd_settle_mode: Default::default(),
            rcv_settle_mode: Default::default(),
            source: None,
            target: Some(Box::new(TargetArchetype::Target(
                Target::builder().address(queue).build(),
            ))),
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: Some(0),
            max_message_size: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        self.write(FRAME_TYPE_AMQP, &attach, &[]).await;
        let FrameBody::Attach(reply) = self.next().await else {
            panic!("no attach reply");
        };
        assert!(matches!(self.next().await, FrameBody::Flow(_)), "no credit");
        reply.max_message_size
    }

    async fn transfer(&mut self, handle: u32, delivery_id: u32, more: bool, payload: &[u8]) {
        let transfer = Transfer {
            handle: Handle(handle),
            delivery_id: Some(delivery_id),
            delivery_tag: Some(Binary::from(delivery_id.to_be_bytes().to_vec())),
            message_format: Some(0),
            settled: Some(false),
            more,
            rcv_settle_mode: None,
            state: None,
            resume: false,
            aborted: false,
            batchable: false,
        };
        self.write(FRAME_TYPE_AMQP, &transfer, payload).await;
    }
}

#[tokio::test]
async fn a_message_over_the_size_limit_across_frames_detaches_its_link_and_the_broker_serves_on() {
    let broker = start(BrokerConfig {
        max_message_size: MAX_MESSAGE_SIZE,
        ..BrokerConfig::default()
    })
    .await;
    let mut keeper = connect(&broker, "keeper").await;
    let mut session = Session::begin(&mut keeper).await.unwrap();
    let mut sender = Sender::attach(&mut session, "sender", "kept").await.unwrap();
    sender.send(Message::from("keep me")).await.unwrap();
    keeper.close().await.unwrap();

    let mut client = RawClient::connect(&broker).await;
    assert_eq!(client.attach_sender(0, "big").await, Some(MAX_MESSAGE_SIZE));
    // 100 frames of 16 KiB (1.6 MB, 25 times the limit), all of them `more`: the broker refuses
    // the delivery as the fifth frame takes it past 64 KiB, and drops what follows.
    let chunk = vec![b'x'; CHUNK];
    for _ in 0..100 {
        client.transfer(0, 0, true, &chunk).await;
    }
    let FrameBody::Detach(detach) = client.next().await else {
        panic!("the oversized delivery was not refused");
    };
    assert_eq!(detach.handle, Handle(0));
    assert!(detach.closed);
    let error = detach.error.expect("the detach says why");
    assert_eq!(
        error.condition,
        ErrorCondition::LinkError(LinkError::MessageSizeExceeded)
    );
    let description = error.description.unwrap_or_default();
    let refused_at = (5 * CHUNK).to_string();
    assert!(
        description.contains(&refused_at),
        "refused at {refused_at} bytes: {description}"
    );

    // The client answers the detach; the broker does not answer that again. The same connection
    // attaches a new link and a message within the limit is stored, the refused one is not.
    let answer = Detach {
        handle: Handle(0),
        closed: true,
        error: None,
    };
    client.write(FRAME_TYPE_AMQP, &answer, &[]).await;
    client.attach_sender(1, "big").await;
    // One `data` section (descriptor 0x75) holding a 5-byte binary.
    let mut encoded = vec![0x00, 0x53, 0x75, 0xa0, 5];
    encoded.extend_from_slice(b"small");
    client.transfer(1, 1, false, &encoded).await;
    let FrameBody::Disposition(disposition) = client.next().await else {
        panic!("the small message was not settled");
    };
    assert_eq!(disposition.first, 1);
    assert!(
        matches!(disposition.state, Some(DeliveryState::Accepted(_))),
        "{disposition:?}"
    );
    wait_for_depth(
        &broker.queue,
        "big",
        QueueDepth {
            active: 1,
            ..QueueDepth::default()
        },
    )
    .await;

    assert_still_serves(&broker).await;
}

#[tokio::test]
async fn a_frame_over_the_negotiated_max_frame_size_closes_the_connection_with_a_framing_error() {
    let broker = start(BrokerConfig::default()).await;
    let mut keeper = connect(&broker, "keeper").await;
    let mut session = Session::begin(&mut keeper).await.unwrap();
    let mut sender = Sender::attach(&mut session, "sender", "kept").await.unwrap();
    sender.send(Message::from("keep me")).await.unwrap();
    keeper.close().await.unwrap();

    let mut client = RawClient::connect(&broker).await;
    // The broker advertised 1 MiB frames; this one claims 2 MiB.
    client
        .stream
        .write_all(&[0x00, 0x20, 0x00, 0x00, 2, 0, 0, 0])
        .await
        .unwrap();
    let FrameBody::Close(close) = client.next().await else {
        panic!("no close");
    };
    assert_eq!(
        close.error.map(|error| error.condition),
        Some(ErrorCondition::ConnectionError(ConnectionError::FramingError))
    );
    assert_still_serves(&broker).await;
}
