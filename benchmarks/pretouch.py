"""Pre-touch memory: ``python -m benchmarks.pretouch GB`` allocates, fills, exits.

The VM returns freed memory to its host, so the first touch of a page is slow
(~0.4 GB/s).  Touching a few GB in a throw-away process right before each timed
case makes the guest's free pages host-backed again.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def main(gb: float) -> None:
    t0 = time.perf_counter()
    a = np.ones(int(gb * 2**30) // 8)
    dt = time.perf_counter() - t0
    print(json.dumps({"gb": gb, "seconds": dt, "gb_s": a.nbytes / 2**30 / dt}))


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
