"""Every lab check attempt, recorded on the lab cluster, and read back for the instructor.

Capture, without touching the checks themselves:

- a check that succeeds ends in ``lab_env.checks.passed()``, which calls ``record_pass``; it finds
  the ``check_*`` function of ``lab_env.lab_checks`` that called it on the stack;
- a check that fails raises (``require`` raises ``LabCheckError``). In a notebook, a
  ``post_run_cell`` callback (``watch_notebook``, registered when ``lab_env.checks`` is imported
  inside IPython) looks at the exception a cell ended with: when its traceback runs through a
  ``check_*`` function of ``lab_env.lab_checks``, that check failed, with that message.

Each attempt is one JSON record on the topic ``lab.progress`` (RF 3, created on first use), keyed
by learner so one learner's attempts stay in order. The cluster is the one the check ran against
(the check's ``lab`` argument), so in a workshop the learner's own SASL_SSL settings are used.

Recording never changes a check's result: every failure to record (cluster down, topic missing,
not allowed) costs at most ``TIMEOUT_S`` seconds and a logged warning, and after one, recording
rests for ``REST_S`` seconds. A check called with a stand-in for the lab (a unit test's fake)
is a rehearsal and is not recorded. ``KAFKA_LAB_PROGRESS=off`` turns recording off.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from functools import cache
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from lab_env.config import REPO, LabConfig, load_config
from lab_env.errors import LabError

if TYPE_CHECKING:
    import altair as alt
    import pandas as pd

    from lab_env.api import Lab

TOPIC = "lab.progress"  # KAFKA_LAB_PROGRESS_TOPIC names another (the tests use their own)
PARTITIONS = 3
REPLICATION_FACTOR = 3
RETENTION_MS = 30 * 24 * 3600 * 1000  # a month: long enough for a course, then it goes
TIMEOUT_S = 2.0  # the most a check waits for its attempt to be recorded
REST_S = 10.0  # after a failed recording, later attempts are not recorded for this long
MESSAGE_CHARS = 500
CHECKS_PACKAGE = "lab_env.lab_checks."
OFF = ("off", "0", "false", "no")
# Errors after which waiting longer is pointless: nothing answers, or it will not let us in.
_HOPELESS = {
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._AUTHENTICATION,
    KafkaError._RESOLVE,
    KafkaError._SSL,
}

log = logging.getLogger(__name__)
# librdkafka's own log lines (a refused connection, every retry) would land in the learner's
# cell output; the recorder reports problems itself, in one sentence.
_client_log = logging.getLogger(f"{__name__}.client")
_client_log.addHandler(logging.NullHandler())
_client_log.propagate = False


@dataclass(frozen=True)
class Attempt:
    """One check attempt, as recorded."""

    learner: str
    lab: str  # the lab notebook, e.g. "02-reliable-fast-producer"
    check: str  # the check function, e.g. "check_idempotent_producer"
    passed: bool
    message: str  # the failure message (truncated), or what passed() said
    time: str  # ISO 8601, UTC

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()


FIELDS = tuple(f.name for f in fields(Attempt))


def decode(value: bytes | str | None) -> Attempt | None:
    """An attempt from its JSON record; None for anything else on the topic."""
    try:
        data = json.loads(value or b"")
        attempt = Attempt(**{name: data[name] for name in FIELDS})
    except (ValueError, TypeError, KeyError):
        return None
    text = (attempt.learner, attempt.lab, attempt.check, attempt.message, attempt.time)
    if not all(isinstance(t, str) for t in text) or not isinstance(attempt.passed, bool):
        return None
    return attempt


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get("KAFKA_LAB_PROGRESS", "on").strip().lower() not in OFF


def topic_name(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("KAFKA_LAB_PROGRESS_TOPIC") or TOPIC


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def truncate(message: str, limit: int = MESSAGE_CHARS) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


@cache
def lab_id(module: str) -> str:
    """The lab notebook whose checks live in ``module`` (the solution that imports it), e.g.
    ``lab_env.lab_checks.producers`` -> ``02-reliable-fast-producer``; else the module's name."""
    needle = f"from {module} import"
    for path in sorted((REPO / "solutions").glob("*.ipynb")):
        try:
            if needle in path.read_text(encoding="utf-8"):
                return path.stem
        except OSError:
            continue
    return module.removeprefix(CHECKS_PACKAGE)


