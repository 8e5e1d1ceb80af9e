"""Time and peak memory of `sercloak prepare` on RAVDESS + nEMO from ../shared/corpora.

    python bench/prepare.py

Runs the real command in a fresh temporary workdir (decode, resample, features,
cache, folds), then once more to show the cache being reused. Peak memory is
the child process's maximum resident set size. Last line: key=value figures.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    if not (CORPORA / "ravdess").is_dir() or not (CORPORA / "nemo").is_dir():
        sys.exit(f"needs RAVDESS and nEMO in {CORPORA}")
    with tempfile.TemporaryDirectory() as work:
        cmd = [sys.executable, "-m", "sercloak", "prepare", "--quiet", "--workdir", work,
               "--corpus", f"ravdess={CORPORA / 'ravdess'}", "--corpus", f"nemo={CORPORA / 'nemo'}"]
        cold = timed(cmd)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        warm = timed(cmd)
        cache_mb = sum(f.stat().st_size for f in Path(work, "features").rglob("*")) / 2**20
    print(f"prepare_s={cold:.1f} rerun_cached_s={warm:.1f} peak_rss_mb={peak_mb:.0f} "
          f"cache_mb={cache_mb:.0f} target_s=60 target_rss_mb=2048")


if __name__ == "__main__":
    main()
