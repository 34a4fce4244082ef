"""`lab doctor`: every precondition of `lab up`, each with what to do when it fails."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from lab_env import artifacts, monitoring, ports
from lab_env.config import APICURIO_VERSION, KAFKA_VERSION, REGISTRY_JAVA_MIN_MAJOR, LabConfig
from lab_env.errors import LabError
from lab_env.java import find_java
from lab_env.processes import Registry

MIN_FREE_GIB = 2.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True  # False: the lab works without it, with less to show


def _java(cfg: LabConfig, minimum: int | None, purpose: str) -> Check:
    try:
        java = find_java(cfg) if minimum is None else find_java(cfg, minimum, purpose)
    except LabError as exc:
        return Check(f"Java for {purpose}", False, str(exc))
    return Check(f"Java for {purpose}", True, f"{java.version} at {java.path}")


def _ports(cfg: LabConfig) -> Check:
    mine = {p for r in Registry(cfg.home / "run").all() if r.state() != "stopped" for p in r.ports}
    busy = [
        f"{port} ({what}) held by {ports.holder(port)}"
        for what, port in cfg.ports.named().items()
        if port not in mine and not ports.is_free(cfg.host, port)
    ]
    if busy:
        return Check(
            "ports",
            False,
            "; ".join(busy),
            "stop those processes or move the lab (see `lab config`)",
        )
    return Check("ports", True, "all free or held by this lab")


def _disk(cfg: LabConfig) -> Check:
    target = cfg.home if cfg.home.exists() else cfg.home.parent
    while not target.exists():
        target = target.parent
    free = shutil.disk_usage(target).free / 2**30
    ok = free >= MIN_FREE_GIB
    return Check(
        "disk",
        ok,
        f"{free:.1f} GiB free under {target}",
        "" if ok else f"free at least {MIN_FREE_GIB} GiB, or set KAFKA_LAB_HOME to a larger disk",
    )


def _cache(cfg: LabConfig) -> list[Check]:
    out = []
    for name in artifacts.CLOSURES:
        path = artifacts.closure_dir(cfg, name)
        if not path.exists():
            out.append(Check(f"cache: {name}", True, "not fetched yet (`lab up` fetches it)"))
            continue
        problems = artifacts.problems(path, deep=True)
        out.append(
            Check(
                f"cache: {name}",
                not problems,
                "; ".join(problems) or f"verified ({path})",
                f"delete {path}; the next `lab up` fetches it again" if problems else "",
            )
        )
    return out


def checks(cfg: LabConfig) -> list[Check]:
    out = [
        _java(cfg, None, f"Kafka {KAFKA_VERSION}"),
        _java(cfg, REGISTRY_JAVA_MIN_MAJOR, f"Apicurio Registry {APICURIO_VERSION}"),
    ]
    mvn = shutil.which("mvn")
    out.append(
        Check(
            "Maven",
            bool(mvn),
            mvn or "not on PATH",
            "" if mvn else "install Maven (`sudo apt-get install maven` / `brew install maven`)",
        )
    )
    prom = monitoring.prometheus_binary(cfg)
    out.append(
        Check(
            "Prometheus",
            bool(prom),
            prom or "not found: the exporters still serve",
            ""
            if prom
            else "install it (`sudo apt-get install prometheus` / `brew install prometheus`)",
            required=False,
        )
    )
    out += [_ports(cfg), _disk(cfg), *_cache(cfg)]
    return out
