"""Module 06's tuning explorer: widgets named with the clients' real keys, a *Run* button, and
charts of every run so far.

    explorer = Explorer(lab)
    explorer  # in a notebook: the controls, a progress bar, messages, the charts
    explorer.configure({"linger.ms": 20, "compression.type": "lz4", "records": 50_000})
    explorer.run_once()  # what the button does; headless too
    explorer.results  # one row per run (pandas)

The widgets only collect values: settings are checked by ``lab_env.tuning`` (a refused
combination shows its sentence, nothing runs, nothing is appended) and the runs are its bounded
benchmarks on the live cluster.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import altair as alt
import ipywidgets as widgets
import pandas as pd
from IPython import get_ipython
from IPython.display import display

from lab_env import tuning
from lab_env.api import Lab
from lab_env.errors import LabError
from lab_env.tuning import InvalidSettings, ProduceSpec

PRODUCER_KEYS = tuple(tuning.PRODUCER_DEFAULTS)
CONSUMER_KEYS = tuple(tuning.CONSUMER_DEFAULTS)
SPEC_KEYS = (
    "records",
    "message bytes",
    "keys",
    "payload",
    "partitions",
    "processes",
    "produce_batch",
)
MODES = ("produce", "consume")
BATCH_KEY = "consume(num_messages)"
PERF_KEY = "also run Kafka's perf tool"
MAX_BATCH = 1_000_000
LINGER_MAX_MS = 500  # the slider's end; lab_env.tuning accepts up to 900,000 from code
LATENCIES = ("p50 ms", "p95 ms", "p99 ms")
RATES = ("records/s", "MB/s")
TABLE_COLUMNS = ("run", "label", "engine", "records", "failed", *RATES, *LATENCIES)


def _controls() -> dict[str, widgets.ValueWidget]:
    """One widget per setting, described by its real key; values are checked by tuning."""
    defaults, style = tuning.PRODUCER_DEFAULTS, {"description_width": "initial"}
    spec = ProduceSpec()
    # As wide as its column, no wider: the label keeps its natural width, the field the rest.
    fill = {"width": "100%"}

    def number(key: str, value: int) -> widgets.IntText:
        return widgets.IntText(value=value, description=key, style=style, layout=fill)

    def choice(key: str, options: tuple[str, ...], value: str) -> widgets.Dropdown:
        return widgets.Dropdown(
            options=options, value=value, description=key, style=style, layout=fill
        )

    def tick(key: str, value: bool) -> widgets.Checkbox:
        return widgets.Checkbox(value=value, description=key, indent=False, layout=fill)

    return {
        "mode": widgets.ToggleButtons(options=MODES, value="produce", description="mode"),
        "batch.size": number("batch.size", defaults["batch.size"]),
        "linger.ms": widgets.IntSlider(
            value=defaults["linger.ms"],
            min=0,
            max=LINGER_MAX_MS,
            description="linger.ms",
            style=style,
            layout=fill,
            continuous_update=False,
        ),
        "compression.type": choice("compression.type", tuning.COMPRESSION, "none"),
        "acks": choice("acks", ("0", "1", "all"), defaults["acks"]),
        "enable.idempotence": tick("enable.idempotence", defaults["enable.idempotence"]),
        "max.in.flight.requests.per.connection": number(
            "max.in.flight.requests.per.connection",
            defaults["max.in.flight.requests.per.connection"],
        ),
        "records": number("records", spec.records),
        "message bytes": number("message bytes", spec.message_bytes),
        "keys": choice("keys", tuning.KEYS, spec.keys),
        "payload": choice("payload", tuning.PAYLOADS, spec.payload),
        "partitions": number("partitions", spec.partitions),
        "processes": number("processes", spec.processes),
        "produce_batch": number("produce_batch", spec.produce_batch),
        "fetch.min.bytes": number("fetch.min.bytes", tuning.CONSUMER_DEFAULTS["fetch.min.bytes"]),
        "fetch.wait.max.ms": number(
            "fetch.wait.max.ms", tuning.CONSUMER_DEFAULTS["fetch.wait.max.ms"]
        ),
        BATCH_KEY: number(BATCH_KEY, 500),
        PERF_KEY: tick(PERF_KEY, False),
    }


def check_batch(batch: object) -> int:
    """The ``consume(num_messages=...)`` batch, checked before a topic is filled for nothing."""
    if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= MAX_BATCH:
        raise InvalidSettings(
            f"{BATCH_KEY} must be a number from 1 to {MAX_BATCH:,}; got {batch!r}."
        )
    return batch


def check_perf_tool(spec: ProduceSpec) -> None:
    """Kafka's perf tools send (and so read) unkeyed random letters only."""
    if spec.keys != "none" or spec.payload != "random":
        raise InvalidSettings(
            f"Kafka's perf tools send unkeyed records of random letters only (here keys="
            f"{spec.keys}, payload={spec.payload}): set keys to none and payload to random to "
            f"compare them with the Python client, or untick {PERF_KEY!r}."
        )


