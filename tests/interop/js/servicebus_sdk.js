#!/usr/bin/env node
// Drives `sagahost broker` with the official Azure Service Bus SDK for JavaScript
// (@azure/service-bus, pinned in package-lock.json): the same checks, under the same names, as
// ../servicebus_sdk.py runs with the Python SDK, plus the ways the JavaScript SDK differs.
//
// Usage: node servicebus_sdk.js CONNECTION_STRING [CHECK ...]
//
// Runs every queue check (or the named checks), each on a queue of its own (the broker creates
// queues on first use), prints one line per check, then a `N passed, N failed` line, and exits
// non-zero if any check failed. The topic checks (TOPIC_CHECKS) run only when named: they need
// the topic `interop-topic` configured on the broker as ../servicebus_sdk.py describes and
// crates/broker/tests/interop_topics.rs starts it, plus a subscription `managed` (with the
// $Default rule) whose rules the rule-manager check changes over AMQP.
"use strict";

const crypto = require("node:crypto");
const { ServiceBusClient } = require("@azure/service-bus");

const WAIT = 5000; // ms a receive waits for its first message
// No retries: a check must pass on the first try, and a failure must show at once, not after the
// SDK's default 3 retries of 60 s each.
const RETRY = { maxRetries: 0, timeoutInMs: 10000 };
const CHECK_TIMEOUT = 45000;

const freshQueue = (name) => `${name}-${crypto.randomBytes(4).toString("hex")}`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function check(condition, what) {
  if (!condition) throw new Error(what);
}

/** Receives until `count` messages arrived or 10 s passed; completes each unless told not to. */
async function receiveAll(receiver, count, { complete = true } = {}) {
  const got = [];
  const deadline = Date.now() + 10000;
  while (got.length < count && Date.now() < deadline) {
    for (const message of await receiver.receiveMessages(count - got.length, { maxWaitTimeInMs: WAIT })) {
      got.push(message);
      if (complete) await receiver.completeMessage(message);
    }
  }
  return got;
}

/** A fresh queue holding `messages` (one or an array), and a peek-lock receiver on it. */
async function queueWith(client, name, messages, receiverOptions = {}) {
  const queue = freshQueue(name);
  const sender = client.createSender(queue);
  await sender.sendMessages(messages);
  await sender.close();
  return { queue, receiver: client.createReceiver(queue, receiverOptions) };
}

/** The first message `receiver` gets within WAIT; fails the check when none comes. */
async function receiveOne(receiver, what = "nothing received") {
  const [message] = await receiver.receiveMessages(1, { maxWaitTimeInMs: WAIT });
  check(message, what);
  return message;
}

const bodies = (messages) => messages.map((m) => m.body).sort();
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

async function sendReceiveComplete(client) {
  const { receiver } = await queueWith(client, "send", {
    body: "hello",
    messageId: "m-1",
    correlationId: "c-1",
    contentType: "text/plain",
    subject: "greeting",
    applicationProperties: { kind: "test", n: 7 },
  });
  const message = await receiveOne(receiver);
  check(message.body === "hello", `body ${JSON.stringify(message.body)}`);
  check(message.messageId === "m-1", `message id ${message.messageId}`);
  check(message.correlationId === "c-1", `correlation id ${message.correlationId}`);
  check(message.contentType === "text/plain", `content type ${message.contentType}`);
  check(message.subject === "greeting", `subject ${message.subject}`);
  const props = message.applicationProperties;
  check(props.kind === "test" && props.n === 7, `application properties ${JSON.stringify(props)}`);
  check(message.lockToken, "no lock token");
  check(message.sequenceNumber !== undefined && message.sequenceNumber.toNumber() >= 1, "no sequence number");
  check(message.enqueuedTimeUtc instanceof Date, "no enqueued time");
  check(message.lockedUntilUtc > new Date(), `locked until ${message.lockedUntilUtc}`);
  check(message.deliveryCount === 0, `delivery count ${message.deliveryCount}`);
  await receiver.completeMessage(message);
  const again = await receiver.receiveMessages(1, { maxWaitTimeInMs: 1000 });
  check(again.length === 0, "a completed message came back");
  await receiver.close();
}

