"""Shared by the benchmarks: interleaved trials, medians with min-max, the machine's description."""

from __future__ import annotations

import os
import platform
import resource
import statistics
from collections.abc import Callable


def interleave(trials: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run each trial once per round (A B C A B C ...) so drift in the machine hits all alike."""
    results: dict[str, list[float]] = {name: [] for name in trials}
    for round_ in range(repeats):
        for name, trial in trials.items():
            value = trial()
            results[name].append(value)
            print(f"  round {round_ + 1}/{repeats}  {name:<28} {value:>12,.0f} samples/s", flush=True)
    return results


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):>10,.0f}  ({min(values):,.0f} - {max(values):,.0f})"


def ratio(a: list[float], b: list[float]) -> str:
    """Median of a over median of b, with the range of the per-round ratios."""
    per_round = [x / y for x, y in zip(a, b)]
    return f"{statistics.median(a) / statistics.median(b):.3f}  (rounds {min(per_round):.3f} - {max(per_round):.3f})"


def peak_rss_mb() -> float:
    """This process's own peak resident memory (VmHWM; ru_maxrss would include a parent's from before exec)."""
    try:
        for line in open("/proc/self/status").read().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    import torch

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads"
    )


def into_readme(readme, marker: str, text: str) -> None:
    """`text` between `<!-- marker:start -->` and `<!-- marker:end -->` in the README, when it has them."""
    content = readme.read_text()
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    if start in content and end in content:
        before, rest = content.split(start, 1)
        readme.write_text(before + start + "\n" + text + end + rest.split(end, 1)[1])
