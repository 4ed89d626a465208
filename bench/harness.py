#!/usr/bin/env python3
"""Times commands against each other on one machine, in one run.

Runs are alternated (A B C A B C ...) so that a noisy neighbour hits every contender alike, and
the report gives medians of several runs, their ratios to the first contender, and peak RSS.

Usage from a benchmark script:
    from harness import Contender, compare
    compare("push 1 GiB layer", [Contender("kiln", ["kiln", ...]), Contender("skopeo", [...])],
            runs=5, setup=optional_callable_run_before_each_command)
"""

import os
import tempfile
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field


@dataclass
class Contender:
    """One command to time; `env` adds to the environment."""

    name: str
    argv: list
    env: dict = field(default_factory=dict)
    times: list = field(default_factory=list)
    rss_kib: list = field(default_factory=list)


def run_once(c: Contender) -> None:
    env = dict(os.environ, **c.env)
    # Peak RSS comes from GNU time, a tiny launcher: Linux charges a child with the high-water mark
    # of the address space it had before exec, so a child forked from Python would report
    # Python's own size.
    with tempfile.NamedTemporaryFile("r") as rss:
        argv = ["/usr/bin/time", "-f", "%M", "-o", rss.name, *c.argv]
        start = time.monotonic()
        proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.monotonic() - start
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace")
            sys.exit(f"{c.name} failed ({proc.returncode}): {' '.join(c.argv)}\n{err[-2000:]}")
        c.times.append(elapsed)
        c.rss_kib.append(int(rss.read().split()[-1]))


def compare(title, contenders, runs=5, setup=None):
    """Alternates the contenders `runs` times and prints medians and ratios to the first."""
    for _ in range(runs):
        for c in contenders:
            if setup:
                setup(c)
            run_once(c)
    base = statistics.median(contenders[0].times)
    print(f"\n{title} ({runs} runs each, alternated; median wall time, ratio to {contenders[0].name}, peak RSS)")
    for c in contenders:
        med = statistics.median(c.times)
        spread = f"{min(c.times):.2f}-{max(c.times):.2f}s"
        print(
            f"  {c.name:<24} {med:8.3f}s  x{med / base:5.2f}  (runs {spread})"
            f"  peak RSS {max(c.rss_kib) / 1024:7.1f} MiB"
        )
    return {c.name: statistics.median(c.times) for c in contenders}


if __name__ == "__main__":
    # Self-check: two commands of known relative cost.
    compare("harness self-check", [Contender("sleep 0.2", ["sleep", "0.2"]), Contender("sleep 0.1", ["sleep", "0.1"])], runs=3)
