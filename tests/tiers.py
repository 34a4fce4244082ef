"""How a cluster test is scheduled by ``make test`` (tests/suite.py runs two tiers):

- the **parallel tier**: every cluster test not marked ``serial``, on two pytest-xdist workers
  sharing the one lab. Tests marked with ``CPU`` (xdist group "cpu") all run on one worker, in
  turn, so two tests that keep both cores busy never compete with each other.
- the **serial tier**, after it, alone on the machine: ``SERIAL`` tests, which are the
  disruptive ones (they kill, pause or restart brokers; tests/conftest.py marks them), the
  whole-cluster faults, and the tests that bound a time or a rate the load of a neighbour would
  move (give the reason beside the mark).
"""

from __future__ import annotations

import pytest

SERIAL = pytest.mark.serial
CPU = pytest.mark.xdist_group("cpu")