def run_label(number: int, row: dict[str, Any]) -> str:
    """One short label per run: its number, engine, and what differs from the defaults."""
    if row.get("mode") == "consume":
        defaults = tuning.CONSUMER_DEFAULTS
        parts = [f"{k}={row[k]}" for k in CONSUMER_KEYS if row.get(k) != defaults[k]]
        if row.get("batch") is not None:
            parts.append(f"batch={row['batch']}")
    else:
        parts = [
            f"{k}={row[k]}"
            for k in PRODUCER_KEYS
            if k in row and str(row[k]).lower() != str(tuning.PRODUCER_DEFAULTS[k]).lower()
        ]
        if row.get("processes", 1) != 1:
            parts.append(f"{row['processes']} processes")
    shape = [f"{row.get('partitions')}p", str(row.get("payload"))]
    if row.get("keys") != "none":
        shape.append(f"keys={row.get('keys')}")
    return f"#{number} {row['mode']} {row['engine']}: " + ", ".join([*shape, *parts])


def throughput_frame(results: pd.DataFrame) -> pd.DataFrame:
    """Long format for the throughput chart: one row per run and rate."""
    if results.empty:
        return pd.DataFrame(columns=["label", "engine", "measure", "value"])
    frame = results.melt(
        id_vars=["run", "label", "engine"], value_vars=list(RATES), var_name="measure"
    )
    return frame.dropna(subset=["value"])


def latency_frame(results: pd.DataFrame) -> pd.DataFrame:
    """Long format for the latency chart: one row per produce run and percentile."""
    present = [c for c in LATENCIES if c in results.columns]
    if results.empty or not present:
        return pd.DataFrame(columns=["label", "engine", "percentile", "ms"])
    frame = results.melt(
        id_vars=["run", "label", "engine"], value_vars=present, var_name="percentile"
    )
    return frame.rename(columns={"value": "ms"}).dropna(subset=["ms"])


def charts(results: pd.DataFrame) -> alt.VConcatChart:
    """Throughput (records/s, MB/s) and latency percentiles, one bar group per run."""
    rates = throughput_frame(results)
    order = list(results["label"]) if not results.empty else []
    rate_chart = (
        alt.Chart(rates)
        .mark_bar()
        .encode(
            x=alt.X("value:Q", title=None),
            y=alt.Y("label:N", sort=order, title=None),
            color=alt.Color("engine:N"),
            column=alt.Column("measure:N", title="throughput", sort=list(RATES)),
            tooltip=["label", "measure", "value"],
        )
        .resolve_scale(x="independent")
        .properties(width=260)
    )
    latency_chart = (
        alt.Chart(latency_frame(results))
        .mark_bar()
        .encode(
            x=alt.X("ms:Q", title="delivery latency (ms)"),
            y=alt.Y("label:N", sort=order, title=None),
            yOffset=alt.YOffset("percentile:N", sort=list(LATENCIES)),
            color=alt.Color("percentile:N", sort=list(LATENCIES)),
            tooltip=["label", "percentile", "ms"],
        )
        .properties(width=560, title="latency percentiles (produce runs)")
    )
    return alt.vconcat(rate_chart, latency_chart)


