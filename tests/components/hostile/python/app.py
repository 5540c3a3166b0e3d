"""hostile: a partner component that misbehaves on purpose (Python version of `../src/lib.rs`).

For host tests only. Never deploy it. It lets the host tests check that the
sandbox holds for a component built by componentize-py (a whole CPython
runtime in the guest) as it does for a Rust one.

The config key `attack` chooses what it does with an `Event_Message`, with the
same names and outcomes as the Rust component:

| `attack` | behaviour |
|---|---|
| `loop` | spins forever |
| `memory` | allocates and touches 1 MiB blocks forever |
| `trap` | raises an exception `handle` does not catch, which traps |
| `recursion` | recurses without bound; CPython stops it with `RecursionError`, which traps |
| `huge-return` | dead-letters with a 64 MiB description |
| `many-requests` | asks for 10 000 GET requests |
| `forbidden-host` | GETs config `forbidden-url` (default `https://forbidden.example.net/`), then dead-letters `ForbiddenHost` with what the host answered |
| `read-env` | dead-letters `ReadEnv` listing the environment variable names it sees |
| `read-file` | dead-letters `ReadFile` with the result of reading `/etc/passwd` |
| `echo-secret` | sends `x-token: secret(mdm-api-key)` to config `echo-url`, then forwards the response body to `next` |
| `unknown-route` | forwards to route `nowhere` |
| `compensate-first` | asks to compensate on the saga's first step, when no step has run |
| `forge-saga` | forwards to `next` with forged `sagahost-saga` / `sagahost-compensation` properties |
| `stdout` | prints one line to stdout and one to stderr, then completes |
| `long-stdout` | prints one 1 MiB line to stdout, then completes |
| `sleep` | sleeps for an hour (`time.sleep`: a `wasi:clocks` subscribe, then a `wasi:io/poll` block) |
| `stdin` | reads stdin to its end, recording `Ok(<bytes>)` or `Err(<error>)` as the Rust one does |
| `clock-loop` | spins forever, reading the clock between spins (a loop of host calls) |
| `many-forwards` | forwards 100 000 messages to `next` |
| `big-property` | forwards to `next` with an 8 MiB application property |
| `big-compensation` | forwards to `next`, recording 32 MiB of compensation data |
| `big-body` | forwards to `next` with a 1 MiB body |
| anything else | completes |

An `Event_Responses` completes, except for `echo-secret` and `forbidden-host`;
an `Event_Compensate` completes.
"""

import json
import os
import sys
import time

from sagahost_partner import (
    Decision_Forward,
    Event,
    Event_Message,
    Event_Responses,
    ForwardMessage,
    Outcome,
    Plan,
    Plan_Done,
    Request,
    call,
    compensate,
    complete,
    config_or,
    dead_letter,
    export,
    forward,
    info,
    require_config,
)


def handle(event: Event) -> Plan:
    attack = config_or("attack", "")
    match event:
        case Event_Message():
            return attack_with(attack)
        case Event_Responses(responses) if attack == "echo-secret":
            first = responses.results[0] if responses.results else None
            body = first.response.body if first and first.response else b""
            info(f"echo-secret: forwarding {len(body)} bytes")
            return forward("next", body=body)
        case Event_Responses(responses) if attack == "forbidden-host":
            answer = responses.results[0].describe() if responses.results else ""
            return dead_letter("ForbiddenHost", answer)
        case _:
            return complete()


def attack_with(attack: str) -> Plan:
    # JSON quoting writes the name as the Rust component's `{attack:?}` does;
    # the e2e tests wait for this exact line.
    info(f"hostile attack: {json.dumps(attack, ensure_ascii=False)}")
    match attack:
        case "loop":
            spin()
        case "memory":
            hoard()
        case "trap":
            raise RuntimeError("hostile component panicked on purpose")
        case "recursion":
            return complete().recording(str(recurse(1)))
        case "huge-return":
            return dead_letter("HugeReturn", "x" * (64 << 20))
        case "many-requests":
            requests = (Request.get(f"https://example.com/{i}").with_id(f"r{i}") for i in range(10_000))
            return call(requests, "many-requests")
        case "forbidden-host":
            url = config_or("forbidden-url", "https://forbidden.example.net/")
            return call([Request.get(url).with_id("forbidden")], "forbidden-host")
        case "read-env":
            names = list(os.environ)
            info(f"read-env: {len(names)} variables")
            return dead_letter("ReadEnv", ",".join(names))
        case "read-file":
            try:
                with open("/etc/passwd", encoding="utf-8") as passwd:
                    outcome = f"read {len(passwd.read().encode('utf-8'))} bytes"
            except OSError as error:
                outcome = f"error: {error}"
            info(f"read-file: {outcome}")
            return dead_letter("ReadFile", outcome)
        case "echo-secret":
            url = require_config("echo-url")
            return call([Request.get(url).with_id("echo").secret_header("x-token", "mdm-api-key")], "echo-secret")
        case "unknown-route":
            return forward("nowhere")
        case "compensate-first":
            return compensate("HostileCompensation", "undo the step that never ran")
        case "forge-saga":
            return forward(
                "next",
                [
                    ("sagahost-saga", '{"id":"forged","step":7,"attempt":1,"history":[]}'),
                    ("sagahost-compensation", '{"failed-partner":"erp","reason":"forged"}'),
                ],
            )
        case "stdout":
            # Flushed now: the instance is dropped after the call, never exited,
            # so anything left in Python's buffers would be lost.
            print("hostile component writes to stdout", flush=True)
            print("hostile component writes to stderr", file=sys.stderr, flush=True)
            return complete()
        case "long-stdout":
            print("o" * (1 << 20), flush=True)
            return complete()
        case "sleep":
            time.sleep(3_600)
            return complete()
        case "stdin":
            try:
                read = f"Ok({len(sys.stdin.buffer.read())})"
            except OSError as error:
                read = f"Err({error})"
            return complete().recording(read)
        case "clock-loop":
            while True:
                time.monotonic()
        case "many-forwards":
            messages = [ForwardMessage(route="next") for _ in range(100_000)]
            return Plan_Done(Outcome(decision=Decision_Forward(messages)))
        case "big-property":
            return forward("next", {"big": "p" * (8 << 20)})
        case "big-compensation":
            return forward("next").recording("c" * (32 << 20))
        case "big-body":
            return forward("next", body=b"b" * (1 << 20))
        case _:
            return complete()


def spin() -> None:
    """Spins forever."""
    counter = 0
    while True:
        counter += 1


def hoard() -> None:
    """Allocates 1 MiB blocks, touching every page, until the host stops it."""
    blocks = []
    while True:
        block = bytearray(1 << 20)
        for offset in range(0, len(block), 4096):
            block[offset] = 1
        blocks.append(block)


def recurse(depth: int) -> int:
    """Recurses without bound; the work after the call keeps it a real recursion."""
    below = recurse(depth + 1)
    return below + depth


Handler = export(handle)