async function batchSend(client) {
  const queue = freshQueue("batch");
  const sender = client.createSender(queue);
  const batch = await sender.createMessageBatch();
  for (let i = 0; i < 5; i++) check(batch.tryAddMessage({ body: `b${i}` }), `adding b${i} to the batch`);
  await sender.sendMessages(batch);
  await sender.sendMessages([{ body: "l0" }, { body: "l1" }]);
  await sender.close();
  const receiver = client.createReceiver(queue);
  const got = bodies(await receiveAll(receiver, 7));
  check(same(got, ["b0", "b1", "b2", "b3", "b4", "l0", "l1"]), `bodies ${JSON.stringify(got)}`);
  await receiver.close();
}

async function scheduleAndCancel(client) {
  const queue = freshQueue("schedule");
  const at = new Date(Date.now() + 3000);
  // The first operation on this connection goes to `<queue>/$management`, with a token for
  // that node alone.
  const sender = client.createSender(queue);
  const numbers = await sender.scheduleMessages({ body: "later" }, at);
  check(numbers.length === 1, `sequence numbers ${numbers}`);
  const cancelled = await sender.scheduleMessages([{ body: "never" }], at);
  await sender.cancelScheduledMessages(cancelled);
  // A plain send with a scheduled time is scheduled too.
  await sender.sendMessages({ body: "later-too", scheduledEnqueueTimeUtc: at });
  await sender.close();
  const receiver = client.createReceiver(queue);
  const peeked = await receiver.peekMessages(10);
  check(same(bodies(peeked), ["later", "later-too"]), `peeked ${JSON.stringify(bodies(peeked))}`);
  check(peeked[0].scheduledEnqueueTimeUtc instanceof Date, "no scheduled time on a peeked message");
  const early = await receiver.receiveMessages(1, { maxWaitTimeInMs: 1000 });
  check(early.length === 0, "a scheduled message arrived early");
  const got = bodies(await receiveAll(receiver, 2));
  check(same(got, ["later", "later-too"]), `received ${JSON.stringify(got)}`);
  await receiver.close();
}

async function abandon(client) {
  const { receiver } = await queueWith(client, "abandon", { body: "again" });
  const first = await receiveOne(receiver);
  // The JavaScript SDK abandons with `modified` and no `delivery-failed`; it still counts.
  await receiver.abandonMessage(first);
  const second = await receiveOne(receiver, "the abandoned message did not come back");
  check(second.body === "again", `body ${JSON.stringify(second.body)}`);
  check(
    second.deliveryCount === first.deliveryCount + 1,
    `delivery count ${first.deliveryCount} then ${second.deliveryCount}`,
  );
  await receiver.completeMessage(second);
  await receiver.close();
}

async function deadLetter(client) {
  const { queue, receiver } = await queueWith(client, "deadletter", { body: "poison" });
  const message = await receiveOne(receiver);
  // rhea encodes the dead-letter error's info with string keys.
  await receiver.deadLetterMessage(message, {
    deadLetterReason: "BadInput",
    deadLetterErrorDescription: "could not parse",
  });
  check((await receiver.receiveMessages(1, { maxWaitTimeInMs: 1000 })).length === 0, "still in the queue");
  await receiver.close();
  const dlq = client.createReceiver(queue, { subQueueType: "deadLetter" });
  const peeked = await dlq.peekMessages(5);
  check(same(bodies(peeked), ["poison"]), `peeked ${JSON.stringify(bodies(peeked))}`);
  check(peeked[0].deadLetterReason === "BadInput", `peeked reason ${peeked[0].deadLetterReason}`);
  const letter = await receiveOne(dlq, "nothing in the dead-letter queue");
  check(letter.body === "poison", `body ${JSON.stringify(letter.body)}`);
  check(letter.deadLetterReason === "BadInput", `reason ${letter.deadLetterReason}`);
  check(letter.deadLetterErrorDescription === "could not parse", `description ${letter.deadLetterErrorDescription}`);
  check(letter.deadLetterSource === queue, `source ${letter.deadLetterSource}`);
  await dlq.completeMessage(letter);
  check((await dlq.receiveMessages(1, { maxWaitTimeInMs: 1000 })).length === 0, "the dead letter came back");
  await dlq.close();
}

