#!/bin/sh
# Extraction cost per file: a layer of /usr (tens of thousands of entries, gzip) extracted by
# kiln's extractor and by GNU tar, each under `strace -c -f`; prints system calls per entry
# (from strace's summary) and the median wall time of 3 alternated runs (sync before each).
# Needs root, strace and tar. `bench/extract.sh [TREE]` (default /usr).
set -eu
cd "$(dirname "$0")/.."
tree=${1:-/usr}
work=$(mktemp -d /var/tmp/kiln-extract-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
cargo build -q --release -p kiln-builder --example extract_layer
bin=target/release/examples/extract_layer
tar -C "$tree" --numeric-owner -czf "$work/layer.tgz" .
entries=$(tar -tzf "$work/layer.tgz" | wc -l)
echo "layer: $tree, $entries entries, $(du -h "$work/layer.tgz" | cut -f1) gzip"
calls() { # total system calls of "$@"
    strace -f -c -o "$work/strace.txt" "$@" >/dev/null
    awk '$NF == "total" { print $(NF-2) }' "$work/strace.txt"
}
rm -rf "$work/k" "$work/t"; mkdir "$work/t"
k=$(calls "$bin" "$work/layer.tgz" "$work/k")
t=$(calls tar -C "$work/t" --numeric-owner -xzpf "$work/layer.tgz")
echo "system calls per entry: kiln $(echo "scale=1; $k / $entries" | bc), tar $(echo "scale=1; $t / $entries" | bc)"
for tool in kiln tar kiln tar kiln tar; do
    rm -rf "$work/k" "$work/t"; mkdir "$work/t"; sync
    start=$(date +%s.%N)
    if [ $tool = kiln ]; then "$bin" "$work/layer.tgz" "$work/k" >/dev/null
    else tar -C "$work/t" --numeric-owner -xzpf "$work/layer.tgz"; fi
    echo "$tool $(echo "$(date +%s.%N) - $start" | bc)" >> "$work/times"
done
for tool in kiln tar; do
    echo "$tool median $(grep "^$tool " "$work/times" | cut -d' ' -f2 | sort -n | sed -n 2p) s"
done
