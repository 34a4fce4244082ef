"""The order-fulfilment data generator: deterministic, realistic in shape, samples up to date."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pytest

from lab_env import datasets


@pytest.fixture(scope="module")
def catalog() -> list[datasets.Sku]:
    return datasets.make_catalog(seed=7)


def test_same_seed_same_data(catalog: list[datasets.Sku]) -> None:
    assert datasets.make_catalog(seed=7) == catalog
    first = list(datasets.orders(catalog, 300, seed=7))
    assert list(datasets.orders(catalog, 300, seed=7)) == first
    assert list(datasets.orders(catalog, 300, seed=8)) != first


def test_orders_are_well_formed(catalog: list[datasets.Sku]) -> None:
    prices = {s.sku: s.price_cents for s in catalog}
    seen = set()
    for order in datasets.orders(catalog, 2000, seed=1):
        assert order["order_id"] not in seen
        seen.add(order["order_id"])
        assert 1 <= len(order["items"]) <= 4
        assert len({i["sku"] for i in order["items"]}) == len(order["items"])
        for item in order["items"]:
            assert item["quantity"] >= 1
            assert item["unit_price_cents"] == prices[item["sku"]]
        total = sum(i["quantity"] * i["unit_price_cents"] for i in order["items"])
        assert order["amount_cents"] == total
        assert 0 <= order["risk_score"] <= 1
        assert order["region"] in datasets.REGIONS


def test_arrivals_are_ordered_and_follow_the_rate(catalog: list[datasets.Sku]) -> None:
    times = list(datasets.arrival_times(200.0, 60.0, start_hour=20.0, seed=3))
    assert times == sorted(times) and all(0 < t < 60 for t in times)
    assert 200 * 60 * 0.85 < len(times) < 200 * 60 * 1.15  # at the peak, about the peak rate
    night = list(datasets.arrival_times(200.0, 60.0, start_hour=4.0, seed=3))
    assert len(night) < len(times) / 5  # the night is quiet


def test_the_day_curve() -> None:
    assert datasets.rate_at(20.0) == pytest.approx(1.0, abs=0.01)
    assert datasets.rate_at(4.0) < 0.1
    assert datasets.rate_at(12.5) > datasets.rate_at(15.5)  # the lunch bump
    assert all(0 < datasets.rate_at(h / 4) <= 1 for h in range(96))


def test_popularity_is_skewed(catalog: list[datasets.Sku]) -> None:
    lines = Counter(i["sku"] for o in datasets.orders(catalog, 5000, seed=2) for i in o["items"])
    top_ten = sum(n for _, n in lines.most_common(10))
    assert top_ten / sum(lines.values()) > 0.3  # ten of 500 SKUs take a third of the lines
    assert catalog[0].initial_stock > catalog[-1].initial_stock  # best sellers are stocked


def test_committed_samples_are_what_the_generator_gives(tmp_path: Path) -> None:
    datasets.write_samples(tmp_path)
    for name in ("catalog-sample.json", "orders-sample.jsonl"):
        committed = (datasets.SAMPLE_DIR / name).read_text()
        assert (tmp_path / name).read_text() == committed, "run `python -m lab_env.datasets`"
    sample = json.loads((datasets.SAMPLE_DIR / "catalog-sample.json").read_text())
    assert sample[0] == asdict(datasets.make_catalog(seed=7)[0])