async function deadLetterWithoutReason(client) {
  const { queue, receiver } = await queueWith(client, "dlnoreason", { body: "poison" });
  const message = await receiveOne(receiver);
  await receiver.deadLetterMessage(message);
  await receiver.close();
  const dlq = client.createReceiver(queue, { subQueueType: "deadLetter", receiveMode: "receiveAndDelete" });
  const [letter] = await dlq.receiveMessages(1, { maxWaitTimeInMs: WAIT });
  check(letter && letter.body === "poison", "nothing in the dead-letter queue");
  await dlq.close();
}

async function renewLock(client) {
  const { receiver } = await queueWith(client, "renew", { body: "long job" });
  const message = await receiveOne(receiver);
  const before = message.lockedUntilUtc;
  await sleep(1100);
  const after = await receiver.renewMessageLock(message);
  check(after > before, `locked until ${before} then ${after}`);
  await receiver.completeMessage(message);
  await receiver.close();
}

async function peek(client) {
  const { receiver } = await queueWith(client, "peek", [0, 1, 2].map((i) => ({ body: `p${i}` })));
  const peeked = await receiver.peekMessages(10);
  check(same(peeked.map((m) => m.body), ["p0", "p1", "p2"]), `peeked ${JSON.stringify(peeked.map((m) => m.body))}`);
  const numbers = peeked.map((m) => m.sequenceNumber.toNumber());
  check(same(numbers, [...numbers].sort((a, b) => a - b)) && new Set(numbers).size === 3, `sequence numbers ${numbers}`);
  const more = await receiver.peekMessages(10);
  check(more.length === 0, `a second peek continues after the last: ${JSON.stringify(more.map((m) => m.body))}`);
  // Peeking locks nothing: all three can still be received.
  const got = bodies(await receiveAll(receiver, 3));
  check(same(got, ["p0", "p1", "p2"]), `received ${JSON.stringify(got)}`);
  await receiver.close();
}

async function receiveAndDelete(client) {
  const { queue, receiver } = await queueWith(client, "rad", [{ body: "gone-1" }, { body: "gone-2" }], {
    receiveMode: "receiveAndDelete",
  });
  const got = bodies(await receiveAll(receiver, 2, { complete: false }));
  check(same(got, ["gone-1", "gone-2"]), `received ${JSON.stringify(got)}`);
  await receiver.close();
  const peeker = client.createReceiver(queue);
  check((await peeker.peekMessages(10)).length === 0, "a received-and-deleted message is still there");
  await peeker.close();
}

async function settleAfterTheLinkIsGone(client) {
  const { queue, receiver: first } = await queueWith(client, "relink", { body: "orphan" });
  const message = await receiveOne(first);
  await first.close();
  // With its link closed, the SDK settles through `$management` by lock token, on a connection
  // that did not receive the message.
  const other = new ServiceBusClient(process.argv[2], { retryOptions: RETRY });
  try {
    const second = other.createReceiver(queue);
    await second.completeMessage(message);
    await second.close();
  } finally {
    await other.close();
  }
  const peeker = client.createReceiver(queue);
  check((await peeker.peekMessages(10)).length === 0, "the settled message is still there");
  await peeker.close();
}

const CHECKS = [
  ["send-receive-complete", sendReceiveComplete],
  ["batch-send", batchSend],
  ["schedule-and-cancel", scheduleAndCancel],
  ["abandon-redelivers-with-count+1", abandon],
  ["dead-letter-to-dlq-with-reason", deadLetter],
  ["dead-letter-without-reason", deadLetterWithoutReason],
  ["renew-lock", renewLock],
  ["peek", peek],
  ["receive-and-delete", receiveAndDelete],
  ["settle-after-the-link-is-gone", settleAfterTheLinkIsGone],
];

const TOPIC = "interop-topic";

/** Receives and completes every message now in a subscription (or, with `options`, its
 * dead-letter queue); returns the sorted bodies of those this run sent. */
async function drainSubscription(client, subscription, run, options = {}) {
  const receiver = client.createReceiver(TOPIC, subscription, options);
  const got = [];
  try {
    for (;;) {
      const batch = await receiver.receiveMessages(10, { maxWaitTimeInMs: 2000 });
      if (!batch.length) return got.sort();
      for (const message of batch) {
        if ((message.applicationProperties || {}).run === run) got.push(message.body);
        await receiver.completeMessage(message);
      }
    }
  } finally {
    await receiver.close();
  }
}

