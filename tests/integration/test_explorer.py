"""The tuning explorer on the real cluster, driven headless as papermill and the tests drive it:
widgets set from code, the Run handler called directly."""

from __future__ import annotations

import pytest

from lab_env.api import Lab
from lab_env.explorer import PERF_KEY, Explorer, latency_frame, throughput_frame
from tests.helpers import Namespace
from tests.tiers import CPU

pytestmark = [pytest.mark.cluster]


def topics(lab: Lab) -> set[str]:
    """The tuning runs' topics in ``lab``'s namespace (a run elsewhere in the suite adds its own
    outside it)."""
    prefix = lab.topic("tuning.")
    return {t for t in lab.admin().list_topics(timeout=10).topics if t.startswith(prefix)}


def test_a_run_appends_one_row_and_its_chart_data(namespace: Namespace) -> None:
    lab = namespace.lab
    explorer = Explorer(lab, deadline_s=60)
    before = topics(lab)
    explorer.configure({"records": 5_000, "linger.ms": 10, "compression.type": "lz4"})
    explorer.on_run(None)
    assert len(explorer.results) == 1, explorer.message.value
    run = explorer.results.iloc[0]
    assert (run["engine"], run["records"], run["failed"]) == ("python", 5_000, 0)
    assert run["linger.ms"] == 10 and run["compression.type"] == "lz4"
    assert run["records/s"] > 0 and run["p99 ms"] >= run["p50 ms"]
    assert len(throughput_frame(explorer.results)) == 2
    assert len(latency_frame(explorer.results)) == 3
    assert explorer.figure is not None and explorer.progress.value == 5_000
    assert "Not run" not in explorer.message.value
    assert topics(lab) == before  # the run's topic is gone


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"acks": "1"}, "needs acks=all"),
        ({"max.in.flight.requests.per.connection": 6}, "at most 5 requests in flight"),
        ({"keys": "uniform", PERF_KEY: True}, "unkeyed records of random letters"),
        ({"mode": "consume", "consume(num_messages)": 0}, "must be a number from 1"),
    ],
)
def test_an_invalid_combination_says_why_and_appends_nothing(
    lab: Lab, values: dict[str, object], fragment: str
) -> None:
    explorer = Explorer(lab)
    explorer.configure({"records": 1_000, **values})
    assert explorer.run_once() == []
    assert fragment in explorer.message.value.replace("&#x27;", "'")
    assert "Traceback" not in explorer.message.value
    assert explorer.results.empty and explorer.figure is None


@CPU  # two producers at full speed
def test_the_perf_tool_runs_beside_the_python_producer(lab: Lab) -> None:
    explorer = Explorer(lab)
    explorer.configure({"records": 50_000, PERF_KEY: True})
    rows = explorer.run_once()
    assert [r["engine"] for r in rows] == ["python", "java"], explorer.message.value
    java = explorer.results.iloc[1]
    assert java["records"] == 50_000 and java["records/s"] > 0 and java["p99 ms"] > 0
    assert java["linger.ms"] == explorer.results.iloc[0]["linger.ms"]  # the same settings
    assert set(throughput_frame(explorer.results)["engine"]) == {"python", "java"}


@CPU  # two producers at full speed
def test_consume_mode_reads_what_it_wrote_with_the_perf_tool_beside(lab: Lab) -> None:
    explorer = Explorer(lab)
    explorer.configure(
        {"mode": "consume", "records": 20_000, "consume(num_messages)": 1000, PERF_KEY: True}
    )
    rows = explorer.run_once()
    assert [r["engine"] for r in rows] == ["python", "java"], explorer.message.value
    assert all(r["records"] == 20_000 for r in rows)
    assert rows[0]["batch"] == 1000 and rows[0]["complete"]
    assert latency_frame(explorer.results).empty  # consume runs have no delivery latency
