"""Reconciling an order-fulfilment run: what the case study (module 11) promises, checked on the
events the services wrote.

Given the orders the generator produced, the stock catalog, and every event read back from the
event topics (read_committed), :func:`reconcile` answers:

- **lost**: orders with no terminal event (``fulfilment_events.TERMINAL``);
- **conflicting**: orders with more than one kind of terminal event;
- **duplicated**: events written twice for one order on one topic (each service writes at most
  one event per order per topic, so any repeat is a duplicate, e.g. from a retry outside a
  transaction);
- **broken chains**: events whose cause is missing, e.g. ``shipping.scheduled`` without
  ``payment.completed``, or a failed payment whose reservation was never released
  (compensation);
- **oversold**: SKUs whose reserved quantity, less what was released, exceeds the stock they
  started with (stock that went negative);
- **strangers**: events for orders the generator never made.

A run is exact when all of these are empty.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lab_env import fulfilment_events as ev

# What must precede each event for the same order: (event, its required causes).
CAUSES: dict[str, tuple[str, ...]] = {
    ev.INVENTORY_RESERVED: (ev.ORDER_CREATED,),
    ev.INVENTORY_REJECTED: (ev.ORDER_CREATED,),
    ev.PAYMENT_COMPLETED: (ev.INVENTORY_RESERVED,),
    ev.PAYMENT_FAILED: (ev.INVENTORY_RESERVED,),
    ev.INVENTORY_RELEASED: (ev.PAYMENT_FAILED,),
    ev.SHIPPING_SCHEDULED: (ev.PAYMENT_COMPLETED,),
    ev.ORDER_CANCELED: (ev.PAYMENT_FAILED, ev.INVENTORY_RELEASED),
}
# What an event forbids for the same order: an order is either reserved or rejected, paid or
# declined.
EXCLUSIVE = (
    (ev.INVENTORY_RESERVED, ev.INVENTORY_REJECTED),
    (ev.PAYMENT_COMPLETED, ev.PAYMENT_FAILED),
)


@dataclass
class Reconciliation:
    orders: int
    terminal: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    conflicting: dict[str, list[str]] = field(default_factory=dict)
    duplicated: dict[tuple[str, str], int] = field(default_factory=dict)
    broken_chains: list[str] = field(default_factory=list)
    oversold: dict[str, int] = field(default_factory=dict)
    strangers: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return not (
            self.lost
            or self.conflicting
            or self.duplicated
            or self.broken_chains
            or self.oversold
            or self.strangers
        )

    def summary(self) -> str:
        """One line for a notebook or a benchmark."""
        shown = ", ".join(f"{t} {n}" for t, n in sorted(self.terminal.items()))
        return (
            f"{self.orders} orders ({shown}); lost {len(self.lost)}, "
            f"conflicting {len(self.conflicting)}, duplicated {sum(self.duplicated.values())}, "
            f"broken chains {len(self.broken_chains)}, oversold SKUs {len(self.oversold)}, "
            f"strangers {len(self.strangers)}"
        )


def _quantities(event: Mapping[str, Any]) -> Iterable[tuple[str, int]]:
    for item in event.get("items") or []:
        yield str(item["sku"]), int(item["quantity"])


def reconcile(
    orders: Iterable[Mapping[str, Any]],
    events: Mapping[str, Iterable[Mapping[str, Any]]],
    initial_stock: Mapping[str, int],
) -> Reconciliation:
    """Check a run. ``orders``: what the generator produced (dicts with ``order_id``);
    ``events``: topic -> the decoded events read from it; ``initial_stock``: SKU -> units."""
    known = [str(o["order_id"]) for o in orders]
    report = Reconciliation(orders=len(known))
    seen: dict[str, Counter[str]] = defaultdict(Counter)  # order -> topic -> count
    reserved: Counter[str] = Counter()
    released: Counter[str] = Counter()
    for topic, stream in events.items():
        for event in stream:
            order = str(event["order_id"])
            seen[order][topic] += 1
            tally = {ev.INVENTORY_RESERVED: reserved, ev.INVENTORY_RELEASED: released}.get(topic)
            for sku, quantity in _quantities(event) if tally is not None else ():
                tally[sku] += quantity
    known_set = set(known)
    report.strangers = sorted(set(seen) - known_set)
    for order in known:
        topics = seen.get(order, Counter())
        for topic, count in topics.items():
            if count > 1:
                report.duplicated[(topic, order)] = count - 1
        ends = [t for t in ev.TERMINAL if topics[t]]
        if not ends:
            report.lost.append(order)
        elif len(ends) > 1:
            report.conflicting[order] = ends
        else:
            report.terminal[ends[0]] += 1
        for topic in topics:
            missing = [cause for cause in CAUSES.get(topic, ()) if not topics[cause]]
            if missing:
                report.broken_chains.append(f"{order}: {topic} without {', '.join(missing)}")
        for a, b in EXCLUSIVE:
            if topics[a] and topics[b]:
                report.broken_chains.append(f"{order}: both {a} and {b}")
        if topics[ev.PAYMENT_FAILED] and not topics[ev.INVENTORY_RELEASED]:
            report.broken_chains.append(
                f"{order}: {ev.PAYMENT_FAILED} but its reservation was never released"
            )
    for sku, units in reserved.items():
        held = units - released[sku]
        if held > initial_stock.get(sku, 0):
            report.oversold[sku] = held - initial_stock.get(sku, 0)
    return report