const freshRun = () => crypto.randomBytes(8).toString("hex");

async function topicFanOutWithFilters(client) {
  const run = freshRun();
  const sender = client.createSender(TOPIC);
  await sender.sendMessages([
    { body: "create-eu", applicationProperties: { run, kind: "create", region: "eu" } },
    { body: "update-eu", applicationProperties: { run, kind: "update", region: "eu" } },
    { body: "create-us", applicationProperties: { run, kind: "create", region: "us" } },
  ]);
  await sender.sendMessages({ body: "single", subject: "hello", applicationProperties: { run, kind: "other" } });
  await sender.close();
  let got = await drainSubscription(client, "all", run);
  check(same(got, ["create-eu", "create-us", "single", "update-eu"]), `\`all\` got ${JSON.stringify(got)}`);
  got = await drainSubscription(client, "creates", run);
  check(same(got, ["create-eu", "create-us"]), `\`creates\` got ${JSON.stringify(got)}`);
  got = await drainSubscription(client, "eu", run);
  check(same(got, ["create-eu", "update-eu"]), `\`eu\` got ${JSON.stringify(got)}`);
  got = await drainSubscription(client, "greetings", run);
  check(same(got, ["single"]), `\`greetings\` got ${JSON.stringify(got)}`);
}

async function subscriptionDeadLetter(client) {
  const run = freshRun();
  const sender = client.createSender(TOPIC);
  await sender.sendMessages({ body: "poison", applicationProperties: { run, kind: "create" } });
  await sender.close();
  const receiver = client.createReceiver(TOPIC, "creates");
  const message = await receiveOne(receiver);
  check(message.body === "poison", `body ${JSON.stringify(message.body)}`);
  await receiver.deadLetterMessage(message, {
    deadLetterReason: "BadInput",
    deadLetterErrorDescription: "could not parse",
  });
  await receiver.close();
  const dlq = client.createReceiver(TOPIC, "creates", { subQueueType: "deadLetter" });
  const letter = await receiveOne(dlq, "nothing in the subscription's dead-letter queue");
  check(letter.body === "poison", `body ${JSON.stringify(letter.body)}`);
  check(letter.deadLetterReason === "BadInput", `reason ${letter.deadLetterReason}`);
  check(letter.deadLetterErrorDescription === "could not parse", `description ${letter.deadLetterErrorDescription}`);
  await dlq.completeMessage(letter);
  await dlq.close();
  const got = await drainSubscription(client, "all", run);
  check(same(got, ["poison"]), `\`all\` got ${JSON.stringify(got)}`);
}

async function topicScheduleAndSubscriptionLock(client) {
  const run = freshRun();
  const applicationProperties = { run, kind: "create" };
  const sender = client.createSender(TOPIC);
  const at = new Date(Date.now() + 60000);
  const numbers = await sender.scheduleMessages({ body: "later", applicationProperties }, at);
  check(numbers.length === 1, `sequence numbers ${numbers}`);
  const receiver = client.createReceiver(TOPIC, "creates");
  const mine = (messages) => messages.filter((m) => (m.applicationProperties || {}).run === run);
  const peeked = mine(await receiver.peekMessages(10, { fromSequenceNumber: numbers[0] }));
  check(same(bodies(peeked), ["later"]), `peeked ${JSON.stringify(bodies(peeked))}`);
  check(peeked[0].scheduledEnqueueTimeUtc instanceof Date, "no scheduled time on the peeked copy");
  await sender.cancelScheduledMessages(numbers);
  const all = client.createReceiver(TOPIC, "all");
  const left = mine(await all.peekMessages(10, { fromSequenceNumber: numbers[0] }));
  check(left.length === 0, "a cancelled copy is still there");
  await all.close();
  await sender.sendMessages({ body: "now", applicationProperties });
  await sender.close();
  const message = await receiveOne(receiver);
  check(message.body === "now", `body ${JSON.stringify(message.body)}`);
  const before = message.lockedUntilUtc;
  await sleep(1100);
  const after = await receiver.renewMessageLock(message);
  check(after > before, `locked until ${before} then ${after}`);
  await receiver.completeMessage(message);
  await receiver.close();
  const got = await drainSubscription(client, "all", run);
  check(same(got, ["now"]), `\`all\` got ${JSON.stringify(got)}`);
}


