#!/bin/bash
# A cold RUN step over a five-layer base (busybox, then four layers of 54-129 MB with 2,000 to
# 9,000 files each, copied from this machine's /usr): `$KILN_BEFORE_BIN` against `$KILN_BIN`
# (default target/release/kiln), alternated, a fresh --cache-dir and `sync` before each run,
# medians of $RUNS (5). Made for issue 13's parallel extraction of a step's parent layers.
# Needs root, docker-registry, busybox-static. Usage: KILN_BEFORE_BIN=/path/to/old bench/parent-layers.sh
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
after=${KILN_BIN:-$repo/target/release/kiln}
before=${KILN_BEFORE_BIN:?name an older kiln in KILN_BEFORE_BIN}
runs=${RUNS:-5}
work=$(mktemp -d /var/tmp/kiln-parent-layers.XXXXXX)
port=5078
cat > "$work/reg.yml" <<EOC
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/reg
http:
  addr: 127.0.0.1:$port
EOC
docker-registry serve "$work/reg.yml" > "$work/reg.log" 2>&1 &
reg=$!
trap 'kill -9 $reg 2>/dev/null; wait $reg 2>/dev/null; rm -rf "$work"' EXIT
sleep 1
sh "$repo/tests/corpus/make-base.sh" 127.0.0.1:$port bench/busybox:1 >/dev/null
ctx=$work/ctx
mkdir -p "$ctx"
cp -a /usr/include "$ctx/l1"; cp -a /usr/lib/python3.11 "$ctx/l2"
cp -a /usr/lib/gcc "$ctx/l3"; cp -a /usr/share/doc "$ctx/l4"
printf 'FROM 127.0.0.1:%s/bench/busybox:1\nCOPY l1/ /l1/\nCOPY l2/ /l2/\nCOPY l3/ /l3/\nCOPY l4/ /l4/\n' $port > "$ctx/Dockerfile"
"$after" build --insecure --insecure-pull --cache-dir "$work/c0" -d 127.0.0.1:$port/bench/multi:1 -c "$ctx" >/dev/null 2>&1
rm -rf "$work/c0"
printf 'FROM 127.0.0.1:%s/bench/multi:1\nRUN ["/bin/busybox","true"]\n' $port > "$work/Dockerfile.run"
declare -A times
for i in $(seq "$runs"); do
  for k in before after; do
    bin=$before; [ $k = after ] && bin=$after
    rm -rf "$work/c"; sync; sleep 1
    s=$(date +%s.%N)
    "$bin" build --insecure --insecure-pull --no-push --cache-dir "$work/c" -f "$work/Dockerfile.run" -c "$ctx" >/dev/null 2>&1
    e=$(date +%s.%N)
    times[$k]="${times[$k]:-} $(echo "$e - $s" | bc)"
  done
done
median() { echo "$@" | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
b=$(median ${times[before]}); a=$(median ${times[after]})
echo "cold RUN over a five-layer base, medians of $runs: before ${b}s, after ${a}s, after/before $(echo "scale=2; $a / $b" | bc)"
