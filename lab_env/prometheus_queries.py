"""A small PromQL client: Prometheus's HTTP API answers as pandas DataFrames.

One row per sample, one column per label, plus ``value`` (and ``time`` for range queries), so a
lesson can filter, pivot and chart what Prometheus holds without re-parsing JSON.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import requests

from lab_env.errors import LabError


class PromQLError(LabError):
    """Prometheus refused a query; the message is the server's own (e.g. a parse error)."""


def _get(url: str, path: str, params: dict[str, Any] | None = None) -> Any:
    reply = requests.get(f"{url}{path}", params=params, timeout=15)
    try:
        body = reply.json()
    except ValueError as exc:
        text = reply.text[:200]
        raise PromQLError(f"{path}: HTTP {reply.status_code}, not JSON: {text}") from exc
    if body.get("status") != "success":
        kind, error = body.get("errorType", "error"), body.get("error", reply.text[:200])
        raise PromQLError(f"{kind}: {error}")
    return body["data"]


def instant(url: str, query: str, at: float | None = None) -> pd.DataFrame:
    """``query`` evaluated at one instant (now, or the Unix time ``at``)."""
    params: dict[str, Any] = {"query": query}
    if at is not None:
        params["time"] = at
    data = _get(url, "/api/v1/query", params)
    if data["resultType"] == "scalar":
        return pd.DataFrame([{"value": float(data["result"][1])}])
    rows = [{**r["metric"], "value": float(r["value"][1])} for r in data["result"]]
    return pd.DataFrame(rows, columns=sorted({k for r in rows for k in r} | {"value"}))


def range_query(
    url: str, query: str, start: float, end: float | None = None, step: float = 5.0
) -> pd.DataFrame:
    """``query`` evaluated every ``step`` seconds from ``start`` to ``end`` (Unix times)."""
    end = time.time() if end is None else end
    params = {"query": query, "start": start, "end": end, "step": step}
    rows = [
        {**r["metric"], "time": pd.Timestamp(t, unit="s"), "value": float(v)}
        for r in _get(url, "/api/v1/query_range", params)["result"]
        for t, v in r["values"]
    ]
    return pd.DataFrame(rows, columns=sorted({k for r in rows for k in r} | {"time", "value"}))


def alerts(url: str) -> pd.DataFrame:
    """Every pending or firing alert: ``alertname``, ``state``, its labels and ``activeAt``."""
    rows = [
        {**a["labels"], "state": a["state"], "activeAt": a.get("activeAt")}
        for a in _get(url, "/api/v1/alerts")["alerts"]
    ]
    return pd.DataFrame(rows, columns=sorted({k for r in rows for k in r} | {"alertname", "state"}))


def alert_states(url: str) -> dict[str, str]:
    """``{alertname: state}``; ``firing`` wins when one rule has alerts in both states."""
    states: dict[str, str] = {}
    for a in _get(url, "/api/v1/alerts")["alerts"]:
        name = a["labels"]["alertname"]
        if states.get(name) != "firing":
            states[name] = a["state"]
    return states


def rule_groups(url: str) -> list[dict[str, Any]]:
    """The loaded alerting rule groups, each with its ``file`` and rules' ``state``."""
    return _get(url, "/api/v1/rules", {"type": "alert"})["groups"]
