#!/usr/bin/env python3
"""Drives `sagahost broker` with the official Azure Service Bus SDK for Python.

Usage: servicebus_sdk.py CONNECTION_STRING [CHECK ...]

Runs every queue check (or the named checks) against the broker the connection string points at,
each on a queue of its own (the broker creates queues on first use), prints one line per check,
then a `N passed, N failed` line, and exits non-zero if any check failed.

The topic checks (TOPIC_CHECKS) run only when named: a broker creates no topic on first use, so
they need the topic `interop-topic` configured with the subscriptions `all` (the $Default rule),
`creates` (SQL filter `kind = 'create'`), `eu` (correlation filter on the property
`region = 'eu'`) and `greetings` (SQL filter `sys.Label = 'hello'`), as
crates/broker/tests/interop_topics.rs starts the broker.
"""

import datetime
import sys
import time
import traceback
import uuid

from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)

WAIT = 5  # seconds a receive waits for its first message


def fresh_queue(name):
    return f"{name}-{uuid.uuid4().hex[:8]}"


def receive_one(client, queue, **kwargs):
    with client.get_queue_receiver(queue, max_wait_time=WAIT, **kwargs) as receiver:
        messages = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
        return receiver, messages


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def send_receive_complete(client):
    queue = fresh_queue("send")
    with client.get_queue_sender(queue) as sender:
        sender.send_messages(
            ServiceBusMessage(
                "hello",
                message_id="m-1",
                correlation_id="c-1",
                content_type="text/plain",
                subject="greeting",
                application_properties={"kind": "test", "n": 7},
            )
        )
    with client.get_queue_receiver(queue, max_wait_time=WAIT) as receiver:
        messages = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
        check(len(messages) == 1, f"expected 1 message, got {len(messages)}")
        msg = messages[0]
        check(str(msg) == "hello", f"body {str(msg)!r}")
        check(msg.message_id == "m-1", f"message id {msg.message_id!r}")
        check(msg.correlation_id == "c-1", f"correlation id {msg.correlation_id!r}")
        check(msg.content_type == "text/plain", f"content type {msg.content_type!r}")
        check(msg.subject == "greeting", f"subject {msg.subject!r}")
        props = {k.decode() if isinstance(k, bytes) else k: v for k, v in msg.application_properties.items()}
        kind = props.get("kind")
        kind = kind.decode() if isinstance(kind, bytes) else kind
        check(kind == "test" and props.get("n") == 7, f"application properties {props!r}")
        check(msg.lock_token is not None, "no lock token")
        check(msg.sequence_number is not None and msg.sequence_number >= 1, f"sequence {msg.sequence_number!r}")
        check(msg.enqueued_time_utc is not None, "no enqueued time")
        now = datetime.datetime.now(datetime.timezone.utc)
        check(msg.locked_until_utc is not None and msg.locked_until_utc > now, f"locked until {msg.locked_until_utc}")
        check(msg.delivery_count == 0, f"delivery count {msg.delivery_count}")
        receiver.complete_message(msg)
        again = receiver.receive_messages(max_message_count=1, max_wait_time=1)
        check(again == [], "a completed message came back")


def batch_send(client):
    queue = fresh_queue("batch")
    with client.get_queue_sender(queue) as sender:
        batch = sender.create_message_batch()
        for i in range(5):
            batch.add_message(ServiceBusMessage(f"b{i}"))
        sender.send_messages(batch)
        sender.send_messages([ServiceBusMessage("l0"), ServiceBusMessage("l1")])
    bodies = []
    with client.get_queue_receiver(queue, max_wait_time=WAIT) as receiver:
        deadline = time.time() + WAIT * 2
        while len(bodies) < 7 and time.time() < deadline:
            for msg in receiver.receive_messages(max_message_count=10, max_wait_time=WAIT):
                bodies.append(str(msg))
                receiver.complete_message(msg)
    check(sorted(bodies) == sorted([f"b{i}" for i in range(5)] + ["l0", "l1"]), f"bodies {bodies!r}")


