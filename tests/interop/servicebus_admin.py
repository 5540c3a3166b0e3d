#!/usr/bin/env python3
"""Drives the entity-management endpoint of `sagahost broker` with the official Azure Service Bus
SDK for Python's `ServiceBusAdministrationClient`, and its AMQP endpoint with `ServiceBusClient`.

Usage: servicebus_admin.py AMQP_CONNECTION_STRING ADMIN_CONNECTION_STRING [CHECK ...]

The admin connection string is the AMQP one with the management port in its `Endpoint`. The
admin client of azure-servicebus 7.15.0 always speaks `https://`, even with
`UseDevelopmentEmulator=true` (that only turns TLS off for AMQP), and the broker serves plain HTTP
on loopback: so the client is given an azure-core transport that sends each request over
`http://` instead (`PlainHttpTransport`), the one change an application needs.

Runs every check (or the named ones), each on entities of its own, prints one line per check, then a
`N passed, N failed` line, and exits non-zero if any check failed.
"""

import datetime
import sys
import time
import traceback
import uuid

from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.core.pipeline.transport import RequestsTransport
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.management import (
    CorrelationRuleFilter,
    FalseRuleFilter,
    ServiceBusAdministrationClient,
    SqlRuleAction,
    SqlRuleFilter,
    TrueRuleFilter,
)

WAIT = 5  # seconds a receive waits for its first message


class PlainHttpTransport(RequestsTransport):
    """Sends the admin client's `https://` requests over plain `http://`."""

    def send(self, request, **kwargs):
        if request.url.startswith("https://"):
            request.url = "http://" + request.url[len("https://") :]
        return super().send(request, **kwargs)


def admin_client(connection_string):
    return ServiceBusAdministrationClient.from_connection_string(connection_string, transport=PlainHttpTransport())


def fresh_queue(name):
    return f"{name}-{uuid.uuid4().hex[:8]}"


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def queue_exists(admin, name):
    """What .NET's `QueueExistsAsync` answers: whether getting the queue finds it."""
    try:
        admin.get_queue(name)
        return True
    except ResourceNotFoundError:
        return False


def create_queue_with_settings(admin, _amqp):
    name = fresh_queue("create")
    created = admin.create_queue(
        name,
        lock_duration=datetime.timedelta(seconds=45),
        max_delivery_count=3,
        default_message_time_to_live=datetime.timedelta(hours=1),
        dead_lettering_on_message_expiration=True,
    )
    check(created.name == name, f"name {created.name!r}")
    check(created.lock_duration == datetime.timedelta(seconds=45), f"lock duration {created.lock_duration!r}")
    check(created.max_delivery_count == 3, f"max delivery count {created.max_delivery_count!r}")
    check(
        created.default_message_time_to_live == datetime.timedelta(hours=1),
        f"time to live {created.default_message_time_to_live!r}",
    )
    check(created.requires_session is False, f"requires session {created.requires_session!r}")
    try:
        admin.create_queue(name)
        raise AssertionError("creating it again did not raise ResourceExistsError")
    except ResourceExistsError:
        pass


def get_queue(admin, _amqp):
    name = fresh_queue("get")
    admin.create_queue(name, max_delivery_count=7)
    got = admin.get_queue(name)
    check(got.name == name, f"name {got.name!r}")
    check(got.max_delivery_count == 7, f"max delivery count {got.max_delivery_count!r}")
    check(got.status == "Active", f"status {got.status!r}")
    check(got.max_size_in_megabytes == 1024, f"max size {got.max_size_in_megabytes!r}")
    try:
        admin.get_queue(fresh_queue("missing"))
        raise AssertionError("getting a missing queue did not raise ResourceNotFoundError")
    except ResourceNotFoundError:
        pass


def runtime_counts(admin, amqp):
    name = fresh_queue("counts")
    admin.create_queue(name)
    with amqp.get_queue_sender(name) as sender:
        sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(3)])
    with amqp.get_queue_receiver(name, max_wait_time=WAIT) as receiver:
        messages = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
        check(len(messages) == 1, "nothing received")
        receiver.dead_letter_message(messages[0], reason="Test", error_description="dead-lettered by the check")
    runtime = admin.get_queue_runtime_properties(name)
    check(runtime.active_message_count == 2, f"active {runtime.active_message_count!r}")
    check(runtime.dead_letter_message_count == 1, f"dead letters {runtime.dead_letter_message_count!r}")
    check(runtime.scheduled_message_count == 0, f"scheduled {runtime.scheduled_message_count!r}")
    check(runtime.transfer_message_count == 0, f"transfer {runtime.transfer_message_count!r}")
    check(runtime.total_message_count == 3, f"total {runtime.total_message_count!r}")
    check(runtime.size_in_bytes > 0, f"size {runtime.size_in_bytes!r}")
    check(runtime.created_at_utc is not None, "no creation time")