# -- capture -------------------------------------------------------------------------------------


def _is_check(frame: FrameType) -> bool:
    module = frame.f_globals.get("__name__", "")
    return frame.f_code.co_name.startswith("check_") and module.startswith(CHECKS_PACKAGE)


def _outward(frame: FrameType | None, limit: int = 100) -> Iterator[FrameType]:
    """The stack from ``frame`` outwards (callers), at most ``limit`` frames."""
    for _ in range(limit):
        if frame is None:
            return
        yield frame
        frame = frame.f_back


def _inward(tb: TracebackType | None, limit: int = 1000) -> Iterator[FrameType]:
    """A traceback's frames from the outermost (the cell) inwards, at most ``limit``."""
    for _ in range(limit):
        if tb is None:
            return
        yield tb.tb_frame
        tb = tb.tb_next


def _config_of(frame: FrameType) -> LabConfig | None:
    """The configuration of the lab the check ran against; None for a stand-in (a test fake)."""
    if "lab" not in frame.f_locals:
        return load_config()  # a check of settings alone: the learner's configured lab
    config = getattr(frame.f_locals["lab"], "config", None)
    return config if isinstance(config, LabConfig) else None


def _record_frame(frame: FrameType, passed: bool, message: str) -> bool:
    config = _config_of(frame)
    if config is None:
        return False
    attempt = Attempt(
        learner=config.learner,
        lab=lab_id(frame.f_globals["__name__"]),
        check=frame.f_code.co_name,
        passed=passed,
        message=truncate(message),
        time=now(),
    )
    return record(attempt, config)


def record_pass(what: str) -> bool:
    """``lab_env.checks.passed`` calls this: a pass for the check on the stack. Never raises."""
    if not enabled():
        return False
    try:
        frame = next((f for f in _outward(sys._getframe(1)) if _is_check(f)), None)
        return frame is not None and _record_frame(frame, True, what)
    except Exception as exc:  # recording must never change a check's result
        log.warning("Progress not recorded: %s. The check's result stands.", exc)
        return False


def record_failure(exc: BaseException) -> bool:
    """A failure for the outermost check ``exc`` escaped from; False when it came from no
    check (or was an interrupt, not a failure). Never raises."""
    if not enabled() or not isinstance(exc, Exception):
        return False
    try:
        from lab_env.checks import LabCheckError

        frame = next((f for f in _inward(exc.__traceback__) if _is_check(f)), None)
        if frame is None:
            return False
        text = str(exc) if isinstance(exc, LabCheckError) else f"{type(exc).__name__}: {exc}"
        return _record_frame(frame, False, text)
    except Exception as problem:  # as in record_pass
        log.warning("Progress not recorded: %s. The check's result stands.", problem)
        return False


def _after_cell(result: Any) -> None:
    error = getattr(result, "error_in_exec", None)
    if error is not None:
        record_failure(error)


def watch_notebook(shell: Any = None) -> bool:
    """Record failed checks in this IPython session (``lab_env.checks`` calls this on import).

    A ``post_run_cell`` callback adds to whatever else the notebook registered, and leaves the
    traceback the learner sees untouched (unlike a custom exception handler, which replaces
    IPython's display). Outside IPython, nothing happens and False is returned."""
    if shell is None:
        ipython = sys.modules.get("IPython")  # loaded only in IPython: never import it here
        shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return False
    registered = shell.events.callbacks.get("post_run_cell", [])
    if not any(getattr(cb, "__qualname__", "") == _after_cell.__qualname__ for cb in registered):
        shell.events.register("post_run_cell", _after_cell)
    return True


