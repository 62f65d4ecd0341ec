"""The garbage collector's settings for a serving worker process.

Measured under load (docs/benchmark-profiles.md, tenth pass): with CPython's defaults (700, 10, 10) a worker
reading single records made ~130 young collections a second and, every two seconds or so, a full collection
over the ~150,000 objects of the loaded application (Litestar, SQLAlchemy, the policy model) that took 75-110
ms, a pause every request in flight waits out. Almost everything a request allocates is freed by reference
counting; the collector only has cycles to find, and few of them.

So, once the application is loaded: collect, freeze what survives (it lives as long as the process, and is
never scanned again), and let many more allocations pass between young collections.
"""

from __future__ import annotations

import gc

__all__ = ["COLLECTOR_THRESHOLDS", "tune_collector"]

# Young generation after 20,000 net allocations (default 700); middle after 50 young collections, old after 100
# middle ones (defaults 10 and 10). A young collection scans what is alive in it, so fewer of them scan the same
# in-flight requests less often; cyclic garbage waits at most 20,000 allocations.
COLLECTOR_THRESHOLDS = (20_000, 50, 100)


def tune_collector() -> None:
    """Collect, freeze the survivors into the permanent generation and raise the thresholds (call once per worker,
    after the application is built)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