class Explorer:
    """The widgets, the runs' table and the charts; ``run_once()`` is the *Run* button."""

    def __init__(self, lab: Lab, deadline_s: float = 60.0) -> None:
        self.lab, self.deadline_s = lab, deadline_s
        self.controls = _controls()
        self.button = widgets.Button(description="Run", button_style="primary")
        self.button.on_click(self.on_run)
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="progress")
        self.message = widgets.HTML(value="")
        self.output = widgets.Output()
        self.results = pd.DataFrame()
        self.figure: alt.VConcatChart | None = None

    # -- values ---------------------------------------------------------------------------

    def configure(self, values: dict[str, Any]) -> None:
        """Set widgets from code, by their keys (as a learner would set them by hand)."""
        unknown = sorted(set(values) - set(self.controls))
        if unknown:
            raise KeyError(f"no control named {unknown}; the controls are {list(self.controls)}")
        for key, value in values.items():
            self.controls[key].value = value

    def value(self, key: str) -> Any:
        return self.controls[key].value

    def spec(self) -> ProduceSpec:
        return ProduceSpec(
            records=self.value("records"),
            message_bytes=self.value("message bytes"),
            keys=self.value("keys"),
            payload=self.value("payload"),
            partitions=self.value("partitions"),
            processes=self.value("processes"),
            produce_batch=self.value("produce_batch"),
            deadline_s=self.deadline_s,
        )

    def producer_overrides(self) -> dict[str, Any]:
        return {key: self.value(key) for key in PRODUCER_KEYS}

    def consumer_overrides(self) -> dict[str, Any]:
        return {key: self.value(key) for key in CONSUMER_KEYS}

    # -- the button -----------------------------------------------------------------------

    def on_run(self, _button: object = None) -> None:
        self.run_once()

    def run_once(self) -> list[dict[str, Any]]:
        """Check the values, run the benchmark(s), append the rows and redraw; the new rows.

        A refused setting or combination (or a run that could not be done) shows its sentence
        in the message area and appends nothing.
        """
        self.message.value = ""
        self.button.disabled = True
        try:
            rows = self._run()
        except LabError as exc:  # InvalidSettings included: a sentence, never a traceback
            self.message.value = f"<b>Not run:</b> {html.escape(str(exc))}"
            return []
        finally:
            self.button.disabled = False
        added = self._append(rows)
        self._report(added)
        self.redraw()
        return added

    def _run(self) -> list[dict[str, Any]]:
        spec = self.spec()
        spec.check()
        perf = bool(self.value(PERF_KEY))
        if perf:
            check_perf_tool(spec)
        if self.value("mode") == "consume":
            settings = tuning.consumer_settings(self.consumer_overrides())
            return self._consume(spec, settings, check_batch(self.value(BATCH_KEY)), perf)
        settings = tuning.producer_settings(self.producer_overrides())
        rows = [tuning.produce(self.lab, spec, settings, progress=self._progress(spec.records))]
        if perf:
            self._busy("kafka-producer-perf-test ...")
            rows.append(tuning.java_produce(self.lab, spec, settings))
        return rows

    def _consume(
        self, spec: ProduceSpec, settings: dict[str, Any], batch: int, perf: bool
    ) -> list[dict[str, Any]]:
        self._busy(f"writing {spec.records:,} records to read ...")
        topic = tuning.fill(self.lab, spec)
        try:
            progress = self._progress(spec.records)
            rows = [
                tuning.consume(
                    self.lab, topic, settings, batch, spec.records, self.deadline_s, progress
                )
            ]
            if perf:
                self._busy("kafka-consumer-perf-test ...")
                rows.append(tuning.java_consume(self.lab, topic, spec.records, settings))
        finally:
            self.lab.delete_topic(topic)
        shape = {
            "message bytes": spec.message_bytes,
            "partitions": spec.partitions,
            "keys": spec.keys,
            "payload": spec.payload,
        }
        return [{**shape, **row} for row in rows]

    def _progress(self, total: int) -> Callable[[int], None]:
        self.progress.max, self.progress.value = max(total, 1), 0
        self.progress.bar_style, self.progress.description = "info", "progress"

        def update(done: int) -> None:
            self.progress.value = min(done, self.progress.max)

        return update

    def _busy(self, what: str) -> None:
        self.progress.value, self.progress.description = self.progress.max, ""
        self.message.value = html.escape(what)

    # -- the table and the charts -----------------------------------------------------------

    def _append(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        numbered = []
        for row in rows:
            number = len(self.results) + len(numbered) + 1
            row = {"run": number, "mode": self.value("mode"), **row}
            numbered.append({"label": run_label(number, row), **row})
        frame = pd.DataFrame(numbered)
        self.results = frame if self.results.empty else pd.concat([self.results, frame])
        self.results = self.results.reset_index(drop=True)
        return numbered

    def _report(self, rows: list[dict[str, Any]]) -> None:
        problems = [
            f"{r['label']}: {r.get('errors') or 'incomplete (deadline reached)'}"
            for r in rows
            if r.get("failed") or r.get("complete") is False
        ]
        self.progress.bar_style = "warning" if problems else "success"
        if problems:
            self.message.value = "<b>Check these runs:</b> " + html.escape("; ".join(problems))
        else:
            added = f"{len(rows)} run(s) added, {len(self.results)} in all."
            self.message.value = html.escape(added)

    def table(self) -> pd.DataFrame:
        """Every run so far, the columns that compare them."""
        columns = [c for c in TABLE_COLUMNS if c in self.results.columns]
        return self.results[columns].set_index("run") if columns else self.results

    def redraw(self) -> None:
        self.figure = charts(self.results)
        if get_ipython() is None:  # headless (tests, scripts): keep the chart, show nothing
            return
        self.output.clear_output(wait=True)
        with self.output:
            display(self.table())
            display(self.figure)

    def widget(self) -> widgets.VBox:
        c = self.controls
        groups = (
            ("producer", PRODUCER_KEYS),
            ("workload", SPEC_KEYS),
            ("consumer", (*CONSUMER_KEYS, BATCH_KEY, PERF_KEY)),
        )
        # Three columns where they fit, fewer (wrapped) where they do not: a column is never
        # narrower than its longest label and a usable field (max.in.flight... is 37 letters).
        column = {"flex": "1 1 360px", "min_width": "360px", "margin": "0 16px 8px 0"}
        columns = [
            widgets.VBox(
                [widgets.Label(name, style={"font_weight": "bold"}), *(c[k] for k in keys)],
                layout=column,
            )
            for name, keys in groups
        ]
        return widgets.VBox(
            [
                c["mode"],
                widgets.HBox(columns, layout={"flex_flow": "row wrap", "width": "100%"}),
                widgets.HBox([self.button, self.progress]),
                self.message,
                self.output,
            ]
        )

    def _ipython_display_(self) -> None:
        display(self.widget())
        if self.figure is not None:
            self.redraw()
