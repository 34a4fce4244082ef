"""A notebook kernel survives the lab restarting under it.

One long-lived Python process uses ``from lab_env import lab``, as a notebook kernel does. Each
round it creates a topic, writes 500 records with acks=all, reads the end offsets and describes
the cluster. Between rounds this test restarts part or all of the lab from another process:
``lab kill N`` + ``lab start N`` (five times), or ``lab down`` + ``lab up`` (once). Every round
must succeed at the first attempt: the lab keeps no client between operations, so none can keep a
stale view of a cluster that restarted (the failures this replaced: "No leaders found",
UNKNOWN_TOPIC_OR_PART, "Failed while waiting for controller", from a cached admin client, while
the cluster was fine).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from lab_env.api import Lab
from tests.helpers import run_lab

pytestmark = [pytest.mark.cluster, pytest.mark.disruptive]

RECORDS = 500
# Each line the test sends starts a round; the kernel answers with one JSON line.
KERNEL = """
import json, sys, traceback, uuid
from lab_env import lab
from lab_env.consuming import end_offsets

for line in sys.stdin:
    topic = f"it.kernel.{line.strip()}.{uuid.uuid4().hex[:6]}"
    try:
        lab.create_topic(topic, partitions=3)
        producer = lab.producer({"acks": "all", "enable.idempotence": True})
        failed = []
        for i in range(RECORDS):
            producer.produce(
                topic, value=str(i), on_delivery=lambda e, m: e is not None and failed.append(e)
            )
        left = producer.flush(60)
        ends = end_offsets(lab, topic, 3)
        cluster = lab.describe()
        lab.delete_topic(topic)
        answer = {
            "ok": not failed and left == 0 and sum(ends.values()) == RECORDS,
            "detail": f"{len(failed)} failed, {left} unflushed, ends {ends}",
            "brokers": len(cluster["brokers"]),
        }
    except Exception:
        answer = {"ok": False, "detail": traceback.format_exc()}
    print(json.dumps(answer), flush=True)
""".replace("RECORDS", str(RECORDS))


@pytest.fixture
def kernel(lab: Lab) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", KERNEL],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    yield proc
    if proc.stdin:
        proc.stdin.close()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def round_trip(kernel: subprocess.Popen[str], name: str) -> dict[str, object]:
    assert kernel.stdin and kernel.stdout
    kernel.stdin.write(f"{name}\n")
    kernel.stdin.flush()
    line = kernel.stdout.readline()  # bounded: every call inside the round has a timeout
    assert line, f"the kernel process died (exit {kernel.poll()})"
    return json.loads(line)


def restart(how: str, node: int) -> None:
    steps = (("kill", str(node)), ("start", str(node))) if how == "node" else (("down",), ("up",))
    for step in steps:
        done = run_lab(*step, timeout=300)
        assert done.returncode == 0, f"lab {' '.join(step)}: {done.stderr[-2000:]}"


def test_one_kernel_survives_six_restarts(lab: Lab, kernel: subprocess.Popen[str]) -> None:
    first = round_trip(kernel, "before")
    assert first["ok"], first["detail"]
    # Every node restarted, one of them before and after the whole lab was (a round of
    # `lab down` and `lab up`, about 40 s here, costs nearly three of a node's `lab kill` and
    # `lab start`; tests/integration/test_lifecycle.py does another down and up).
    plan = [("node", 1), ("whole", 0), ("node", 2), ("node", 3), ("node", 1), ("node", 2)]
    failures = []
    for i, (how, node) in enumerate(plan, 1):
        restart(how, node)
        answer = round_trip(kernel, f"r{i}-{uuid.uuid4().hex[:4]}")
        print(f"\nround {i} after {how} restart{f' of kafka-{node}' if node else ''}: {answer}")
        if not (answer["ok"] and answer["brokers"] == 3):
            failures.append((i, how, answer["detail"]))
    assert failures == []
