"""Lab 01's ordering check against the answers a learner plausibly writes: the solution and a
harmless variant pass; a topic without keys, and events placed on a partition by hand with the
right key, fail with the message that says why."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from lab_env.api import Lab
from lab_env.checks import LabCheckError
from lab_env.lab_checks.concepts import PARTITIONS, check_per_order_ordering, order_events

EVENTS = order_events(20)


def produce(lab: Lab, topic: str, settings: dict[str, Any], place: Callable[[dict], dict]) -> None:
    producer = lab.producer({"acks": "all", **settings})
    for event in EVENTS:
        producer.produce(topic, value=json.dumps(event), **place(event))
    assert producer.flush(30) == 0


ANSWERS = {
    # what the learner wrote: (producer settings, produce() arguments per event)
    "the solution: key=order_id": ({}, lambda e: {"key": e["order_id"]}),
    "harmless: murmur2_random, Java's hash": (
        {"partitioner": "murmur2_random"},
        lambda e: {"key": e["order_id"]},
    ),
    "no key": ({}, lambda e: {"key": None}),
    "the right key, but partition=0 by hand": (
        {},
        lambda e: {"key": e["order_id"], "partition": 0},
    ),
}
FAILS_WITH = {
    # Without keys the sticky partitioner may put every event in one partition, or spread them:
    # either way the check asks for the order id as the key.
    "no key": "Key each event by its order id",
    "the right key, but partition=0 by hand": "placed by hand",
}


@pytest.mark.parametrize("answer", ANSWERS)
def test_the_ordering_check_tells_right_from_wrong(
    lab: Lab, make_topic: Callable[..., str], answer: str
) -> None:
    topic = make_topic(partitions=PARTITIONS)
    settings, place = ANSWERS[answer]
    produce(lab, topic, settings, place)
    if answer not in FAILS_WITH:
        check_per_order_ordering(lab, topic, EVENTS)
        return
    with pytest.raises(LabCheckError, match=re.escape(FAILS_WITH[answer])):
        check_per_order_ordering(lab, topic, EVENTS)
