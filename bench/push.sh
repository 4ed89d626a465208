#!/usr/bin/env bash
# Push benchmark: a 1 GiB layer (half random bytes, half text) to a local docker-registry on
# loopback, kiln (tar + parallel gzip + push, the `push_layer` example) against `skopeo copy` of
# the same layer from an OCI layout (upload only: skopeo does not compress). Prints wall times,
# throughput and peak RSS (bench/harness.py), kiln's phases, and gzip's 1-vs-2-core ratio.
#
# Usage: bench/push.sh            (SIZE_MIB=1024 RUNS=3 by default)
# The tree and the OCI layout are made once and cached under $KILN_BENCH_CACHE
# (/var/cache/kiln-bench). Needs docker-registry and skopeo (apt-get install docker-registry skopeo).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${KILN_BENCH_CACHE:-/var/cache/kiln-bench}
SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-3}
TREE="$CACHE/tree-$SIZE_MIB"
OCI="$CACHE/oci-$SIZE_MIB"
WORK=$(mktemp -d /tmp/kiln-bench-push.XXXXXX)
REG_PID=
cleanup() {
    if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

for tool in /usr/bin/docker-registry /usr/bin/skopeo /usr/bin/time; do
    [ -x "$tool" ] || { echo "missing $tool (apt-get install docker-registry skopeo time)" >&2; exit 1; }
done

echo "== building (release)"
(cd "$ROOT" && cargo build --release -q -p kiln-builder --example push_layer --example gzip_scaling)
PUSH_LAYER="$ROOT/target/release/examples/push_layer"
GZIP_SCALING="$ROOT/target/release/examples/gzip_scaling"

if [ ! -f "$TREE/.complete" ]; then
    echo "== making the $SIZE_MIB MiB tree once in $TREE"
    rm -rf "$TREE" && mkdir -p "$TREE"
    python3 - "$TREE" "$SIZE_MIB" <<'EOF'
import os, random, sys
root, mib = sys.argv[1], int(sys.argv[2])
rng = random.Random(20261123)
# A vocabulary of made-up words: text that compresses about as well as source code.
words = ["".join(rng.choice("etaoinshrdlucmfwypvbgkjqxz_") for _ in range(rng.randint(2, 10))) for _ in range(5000)]
pool = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) + "\n" for _ in range(65536)]
file_mib = 8
for i in range(mib // file_mib):
    d = os.path.join(root, f"pkg{i // 16:03d}")
    os.makedirs(d, exist_ok=True)
    size = file_mib << 20
    if i % 2 == 0:
        data = rng.randbytes(size)          # incompressible (binaries, archives)
    else:                                   # compressible text (sources, docs)
        picked = rng.choices(pool, k=size // 40)
        data = "".join(picked).encode()
        data = (data * (size // len(data) + 1))[:size]
    with open(os.path.join(d, f"file{i:04d}"), "wb") as f:
        f.write(data)
open(os.path.join(root, ".complete"), "w").close()
EOF
fi

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG="127.0.0.1:$PORT"
mkdir -p "$WORK/storage" "$WORK/store"
cat > "$WORK/registry.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/storage
  delete:
    enabled: true
http:
  addr: $REG
  secret: kiln-bench
EOF
/usr/bin/docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do
    curl -fs "http://$REG/v2/" >/dev/null 2>&1 && break
    sleep 0.1
done

if [ ! -f "$OCI/.complete" ]; then
    echo "== making the OCI layout once in $OCI (kiln push, then skopeo copy to oci:)"
    rm -rf "$OCI"
    "$PUSH_LAYER" "$TREE" "$WORK/store" "$REG/bench/seed:1" --insecure
    skopeo copy -q --src-tls-verify=false "docker://$REG/bench/seed:1" "oci:$OCI:bench"
    touch "$OCI/.complete"
fi

echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other processes share these $(nproc) cores)"
export KILN_BENCH_WORK="$WORK" KILN_BENCH_REG="$REG" KILN_BENCH_TREE="$TREE" KILN_BENCH_OCI="$OCI"
export PUSH_LAYER RUNS SIZE_MIB
PYTHONPATH="$ROOT/bench" python3 - <<'EOF'
import os, shutil
from harness import Contender, compare

work, reg = os.environ["KILN_BENCH_WORK"], os.environ["KILN_BENCH_REG"]
tree, oci = os.environ["KILN_BENCH_TREE"], os.environ["KILN_BENCH_OCI"]
runs = int(os.environ["RUNS"])
n = {"i": 0}

def fresh(c):
    # Every run uploads everything: empty registry storage and an empty kiln blob store.
    for d in ("storage", "store"):
        shutil.rmtree(os.path.join(work, d), ignore_errors=True)
        os.makedirs(os.path.join(work, d))
    n["i"] += 1
    dest = f"{reg}/bench/run{n['i']}:1"
    if c.name.startswith("kiln"):
        c.argv[-2] = dest
    else:
        c.argv[-1] = f"docker://{dest}"

kiln = Contender("kiln tar+gzip+push", [os.environ["PUSH_LAYER"], tree, os.path.join(work, "store"), "DEST", "--insecure"])
skopeo = Contender("skopeo copy (upload only)", ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{oci}:bench", "DEST"])
compare(f"push a {os.environ['SIZE_MIB']} MiB layer to docker-registry on loopback", [kiln, skopeo], runs=runs, setup=fresh)
blob = max((os.path.join(oci, "blobs/sha256", f) for f in os.listdir(os.path.join(oci, "blobs/sha256"))), key=os.path.getsize)
mib = os.path.getsize(blob) / 2**20
import statistics
for c in (kiln, skopeo):
    print(f"  {c.name:<26} {mib / statistics.median(c.times):6.0f} MiB/s of compressed layer ({mib:.0f} MiB), peak RSS {max(c.rss_kib) / 1024:.1f} MiB")
EOF

echo "== kiln phases (one more run)"
rm -rf "$WORK/storage" "$WORK/store" && mkdir -p "$WORK/storage" "$WORK/store"
/usr/bin/time -f "  peak RSS %M KiB, %e s wall, %U s user, %S s sys" "$PUSH_LAYER" "$TREE" "$WORK/store" "$REG/bench/phases:1" --insecure

echo "== gzip scaling (compression alone, in-process, level 1)"
"$GZIP_SCALING" 256 5 1 2
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