def schedule(client):
    queue = fresh_queue("schedule")
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=3)
    with client.get_queue_sender(queue) as sender:
        numbers = sender.schedule_messages(ServiceBusMessage("later"), at)
        check(len(numbers) == 1, f"sequence numbers {numbers!r}")
        cancelled = sender.schedule_messages([ServiceBusMessage("never")], at)
        sender.cancel_scheduled_messages(cancelled)
        # A plain send with a scheduled time is scheduled too.
        sender.send_messages(ServiceBusMessage("later-too", scheduled_enqueue_time_utc=at))
    with client.get_queue_receiver(queue, max_wait_time=1) as receiver:
        peeked = receiver.peek_messages(max_message_count=10, sequence_number=1)
        check(sorted(str(m) for m in peeked) == ["later", "later-too"], f"peeked {[str(m) for m in peeked]!r}")
        check(peeked[0].scheduled_enqueue_time_utc is not None, "no scheduled time on a peeked message")
        early = receiver.receive_messages(max_message_count=1, max_wait_time=1)
        check(early == [], "a scheduled message arrived early")
        got = []
        deadline = time.time() + 10
        while len(got) < 2 and time.time() < deadline:
            for msg in receiver.receive_messages(max_message_count=2, max_wait_time=WAIT):
                got.append(str(msg))
                receiver.complete_message(msg)
        check(sorted(got) == ["later", "later-too"], f"received {got!r}")


def abandon(client):
    queue = fresh_queue("abandon")
    with client.get_queue_sender(queue) as sender:
        sender.send_messages(ServiceBusMessage("again"))
    with client.get_queue_receiver(queue, max_wait_time=WAIT) as receiver:
        first = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
        check(len(first) == 1, "nothing received")
        count = first[0].delivery_count
        receiver.abandon_message(first[0])
        second = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
        check(len(second) == 1, "the abandoned message did not come back")
        check(str(second[0]) == "again", f"body {str(second[0])!r}")
        check(second[0].delivery_count == count + 1, f"delivery count {count} then {second[0].delivery_count}")
        receiver.complete_message(second[0])


def dead_letter(client):
    queue = fresh_queue("deadletter")
    with client.get_queue_sender(queue) as sender:
        sender.send_messages(ServiceBusMessage("poison"))
    with client.get_queue_receiver(queue, max_wait_time=WAIT) as receiver:
        messages = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
        check(len(messages) == 1, "nothing received")
        receiver.dead_letter_message(messages[0], reason="BadInput", error_description="could not parse")
        check(receiver.receive_messages(max_message_count=1, max_wait_time=1) == [], "still in the queue")
    with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=WAIT) as dlq:
        peeked = dlq.peek_messages(max_message_count=5)
        check([str(m) for m in peeked] == ["poison"], f"peeked {[str(m) for m in peeked]!r}")
        check(peeked[0].dead_letter_reason == "BadInput", f"peeked reason {peeked[0].dead_letter_reason!r}")
        letters = dlq.receive_messages(max_message_count=1, max_wait_time=WAIT)
        check(len(letters) == 1, "nothing in the dead-letter queue")
        letter = letters[0]
        check(str(letter) == "poison", f"body {str(letter)!r}")
        check(letter.dead_letter_reason == "BadInput", f"reason {letter.dead_letter_reason!r}")
        check(
            letter.dead_letter_error_description == "could not parse",
            f"description {letter.dead_letter_error_description!r}",
        )
        check(letter.dead_letter_source == queue, f"source {letter.dead_letter_source!r}")
        dlq.complete_message(letter)
        check(dlq.receive_messages(max_message_count=1, max_wait_time=1) == [], "the dead letter came back")


def renew_lock(client):
    queue = fresh_queue("renew")
    with client.get_queue_sender(queue) as sender:
        sender.send_messages(ServiceBusMessage("long job"))
    with client.get_queue_receiver(queue, max_wait_time=WAIT) as receiver:
        messages = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
        check(len(messages) == 1, "nothing received")
        msg = messages[0]
        before = msg.locked_until_utc
        time.sleep(1.1)
        after = receiver.renew_message_lock(msg)
        check(after > before, f"locked until {before} then {after}")
        receiver.complete_message(msg)


