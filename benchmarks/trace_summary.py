"""Summarise a JAX profiler trace (``perfetto_trace.json.gz``): where each GPU's time goes.

For every device row of the trace: the span of the traced steps, the time some kernel ran (the
union of kernel intervals on all of the device's streams), the idle rest, and the busy time split
into communication kernels (NCCL) and the rest, with the largest kernels by total time. A step
that scales badly on N GPUs shows here as idle time (waiting for the host or for a collective)
or as communication that does not overlap compute.

Usage: python benchmarks/trace_summary.py TRACE_DIR_OR_FILE [--top 12]
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import sys
from pathlib import Path


def _load(path: Path) -> list[dict]:
    if path.is_dir():
        found = sorted(path.rglob("*.trace.json.gz")) + sorted(path.rglob("perfetto_trace.json.gz"))
        if not found:
            raise SystemExit(f"no trace file under {path}")
        path = found[-1]
    with gzip.open(path, "rt") as handle:
        data = json.load(handle)
    return data["traceEvents"] if isinstance(data, dict) else data


def _union_length(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def _is_communication(name: str) -> bool:
    lowered = name.lower()
    return any(k in lowered for k in ("nccl", "all-reduce", "allreduce", "all-gather",
                                      "reduce-scatter", "collective"))


def summarise(events: list[dict], top: int) -> str:
    names = {e["pid"]: e["args"]["name"] for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name"}
    devices = {pid: n for pid, n in names.items() if "GPU" in n or "gpu" in n}
    lines = []
    for pid, name in sorted(devices.items(), key=lambda kv: kv[1]):
        kernels = [e for e in events if e.get("pid") == pid and e.get("ph") == "X"]
        if not kernels:
            continue
        spans = [(e["ts"], e["ts"] + e.get("dur", 0)) for e in kernels]
        span = max(s for _, s in spans) - min(s for s, _ in spans)
        busy = _union_length(spans)
        comm = _union_length([s for s, e in zip(spans, kernels) if _is_communication(e["name"])])
        by_name = collections.Counter()
        for e in kernels:
            by_name[e["name"]] += e.get("dur", 0)
        lines.append(f"## {name}: span {span / 1e3:.2f} ms, busy {busy / 1e3:.2f} ms "
                     f"({busy / span:.0%}), idle {(span - busy) / 1e3:.2f} ms, communication "
                     f"kernels {comm / 1e3:.2f} ms, {len(kernels)} kernels")
        for kernel, dur in by_name.most_common(top):
            lines.append(f"    {dur / 1e3:8.2f} ms  {kernel[:110]}")
    return "\n".join(lines) if lines else "no GPU rows in the trace"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trace", type=Path)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)
    print(summarise(_load(args.trace), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
