"""Progress records and their aggregation (pure: no cluster), the capture of check attempts from
the stack and from tracebacks, and the workshop's names, grants and lab.toml snippet."""

from __future__ import annotations

import json
import types
from dataclasses import replace
from typing import Any

import pytest

from lab_env import progress, workshop
from lab_env.api import with_prefix
from lab_env.checks import LabCheckError, passed, require
from lab_env.config import LabConfig, load_config
from lab_env.errors import LabError


def attempt(learner: str, check: str, ok: bool, time: str, lab: str = "02-producers") -> Any:
    return progress.Attempt(learner, lab, check, ok, "" if ok else f"{check} failed", time)


ATTEMPTS = [
    attempt("ann", "check_a", False, "2025-01-01T10:00:00.000+00:00"),
    attempt("ann", "check_a", True, "2025-01-01T10:05:00.000+00:00"),
    attempt("bob", "check_a", False, "2025-01-01T10:01:00.000+00:00"),
    attempt("bob", "check_a", False, "2025-01-01T10:02:00.000+00:00"),
    attempt("bob", "check_b", True, "2025-01-01T10:03:00.000+00:00"),
    attempt("cid", "check_b", True, "2025-01-01T10:04:00.000+00:00"),
    attempt("cid", "check_b", False, "2025-01-01T10:06:00.000+00:00"),  # passed, then broke it
    attempt("cid", "check_c", True, "2025-01-01T10:07:00.000+00:00", lab="03-groups"),
]


def test_a_record_round_trips_as_json() -> None:
    one = ATTEMPTS[0]
    data = json.loads(one.encode())
    assert set(data) == set(progress.FIELDS) and data["passed"] is False
    assert progress.decode(one.encode()) == one


@pytest.mark.parametrize(
    "value", [None, b"", b"not json", b"[]", b'{"learner": "x"}', b'{"passed": "yes"}']
)
def test_foreign_records_are_skipped(value: bytes | None) -> None:
    assert progress.decode(value) is None
    bad_type = json.loads(ATTEMPTS[0].encode()) | {"passed": "yes"}
    assert progress.decode(json.dumps(bad_type)) is None


def test_messages_are_truncated() -> None:
    assert progress.truncate("x" * 10, 5) == "xxxx…"
    assert progress.truncate("short", 5) == "short"


def test_latest_status_is_the_last_attempt_per_learner_and_check() -> None:
    latest = progress.latest(progress.to_frame(ATTEMPTS))
    rows = {(r.learner, r.check): (r.passed, r.attempts) for r in latest.itertuples()}
    assert rows == {
        ("ann", "check_a"): (True, 2),
        ("bob", "check_a"): (False, 2),
        ("bob", "check_b"): (True, 1),
        ("cid", "check_b"): (False, 2),
        ("cid", "check_c"): (True, 1),
    }


def test_pass_counts_and_where_the_room_is_stuck() -> None:
    df = progress.to_frame(ATTEMPTS)
    counts = progress.pass_counts(df).set_index("check")
    assert counts.loc["check_a", ["passed", "failing", "attempts", "failed_attempts"]].tolist() == [
        1,
        1,
        4,
        3,
    ]
    stuck = progress.most_failed(df)
    assert stuck["check"].tolist() == ["check_a", "check_b"]  # 1 failing each; a failed more
    assert stuck.loc[0, "common_message"] == "check_a failed"
    assert "check_c" not in stuck["check"].tolist()


def test_board_and_summary() -> None:
    df = progress.to_frame(ATTEMPTS)
    board = progress.board(df)
    assert board.loc["ann", "02 a"] == "✓" and board.loc["bob", "02 a"] == "✗"
    assert board.loc["ann", "03 c"] == ""
    summary = progress.summary(df)
    assert summary.loc["bob", "02-producers"] == "1/2"
    assert summary.loc["cid", "total"] == "1/3"


def test_no_attempts_give_empty_tables() -> None:
    df = progress.to_frame([])
    assert progress.board(df).empty and progress.summary(df).empty
    assert progress.most_failed(df).empty and progress.pass_counts(df).empty
    assert progress.report([])["attempts"] == 0
    progress.chart(df).to_dict()


