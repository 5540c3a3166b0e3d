#!/usr/bin/env node
// Drives the entity-management endpoint of `sagahost broker` with the official Azure Service Bus
// SDK for JavaScript's `ServiceBusAdministrationClient` (@azure/service-bus, pinned in
// package-lock.json), and its AMQP endpoint with `ServiceBusClient`: the same checks, under the
// same names, as ../servicebus_admin.py runs with the Python SDK.
//
// Usage: node servicebus_admin.js AMQP_CONNECTION_STRING ADMIN_CONNECTION_STRING [CHECK ...]
//
// The admin client always builds `https://` URLs and the broker serves plain HTTP on loopback, so
// one policy is added to the client's pipeline that sends each request over `http://` instead
// (`plainHttp`), the one change an application needs. Prints one line per check, then a
// `N passed, N failed` line, and exits non-zero if any check failed.
"use strict";

const crypto = require("node:crypto");
const { ServiceBusAdministrationClient, ServiceBusClient } = require("@azure/service-bus");

const WAIT = 5000; // ms a receive waits for its first message
const RETRY = { maxRetries: 0, timeoutInMs: 10000 };
const CHECK_TIMEOUT = 45000;

/** Sends the admin client's `https://` requests over plain `http://`. */
const plainHttp = {
  name: "plainHttp",
  sendRequest(request, next) {
    request.url = request.url.replace(/^https:\/\//, "http://");
    // core-rest-pipeline refuses plain HTTP unless the request says it may.
    request.allowInsecureConnection = true;
    return next(request);
  },
};

/** An admin client for the endpoint; its options' `additionalPolicies` are not used (the client
 * builds its pipeline itself), so the policy goes into the client's public `pipeline`. */
function adminClient(connectionString) {
  const admin = new ServiceBusAdministrationClient(connectionString, { retryOptions: { maxRetries: 0 } });
  admin.pipeline.addPolicy(plainHttp);
  return admin;
}

const freshQueue = (name) => `${name}-${crypto.randomBytes(4).toString("hex")}`;

function check(condition, what) {
  if (!condition) throw new Error(what);
}

/** Runs `operation` and checks it fails with HTTP `status`; returns the error. */
async function failsWith(status, operation, what) {
  try {
    await operation();
  } catch (error) {
    check(error.statusCode === status, `${what}: status ${error.statusCode} (${error.code}: ${error.message})`);
    return error;
  }
  throw new Error(`${what}: did not fail`);
}

async function createQueueWithSettings(admin) {
  const name = freshQueue("create");
  const created = await admin.createQueue(name, {
    lockDuration: "PT45S",
    maxDeliveryCount: 3,
    defaultMessageTimeToLive: "PT1H",
    deadLetteringOnMessageExpiration: true,
  });
  check(created.name === name, `name ${created.name}`);
  check(created.lockDuration === "PT45S", `lock duration ${created.lockDuration}`);
  check(created.maxDeliveryCount === 3, `max delivery count ${created.maxDeliveryCount}`);
  check(created.defaultMessageTimeToLive === "PT1H", `time to live ${created.defaultMessageTimeToLive}`);
  check(created.requiresSession === false, `requires session ${created.requiresSession}`);
  const exists = await failsWith(409, () => admin.createQueue(name), "creating it again");
  check(exists.code === "MessageEntityAlreadyExistsError", `code ${exists.code}`);
}

async function getQueue(admin) {
  const name = freshQueue("get");
  await admin.createQueue(name, { maxDeliveryCount: 7 });
  const got = await admin.getQueue(name);
  check(got.name === name, `name ${got.name}`);
  check(got.maxDeliveryCount === 7, `max delivery count ${got.maxDeliveryCount}`);
  check(got.status === "Active", `status ${got.status}`);
  check(got.maxSizeInMegabytes === 1024, `max size ${got.maxSizeInMegabytes}`);
  const missing = await failsWith(404, () => admin.getQueue(freshQueue("missing")), "getting a missing queue");
  check(missing.code === "MessageEntityNotFoundError", `code ${missing.code}`);
}

async function runtimeCounts(admin, amqp) {
  const name = freshQueue("counts");
  await admin.createQueue(name);
  const sender = amqp.createSender(name);
  await sender.sendMessages([0, 1, 2].map((i) => ({ body: `m${i}` })));
  await sender.close();
  const receiver = amqp.createReceiver(name);
  const [message] = await receiver.receiveMessages(1, { maxWaitTimeInMs: WAIT });
  check(message, "nothing received");
  await receiver.deadLetterMessage(message, { deadLetterReason: "Test", deadLetterErrorDescription: "by the check" });
  await receiver.close();
  const runtime = await admin.getQueueRuntimeProperties(name);
  check(runtime.activeMessageCount === 2, `active ${runtime.activeMessageCount}`);
  check(runtime.deadLetterMessageCount === 1, `dead letters ${runtime.deadLetterMessageCount}`);
  check(runtime.scheduledMessageCount === 0, `scheduled ${runtime.scheduledMessageCount}`);
  check(runtime.transferMessageCount === 0, `transfer ${runtime.transferMessageCount}`);
  check(runtime.totalMessageCount === 3, `total ${runtime.totalMessageCount}`);
  check(runtime.sizeInBytes > 0, `size ${runtime.sizeInBytes}`);
  check(runtime.createdAt instanceof Date, `created at ${runtime.createdAt}`);
}

async function listQueues(admin) {
  const names = [0, 1, 2].map(() => freshQueue("list"));
  for (const name of names) await admin.createQueue(name);
  // Pages of 2 make the client follow the feed's `next` link.
  const listed = new Set();
  for await (const page of admin.listQueues().byPage({ maxPageSize: 2 })) {
    check(page.length <= 2, `a page of ${page.length}`);
    for (const queue of page) listed.add(queue.name);
  }
  check(
    names.every((name) => listed.has(name)),
    `missing from the list: ${names.filter((n) => !listed.has(n))}`,
  );
  const runtime = new Map();
  for await (const queue of admin.listQueuesRuntimeProperties()) runtime.set(queue.name, queue);
  check(
    names.every((name) => runtime.get(name)?.totalMessageCount === 0),
    "counts in the runtime list",
  );
}

async function updateQueue(admin) {
  const name = freshQueue("update");
  await admin.createQueue(name, { maxDeliveryCount: 3 });
  const queue = await admin.getQueue(name);
  queue.maxDeliveryCount = 5;
  queue.lockDuration = "PT20S";
  await admin.updateQueue(queue);
  const got = await admin.getQueue(name);
  check(got.maxDeliveryCount === 5, `max delivery count ${got.maxDeliveryCount}`);
  check(got.lockDuration === "PT20S", `lock duration ${got.lockDuration}`);
  await failsWith(404, () => admin.updateQueue({ ...got, name: freshQueue("missing") }), "updating a missing queue");
}

async function deleteQueue(admin, amqp) {
  const name = freshQueue("delete");
  await admin.createQueue(name);
  const sender = amqp.createSender(name);
  await sender.sendMessages({ body: "gone with the queue" });
  await sender.close();
  check(await admin.queueExists(name), "the queue does not exist after create");
  await admin.deleteQueue(name);
  check(!(await admin.queueExists(name)), "the queue exists after delete");
  await failsWith(404, () => admin.deleteQueue(name), "deleting it again");
}

async function namespaceProperties(admin) {
  const properties = await admin.getNamespaceProperties();
  check(properties.name, `name ${properties.name}`);
  check(properties.messagingSku === "Standard", `sku ${properties.messagingSku}`);
}

async function requiresSessionKept(admin) {
  const name = freshQueue("sessions");
  const created = await admin.createQueue(name, { requiresSession: true });
  check(created.requiresSession === true, `created with requiresSession ${created.requiresSession}`);
  const queue = await admin.getQueue(name);
  check(queue.requiresSession === true, `got requiresSession ${queue.requiresSession}`);
  queue.requiresSession = false;
  const error = await failsWith(400, () => admin.updateQueue(queue), "changing RequiresSession");
  check(error.message.includes("RequiresSession"), `message ${error.message}`);
}

async function wrongKeyRefused(_admin, _amqp, adminConnectionString) {
  const wrong = adminClient(adminConnectionString.replace("SharedAccessKey=SAS_KEY_VALUE", "SharedAccessKey=wrong"));
  await failsWith(401, () => wrong.getQueue("any"), "a wrong key");
}

async function topicLifecycle(admin) {
  const name = freshQueue("topic");
  const created = await admin.createTopic(name);
  check(created.name === name, `name ${created.name}`);
  await failsWith(409, () => admin.createTopic(name), "creating it again");
  const got = await admin.getTopic(name);
  check(got.maxSizeInMegabytes === 1024, `max size ${got.maxSizeInMegabytes}`);
  check(got.status === "Active", `status ${got.status}`);
  await admin.updateTopic({ ...got, maxSizeInMegabytes: 2048 });
  const listed = new Set();
  for await (const page of admin.listTopics().byPage({ maxPageSize: 1 })) {
    for (const topic of page) listed.add(topic.name);
  }
  check(listed.has(name), `${name} not listed`);
  check(await admin.topicExists(name), "the topic does not exist after create");
  await admin.deleteTopic(name);
  check(!(await admin.topicExists(name)), "the topic exists after delete");
  await failsWith(404, () => admin.deleteTopic(name), "deleting it again");
}

async function subscriptionLifecycle(admin) {
  const topic = freshQueue("subs");
  await admin.createTopic(topic);
  const created = await admin.createSubscription(topic, "mdm", {
    lockDuration: "PT45S",
    maxDeliveryCount: 3,
    defaultMessageTimeToLive: "PT1H",
    deadLetteringOnMessageExpiration: true,
  });
  check(created.subscriptionName === "mdm", `name ${created.subscriptionName}`);
  check(created.topicName === topic, `topic ${created.topicName}`);
  check(created.lockDuration === "PT45S", `lock ${created.lockDuration}`);
  check(created.maxDeliveryCount === 3, `max delivery count ${created.maxDeliveryCount}`);
  check(created.defaultMessageTimeToLive === "PT1H", `time to live ${created.defaultMessageTimeToLive}`);
  await failsWith(409, () => admin.createSubscription(topic, "mdm"), "creating it again");
  await failsWith(404, () => admin.createSubscription(freshQueue("none"), "s"), "a missing topic");
  const got = await admin.getSubscription(topic, "mdm");
  await admin.updateSubscription({ ...got, maxDeliveryCount: 5 });
  check((await admin.getSubscription(topic, "mdm")).maxDeliveryCount === 5, "update not kept");
  await admin.createSubscription(topic, "erp", {
    defaultRuleOptions: { name: "contacts", filter: { sqlExpression: "kind = 'contact'" } },
  });
  const rules = [];
  for await (const rule of admin.listRules(topic, "erp")) rules.push(rule.name);
  check(rules.join() === "contacts", `the default rule options give the rules ${rules}`);
  const listed = [];
  for await (const page of admin.listSubscriptions(topic).byPage({ maxPageSize: 1 })) {
    for (const subscription of page) listed.push(subscription.subscriptionName);
  }
  check(listed.join() === "erp,mdm", `listed ${listed}`);
  check((await admin.getTopicRuntimeProperties(topic)).subscriptionCount === 2, "subscription count");
  await admin.deleteSubscription(topic, "erp");
  check(!(await admin.subscriptionExists(topic, "erp")), "the subscription exists after delete");
  const error = await failsWith(
    400,
    () => admin.createSubscription(topic, "s", { requiresSession: true }),
    "a session subscription",
  );
  check(error.message.includes("RequiresSession"), `message ${error.message}`);
}

async function ruleLifecycle(admin) {
  const topic = freshQueue("rules");
  await admin.createTopic(topic);
  await admin.createSubscription(topic, "mdm");
  const byDefault = await admin.getRule(topic, "mdm", "$Default");
  check(byDefault.filter.sqlExpression === "1=1", `$Default filter ${JSON.stringify(byDefault.filter)}`);
  await admin.createRule(topic, "mdm", "sql", { sqlExpression: "kind = 'contact'" });
  await admin.createRule(topic, "mdm", "correlation", {
    correlationId: "c-1",
    subject: "Create",
    replyToSessionId: "r-1",
    applicationProperties: { region: "eu" },
  });
  const sql = await admin.getRule(topic, "mdm", "sql");
  check(sql.filter.sqlExpression === "kind = 'contact'", `sql filter ${JSON.stringify(sql.filter)}`);
  const correlation = (await admin.getRule(topic, "mdm", "correlation")).filter;
  check(correlation.correlationId === "c-1" && correlation.subject === "Create", JSON.stringify(correlation));
  check(correlation.applicationProperties?.region === "eu", `properties ${JSON.stringify(correlation)}`);
  check(correlation.replyToSessionId === "r-1", `reply-to session ${JSON.stringify(correlation)}`);
  const listed = [];
  for await (const page of admin.listRules(topic, "mdm").byPage({ maxPageSize: 2 })) {
    for (const rule of page) listed.push(rule.name);
  }
  check(listed.join() === "$Default,sql,correlation", `listed ${listed}`);
  await failsWith(409, () => admin.createRule(topic, "mdm", "sql", { sqlExpression: "1=1" }), "creating it again");
  await failsWith(400, () => admin.createRule(topic, "mdm", "bad", { sqlExpression: "kind = " }), "a bad filter");
  const action = await failsWith(
    400,
    () => admin.createRule(topic, "mdm", "action", { sqlExpression: "1=1" }, { sqlExpression: "SET a = 1" }),
    "a SQL action",
  );
  check(action.message.includes("action"), `message ${action.message}`);
  await admin.updateRule(topic, "mdm", { name: "sql", filter: { sqlExpression: "kind = 'account'" } });
  const updated = (await admin.getRule(topic, "mdm", "sql")).filter.sqlExpression;
  check(updated === "kind = 'account'", `updated ${updated}`);
  await admin.deleteRule(topic, "mdm", "correlation");
  check(!(await admin.ruleExists(topic, "mdm", "correlation")), "the rule exists after delete");
}

async function topicRuntimeCounts(admin, amqp) {
  const topic = freshQueue("tcounts");
  await admin.createTopic(topic);
  await admin.createSubscription(topic, "all");
  await admin.createSubscription(topic, "contacts");
  await admin.deleteRule(topic, "contacts", "$Default");
  await admin.createRule(topic, "contacts", "contacts", { sqlExpression: "kind = 'contact'" });
  const sender = amqp.createSender(topic);
  await sender.sendMessages([
    { body: "c1", applicationProperties: { kind: "contact" } },
    { body: "c2", applicationProperties: { kind: "contact" } },
    { body: "a1", applicationProperties: { kind: "account" } },
  ]);
  await sender.scheduleMessages(
    { body: "later", applicationProperties: { kind: "contact" } },
    new Date(Date.now() + 3600 * 1000),
  );
  await sender.close();
  const receiver = amqp.createReceiver(topic, "contacts");
  const [message] = await receiver.receiveMessages(1, { maxWaitTimeInMs: WAIT });
  check(message, "nothing received");
  await receiver.deadLetterMessage(message, { deadLetterReason: "Test", deadLetterErrorDescription: "by the check" });
  await receiver.close();
  const everything = await admin.getSubscriptionRuntimeProperties(topic, "all");
  check(everything.activeMessageCount === 3, `all: active ${everything.activeMessageCount}`);
  check(everything.totalMessageCount === 4, `all: total ${everything.totalMessageCount}`);
  const contacts = await admin.getSubscriptionRuntimeProperties(topic, "contacts");
  check(contacts.activeMessageCount === 1, `contacts: active ${contacts.activeMessageCount}`);
  check(contacts.deadLetterMessageCount === 1, `contacts: dead letters ${contacts.deadLetterMessageCount}`);
  check(contacts.totalMessageCount === 3, `contacts: total ${contacts.totalMessageCount}`);
  const runtime = await admin.getTopicRuntimeProperties(topic);
  check(runtime.subscriptionCount === 2, `subscriptions ${runtime.subscriptionCount}`);
  check(runtime.scheduledMessageCount === 1, `scheduled ${runtime.scheduledMessageCount}`);
  check(runtime.sizeInBytes > 0, `size ${runtime.sizeInBytes}`);
  await admin.deleteTopic(topic);
  await failsWith(404, () => admin.getSubscription(topic, "all"), "a subscription of a deleted topic");
}

const CHECKS = [
  ["create-queue-with-settings", createQueueWithSettings],
  ["get-queue", getQueue],
  ["runtime-counts-after-send-and-dead-letter", runtimeCounts],
  ["list-queues-paged", listQueues],
  ["update-queue", updateQueue],
  ["delete-queue-and-queue-exists", deleteQueue],
  ["namespace-properties", namespaceProperties],
  ["requires-session-stored-and-unchangeable", requiresSessionKept],
  ["wrong-key-refused-with-401", wrongKeyRefused],
  ["topic-create-get-update-list-delete", topicLifecycle],
  ["subscription-create-get-update-list-delete", subscriptionLifecycle],
  ["rule-create-get-update-list-delete", ruleLifecycle],
  ["topic-and-subscription-runtime-counts-after-send", topicRuntimeCounts],
];

async function main() {
  const [amqpConnectionString, adminConnectionString, ...wanted] = process.argv.slice(2);
  if (!adminConnectionString) {
    console.error("usage: node servicebus_admin.js AMQP_CONNECTION_STRING ADMIN_CONNECTION_STRING [CHECK ...]");
    return 2;
  }
  let passed = 0;
  let failed = 0;
  for (const [name, run] of CHECKS) {
    if (wanted.length && !wanted.includes(name)) continue;
    const started = Date.now();
    const admin = adminClient(adminConnectionString);
    const amqp = new ServiceBusClient(amqpConnectionString, { retryOptions: RETRY });
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT / 1000} s`)), CHECK_TIMEOUT);
    });
    const seconds = () => ((Date.now() - started) / 1000).toFixed(1);
    try {
      await Promise.race([run(admin, amqp, adminConnectionString), timeout]);
      passed++;
      console.log(`ok   ${name} (${seconds()}s)`);
    } catch (error) {
      failed++;
      console.log(`FAIL ${name} (${seconds()}s): ${error.code || error.name}: ${error.message}`);
      console.error(error.stack);
    } finally {
      clearTimeout(timer);
      await amqp.close().catch(() => {});
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  return failed ? 1 : 0;
}

main().then((code) => process.exit(code));
