#!/usr/bin/env node
// Drives `sagahost broker`'s Service Bus sessions with the official Azure Service Bus SDK for
// JavaScript (@azure/service-bus, pinned in package-lock.json): the same checks, under the same
// names, as ../servicebus_sessions.py runs with the Python SDK.
//
// Usage: node servicebus_sessions.js CONNECTION_STRING [CHECK ...]
//
// Runs every session check (or the named checks), prints one line per check, then a
// `N passed, N failed` line, and exits non-zero if any check failed. Each check uses the
// session-enabled queue `sessions-<check>`, which the broker must be configured with (as
// crates/broker/tests/interop_sessions.rs starts it); the refusal check also uses the plain queue
// `sessions-plain`, which the broker creates on first use.
"use strict";

const { ServiceBusClient } = require("@azure/service-bus");

const WAIT = 5000; // ms a receive waits for its first message
// No retries: a check must pass on the first try, and a failure must show at once.
const RETRY = { maxRetries: 0, timeoutInMs: 10000 };
const CHECK_TIMEOUT = 45000;
// Session receivers renew their locks themselves unless told not to; the checks renew by hand.
const NO_AUTO_RENEW = { maxAutoLockRenewalDurationInMs: 0 };

function check(condition, what) {
  if (!condition) throw new Error(what);
}

/** Sends [session id, body] pairs to `queue`. */
async function send(client, queue, pairs) {
  const sender = client.createSender(queue);
  await sender.sendMessages(pairs.map(([sessionId, body]) => ({ body, sessionId })));
  await sender.close();
}

/** Receives until `count` messages arrived or 10 s passed. */
async function receiveAll(receiver, count) {
  const got = [];
  const deadline = Date.now() + 10000;
  while (got.length < count && Date.now() < deadline) {
    got.push(...(await receiver.receiveMessages(count - got.length, { maxWaitTimeInMs: WAIT })));
  }
  return got;
}

/** The error `promise` fails with; fails the check when it succeeds. */
async function failure(promise, what) {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error(`${what}: did not fail`);
}

async function nextAvailableInOrder(client) {
  const queue = "sessions-next-available-in-order";
  await send(client, queue, [
    ["s-1", "first"],
    ["s-2", "other"],
    ["s-1", "second"],
    ["s-1", "third"],
  ]);
  const receiver = await client.acceptNextSession(queue, NO_AUTO_RENEW);
  check(receiver.sessionId === "s-1", `the oldest message's session, got ${receiver.sessionId}`);
  check(receiver.sessionLockedUntilUtc > new Date(), `locked until ${receiver.sessionLockedUntilUtc}`);
  const messages = await receiveAll(receiver, 3);
  const bodies = messages.map((message) => message.body);
  check(JSON.stringify(bodies) === JSON.stringify(["first", "second", "third"]), `bodies ${bodies}`);
  check(
    messages.every((message) => message.sessionId === "s-1"),
    "every message carries its session id",
  );
  for (const message of messages) await receiver.completeMessage(message);
  await receiver.close();

  const other = await client.acceptNextSession(queue, NO_AUTO_RENEW);
  check(other.sessionId === "s-2", `then the other session, got ${other.sessionId}`);
  const [message] = await receiveAll(other, 1);
  check(message && message.body === "other", `body ${message && message.body}`);
  await other.completeMessage(message);
  await other.close();
}

async function namedSessionStateAndRenew(client) {
  const queue = "sessions-named-session-state-and-renew";
  await send(client, queue, [
    ["order-7", "created"],
    ["order-8", "elsewhere"],
  ]);
  const receiver = await client.acceptSession(queue, "order-7", NO_AUTO_RENEW);
  check(receiver.sessionId === "order-7", `session ${receiver.sessionId}`);
  const empty = await receiver.getSessionState();
  check(empty == null, `no state yet, got ${empty}`);
  await receiver.setSessionState("step-1");
  const state = await receiver.getSessionState();
  check(state === "step-1", `state ${state}`);
  const before = receiver.sessionLockedUntilUtc;
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const renewed = await receiver.renewSessionLock();
  check(renewed > before, `renewed until ${renewed}, was ${before}`);
  const peeked = (await receiver.peekMessages(5)).map((message) => message.body);
  check(JSON.stringify(peeked) === JSON.stringify(["created"]), `peeked only the session's messages, got ${peeked}`);
  const [message] = await receiveAll(receiver, 1);
  check(message && message.body === "created" && message.sessionId === "order-7", "the session's message");
  await receiver.completeMessage(message);
  await receiver.close();
}