def test_the_chart_counts_learners_per_status() -> None:
    spec = progress.chart(progress.to_frame(ATTEMPTS)).to_dict()
    assert spec["mark"]["type"] == "bar"
    values = spec["datasets"][next(iter(spec["datasets"]))]
    assert {"check": "02 a", "status": "failing"} in values


def test_the_off_switch_and_the_topic_name() -> None:
    assert progress.enabled({}) and progress.enabled({"KAFKA_LAB_PROGRESS": "on"})
    assert not progress.enabled({"KAFKA_LAB_PROGRESS": "off"})
    assert not progress.enabled({"KAFKA_LAB_PROGRESS": "OFF "})
    assert progress.topic_name({}) == "lab.progress"
    assert progress.topic_name({"KAFKA_LAB_PROGRESS_TOPIC": "t"}) == "t"


def test_lab_ids_name_the_lab_notebook() -> None:
    assert progress.lab_id("lab_env.lab_checks.tour") == "00-lab-tour"
    assert progress.lab_id("lab_env.lab_checks.nowhere") == "nowhere"
    assert progress.label("02-reliable-fast-producer", "check_x") == "02 x"


# -- capture: which check, and which lab it ran against ------------------------------------------


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[progress.Attempt, LabConfig]]:
    """Attempts handed to ``record``, instead of the cluster."""
    calls: list[tuple[progress.Attempt, LabConfig]] = []
    monkeypatch.setattr(progress, "record", lambda a, c: calls.append((a, c)) or True)
    monkeypatch.delenv("KAFKA_LAB_PROGRESS", raising=False)
    return calls


def checks_module() -> types.ModuleType:
    """A module under lab_env.lab_checks with checks as the real ones are written."""
    module = types.ModuleType("lab_env.lab_checks.fake_for_tests")
    source = (
        "from lab_env.checks import passed, require\n"
        "def check_ok(lab, x):\n    passed(f'x is {x}')\n"
        "def check_bad(lab, x):\n    require(x > 1, f'x must be more than 1, not {x}')\n"
        "def check_settings_only(x):\n    helper(x)\n"
        "def helper(x):\n    require(x, 'x is empty')\n"
    )
    exec(compile(source, "fake_for_tests.py", "exec"), module.__dict__)
    return module


class RealLab:
    def __init__(self, learner: str) -> None:
        self.config = replace(LabConfig(), learner=learner)


def test_a_pass_is_recorded_for_the_check_on_the_stack(recorded: list[Any]) -> None:
    checks_module().check_ok(RealLab("ann"), 3)
    ((one, config),) = recorded
    assert (one.learner, one.lab, one.check, one.passed, one.message) == (
        "ann",
        "fake_for_tests",
        "check_ok",
        True,
        "x is 3",
    )
    assert config.learner == "ann"


def test_a_failure_is_recorded_from_its_traceback(recorded: list[Any]) -> None:
    module = checks_module()
    with pytest.raises(LabCheckError) as caught:
        module.check_bad(RealLab("bob"), 1)
    assert progress.record_failure(caught.value) is True
    assert recorded[0][0].check == "check_bad" and not recorded[0][0].passed
    assert recorded[0][0].message == "x must be more than 1, not 1"
    with pytest.raises(TypeError) as other:
        module.check_bad(RealLab("bob"), None)
    progress.record_failure(other.value)
    assert recorded[1][0].message.startswith("TypeError: ")