def peek(client):
    queue = fresh_queue("peek")
    with client.get_queue_sender(queue) as sender:
        sender.send_messages([ServiceBusMessage(f"p{i}") for i in range(3)])
    with client.get_queue_receiver(queue, max_wait_time=WAIT) as receiver:
        peeked = receiver.peek_messages(max_message_count=10)
        check([str(m) for m in peeked] == ["p0", "p1", "p2"], f"peeked {[str(m) for m in peeked]!r}")
        numbers = [m.sequence_number for m in peeked]
        check(numbers == sorted(numbers) and len(set(numbers)) == 3, f"sequence numbers {numbers!r}")
        more = receiver.peek_messages(max_message_count=10)
        check(more == [], f"a second peek continues after the last: {[str(m) for m in more]!r}")
        # Peeking locks nothing: all three can still be received.
        got = []
        deadline = time.time() + WAIT * 2
        while len(got) < 3 and time.time() < deadline:
            for msg in receiver.receive_messages(max_message_count=3, max_wait_time=WAIT):
                got.append(str(msg))
                receiver.complete_message(msg)
        check(sorted(got) == ["p0", "p1", "p2"], f"received {got!r}")


def receive_and_delete(client):
    queue = fresh_queue("rad")
    with client.get_queue_sender(queue) as sender:
        sender.send_messages([ServiceBusMessage("gone-1"), ServiceBusMessage("gone-2")])
    got = []
    with client.get_queue_receiver(
        queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, max_wait_time=WAIT
    ) as receiver:
        deadline = time.time() + WAIT * 2
        while len(got) < 2 and time.time() < deadline:
            got.extend(str(m) for m in receiver.receive_messages(max_message_count=2, max_wait_time=WAIT))
    check(sorted(got) == ["gone-1", "gone-2"], f"received {got!r}")
    with client.get_queue_receiver(queue, max_wait_time=1) as receiver:
        check(receiver.peek_messages(max_message_count=10) == [], "a received-and-deleted message is still there")


CHECKS = [
    ("send-receive-complete", send_receive_complete),
    ("batch-send", batch_send),
    ("schedule-and-cancel", schedule),
    ("abandon-redelivers-with-count+1", abandon),
    ("dead-letter-to-dlq-with-reason", dead_letter),
    ("renew-lock", renew_lock),
    ("peek", peek),
    ("receive-and-delete", receive_and_delete),
]


TOPIC = "interop-topic"


def text_properties(msg):
    """A received message's application properties with bytes keys and values decoded."""
    decode = lambda v: v.decode() if isinstance(v, bytes) else v  # noqa: E731
    return {decode(k): decode(v) for k, v in (msg.application_properties or {}).items()}


def drain_subscription(client, subscription, run, sub_queue=None):
    """Receives and completes every message now in a subscription (or its dead-letter queue);
    returns the sorted bodies of those sent by this run."""
    got = []
    with client.get_subscription_receiver(TOPIC, subscription, sub_queue=sub_queue, max_wait_time=2) as receiver:
        while True:
            batch = receiver.receive_messages(max_message_count=10, max_wait_time=2)
            if not batch:
                return sorted(got)
            for msg in batch:
                if text_properties(msg).get("run") == run:
                    got.append(str(msg))
                receiver.complete_message(msg)


def topic_fan_out_with_filters(client):
    run = uuid.uuid4().hex
    with client.get_topic_sender(TOPIC) as sender:
        sender.send_messages(
            [
                ServiceBusMessage("create-eu", application_properties={"run": run, "kind": "create", "region": "eu"}),
                ServiceBusMessage("update-eu", application_properties={"run": run, "kind": "update", "region": "eu"}),
                ServiceBusMessage("create-us", application_properties={"run": run, "kind": "create", "region": "us"}),
            ]
        )
        sender.send_messages(
            ServiceBusMessage("single", subject="hello", application_properties={"run": run, "kind": "other"})
        )
    got = drain_subscription(client, "all", run)
    check(got == ["create-eu", "create-us", "single", "update-eu"], f"`all` got {got!r}")
    got = drain_subscription(client, "greetings", run)
    check(got == ["single"], f"`greetings` got {got!r}")
    got = drain_subscription(client, "creates", run)
    check(got == ["create-eu", "create-us"], f"`creates` got {got!r}")
    got = drain_subscription(client, "eu", run)
    check(got == ["create-eu", "update-eu"], f"`eu` got {got!r}")