def list_queues(admin, _amqp):
    names = {fresh_queue("list") for _ in range(3)}
    for name in names:
        admin.create_queue(name)
    # Pages of 2 make the client follow the feed's `next` link.
    listed = {queue.name for queue in admin.list_queues(max_page_size=2)}
    check(names <= listed, f"missing from the list: {names - listed}")
    runtime = {queue.name: queue for queue in admin.list_queues_runtime_properties()}
    check(all(runtime[name].total_message_count == 0 for name in names), "counts in the runtime list")


def update_queue(admin, _amqp):
    name = fresh_queue("update")
    admin.create_queue(name, max_delivery_count=3)
    queue = admin.get_queue(name)
    queue.max_delivery_count = 5
    queue.lock_duration = datetime.timedelta(seconds=20)
    admin.update_queue(queue)
    got = admin.get_queue(name)
    check(got.max_delivery_count == 5, f"max delivery count {got.max_delivery_count!r}")
    check(got.lock_duration == datetime.timedelta(seconds=20), f"lock duration {got.lock_duration!r}")
    missing = admin.get_queue(name)
    missing.name = fresh_queue("missing")
    try:
        admin.update_queue(missing)
        raise AssertionError("updating a missing queue did not raise ResourceNotFoundError")
    except ResourceNotFoundError:
        pass


def delete_queue(admin, amqp):
    name = fresh_queue("delete")
    admin.create_queue(name)
    with amqp.get_queue_sender(name) as sender:
        sender.send_messages(ServiceBusMessage("gone with the queue"))
    check(queue_exists(admin, name), "the queue does not exist after create")
    admin.delete_queue(name)
    check(not queue_exists(admin, name), "the queue exists after delete")
    try:
        admin.delete_queue(name)
        raise AssertionError("deleting it again did not raise ResourceNotFoundError")
    except ResourceNotFoundError:
        pass


def namespace_properties(admin, _amqp):
    properties = admin.get_namespace_properties()
    check(properties.name, f"name {properties.name!r}")
    check(properties.messaging_sku == "Standard", f"sku {properties.messaging_sku!r}")


def requires_session_kept(admin, _amqp):
    name = fresh_queue("sessions")
    created = admin.create_queue(name, requires_session=True)
    check(created.requires_session is True, f"created with requires session {created.requires_session!r}")
    queue = admin.get_queue(name)
    check(queue.requires_session is True, f"got requires session {queue.requires_session!r}")
    queue.requires_session = False
    try:
        admin.update_queue(queue)
        raise AssertionError("a queue's RequiresSession was changed")
    except HttpResponseError as error:
        check(error.status_code == 400, f"status {error.status_code}")
        check("RequiresSession" in str(error), f"message {error}")


def wrong_key_refused(admin, _amqp):
    connection_string = ADMIN_CONNECTION_STRING.replace("SharedAccessKey=SAS_KEY_VALUE", "SharedAccessKey=wrong")
    with admin_client(connection_string) as wrong:
        try:
            wrong.get_queue("any")
            raise AssertionError("a wrong key was let in")
        except ClientAuthenticationError:
            pass


def expect_error(error_type, operation, what):
    """Runs `operation` and checks it raises `error_type`; returns the error."""
    try:
        operation()
    except error_type as error:
        return error
    raise AssertionError(f"{what} did not raise {error_type.__name__}")


def topic_lifecycle(admin, _amqp):
    name = fresh_queue("topic")
    created = admin.create_topic(name)
    check(created.name == name, f"name {created.name!r}")
    expect_error(ResourceExistsError, lambda: admin.create_topic(name), "creating it again")
    got = admin.get_topic(name)
    check(got.max_size_in_megabytes == 1024, f"max size {got.max_size_in_megabytes!r}")
    check(got.status == "Active", f"status {got.status!r}")
    got.max_size_in_megabytes = 2048
    admin.update_topic(got)
    listed = {topic.name for topic in admin.list_topics(max_page_size=1)}
    check(name in listed, f"{name} not in {listed}")
    admin.delete_topic(name)
    expect_error(ResourceNotFoundError, lambda: admin.get_topic(name), "getting a deleted topic")
    expect_error(ResourceNotFoundError, lambda: admin.delete_topic(name), "deleting it again")