def test_a_check_without_a_lab_uses_the_configured_learner(
    recorded: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_LAB_LEARNER", "cid")
    with pytest.raises(LabCheckError) as caught:
        checks_module().check_settings_only("")
    progress.record_failure(caught.value)
    assert recorded[0][0].learner == "cid" and recorded[0][0].check == "check_settings_only"


def test_what_is_not_a_check_attempt_is_not_recorded(recorded: list[Any]) -> None:
    module = checks_module()
    module.check_ok(types.SimpleNamespace(config=None), 1)  # a test's stand-in for the lab
    passed("outside any check")
    with pytest.raises(LabCheckError) as caught:
        require(False, "not in a check")
    assert progress.record_failure(caught.value) is False
    assert progress.record_failure(KeyboardInterrupt()) is False
    assert recorded == []


def test_the_off_switch_records_nothing(
    recorded: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_LAB_PROGRESS", "off")
    checks_module().check_ok(RealLab("ann"), 3)
    assert recorded == []


def test_recording_problems_never_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(progress, "_record_frame", broken)
    monkeypatch.delenv("KAFKA_LAB_PROGRESS", raising=False)
    checks_module().check_ok(RealLab("ann"), 3)  # prints PASSED, logs, returns


def test_the_notebook_hook_registers_once() -> None:
    registered: list[Any] = []
    events = types.SimpleNamespace(
        callbacks={"post_run_cell": registered},
        register=lambda name, cb: registered.append(cb),
    )
    shell = types.SimpleNamespace(events=events)
    assert progress.watch_notebook(shell) and progress.watch_notebook(shell)
    assert len(registered) == 1
    assert progress.watch_notebook() is False  # not in IPython


# -- workshops: names, grants, the learner's lab.toml ------------------------------------------


@pytest.mark.parametrize("name", ["a.b", "", "9lives", "x" * 65, "ann smith", "ann/"])
def test_bad_learner_names_are_sentences(name: str) -> None:
    with pytest.raises(LabError, match="cannot name a learner"):
        workshop.learner_name(name)


def test_a_learner_is_granted_their_prefix_the_progress_topic_and_reads_of_the_cluster() -> None:
    bindings = workshop.bindings("ann")
    outside = [b for b in bindings if b.name != "ann."]
    assert [(b.name, b.operation.name, b.resource_pattern_type.name) for b in outside] == [
        ("lab.progress", "WRITE", "LITERAL"),
        ("kafka-cluster", "DESCRIBE", "LITERAL"),
        ("kafka-cluster", "DESCRIBE_CONFIGS", "LITERAL"),
    ]
    assert {b.principal for b in bindings} == {"User:ann"}
    assert all(b.resource_pattern_type.name == "PREFIXED" for b in bindings if b.name == "ann.")
    assert not any(b.operation.name in ("ALL", "ALTER", "ALTER_CONFIGS") for b in bindings)


def test_prefixes() -> None:
    assert with_prefix("", "orders") == "orders"
    assert with_prefix("ann.", "orders") == "ann.orders"
    assert with_prefix("ann.", "ann.orders") == "ann.orders"


def test_learner_and_prefix_settings(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KAFKA_LAB_LEARNER", "KAFKA_LAB_PREFIX"):
        monkeypatch.delenv(var, raising=False)
    assert load_config({}).prefix == ""
    assert load_config({"KAFKA_LAB_LEARNER": "ann"}).learner == "ann"
    assert load_config({"KAFKA_LAB_PREFIX": "ann."}).prefix == "ann."
    with pytest.raises(LabError, match="prefix must be"):
        load_config({"KAFKA_LAB_PREFIX": "ann/"})
    toml = tmp_path / "lab.toml"
    toml.write_text('learner = "bob"\nprefix = "bob."\n')
    cfg = load_config({"KAFKA_LAB_CONFIG": str(toml)})
    assert (cfg.learner, cfg.prefix) == ("bob", "bob.")


def test_the_snippet_is_a_lab_toml_for_the_sasl_listener(tmp_path: Any) -> None:
    from lab_env.api import Lab

    lab = Lab(replace(LabConfig(), home=tmp_path))
    text = workshop.snippet(lab, "ann", 'pa"ss')
    toml = tmp_path / "ann.toml"
    toml.write_text(text)
    cfg = load_config({"KAFKA_LAB_CONFIG": str(toml)})
    assert (cfg.backend, cfg.learner, cfg.prefix) == ("external", "ann", "ann.")
    assert cfg.bootstrap() == "127.0.0.1:9292,127.0.0.1:9293,127.0.0.1:9294"
    assert cfg.client["sasl.username"] == "ann" and cfg.client["sasl.password"] == 'pa"ss'
    assert cfg.client["security.protocol"] == "SASL_SSL"