# -- recording -----------------------------------------------------------------------------------


class Recorder:
    """What the lab knows of one cluster configuration between attempts (the progress topic
    exists; the cluster failed to answer a moment ago). Each write makes its own producer and
    drops it: no client outlives the attempt it records (a producer kept in a notebook kernel
    would live through every `lab down` and `lab up`)."""

    def __init__(self, client: dict[str, Any]) -> None:
        self.client = client
        self.errors: list[KafkaError] = []
        self.producer: Producer | None = None  # only while a write runs
        self.ready: set[str] = set()  # topics known to exist
        self.resting_until = 0.0
        self.lock = threading.Lock()

    def write(self, attempt: Attempt, timeout: float = TIMEOUT_S) -> str | None:
        """Record ``attempt``; None when the cluster acknowledged it, else why not."""
        with self.lock:
            deadline = time.monotonic() + timeout
            self.errors = []
            self.producer = Producer(
                {
                    **self.client,
                    "acks": "all",
                    "linger.ms": 0,
                    "socket.connection.setup.timeout.ms": int(TIMEOUT_S * 1000),
                    "error_cb": self.errors.append,
                    "logger": _client_log,
                }
            )
            try:
                topic = topic_name()
                problem = None if topic in self.ready else self._ensure_topic(topic, deadline)
                if problem is None:
                    problem = self._send(topic, attempt, deadline)
                if problem is not None:
                    self.producer.purge()
                    self.producer.poll(0)
                    self.resting_until = time.monotonic() + REST_S
                return problem
            finally:
                self.producer = None  # destroyed here: nothing is left in flight

    def _hopeless(self) -> str | None:
        bad = [e for e in self.errors if e.code() in _HOPELESS]
        return bad[0].str() if bad else None

    def _ensure_topic(self, topic: str, deadline: float) -> str | None:
        while time.monotonic() < deadline:
            try:
                metadata = self.producer.list_topics(topic, timeout=min(0.2, _left(deadline)))
            except KafkaException:
                metadata = None
            if metadata is not None:
                entry = metadata.topics.get(topic)
                if entry is not None and entry.error is None:
                    self.ready.add(topic)
                    return None
                if entry is not None and entry.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    return self._create_topic(topic, len(metadata.brokers), deadline)
                if entry is not None:
                    return f"{topic}: {entry.error.str()}"
            self.producer.poll(0.05)
            if hopeless := self._hopeless():
                return hopeless
        return f"no answer within {TIMEOUT_S:.0f} s"

    def _create_topic(self, topic: str, brokers: int, deadline: float) -> str | None:
        new = NewTopic(
            topic,
            PARTITIONS,
            max(1, min(REPLICATION_FACTOR, brokers)),
            config={"retention.ms": str(RETENTION_MS)},
        )
        try:
            with AdminClient({**self.client, "logger": _client_log}) as admin:
                timeout = max(0.1, _left(deadline))
                admin.create_topics([new], request_timeout=timeout)[topic].result(timeout=timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                return (
                    f"{topic} does not exist and could not be created ({exc.args[0].str()}); "
                    "an instructor's `lab workshop add-learner` creates it"
                )
        except TimeoutError:
            return f"creating {topic} took longer than {TIMEOUT_S:.0f} s"
        self.ready.add(topic)
        return None

    def _send(self, topic: str, attempt: Attempt, deadline: float) -> str | None:
        outcome: list[KafkaError | None] = []
        self.producer.produce(
            topic,
            key=attempt.learner.encode(),
            value=attempt.encode(),
            on_delivery=lambda error, _msg: outcome.append(error),
        )
        while not outcome and time.monotonic() < deadline:
            self.producer.poll(0.02)
            if hopeless := self._hopeless():
                return hopeless
        if not outcome:
            return f"not acknowledged within {TIMEOUT_S:.0f} s"
        return None if outcome[0] is None else outcome[0].str()


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


_recorders: dict[tuple[tuple[str, str], ...], Recorder] = {}


def recorder(client: dict[str, Any]) -> Recorder:
    key = tuple(sorted((k, str(v)) for k, v in client.items()))
    if key not in _recorders:
        _recorders[key] = Recorder(client)
    return _recorders[key]


def record(attempt: Attempt, config: LabConfig, timeout: float = TIMEOUT_S) -> bool:
    """Write one attempt to the cluster of ``config``; True when it was acknowledged. Never
    raises: a problem is one logged warning, after at most ``timeout`` seconds."""
    if not enabled():
        return False
    try:
        chosen = recorder(config.client_config())
        if time.monotonic() < chosen.resting_until:
            log.info("Progress not recorded (%s): resting after a failure.", attempt.check)
            return False
        problem = chosen.write(attempt, timeout)
    except Exception as exc:  # recording must never change a check's result
        problem = str(exc)
    if problem is not None:
        log.warning(
            "Progress not recorded (%s at %s): %s. The check's result stands.",
            attempt.check,
            config.bootstrap(),
            problem,
        )
    return problem is None


# -- reading -------------------------------------------------------------------------------------


def ensure_topic(lab: Lab) -> None:
    """Create the progress topic if it is missing (instructors; learners may not create it)."""
    lab.create_topic(
        topic_name(),
        PARTITIONS,
        REPLICATION_FACTOR,
        config={"retention.ms": str(RETENTION_MS)},
        exist_ok=True,
    )


def read_attempts(lab: Lab, timeout: float = 30.0) -> list[Attempt]:
    """Every attempt on the progress topic, in no particular order (none before the first)."""
    from lab_env.records import read_all

    topic = topic_name()
    try:
        entry = lab.admin().list_topics(topic, timeout=5).topics.get(topic)
    except KafkaException as exc:
        raise LabError(
            f"Could not reach the cluster at {lab.bootstrap_servers} to read {topic} "
            f"({exc.args[0].str()}). Is the lab up? `lab status` says."
        ) from None
    if entry is None or entry.error is not None:
        return []
    records = read_all(lab, topic, timeout=timeout)
    return [a for a in (decode(r["value"]) for r in records) if a is not None]


def to_frame(attempts: list[Attempt]) -> pd.DataFrame:
    """All attempts, oldest first; ``time`` as UTC timestamps."""
    import pandas as pd

    df = pd.DataFrame([asdict(a) for a in attempts], columns=list(FIELDS))
    df["time"] = pd.to_datetime(df["time"], utc=True, format="ISO8601")
    df["passed"] = df["passed"].astype(bool)
    return df.sort_values("time", kind="stable").reset_index(drop=True)


def latest(df: pd.DataFrame) -> pd.DataFrame:
    """Each (learner, lab, check): its latest attempt, and how many attempts it took."""
    keys = ["learner", "lab", "check"]
    last = df.groupby(keys, as_index=False).tail(1).set_index(keys)
    last["attempts"] = df.groupby(keys).size()
    return last.reset_index().sort_values(keys).reset_index(drop=True)


def pass_counts(df: pd.DataFrame) -> pd.DataFrame:
    """Each (lab, check): learners whose latest attempt passed, who are failing, attempts."""
    import pandas as pd

    columns = ["lab", "check", "passed", "failing", "learners", "attempts", "failed_attempts"]
    if df.empty:
        return pd.DataFrame(columns=columns)
    now_ = latest(df)
    counts = now_.groupby(["lab", "check"]).agg(
        passed=("passed", "sum"), learners=("learner", "nunique"), attempts=("attempts", "sum")
    )
    counts["failing"] = counts["learners"] - counts["passed"]
    counts["failed_attempts"] = (~df["passed"]).groupby([df["lab"], df["check"]]).sum()
    return counts.reset_index()[columns].astype({c: int for c in columns[2:]})


def most_failed(df: pd.DataFrame, top: int = 5) -> pd.DataFrame:
    """Where the room is stuck: checks with the most learners failing right now (then the most
    failed attempts), with the failure message those learners see most often."""
    counts = pass_counts(df)
    counts = counts[counts["failed_attempts"] > 0]
    if counts.empty:
        return counts.assign(common_message=[])
    now_ = latest(df)
    failing = now_[~now_["passed"]]
    common = failing.groupby(["lab", "check"])["message"].agg(lambda m: m.value_counts().index[0])
    counts = counts.join(common.rename("common_message"), on=["lab", "check"])
    counts["common_message"] = counts["common_message"].fillna("")
    ranked = counts.sort_values(["failing", "failed_attempts"], ascending=False, kind="stable")
    return ranked.head(top).reset_index(drop=True)


def label(lab: str, check: str) -> str:
    """A short column name: ``02 idempotent_producer``."""
    number = lab.split("-", 1)[0]
    return f"{number if number.isdigit() else lab} {check.removeprefix('check_')}"


def labels(df: pd.DataFrame) -> list[str]:
    return [label(lab, check) for lab, check in zip(df["lab"], df["check"], strict=True)]


def board(df: pd.DataFrame) -> pd.DataFrame:
    """Learners x checks: "✓" latest attempt passed, "✗" failing, "" not tried yet."""
    import pandas as pd

    if df.empty:
        return pd.DataFrame()
    now_ = latest(df)
    now_["column"] = labels(now_)
    now_["mark"] = now_["passed"].map({True: "✓", False: "✗"})
    table = now_.pivot(index="learner", columns="column", values="mark").fillna("")
    return table[sorted(table.columns)]


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Learners x labs: checks passed out of the checks anyone has attempted in that lab."""
    import pandas as pd

    if df.empty:
        return pd.DataFrame()
    now_ = latest(df)
    known = now_.groupby("lab")["check"].nunique()
    passed = now_[now_["passed"]].groupby(["learner", "lab"]).size()
    passed = passed.unstack(fill_value=0).reindex(
        index=sorted(now_["learner"].unique()), columns=known.index, fill_value=0
    )
    table = passed.apply(lambda col: col.astype(str) + "/" + str(known[col.name]))
    table["total"] = passed.sum(axis=1).astype(str) + "/" + str(known.sum())
    return table


def chart(df: pd.DataFrame) -> alt.Chart:
    """Per check: learners passing and failing now (stacked bars)."""
    import altair as alt
    import pandas as pd

    now_ = latest(df) if not df.empty else pd.DataFrame(columns=["lab", "check", "passed"])
    rows = pd.DataFrame(
        {
            "check": labels(now_),
            "status": ["passed" if p else "failing" for p in now_["passed"]],
        }
    )
    return (
        alt.Chart(rows, title="Learners per check: latest attempt")
        .mark_bar()
        .encode(
            y=alt.Y("check:N", sort="ascending", title=None),
            x=alt.X("count():Q", title="learners"),
            color=alt.Color(
                "status:N",
                scale=alt.Scale(domain=["passed", "failing"], range=["#4c9a2a", "#d1495b"]),
            ),
            tooltip=["check:N", "status:N", alt.Tooltip("count():Q", title="learners")],
        )
    )


def report(attempts: list[Attempt]) -> dict[str, Any]:
    """Plain data for ``lab progress --json``."""
    df = to_frame(attempts)
    now_ = latest(df) if not df.empty else df
    return {
        "topic": topic_name(),
        "attempts": len(attempts),
        "learners": sorted(df["learner"].unique().tolist()),
        "latest": json.loads(now_.to_json(orient="records", date_format="iso")),
        "checks": json.loads(pass_counts(df).to_json(orient="records")),
        "most_failed": json.loads(most_failed(df).to_json(orient="records")),
    }