def subscription_lifecycle(admin, _amqp):
    topic = fresh_queue("subs")
    admin.create_topic(topic)
    created = admin.create_subscription(
        topic,
        "mdm",
        lock_duration=datetime.timedelta(seconds=45),
        max_delivery_count=3,
        default_message_time_to_live=datetime.timedelta(hours=1),
        dead_lettering_on_message_expiration=True,
    )
    check(created.name == "mdm", f"name {created.name!r}")
    check(created.lock_duration == datetime.timedelta(seconds=45), f"lock {created.lock_duration!r}")
    check(created.max_delivery_count == 3, f"max delivery count {created.max_delivery_count!r}")
    check(
        created.default_message_time_to_live == datetime.timedelta(hours=1),
        f"time to live {created.default_message_time_to_live!r}",
    )
    expect_error(ResourceExistsError, lambda: admin.create_subscription(topic, "mdm"), "creating it again")
    expect_error(
        ResourceNotFoundError, lambda: admin.create_subscription(fresh_queue("none"), "s"), "a missing topic"
    )
    subscription = admin.get_subscription(topic, "mdm")
    subscription.max_delivery_count = 5
    admin.update_subscription(topic, subscription)
    check(admin.get_subscription(topic, "mdm").max_delivery_count == 5, "update not kept")
    admin.create_subscription(topic, "erp")
    listed = [subscription.name for subscription in admin.list_subscriptions(topic, max_page_size=1)]
    check(listed == ["erp", "mdm"], f"listed {listed}")
    check(admin.get_topic_runtime_properties(topic).subscription_count == 2, "subscription count")
    admin.delete_subscription(topic, "erp")
    expect_error(ResourceNotFoundError, lambda: admin.get_subscription(topic, "erp"), "a deleted subscription")
    error = expect_error(
        HttpResponseError, lambda: admin.create_subscription(topic, "s", requires_session=True), "sessions"
    )
    check(error.status_code == 400 and "RequiresSession" in str(error), f"sessions: {error}")


def rule_lifecycle(admin, _amqp):
    topic = fresh_queue("rules")
    admin.create_topic(topic)
    admin.create_subscription(topic, "mdm")
    default = admin.get_rule(topic, "mdm", "$Default")
    check(isinstance(default.filter, TrueRuleFilter), f"$Default filter {default.filter!r}")
    admin.create_rule(topic, "mdm", "sql", filter=SqlRuleFilter("kind = 'contact'"))
    admin.create_rule(
        topic,
        "mdm",
        "correlation",
        filter=CorrelationRuleFilter(
            correlation_id="c-1", label="Create", reply_to_session_id="r-1", properties={"region": "eu"}
        ),
    )
    admin.create_rule(topic, "mdm", "never", filter=FalseRuleFilter())
    sql = admin.get_rule(topic, "mdm", "sql")
    check(isinstance(sql.filter, SqlRuleFilter), f"sql filter {sql.filter!r}")
    check(sql.filter.sql_expression == "kind = 'contact'", f"expression {sql.filter.sql_expression!r}")
    correlation = admin.get_rule(topic, "mdm", "correlation").filter
    check(isinstance(correlation, CorrelationRuleFilter), f"correlation filter {correlation!r}")
    check(correlation.correlation_id == "c-1" and correlation.label == "Create", f"correlation {correlation!r}")
    check(correlation.properties == {"region": "eu"}, f"properties {correlation.properties!r}")
    check(correlation.reply_to_session_id == "r-1", f"reply-to session {correlation.reply_to_session_id!r}")
    check(isinstance(admin.get_rule(topic, "mdm", "never").filter, FalseRuleFilter), "false filter")
    listed = [rule.name for rule in admin.list_rules(topic, "mdm", max_page_size=2)]
    check(listed == ["$Default", "sql", "correlation", "never"], f"listed {listed}")
    expect_error(ResourceExistsError, lambda: admin.create_rule(topic, "mdm", "sql"), "creating it again")
    error = expect_error(
        HttpResponseError,
        lambda: admin.create_rule(topic, "mdm", "bad", filter=SqlRuleFilter("kind = ")),
        "a filter that does not parse",
    )
    check(error.status_code == 400, f"bad filter: {error}")
    error = expect_error(
        HttpResponseError,
        lambda: admin.create_rule(topic, "mdm", "action", action=SqlRuleAction("SET a = 1")),
        "a SQL action",
    )
    check(error.status_code == 400 and "action" in str(error), f"action: {error}")
    rule = admin.get_rule(topic, "mdm", "sql")
    rule.filter = SqlRuleFilter("kind = 'account'")
    admin.update_rule(topic, "mdm", rule)
    updated = admin.get_rule(topic, "mdm", "sql").filter.sql_expression
    check(updated == "kind = 'account'", f"updated {updated!r}")
    admin.delete_rule(topic, "mdm", "never")
    expect_error(ResourceNotFoundError, lambda: admin.get_rule(topic, "mdm", "never"), "a deleted rule")


