"""Time ``segmentation_scores`` on a 30-minute video at 10 fps (18,000 frames): a clean
prediction and a noisy one with hundreds of spurious segments.

    python benchmarks/segmentation_scores.py
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from rsexp.core.metrics import segmentation_scores


def main() -> int:
    rng = np.random.default_rng(0)
    gt = np.repeat(rng.integers(0, 20, 60), 300)  # 18,000 frames, 60 segments
    noisy = gt.copy()
    noisy[rng.random(gt.size) < 0.02] = 5
    for name, pred in (("clean", gt), ("2 % noisy frames", noisy)):
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            scores = segmentation_scores(pred, gt)
            times.append(time.perf_counter() - t0)
        shown = ", ".join(f"{k} {v:.1f}" for k, v in scores.items())
        print(f"{name}: {1000 * statistics.median(times):.1f} ms for 18,000 frames ({shown})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
