//! The AMQP `open`, sessions and links: beginning and ending sessions; attaching links, deciding
//! what each one is by its address and whether the connection may use it; detaching them; and the
//! flow control that grants and tracks link credit.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use fe2o3_amqp_types::definitions::{
    AmqpError, Error as AmqpErrorInfo, ErrorCondition, Handle, Role, SenderSettleMode,
};
use fe2o3_amqp_types::messaging::TargetArchetype;
use fe2o3_amqp_types::performatives::{Attach, Begin, Detach, Flow, Open};
use sagahost_transport::ReceivedMessage;
use sagahost_transport::sas;
use sagahost_transport::servicebus::dialect::DEAD_LETTER_QUEUE_SUFFIX;

use crate::addresses::{self, Entity};
use crate::auth;
use crate::management::Node;
use crate::transactions;
use crate::{MANAGEMENT_SUFFIX, entity_path};

use super::dispositions::release;
use super::session_links::{self, release_session};
use super::{Connection, Kind, Link, MAX_FRAME_SIZE, SENDER_CREDIT, Session, amqp_error};

/// The session window advertised both ways: far more transfers than a client keeps in flight.
const SESSION_WINDOW: u32 = 1 << 24;

impl Connection {
    pub(super) fn on_open(&mut self, open: Open) -> anyhow::Result<()> {
        self.remote_max_frame = (open.max_frame_size.0 as usize).clamp(512, MAX_FRAME_SIZE as usize);
        if let Some(idle) = open.idle_time_out.filter(|idle| *idle > 0) {
            // Half the client's idle timeout, as the spec advises.
            let half = Duration::from_millis(u64::from(idle) / 2);
            let config = Arc::make_mut(&mut self.config);
            config.heartbeat = Some(config.heartbeat.map_or(half, |mine| mine.min(half)));
        }
        let reply = Open {
            container_id: "sagahost-broker".into(),
            hostname: None,
            max_frame_size: MAX_FRAME_SIZE.into(),
            channel_max: open.channel_max,
            idle_time_out: None,
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        self.opened = true;
        self.send(0, &reply)
    }

    pub(super) fn on_begin(&mut self, channel: u16, begin: Begin) -> anyhow::Result<()> {
        self.sessions.insert(
            channel,
            Session {
                next_outgoing_id: 0,
                next_incoming_id: begin.next_outgoing_id,
                next_delivery_id: 0,
                links: HashMap::new(),
                detaching: HashSet::new(),
                unsettled: HashMap::new(),
            },
        );
        let reply = Begin {
            remote_channel: Some(channel),
            next_outgoing_id: 0,
            incoming_window: SESSION_WINDOW,
            outgoing_window: SESSION_WINDOW,
            handle_max: Handle(u32::MAX),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        self.send(channel, &reply)
    }

    pub(super) fn end_session(&mut self, channel: u16) {
        if let Some(session) = self.sessions.remove(&channel) {
            for (_, link) in session.links {
                self.retire_link(link);
            }
        }
    }

    pub(super) fn detach_link(&mut self, channel: u16, handle: u32) {
        let link = self
            .sessions
            .get_mut(&channel)
            .and_then(|session| session.links.remove(&handle));
        if let Some(link) = link {
            self.retire_link(link);
        }
    }

    /// Detaches a link on the broker's own initiative, with `error` saying why.
    pub(super) fn detach_with(
        &mut self,
        channel: u16,
        handle: u32,
        error: Option<AmqpErrorInfo>,
    ) -> anyhow::Result<()> {
        self.detach_link(channel, handle);
        if let Some(session) = self.sessions.get_mut(&channel) {
            session.detaching.insert(handle);
        }
        let detach = Detach {
            handle: Handle(handle),
            closed: true,
            error,
        };
        self.send(channel, &detach)
    }

    /// Stops a link's fetching and gives back the messages it locked but never sent. Messages sent
    /// and not yet settled keep their locks until they expire, as in Service Bus, unless they were
    /// received in a session: the session is released with them (`session_links.rs`).
    fn retire_link(&self, mut link: Link) {
        if let Some(fetching) = link.fetching.take() {
            fetching.cancel();
        }
        if let Some(accepting) = link.accepting.take() {
            accepting.cancel.cancel();
        }
        let locked: Vec<ReceivedMessage> = link.pending.drain(..).filter_map(|pending| pending.lock).collect();
        match link.kind {
            Kind::SessionOut {
                session: Some(session), ..
            } => release_session(&self.queue, &self.locks, session, locked),
            _ => release(&self.queue, locked),
        }
    }

    /// On the way out: every link's unsent locked messages go back.
    pub(super) fn release_all(&mut self) {
        let channels: Vec<u16> = self.sessions.keys().copied().collect();
        for channel in channels {
            self.end_session(channel);
        }
    }

    pub(super) async fn on_attach(&mut self, channel: u16, attach: Attach) -> anyhow::Result<()> {
        let handle = attach.handle.0;
        // The client's role: a client sender means we receive.
        let client_sends = attach.role == Role::Sender;
        let address = if client_sends {
            attach.target.as_deref().and_then(|target| match target {
                TargetArchetype::Target(target) => target.address.clone(),
                #[allow(unreachable_patterns)]
                _ => None,
            })
        } else {
            attach.source.as_ref().and_then(|source| source.address.clone())
        };
        let path = address.as_deref().map(entity_path).unwrap_or_default();
        let coordinator = client_sends && matches!(attach.target.as_deref(), Some(TargetArchetype::Coordinator(_)));
        let kind = if coordinator {
            Ok(Kind::Coordinator)
        } else {
            self.classify(&path, client_sends, &attach).await
        };
        let our_role = if client_sends { Role::Receiver } else { Role::Sender };
        let (kind, error) = match kind {
            Ok(kind) => (Some(kind), None),
            Err(error) => (None, Some(error)),
        };
        let reply = Attach {
            name: attach.name.clone(),
            handle: attach.handle.clone(),
            role: our_role,
            snd_settle_mode: attach.snd_settle_mode.clone(),
            rcv_settle_mode: attach.rcv_settle_mode.clone(),
            source: if error.is_some() && !client_sends {
                None
            } else {
                attach.source.clone()
            },
            target: if error.is_some() && client_sends {
                None
            } else {
                attach.target.clone()
            },
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: if client_sends { None } else { Some(0) },
            max_message_size: Some(self.config.max_message_size),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        // A session receiver is answered once its session is accepted, which may take a while.
        let accepting = match &kind {
            Some(Kind::SessionOut { queue, .. }) => Some((queue.clone(), reply)),
            _ => {
                self.send(channel, &reply)?;
                None
            }
        };
        let Some(kind) = kind else {
            return self.detach_with(channel, handle, error);
        };
        self.next_link_id += 1;
        let link = Link {
            id: self.next_link_id,
            kind,
            delivery_count: 0,
            credit: 0,
            pending: VecDeque::new(),
            fetching: None,
            accepting: None,
            next_tag: 0,
            granted: 0,
            partial: None,
            stores: None,
        };
        let Some(session) = self.sessions.get_mut(&channel) else {
            bail!("attach on channel {channel}, which has no session");
        };
        if let Some(old) = session.links.insert(handle, link) {
            self.retire_link(old);
        }
        if client_sends {
            self.grant_credit(channel, handle)?;
        }
        if let Some((queue, reply)) = accepting {
            self.accept_session(channel, handle, queue, &attach, reply);
        }
        Ok(())
    }

    /// Decides what a link to `path` is, creating the queue it names if needed.
    async fn classify(&self, path: &str, client_sends: bool, attach: &Attach) -> Result<Kind, AmqpErrorInfo> {
        let node = if path == "$cbs" {
            Some(Node::Cbs)
        } else if let Some(entity) = path.strip_suffix(MANAGEMENT_SUFFIX) {
            let (entity, dead_letter) = match entity.strip_suffix(DEAD_LETTER_QUEUE_SUFFIX) {
                Some(entity) => (entity, true),
                None => (entity, false),
            };
            // The whole path: a token for `<entity>/$management` alone (the SDKs ask for one
            // before a schedule or peek) covers it, and a token for the entity covers it too.
            self.authorize(path)?;
            let entity = self.resolve(entity).await?;
            Some(Node::Management {
                queue: entity.name().to_owned(),
                dead_letter,
            })
        } else {
            None
        };
        if let Some(node) = node {
            return Ok(if client_sends {
                Kind::NodeIn { node }
            } else {
                let address = attach.target.as_deref().and_then(|target| match target {
                    TargetArchetype::Target(target) => target.address.clone(),
                    #[allow(unreachable_patterns)]
                    _ => None,
                });
                Kind::NodeOut { node, address }
            });
        }
        let (entity, dead_letter) = match path.strip_suffix(DEAD_LETTER_QUEUE_SUFFIX) {
            Some(entity) => (entity, true),
            None => (path, false),
        };
        self.authorize(path)?;
        let entity = self.resolve(entity).await?;
        if client_sends {
            if dead_letter {
                return Err(amqp_error(
                    ErrorCondition::AmqpError(AmqpError::NotAllowed),
                    "a dead-letter queue cannot be sent to",
                ));
            }
            let entity = entity.sendable()?;
            // A send-via link: attached to the via queue, delivering to the destination.
            if let Some(destination) = transactions::transfer_destination(attach.properties.as_ref()) {
                let destination = entity_path(&destination);
                self.authorize(&destination)?;
                let destination = self.resolve(&destination).await?.sendable()?;
                return Ok(Kind::QueueIn {
                    queue: destination.name().to_owned(),
                });
            }
            return Ok(Kind::QueueIn {
                queue: entity.name().to_owned(),
            });
        }
        let entity = if dead_letter { entity } else { entity.receivable()? };
        if dead_letter && matches!(entity, Entity::Topic(_)) {
            return Err(amqp_error(
                ErrorCondition::AmqpError(AmqpError::NotAllowed),
                "a topic has no dead-letter queue: each subscription has its own",
            ));
        }
        let queue = entity.name().to_owned();
        let receive_and_delete = attach.snd_settle_mode == SenderSettleMode::Settled;
        let requires_session = matches!(entity, Entity::Queue(_))
            && !dead_letter
            && self
                .queue
                .queue_settings(&queue)
                .is_some_and(|settings| settings.requires_session);
        if session_links::requested_session(attach)?.is_some() {
            session_links::may_receive_sessions(path, requires_session)?;
            return Ok(Kind::SessionOut {
                queue,
                receive_and_delete,
                session: None,
            });
        }
        session_links::may_receive_without_session(&queue, requires_session)?;
        Ok(Kind::QueueOut {
            queue,
            dead_letter,
            receive_and_delete,
        })
    }

    /// Whether this connection's grants cover `entity` now.
    fn authorize(&self, entity: &str) -> Result<(), AmqpErrorInfo> {
        if self.grants.allows(entity, sas::now_unix_secs()) {
            Ok(())
        } else {
            Err(auth::unauthorized(entity))
        }
    }

    /// What `path` names (`entities.rs`), creating the queue it names if needed.
    async fn resolve(&self, path: &str) -> Result<Entity, AmqpErrorInfo> {
        addresses::resolve(&self.queue, &self.config, path).await
    }

    /// Tops a client sender's credit back up to [`SENDER_CREDIT`].
    pub(super) fn grant_credit(&mut self, channel: u16, handle: u32) -> anyhow::Result<()> {
        let Some(session) = self.sessions.get_mut(&channel) else {
            return Ok(());
        };
        let next_incoming_id = session.next_incoming_id;
        let next_outgoing_id = session.next_outgoing_id;
        let Some(link) = session.links.get_mut(&handle) else {
            return Ok(());
        };
        link.granted = SENDER_CREDIT;
        let flow = Flow {
            next_incoming_id: Some(next_incoming_id),
            incoming_window: SESSION_WINDOW,
            next_outgoing_id,
            outgoing_window: SESSION_WINDOW,
            handle: Some(Handle(handle)),
            delivery_count: Some(link.delivery_count),
            link_credit: Some(SENDER_CREDIT),
            available: None,
            drain: false,
            echo: false,
            properties: None,
        };
        self.send(channel, &flow)
    }

    pub(super) fn on_flow(&mut self, channel: u16, flow: Flow) -> anyhow::Result<()> {
        let Some(handle) = flow.handle.map(|handle| handle.0) else {
            // A session-level flow: our windows are wide enough not to need it.
            if flow.echo {
                self.send_session_flow(channel)?;
            }
            return Ok(());
        };
        let Some(link) = self
            .sessions
            .get_mut(&channel)
            .and_then(|session| session.links.get_mut(&handle))
        else {
            return Ok(());
        };
        if matches!(link.kind, Kind::QueueIn { .. } | Kind::NodeIn { .. }) {
            // The client sends on this link: its flow only reports its state.
            link.delivery_count = flow.delivery_count.unwrap_or(link.delivery_count);
            if flow.echo {
                self.grant_credit(channel, handle)?;
            }
            return Ok(());
        }
        // Credit per AMQP 1.0 2.6.7: the receiver's delivery count plus its credit, less ours.
        let their_count = flow.delivery_count.unwrap_or(0);
        let limit = their_count.wrapping_add(flow.link_credit.unwrap_or(0));
        link.credit = limit.wrapping_sub(link.delivery_count);
        if link.credit > u32::MAX / 2 {
            link.credit = 0;
        }
        if link.accepting.is_some() {
            // Our attach is not out yet: the credit is used once the session is accepted.
            return Ok(());
        }
        self.flush(channel, handle)?;
        let Some(link) = self.link(channel, handle) else {
            return Ok(());
        };
        if flow.drain {
            // Use up the credit without messages: release the ones locked but not sent.
            if let Some(fetching) = link.fetching.take() {
                fetching.cancel();
            }
            let locked: Vec<ReceivedMessage> = link.pending.drain(..).filter_map(|pending| pending.lock).collect();
            link.delivery_count = link.delivery_count.wrapping_add(link.credit);
            link.credit = 0;
            release(&self.queue, locked);
            self.send_link_flow(channel, handle, true)?;
        } else if flow.echo {
            self.send_link_flow(channel, handle, false)?;
        }
        self.fetch(channel, handle);
        Ok(())
    }

    fn send_session_flow(&mut self, channel: u16) -> anyhow::Result<()> {
        let Some(session) = self.sessions.get(&channel) else {
            return Ok(());
        };
        let flow = Flow {
            next_incoming_id: Some(session.next_incoming_id),
            incoming_window: SESSION_WINDOW,
            next_outgoing_id: session.next_outgoing_id,
            outgoing_window: SESSION_WINDOW,
            handle: None,
            delivery_count: None,
            link_credit: None,
            available: None,
            drain: false,
            echo: false,
            properties: None,
        };
        self.send(channel, &flow)
    }

    fn send_link_flow(&mut self, channel: u16, handle: u32, drain: bool) -> anyhow::Result<()> {
        let Some(session) = self.sessions.get(&channel) else {
            return Ok(());
        };
        let Some(link) = session.links.get(&handle) else {
            return Ok(());
        };
        let flow = Flow {
            next_incoming_id: Some(session.next_incoming_id),
            incoming_window: SESSION_WINDOW,
            next_outgoing_id: session.next_outgoing_id,
            outgoing_window: SESSION_WINDOW,
            handle: Some(Handle(handle)),
            delivery_count: Some(link.delivery_count),
            link_credit: Some(link.credit),
            available: Some(u32::try_from(link.pending.len()).unwrap_or(u32::MAX)),
            drain,
            echo: false,
            properties: None,
        };
        self.send(channel, &flow)
    }
}
