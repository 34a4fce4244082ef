"""How a cluster test is scheduled by ``make test`` (tests/suite.py runs three tiers):

- the **shared tier**: every cluster test neither ``disruptive`` nor ``serial``, on two
  pytest-xdist workers sharing the one lab. Tests marked with ``CPU`` (xdist group "cpu") all run
  on one worker, in turn, so two tests that keep both cores busy never compete with each other.
- the **disruptive tier**, at the same time, in one process on a second lab of its own: the tests
  marked ``disruptive`` (they kill, pause or restart brokers, or stop the lab; tests/conftest.py
  and tests/notebooks/catalog.py say which). On the shared lab they would fail their neighbours;
  on their own they only share the CPU, as any test does.
- the **serial tier**, after both, alone on the machine: ``SERIAL`` tests, which bound a time or a
  rate that the load of a neighbour would move (give the reason beside the mark). One that is
  disruptive too runs here, on the lab, alone.
"""

from __future__ import annotations

import pytest

SERIAL = pytest.mark.serial
CPU = pytest.mark.xdist_group("cpu")
