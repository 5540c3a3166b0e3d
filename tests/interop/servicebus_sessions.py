#!/usr/bin/env python3
"""Drives `sagahost broker`'s Service Bus sessions with the official Azure Service Bus SDK for Python.

Usage: servicebus_sessions.py CONNECTION_STRING [CHECK ...]

Runs every session check (or the named checks), prints one line per check, then a
`N passed, N failed` line, and exits non-zero if any check failed.

A queue created on first use has no sessions, so each check uses a session-enabled queue of its
own that the broker must be configured with (BrokerConfig::queues, as
crates/broker/tests/interop_sessions.rs starts it): `sessions-<check>` for every check below, with
a lock duration of 5 s. The refusal check also uses the plain queue `sessions-plain`, which the
broker creates on first use.
"""

import datetime
import sys
import time
import traceback

from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import (
    OperationTimeoutError,
    ServiceBusError,
    SessionCannotBeLockedError,
)

WAIT = 5  # seconds a receive waits for its first message


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def send(client, queue, messages):
    """Sends (session id, body) pairs."""
    with client.get_queue_sender(queue) as sender:
        sender.send_messages([ServiceBusMessage(body, session_id=session) for session, body in messages])


def receive_all(receiver, count):
    """Receives until `count` messages arrived or 10 s passed."""
    got = []
    deadline = time.time() + 10
    while len(got) < count and time.time() < deadline:
        got.extend(receiver.receive_messages(max_message_count=count - len(got), max_wait_time=WAIT))
    return got


def next_available_in_order(client):
    queue = "sessions-next-available-in-order"
    send(client, queue, [("s-1", "first"), ("s-2", "other"), ("s-1", "second"), ("s-1", "third")])
    with client.get_queue_receiver(queue, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=WAIT) as receiver:
        session = receiver.session
        check(session.session_id == "s-1", f"the oldest message's session, got {session.session_id!r}")
        now = datetime.datetime.now(datetime.timezone.utc)
        check(session.locked_until_utc is not None and session.locked_until_utc > now, f"locked until {session.locked_until_utc}")
        messages = receive_all(receiver, 3)
        bodies = [str(message) for message in messages]
        check(bodies == ["first", "second", "third"], f"bodies {bodies}")
        check(all(message.session_id == "s-1" for message in messages), "every message carries its session id")
        for message in messages:
            receiver.complete_message(message)
    with client.get_queue_receiver(queue, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=WAIT) as receiver:
        check(receiver.session.session_id == "s-2", f"then the other session, got {receiver.session.session_id!r}")
        [message] = receive_all(receiver, 1)
        check(str(message) == "other", f"body {message}")
        receiver.complete_message(message)


def named_session_state_and_renew(client):
    queue = "sessions-named-session-state-and-renew"
    send(client, queue, [("order-7", "created"), ("order-8", "elsewhere")])
    with client.get_queue_receiver(queue, session_id="order-7", max_wait_time=WAIT) as receiver:
        session = receiver.session
        check(session.session_id == "order-7", f"session {session.session_id!r}")
        check(session.get_state() is None, "no state yet")
        session.set_state("step-1")
        state = session.get_state()
        check(state == b"step-1", f"state {state!r}")
        before = session.locked_until_utc
        time.sleep(1)
        renewed = session.renew_lock()
        check(renewed > before, f"renewed until {renewed}, was {before}")
        check(session.locked_until_utc == renewed, "the session's lock time follows the renewal")
        peeked = [str(message) for message in receiver.peek_messages(max_message_count=5)]
        check(peeked == ["created"], f"peeked only the session's messages, got {peeked}")
        [message] = receive_all(receiver, 1)
        check(str(message) == "created" and message.session_id == "order-7", f"message {message} of {message.session_id}")
        receiver.complete_message(message)
        session.set_state(None)
        check(session.get_state() is None, "state cleared")


def competing_receivers(client):
    queue = "sessions-competing-receivers"
    send(client, queue, [("s-a", "a"), ("s-b", "b")])
    with client.get_queue_receiver(queue, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=WAIT) as one:
        with client.get_queue_receiver(queue, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=WAIT) as two:
            held = sorted([one.session.session_id, two.session.session_id])
            check(held == ["s-a", "s-b"], f"sessions {held}")
            try:
                with client.get_queue_receiver(queue, session_id="s-a", max_wait_time=WAIT) as rival:
                    rival.receive_messages(max_message_count=1, max_wait_time=1)
                raise AssertionError("a session held by another receiver was locked")
            except SessionCannotBeLockedError:
                pass
            for receiver in (one, two):
                [message] = receive_all(receiver, 1)
                check(message.session_id == receiver.session.session_id, "each gets its own session's message")
                receiver.complete_message(message)
    try:
        with client.get_queue_receiver(queue, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1) as receiver:
            receiver.receive_messages(max_message_count=1, max_wait_time=1)
        raise AssertionError("a session was accepted from an empty queue")
    except OperationTimeoutError:
        pass


def refusals(client):
    queue = "sessions-refusals"
    try:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages(ServiceBusMessage("no session"))
        raise AssertionError("a message without a session id was taken")
    except ServiceBusError as error:
        check("SessionId" in str(error), f"error {error!r}")
    try:
        with client.get_queue_receiver(queue, max_wait_time=1) as receiver:
            receiver.receive_messages(max_message_count=1, max_wait_time=1)
        raise AssertionError("a receiver without a session was let in")
    except ServiceBusError as error:
        check("requires sessions" in str(error), f"error {error!r}")
    try:
        with client.get_queue_receiver("sessions-plain", session_id="s-1", max_wait_time=1) as receiver:
            receiver.receive_messages(max_message_count=1, max_wait_time=1)
        raise AssertionError("a session receiver on a queue without sessions was let in")
    except ServiceBusError as error:
        check("does not require sessions" in str(error), f"error {error!r}")


CHECKS = [
    ("next-available-in-order", next_available_in_order),
    ("named-session-state-and-renew", named_session_state_and_renew),
    ("competing-receivers", competing_receivers),
    ("refusals", refusals),
]


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    connection_string = sys.argv[1]
    wanted = set(sys.argv[2:])
    unknown = wanted - {name for name, _ in CHECKS}
    if unknown:
        print(f"unknown checks: {sorted(unknown)}", file=sys.stderr)
        return 2
    passed = failed = 0
    for name, run in CHECKS:
        if wanted and name not in wanted:
            continue
        started = time.time()
        try:
            with ServiceBusClient.from_connection_string(connection_string) as client:
                run(client)
        except Exception as error:  # pylint: disable=broad-except
            failed += 1
            print(f"FAIL {name} ({time.time() - started:.1f}s): {error!r}", flush=True)
            traceback.print_exc(file=sys.stderr)
        else:
            passed += 1
            print(f"ok   {name} ({time.time() - started:.1f}s)", flush=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