async function competingReceivers(client, connectionString) {
  const queue = "sessions-competing-receivers";
  await send(client, queue, [
    ["s-a", "a"],
    ["s-b", "b"],
  ]);
  const one = await client.acceptNextSession(queue, NO_AUTO_RENEW);
  const two = await client.acceptNextSession(queue, NO_AUTO_RENEW);
  const held = [one.sessionId, two.sessionId].sort();
  check(JSON.stringify(held) === JSON.stringify(["s-a", "s-b"]), `sessions ${held}`);
  const rival = await failure(client.acceptSession(queue, "s-a", NO_AUTO_RENEW), "locking a held session");
  check(rival.code === "SessionCannotBeLocked", `error ${rival.code}: ${rival.message}`);
  for (const receiver of [one, two]) {
    const [message] = await receiveAll(receiver, 1);
    check(message && message.sessionId === receiver.sessionId, "each gets its own session's message");
    await receiver.completeMessage(message);
    await receiver.close();
  }
  // With no session left, accepting the next one waits as long as the client's timeout, then fails.
  const impatient = new ServiceBusClient(connectionString, { retryOptions: { maxRetries: 0, timeoutInMs: 1500 } });
  try {
    const started = Date.now();
    const timeout = await failure(impatient.acceptNextSession(queue, NO_AUTO_RENEW), "accepting from an empty queue");
    check(timeout.code === "ServiceTimeout", `error ${timeout.code}: ${timeout.message}`);
    check(Date.now() - started >= 1000, "it waited first");
  } finally {
    await impatient.close();
  }
}

async function refusals(client) {
  const queue = "sessions-refusals";
  const sender = client.createSender(queue);
  const loose = await failure(sender.sendMessages({ body: "no session" }), "sending without a session id");
  check(loose.message.includes("SessionId"), `error ${loose.message}`);
  await sender.close();
  const plain = client.createReceiver(queue);
  const error = await failure(plain.receiveMessages(1, { maxWaitTimeInMs: 1000 }), "receiving without a session");
  check(error.message.includes("requires sessions"), `error ${error.message}`);
  await plain.close();
  await failure(client.acceptSession("sessions-plain", "s-1", NO_AUTO_RENEW), "a session of a queue without sessions");
}

const CHECKS = [
  ["next-available-in-order", nextAvailableInOrder],
  ["named-session-state-and-renew", namedSessionStateAndRenew],
  ["competing-receivers", competingReceivers],
  ["refusals", refusals],
];

async function main() {
  const [connectionString, ...wanted] = process.argv.slice(2);
  if (!connectionString) {
    console.error("usage: node servicebus_sessions.js CONNECTION_STRING [CHECK ...]");
    return 2;
  }
  const unknown = wanted.filter((name) => !CHECKS.some(([known]) => known === name));
  if (unknown.length) {
    console.error(`unknown checks: ${unknown.join(", ")}`);
    return 2;
  }
  let passed = 0;
  let failed = 0;
  for (const [name, run] of CHECKS) {
    if (wanted.length && !wanted.includes(name)) continue;
    const started = Date.now();
    const client = new ServiceBusClient(connectionString, { retryOptions: RETRY });
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT / 1000} s`)), CHECK_TIMEOUT);
    });
    const seconds = () => ((Date.now() - started) / 1000).toFixed(1);
    try {
      await Promise.race([run(client, connectionString), timeout]);
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
