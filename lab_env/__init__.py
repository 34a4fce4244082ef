"""Kafka Microservices Lab: a real 3-node KRaft cluster, a schema registry and Prometheus.

``from lab_env import lab`` gives the notebooks' entry point (:class:`lab_env.api.Lab`), built
from the configuration the first time it is used. Imported in a Jupyter kernel, it also makes
altair draw charts without a CDN (:mod:`lab_env.display`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lab_env.display import in_kernel, offline_charts
from lab_env.errors import LabError

if TYPE_CHECKING:
    from lab_env.api import Lab

__all__ = ["Lab", "LabError", "lab"]

_lab: Lab | None = None

if in_kernel():
    offline_charts()


def __getattr__(name: str) -> Any:
    global _lab
    if name == "lab":
        if _lab is None:
            from lab_env.api import Lab

            _lab = Lab()
        return _lab
    if name == "Lab":
        from lab_env.api import Lab

        return Lab
    raise AttributeError(name)