def subscription_dead_letter(client):
    run = uuid.uuid4().hex
    with client.get_topic_sender(TOPIC) as sender:
        sender.send_messages(ServiceBusMessage("poison", application_properties={"run": run, "kind": "create"}))
    with client.get_subscription_receiver(TOPIC, "creates", max_wait_time=WAIT) as receiver:
        messages = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
        check(len(messages) == 1 and str(messages[0]) == "poison", f"received {[str(m) for m in messages]!r}")
        receiver.dead_letter_message(messages[0], reason="BadInput", error_description="could not parse")
        check(receiver.receive_messages(max_message_count=1, max_wait_time=1) == [], "still in the subscription")
    with client.get_subscription_receiver(
        TOPIC, "creates", sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=WAIT
    ) as dlq:
        letters = dlq.receive_messages(max_message_count=1, max_wait_time=WAIT)
        check(len(letters) == 1, "nothing in the subscription's dead-letter queue")
        letter = letters[0]
        check(str(letter) == "poison", f"body {str(letter)!r}")
        check(letter.dead_letter_reason == "BadInput", f"reason {letter.dead_letter_reason!r}")
        check(
            letter.dead_letter_error_description == "could not parse",
            f"description {letter.dead_letter_error_description!r}",
        )
        dlq.complete_message(letter)
        check(dlq.receive_messages(max_message_count=1, max_wait_time=1) == [], "the dead letter came back")
    # The other subscriptions' copies are their own.
    got = drain_subscription(client, "all", run)
    check(got == ["poison"], f"`all` got {got!r}")
    check(drain_subscription(client, "all", run, ServiceBusSubQueue.DEAD_LETTER) == [], "`all` dead-lettered too")


def topic_schedule_and_subscription_lock(client):
    run = uuid.uuid4().hex
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=60)
    props = {"run": run, "kind": "create"}
    with client.get_topic_sender(TOPIC) as sender:
        numbers = sender.schedule_messages(ServiceBusMessage("later", application_properties=props), at)
        check(len(numbers) == 1, f"sequence numbers {numbers!r}")
        with client.get_subscription_receiver(TOPIC, "creates", max_wait_time=1) as receiver:
            peeked = receiver.peek_messages(max_message_count=10, sequence_number=numbers[0])
            mine = [m for m in peeked if text_properties(m).get("run") == run]
            check([str(m) for m in mine] == ["later"], f"peeked {[str(m) for m in mine]!r}")
            check(mine[0].scheduled_enqueue_time_utc is not None, "no scheduled time on the peeked copy")
        sender.cancel_scheduled_messages(numbers)
        with client.get_subscription_receiver(TOPIC, "all", max_wait_time=1) as receiver:
            peeked = receiver.peek_messages(max_message_count=10, sequence_number=numbers[0])
            check(all(text_properties(m).get("run") != run for m in peeked), "a cancelled copy is still there")
        sender.send_messages(ServiceBusMessage("now", application_properties=props))
    with client.get_subscription_receiver(TOPIC, "creates", max_wait_time=WAIT) as receiver:
        messages = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
        check(len(messages) == 1 and str(messages[0]) == "now", f"received {[str(m) for m in messages]!r}")
        before = messages[0].locked_until_utc
        time.sleep(1.1)
        after = receiver.renew_message_lock(messages[0])
        check(after > before, f"locked until {before} then {after}")
        receiver.complete_message(messages[0])
    check(drain_subscription(client, "all", run) == ["now"], "`all` has its copy")


TOPIC_CHECKS = [
    ("topic-fan-out-with-filters", topic_fan_out_with_filters),
    ("subscription-dead-letter", subscription_dead_letter),
    ("topic-schedule-and-subscription-lock", topic_schedule_and_subscription_lock),
]


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    connection_string = sys.argv[1]
    wanted = set(sys.argv[2:])
    passed = failed = 0
    unknown = wanted - {name for name, _ in CHECKS + TOPIC_CHECKS}
    if unknown:
        print(f"unknown checks: {sorted(unknown)}", file=sys.stderr)
        return 2
    for name, run in CHECKS + TOPIC_CHECKS:
        # Topic checks need topics configured on the broker: they run only when named.
        if (wanted and name not in wanted) or (not wanted and (name, run) in TOPIC_CHECKS):
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
