"""Benchmark: wall time of `run-manager --help` through the installed console script, median of N runs."""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_S = 0.25


def console_script() -> str:
    """The run-manager script next to this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("run-manager")
    if beside.exists():
        return str(beside)
    found = shutil.which("run-manager")
    if found is None:
        raise SystemExit("run-manager is not installed in this environment (pip install -e .)")
    return found


def measure(runs: int) -> list[float]:
    """Wall seconds of each `run-manager --help`, after one untimed warm-up run (bytecode caches)."""
    script = console_script()
    subprocess.run([script, "--help"], check=True, capture_output=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([script, "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", "--runs", type=int, default=10)
    args = parser.parse_args()
    times = measure(args.runs)
    median = statistics.median(times)
    print(f"run-manager --help: {median:.2f} s median of {args.runs} (target < {TARGET_S} s)")
    print(f"  min {min(times):.3f} s, max {max(times):.3f} s")
    sys.exit(0 if median < TARGET_S else 1)


if __name__ == "__main__":
    main()
