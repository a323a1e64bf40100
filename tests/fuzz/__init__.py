"""Property-based tests and fuzzing of what crosses a trust boundary (issue #5, "Bad input").

Every test here runs with FUZZ as its parent settings: derandomized (the same examples on every
run, so CI never fails on a draw it cannot replay) and no example database (nothing written
beside the checkout). max_examples is set per test, through examples(), so the whole set stays
within about a minute; RMM_FUZZ_SCALE=20 runs twenty times as many for a longer hunt.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,  # several properties do real I/O (SQLite, PostgreSQL, processes)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


def examples(count: int) -> int:
    """Return `count` times RMM_FUZZ_SCALE (1 unless set)."""
    return count * max(1, int(os.environ.get("RMM_FUZZ_SCALE", "1")))
