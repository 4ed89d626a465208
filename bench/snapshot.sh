#!/bin/sh
# A RUN-like change of one file in a 50,000-file lower, committed as a layer: overlay upper
# (with and without `volatile`) vs the tree-diff fallback. Needs root (overlay mounts).
# Prints milliseconds per phase; the issue's target for the overlay commit is under 50 ms.
set -eu
cd "$(dirname "$0")/.."
exec cargo test -p kiln-builder --test snapshot -- --ignored --nocapture \
    bench_one_file_change_in_50000_file_lower
