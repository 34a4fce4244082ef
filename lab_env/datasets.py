"""Deterministic order-fulfilment data: a stock catalog and realistic orders arriving on a
diurnal curve. The same seed always gives the same records, so runs compare like with like.

    catalog = make_catalog(seed=7)
    for order in orders(catalog, count=1000, seed=7):
        ...  # dicts: order_id, customer_id, items, amount_cents, created_at_ms, ...

- **SKUs** have skewed popularity (Zipf, exponent ``SKU_SKEW``): a few best sellers take most
  order lines, so their stock runs out first and their partitions run hot.
- **Customers** repeat, with a milder skew; each has a home region and a payment method.
- **Arrivals** follow a day's curve: quiet at night, a lunch bump, an evening peak
  (:func:`rate_at`), drawn as a non-homogeneous Poisson process by thinning
  (:func:`arrival_times`). ``time_scale`` compresses a day into minutes for a lab run.
- **Payment outcome** is decided by the data, not by chance at run time: each order carries a
  ``risk_score``; the payment service declines orders above its threshold, so a rerun declines
  the same orders and reconciliation can predict every terminal state.

``python -m lab_env.datasets`` rewrites the committed samples in ``datasets/``; a test proves
they are what the generator gives.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import random
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lab_env.config import REPO

SKUS = 500
CUSTOMERS = 20_000
SKU_SKEW = 1.1
CUSTOMER_SKEW = 0.6
REGIONS = ("north", "south", "east", "west", "central")
PAYMENT_METHODS = ("card", "card", "card", "wallet", "invoice")  # card is the most common
CATEGORIES = ("books", "games", "kitchen", "garden", "toys", "audio", "sports", "office")
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: the generated day starts at midnight UTC
SAMPLE_DIR = REPO / "datasets"


@dataclass(frozen=True)
class Sku:
    sku: str
    name: str
    category: str
    price_cents: int
    initial_stock: int
    weight: float  # relative popularity


def make_catalog(skus: int = SKUS, seed: int = 0) -> list[Sku]:
    """``skus`` products, most popular first, with prices and starting stock.

    Stock is sized to popularity (a shop stocks what sells) with noise, so that under a long
    run the best sellers still run out before the tail does.
    """
    rnd = random.Random(f"catalog-{seed}")
    weights = _zipf(skus, SKU_SKEW)
    catalog = []
    for rank in range(skus):
        category = CATEGORIES[rnd.randrange(len(CATEGORIES))]
        price = int(round(math.exp(rnd.uniform(math.log(300), math.log(25_000))), -1))
        stock = max(5, int(weights[rank] * 40_000 * rnd.uniform(0.6, 1.4)))
        catalog.append(
            Sku(f"sku-{rank:05d}", f"{category} item {rank}", category, price, stock, weights[rank])
        )
    return catalog


def _zipf(n: int, s: float) -> list[float]:
    raw = [1 / (k + 1) ** s for k in range(n)]
    total = sum(raw)
    return [w / total for w in raw]


def rate_at(hour: float) -> float:
    """The day's relative order rate at ``hour`` (0-24), peak 1.0 at 20:00, lowest ~0.08 at
    04:00, with a lunch bump at 12:30."""
    night = 0.08
    evening = 0.92 * math.exp(-(((hour - 20.0) / 2.6) ** 2))
    lunch = 0.35 * math.exp(-(((hour - 12.5) / 1.2) ** 2))
    morning = 0.25 * math.exp(-(((hour - 9.0) / 2.0) ** 2))
    return min(1.0, night + evening + lunch + morning)


def arrival_times(
    peak_per_s: float,
    seconds: float,
    start_hour: float = 0.0,
    time_scale: float = 1.0,
    seed: int = 0,
) -> Iterator[float]:
    """Arrival offsets (s from the start) of a Poisson process whose rate follows the day's
    curve, ``peak_per_s`` at the peak. ``time_scale`` is how many day-seconds pass per second
    (1440 turns a day into a minute). Thinning: candidates at the peak rate, each kept with
    probability rate/peak."""
    if peak_per_s <= 0 or seconds <= 0:
        return
    rnd = random.Random(f"arrivals-{seed}")
    t = 0.0
    while True:
        t += rnd.expovariate(peak_per_s)
        if t >= seconds:
            return
        hour = (start_hour + t * time_scale / 3600.0) % 24.0
        if rnd.random() <= rate_at(hour):
            yield t


def orders(
    catalog: list[Sku],
    count: int,
    seed: int = 0,
    peak_per_s: float = 50.0,
    time_scale: float = 60.0,
    start_hour: float = 17.0,
) -> Iterator[dict[str, Any]]:
    """``count`` orders (fewer if the curve's day runs out) as plain dicts, in arrival order.

    ``created_at_ms`` is the order's place on the generated timeline (``START_MS`` onwards); a
    load generator uses the offsets to pace itself. Order ids are unique per seed.
    """
    rnd = random.Random(f"orders-{seed}")
    sku_cdf = list(itertools.accumulate(s.weight for s in catalog))
    customer_cdf = list(itertools.accumulate(_zipf(CUSTOMERS, CUSTOMER_SKEW)))
    prices = {s.sku: s.price_cents for s in catalog}
    times = arrival_times(peak_per_s, 86_400 / time_scale * 2, start_hour, time_scale, seed)
    for index, offset in enumerate(itertools.islice(times, count)):
        customer = bisect.bisect_left(customer_cdf, rnd.random() * customer_cdf[-1])
        lines: dict[str, int] = {}
        for _ in range(_line_count(rnd)):
            sku = catalog[bisect.bisect_left(sku_cdf, rnd.random() * sku_cdf[-1])]
            lines[sku.sku] = lines.get(sku.sku, 0) + rnd.choice((1, 1, 1, 2, 2, 3))
        items = [{"sku": k, "quantity": q, "unit_price_cents": prices[k]} for k, q in lines.items()]
        yield {
            "order_id": f"o{seed}-{index:08d}",
            "customer_id": f"c-{customer:05d}",
            "region": REGIONS[customer % len(REGIONS)],
            "payment_method": PAYMENT_METHODS[(customer * 7) % len(PAYMENT_METHODS)],
            "items": items,
            "amount_cents": sum(i["quantity"] * i["unit_price_cents"] for i in items),
            "currency": "EUR",
            "risk_score": round(rnd.betavariate(2, 12), 4),
            "created_at_ms": START_MS + int((start_hour * 3600 + offset * time_scale) * 1000),
            "offset_s": round(offset, 6),
        }


def _line_count(rnd: random.Random) -> int:
    return rnd.choices((1, 2, 3, 4), weights=(55, 25, 13, 7))[0]


def write_samples(directory: Path = SAMPLE_DIR, seed: int = 7) -> list[Path]:
    """The committed samples: the first 50 SKUs of the catalog and 200 orders."""
    catalog = make_catalog(seed=seed)
    catalog_path = directory / "catalog-sample.json"
    catalog_path.write_text(json.dumps([asdict(s) for s in catalog[:50]], indent=1) + "\n")
    orders_path = directory / "orders-sample.jsonl"
    with orders_path.open("w") as out:
        for order in orders(catalog, 200, seed=seed):
            out.write(json.dumps(order, sort_keys=True) + "\n")
    return [catalog_path, orders_path]


if __name__ == "__main__":
    for path in write_samples():
        print(f"wrote {path.relative_to(REPO)}")
    sys.exit(0)