/** Collects every rule `listRules` pages through. */
async function listRules(ruleManager) {
  const rules = [];
  for await (const rule of ruleManager.listRules()) rules.push(rule);
  return rules;
}

/** Fails unless `promise` rejects; returns the error. */
async function rejects(promise, what) {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error(`${what} was accepted`);
}

async function subscriptionRuleManager(client) {
  const run = freshRun();
  const rules = client.createRuleManager(TOPIC, "managed");
  let listed = await listRules(rules);
  check(
    listed.length === 1 && listed[0].name === "$Default" && listed[0].filter.sqlExpression === "1=1",
    `rules ${JSON.stringify(listed)}`,
  );
  await rules.deleteRule("$Default");
  await rules.createRule("gold", { sqlExpression: "tier = 'gold'" });
  await rules.createRule("corr", { correlationId: "c-7", applicationProperties: { n: 7 } });
  listed = await listRules(rules);
  check(same(listed.map((r) => r.name), ["gold", "corr"]), `rule names ${JSON.stringify(listed.map((r) => r.name))}`);
  check(listed[0].filter.sqlExpression === "tier = 'gold'", `gold filter ${JSON.stringify(listed[0].filter)}`);
  check(listed[1].filter.correlationId === "c-7", `corr filter ${JSON.stringify(listed[1].filter)}`);
  await rejects(rules.createRule("gold", { sqlExpression: "1=1" }), "a second rule named gold");
  const bad = await rejects(rules.createRule("bad", { sqlExpression: "tier = " }), "a filter that does not parse");
  check(/character/.test(bad.message), `the parse error names no position: ${bad.message}`);
  await rejects(rules.createRule("act", { sqlExpression: "1=1" }, { sqlExpression: "SET a = 1" }), "a rule action");
  await rejects(rules.deleteRule("nope"), "deleting a rule that does not exist");

  const sender = client.createSender(TOPIC);
  await sender.sendMessages([
    { body: "gold", applicationProperties: { run, tier: "gold" } },
    { body: "correlated", correlationId: "c-7", applicationProperties: { run, n: 7 } },
    { body: "neither", correlationId: "c-8", applicationProperties: { run, tier: "silver", n: 7 } },
  ]);
  await sender.close();
  const got = await drainSubscription(client, "managed", run);
  check(same(got, ["correlated", "gold"]), `\`managed\` got ${JSON.stringify(got)}`);
}

const TOPIC_CHECKS = [
  ["topic-fan-out-with-filters", topicFanOutWithFilters],
  ["subscription-dead-letter", subscriptionDeadLetter],
  ["topic-schedule-and-subscription-lock", topicScheduleAndSubscriptionLock],
  ["subscription-rule-manager", subscriptionRuleManager],
];

async function main() {
  const [connectionString, ...wanted] = process.argv.slice(2);
  if (!connectionString) {
    console.error("usage: node servicebus_sdk.js CONNECTION_STRING [CHECK ...]");
    return 2;
  }
  let passed = 0;
  let failed = 0;
  const unknown = wanted.filter((name) => ![...CHECKS, ...TOPIC_CHECKS].some(([known]) => known === name));
  if (unknown.length) {
    console.error(`unknown checks: ${unknown.join(", ")}`);
    return 2;
  }
  // Topic checks need topics configured on the broker: they run only when named.
  for (const [name, run] of wanted.length ? [...CHECKS, ...TOPIC_CHECKS] : CHECKS) {
    if (wanted.length && !wanted.includes(name)) continue;
    const started = Date.now();
    const client = new ServiceBusClient(connectionString, { retryOptions: RETRY });
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT / 1000} s`)), CHECK_TIMEOUT);
    });
    const seconds = () => ((Date.now() - started) / 1000).toFixed(1);
    try {
      await Promise.race([run(client), timeout]);
      passed++;
      console.log(`ok   ${name} (${seconds()}s)`);
    } catch (error) {
      failed++;
      console.log(`FAIL ${name} (${seconds()}s): ${error.code || error.name}: ${error.message}`);
      console.error(error.stack);
    } finally {
      clearTimeout(timer);
      await client.close().catch(() => {});
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  return failed ? 1 : 0;
}

main().then((code) => process.exit(code));
