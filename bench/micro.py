"""What the micro-benchmarks share: latency summaries and the results table."""

from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def summary(samples_us: list[float]) -> dict[str, float]:
    ordered = sorted(samples_us)
    return {"median_us": statistics.median(ordered),
            "p90_us": ordered[int(len(ordered) * 0.9)], "n": len(ordered)}


def report(name: str, title: str, results: dict[str, dict[str, float]]) -> None:
    """Write bench/results/NAME.json and print a markdown table."""
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(
        json.dumps({"machine": machine, "results": results}, indent=2))
    print(f"| {title} ({machine}) | median µs | p90 µs |\n|---|---:|---:|")
    for case, r in results.items():
        print(f"| {case} | {r['median_us']:.2f} | {r['p90_us']:.2f} |")