def topic_runtime_counts(admin, amqp):
    topic = fresh_queue("tcounts")
    admin.create_topic(topic)
    admin.create_subscription(topic, "all")
    admin.create_subscription(topic, "contacts")
    admin.delete_rule(topic, "contacts", "$Default")
    admin.create_rule(topic, "contacts", "contacts", filter=SqlRuleFilter("kind = 'contact'"))
    with amqp.get_topic_sender(topic) as sender:
        sender.send_messages(
            [
                ServiceBusMessage("c1", application_properties={"kind": "contact"}),
                ServiceBusMessage("c2", application_properties={"kind": "contact"}),
                ServiceBusMessage("a1", application_properties={"kind": "account"}),
            ]
        )
        later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
        sender.schedule_messages(ServiceBusMessage("later", application_properties={"kind": "contact"}), later)
    with amqp.get_subscription_receiver(topic, "contacts", max_wait_time=WAIT) as receiver:
        messages = receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
        check(len(messages) == 1, "nothing received")
        receiver.dead_letter_message(messages[0], reason="Test", error_description="dead-lettered by the check")
    everything = admin.get_subscription_runtime_properties(topic, "all")
    check(everything.active_message_count == 3, f"all: active {everything.active_message_count!r}")
    check(everything.total_message_count == 4, f"all: total {everything.total_message_count!r}")
    contacts = admin.get_subscription_runtime_properties(topic, "contacts")
    check(contacts.active_message_count == 1, f"contacts: active {contacts.active_message_count!r}")
    check(contacts.dead_letter_message_count == 1, f"contacts: dead letters {contacts.dead_letter_message_count!r}")
    check(contacts.total_message_count == 3, f"contacts: total {contacts.total_message_count!r}")
    runtime = admin.get_topic_runtime_properties(topic)
    check(runtime.subscription_count == 2, f"subscriptions {runtime.subscription_count!r}")
    check(runtime.scheduled_message_count == 1, f"scheduled {runtime.scheduled_message_count!r}")
    check(runtime.size_in_bytes > 0, f"size {runtime.size_in_bytes!r}")
    listed = {subscription.name: subscription for subscription in admin.list_subscriptions_runtime_properties(topic)}
    check(listed["all"].active_message_count == 3, "counts in the runtime list")
    admin.delete_topic(topic)
    expect_error(
        ResourceNotFoundError, lambda: admin.get_subscription(topic, "all"), "a subscription of a deleted topic"
    )


CHECKS = [
    ("create-queue-with-settings", create_queue_with_settings),
    ("get-queue", get_queue),
    ("runtime-counts-after-send-and-dead-letter", runtime_counts),
    ("list-queues-paged", list_queues),
    ("update-queue", update_queue),
    ("delete-queue-and-queue-exists", delete_queue),
    ("namespace-properties", namespace_properties),
    ("requires-session-stored-and-unchangeable", requires_session_kept),
    ("wrong-key-refused-with-401", wrong_key_refused),
    ("topic-create-get-update-list-delete", topic_lifecycle),
    ("subscription-create-get-update-list-delete", subscription_lifecycle),
    ("rule-create-get-update-list-delete", rule_lifecycle),
    ("topic-and-subscription-runtime-counts-after-send", topic_runtime_counts),
]

ADMIN_CONNECTION_STRING = ""


def main():
    global ADMIN_CONNECTION_STRING  # pylint: disable=global-statement
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    amqp_connection_string, ADMIN_CONNECTION_STRING = sys.argv[1], sys.argv[2]
    wanted = set(sys.argv[3:])
    passed = failed = 0
    for name, run in CHECKS:
        if wanted and name not in wanted:
            continue
        started = time.time()
        try:
            with admin_client(ADMIN_CONNECTION_STRING) as admin, ServiceBusClient.from_connection_string(
                amqp_connection_string
            ) as amqp:
                run(admin, amqp)
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
