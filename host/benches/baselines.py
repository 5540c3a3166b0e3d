"""Baselines for the benchmark suite (host/benches/suite.rs), run in the bench virtualenv.

  baselines.py servicebus CONNECTION_STRING QUEUE COUNT
      Drains COUNT messages from QUEUE with the official SDK (azure-servicebus), peek-lock, with its
      best settings for throughput (prefetch, batch receives), completing each. Prints messages/s.
  baselines.py saga CONNECTION_STRING PARTNER_ORIGIN SAGAS THREADS
      The three-step contact saga as a hand-written worker with the official SDK would run it
      (the `amqp-saga` scenario): THREADS threads per step, each receiving from its step's
      queue (`contacts`, `writeback`, `erp`), calling the partner on PARTNER_ORIGIN (MDM create,
      Dataverse PATCH with a client-credentials token, ERP create), sending the next step's
      message and completing. Prints sagas/s once SAGAS reached the ERP step's end.
  baselines.py wcf FILE ROUNDS
      Parses the .NET Binary XML FILE ROUNDS times with the PyPI `wcf` decoder. Prints MB/s.
"""

import contextlib
import http.client
import io
import json
import logging
import sys
import threading
import time


def servicebus(connection_string, queue, count):
    from azure.servicebus import ServiceBusClient

    with ServiceBusClient.from_connection_string(connection_string) as client:
        with client.get_queue_receiver(queue, prefetch_count=256) as receiver:
            done = 0
            started = time.perf_counter()
            while done < count:
                batch = receiver.receive_messages(max_message_count=64, max_wait_time=5)
                if not batch:
                    raise SystemExit(f"the queue ran dry after {done} messages")
                for message in batch:
                    receiver.complete_message(message)
                done += len(batch)
            return done / (time.perf_counter() - started)


def saga(connection_string, origin, sagas, threads):
    from azure.servicebus import ServiceBusClient, ServiceBusMessage

    host, port = origin.removeprefix("http://").split(":")
    finished = 0
    lock = threading.Lock()
    done = threading.Event()
    failures = []
    ready = threading.Barrier(3 * threads + 1)

    def call(connection, method, path, body, headers):
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read()
        if response.status >= 300:
            raise SystemExit(f"{method} {path} answered {response.status}")
        return answer

    def contact(message):
        context = json.loads(b"".join(message.body))
        target = next(p["value"] for p in context["InputParameters"] if p["key"] == "Target")
        attributes = {a["key"]: a["value"] for a in target["Attributes"]}
        return context["PrimaryEntityId"], attributes

    def mdm(connection, message, _token):
        record, attributes = contact(message)
        body = json.dumps({
            "dataverseId": record,
            "firstName": attributes.get("firstname"),
            "lastName": attributes.get("lastname"),
            "email": attributes.get("emailaddress1"),
        })
        answer = call(connection, "POST", "/api/contacts", body,
                      {"content-type": "application/json", "x-api-key": "bench-key"})
        return {"mdm-id": json.loads(answer)["id"]}

    def writeback(connection, message, token):
        record, _ = contact(message)
        mdm_id = message.application_properties[b"mdm-id"].decode()
        call(connection, "PATCH", f"/api/data/v9.2/contacts({record})", json.dumps({"new_mdmid": mdm_id}),
             {"content-type": "application/json", "authorization": f"Bearer {token}", "if-match": "*"})
        return {"mdm-id": mdm_id}

    def erp(connection, message, token):
        record, attributes = contact(message)
        body = json.dumps({
            "mdmId": message.application_properties[b"mdm-id"].decode(),
            "dataverseId": record,
            "firstName": attributes.get("firstname"),
            "lastName": attributes.get("lastname"),
            "email": attributes.get("emailaddress1"),
        })
        call(connection, "POST", "/api/customers", body,
             {"content-type": "application/json", "authorization": f"Bearer {token}"})
        return None

    def worker(queue, step, next_queue):
        nonlocal finished
        connection = http.client.HTTPConnection(host, int(port))
        form = "grant_type=client_credentials&client_id=bench&client_secret=bench-secret"
        token = json.loads(call(connection, "POST", "/oauth2/token", form,
                                {"content-type": "application/x-www-form-urlencoded"}))["access_token"]
        with contextlib.ExitStack() as stack:
            client = stack.enter_context(ServiceBusClient.from_connection_string(connection_string))
            receiver = stack.enter_context(client.get_queue_receiver(queue, prefetch_count=32))
            sender = stack.enter_context(client.get_queue_sender(next_queue)) if next_queue else None
            ready.wait(timeout=60)
            while not done.is_set():
                for message in receiver.receive_messages(max_message_count=16, max_wait_time=1):
                    properties = step(connection, message, token)
                    if sender:
                        sender.send_messages(ServiceBusMessage(
                            b"".join(message.body), content_type="application/json",
                            application_properties=properties))
                    receiver.complete_message(message)
                    if not sender:
                        with lock:
                            finished += 1
                            if finished >= sagas:
                                done.set()

    def guarded(*step):
        try:
            worker(*step)
        except BaseException as err:  # noqa: BLE001  (any failure ends the run with its reason)
            failures.append(f"{step[0]}: {err!r}")
            ready.abort()
            done.set()

    steps = [("contacts", mdm, "writeback"), ("writeback", writeback, "erp"), ("erp", erp, None)]
    workers = [threading.Thread(target=guarded, args=step, daemon=True) for step in steps for _ in range(threads)]
    for thread in workers:
        thread.start()
    try:
        ready.wait(timeout=60)
    except threading.BrokenBarrierError:
        raise SystemExit(f"a worker failed to start: {failures}")
    started = time.perf_counter()
    if not done.wait(timeout=600):
        raise SystemExit(f"only {finished} of {sagas} sagas finished in 600 s")
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"the worker failed: {failures}")
    for thread in workers:
        thread.join(timeout=10)
    return sagas / elapsed


def wcf(path, rounds):
    logging.disable(logging.CRITICAL)
    import wcf.records.attributes  # noqa: F401  (each module registers its record types)
    import wcf.records.elements  # noqa: F401
    import wcf.records.text  # noqa: F401
    from wcf.records.base import Record

    data = open(path, "rb").read()
    Record.parse(io.BytesIO(data))
    started = time.perf_counter()
    for _ in range(rounds):
        Record.parse(io.BytesIO(data))
    return len(data) * rounds / (time.perf_counter() - started) / 1e6


if __name__ == "__main__":
    kind, *args = sys.argv[1:]
    if kind == "servicebus":
        print(servicebus(args[0], args[1], int(args[2])))
    elif kind == "saga":
        print(saga(args[0], args[1], int(args[2]), int(args[3])))
    elif kind == "wcf":
        print(wcf(args[0], int(args[1])))
    else:
        raise SystemExit(__doc__)
