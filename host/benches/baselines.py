"""Baselines for the benchmark suite (host/benches/suite.rs), run in the bench virtualenv.

  baselines.py servicebus CONNECTION_STRING QUEUE COUNT
      Drains COUNT messages from QUEUE with the official SDK (azure-servicebus), peek-lock, with its
      best settings for throughput (prefetch, batch receives), completing each. Prints messages/s.
  baselines.py wcf FILE ROUNDS
      Parses the .NET Binary XML FILE ROUNDS times with the PyPI `wcf` decoder. Prints MB/s.
"""

import io
import logging
import sys
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
    elif kind == "wcf":
        print(wcf(args[0], int(args[1])))
    else:
        raise SystemExit(__doc__)
