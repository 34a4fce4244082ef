"""How notebooks show charts: rendered from JavaScript the Python packages carry, not a CDN.

Altair's default renderer writes HTML that loads vega, vega-lite and vega-embed from a CDN, so a
workshop without internet (or a firewalled laptop) sees empty charts; and JupyterLab's own vega
renderer stops at Vega-Lite 5, while Altair 6 emits Vega-Lite 6. The ``jupyter`` renderer in
offline mode draws each chart as a widget (anywidget) with the bundle vl-convert ships.

A widget is drawn by the browser, so a notebook executed headless keeps no picture of it. Where
the executed notebook is the product (the course site is built from the lessons the suite runs),
``KAFKA_LAB_CHARTS=static`` makes every chart an SVG image instead, drawn by vl-convert in the
kernel.
"""

from __future__ import annotations

import os
import sys

CHARTS_ENV = "KAFKA_LAB_CHARTS"  # "static": SVG images instead of interactive widgets


def in_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, papermill, nbval), not in a plain interpreter."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None  # type: ignore[attr-defined]
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def offline_charts() -> None:
    """Make altair render charts offline (idempotent)."""
    import altair as alt

    if os.environ.get(CHARTS_ENV) == "static":
        alt.renderers.enable("svg")
    else:
        alt.renderers.enable("jupyter", offline=True)
