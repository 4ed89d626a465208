#!/usr/bin/env python3
"""Build benchmarks of issue 4: kiln against `buildah bud` and Docker with BuildKit.

One script, one machine, one run; contenders alternate (see harness.py). Scenarios:
  cold      build + push, no local state, no cache
  cached    rebuild with no change from a registry cache on fresh local state
            (kiln --cache-repo, BuildKit --cache-from with an inline cache, buildah --layers
            --cache-from/--cache-to)
  copy-big  a COPY-only image on a base of >= 150 MB: time, and base-layer bytes downloaded,
            counted from the registry's access log (GETs of the base layer's blob)
  copy-link the same with `COPY --link`: kiln only (buildah 1.28 and docker.io 20.10's built-in
            frontend refuse the flag)
  copy-index  `copy-big` on fresh state with a changed context, the base's layer index published
            by an earlier build in kiln's cache repository: kiln with the index, kiln extracting
            (KILN_LAYER_INDEX=off), buildah, BuildKit; time and bytes downloaded
  cold-multi  `cold` for the two-stage build of `cached-multi`
  cached-multi  `cached` for a two-stage build (WORKDIR, USER, `COPY --from` of the first
            stage), and then each contender's blob bytes downloaded by one such rebuild
  cold-debian   build + push of WORKDIR, USER and three RUN steps writing 60-90 MB each on a
            Debian base (debootstrap --variant=minbase, the tree cached in /var/tmp/kiln-bench);
            kiln against `$KILN_BEFORE_BIN` (an older kiln) when given, then one `--timings`
            build, and the floor: the RUN steps natively plus gzip of the new layers on all cores
Peak RSS is GNU time's; for Docker it is the client's only (the work happens in dockerd), so
dockerd's own high-water mark (VmHWM) is printed beside it.

Needs root and: apt-get install -y buildah docker.io docker-registry busybox-static.
kiln is `$KILN_BIN` or target/release/kiln (cargo build --release -p kiln-builder); a kiln that
cannot build the image stops the benchmark.

Usage: sudo bench/build.py [--runs N] [--only cold,cold-multi,cached,copy-big,copy-link,copy-index,cached-multi,cold-debian]
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Contender, compare  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = "/var/cache/kiln-bench"
DOCKER = "/usr/bin/docker"  # docker.io's 20.10 client: BuildKit without the buildx plugin
BIG_MB = 160

APP_DOCKERFILE = """ARG BASE
FROM ${BASE}
RUN mkdir -p /app/gen && i=0 && while [ $i -lt 3000 ]; do echo "generated line $i" > /app/gen/f$i; i=$((i+1)); done
COPY src/ /app/src/
RUN seq 1 2000000 > /app/numbers && sha256sum /app/numbers > /app/numbers.sum
RUN rm -rf /app/gen/f1*
ENV APP=bench
CMD ["ls", "/app"]
"""

MULTI_DOCKERFILE = """ARG BASE
FROM ${BASE} AS build
WORKDIR /work
COPY src/ src/
RUN cat src/*.txt > all.txt && mkdir -p /opt/app && sha256sum all.txt > /opt/app/sum && cp all.txt /opt/app/
FROM ${BASE}
WORKDIR /srv/app
USER 1000:1000
COPY --from=build /opt/app/ ./
CMD ["ls", "/srv/app"]
"""

# Each RUN writes 60-90 MB: random bytes (incompressible), numbers (very compressible), and
# base64 of the random bytes (in between), so compressing and pushing weigh as in real builds.
DEBIAN_RUNS = [
    "head -c 64000000 /dev/urandom > random.bin && chown -R 1000:1000 /srv/app",
    "seq 1 10000000 > numbers.txt",
    "base64 random.bin > random.b64",
]
DEBIAN_DOCKERFILE = f"""ARG BASE
FROM ${{BASE}}
WORKDIR /srv/app
RUN {DEBIAN_RUNS[0]}
USER 1000:1000
RUN {DEBIAN_RUNS[1]}
RUN {DEBIAN_RUNS[2]}
"""
DEBIAN_TREE = "/var/tmp/kiln-bench/debian-bookworm-minbase"

COPY_DOCKERFILE = """ARG BASE
FROM ${BASE}
COPY{link} files/ /files/
CMD ["ls", "/files"]
"""


def sh(*argv, **kw):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stderr.decode(errors='replace')[-2000:]}")
    return p


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Registry:
    """docker-registry with an access log, so downloaded bytes can be counted."""

    def __init__(self, work):
        self.dir = os.path.join(work, "registry")
        os.makedirs(self.dir)
        self.addr = f"127.0.0.1:{free_port()}"
        cfg = os.path.join(self.dir, "config.yml")
        with open(cfg, "w") as f:
            f.write(
                f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                f"    rootdirectory: {self.dir}/data\n  delete:\n    enabled: true\n"
                f"http:\n  addr: {self.addr}\n"
            )
        self.log_path = os.path.join(self.dir, "log")
        self.proc = subprocess.Popen(
            ["/usr/bin/docker-registry", "serve", cfg],
            stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                socket.create_connection(self.addr.split(":"), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("registry did not start")

    def all_blob_bytes(self):
        """Bytes served for GETs of any blob so far."""
        return self.blob_bytes(r"sha256:[0-9a-f]+", pattern=True)

    def blob_bytes(self, digest, pattern=False):
        """Bytes served for GETs of `digest` so far (combined-format access log lines)."""
        total = 0
        d = digest if pattern else re.escape(digest)
        pat = re.compile(r'"GET [^"]*/blobs/' + d + r' [^"]*" (\d{3}) (\d+)')
        with open(self.log_path, errors="replace") as f:
            for line in f:
                m = pat.search(line)
                if m and m.group(1) in ("200", "206"):
                    total += int(m.group(2))
        return total

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Dockerd:
    """A dockerd of its own (data root, exec root, socket), BuildKit on, our registry insecure."""

    def __init__(self, work, registry):
        self.dir = os.path.join(work, "dockerd")
        os.makedirs(self.dir)
        self.sock = f"unix://{self.dir}/sock"
        self.proc = subprocess.Popen(
            ["/usr/sbin/dockerd", "--data-root", f"{self.dir}/root", "--exec-root", f"{self.dir}/exec",
             "--pidfile", f"{self.dir}/pid", "-H", self.sock, "--bridge=none", "--iptables=false",
             "--ip6tables=false", "--insecure-registry", registry.addr],
            stdout=subprocess.DEVNULL, stderr=open(f"{self.dir}/log", "w"))
        for _ in range(300):
            if subprocess.run([DOCKER, "-H", self.sock, "version"], capture_output=True).returncode == 0:
                return
            time.sleep(0.2)
        raise SystemExit("dockerd did not start; see " + f"{self.dir}/log")

    def argv(self, *args):
        return [DOCKER, "-H", self.sock, *args]

    def reset(self):
        """No local state: every image and all build cache gone."""
        subprocess.run(self.argv("builder", "prune", "-af"), capture_output=True)
        subprocess.run(self.argv("system", "prune", "-af"), capture_output=True)

    def hwm_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def buildah(root, *args):
    return ["/usr/bin/buildah", "--root", f"{root}/root", "--runroot", f"{root}/runroot",
            "--storage-driver", "overlay", *args]


def wipe_buildah(root):
    subprocess.run(buildah(root, "rm", "--all"), capture_output=True)
    subprocess.run(buildah(root, "rmi", "--all", "--force"), capture_output=True)
    subprocess.run(["umount", "-l", f"{root}/root/overlay"], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def make_contexts(work):
    app = os.path.join(work, "app")
    os.makedirs(os.path.join(app, "src"))
    with open(os.path.join(app, "Dockerfile"), "w") as f:
        f.write(APP_DOCKERFILE)
    for i in range(200):
        with open(os.path.join(app, "src", f"s{i}.txt"), "w") as f:
            f.write(f"source file {i}\n" * 50)
    cp = os.path.join(work, "copy")
    os.makedirs(os.path.join(cp, "files"))
    with open(os.path.join(cp, "Dockerfile"), "w") as f:
        f.write(COPY_DOCKERFILE.replace("{link}", ""))
    for i in range(20):
        with open(os.path.join(cp, "files", f"f{i}"), "wb") as f:
            f.write(os.urandom(256 << 10))
    # The same context with `COPY --link`: a layer that does not depend on the base, so a
    # builder need not download it (buildah 1.28 refuses the flag, so it sits this one out).
    link = os.path.join(work, "copy-link")
    shutil.copytree(cp, link)
    with open(os.path.join(link, "Dockerfile"), "w") as f:
        f.write(COPY_DOCKERFILE.replace("{link}", " --link"))
    # The app's sources, built in two stages.
    multi = os.path.join(work, "multi")
    shutil.copytree(os.path.join(app, "src"), os.path.join(multi, "src"))
    with open(os.path.join(multi, "Dockerfile"), "w") as f:
        f.write(MULTI_DOCKERFILE)
    return app, cp, link, multi


def make_bases(registry, work):
    """The corpus's busybox base, and a big one (busybox + a 160 MB random layer) cached in CACHE."""
    root = os.path.join(work, "buildah-base")
    g = buildah(root)[1:]
    sh("sh", os.path.join(REPO, "tests/corpus/make-base.sh"), registry.addr, "bench/base:1", *g)
    small = f"{registry.addr}/bench/base:1"
    big_dir = os.path.join(CACHE, f"big-base-{BIG_MB}")
    if not os.path.exists(os.path.join(big_dir, "index.json")):
        os.makedirs(CACHE, exist_ok=True)
        ctr = sh(*buildah(root, "from", "--tls-verify=false", small)).stdout.decode().strip()
        sh(*buildah(root, "run", "--isolation", "chroot", ctr, "--", "sh", "-c",
                    f"dd if=/dev/urandom of=/big.bin bs=1048576 count={BIG_MB} 2>/dev/null"))
        sh(*buildah(root, "commit", "-q", "--rm", ctr, "bench-big"))
        sh(*buildah(root, "push", "-q", "bench-big", f"oci:{big_dir}"))
    sh("skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{big_dir}", f"docker://{registry.addr}/bench/big:1")
    man = json.loads(sh("skopeo", "inspect", "--raw", "--tls-verify=false",
                        f"docker://{registry.addr}/bench/big:1").stdout)
    big_layer = max(man["layers"], key=lambda l: l["size"])
    wipe_buildah(root)
    return small, f"{registry.addr}/bench/big:1", big_layer


def debian_base(registry, work):
    """A Debian bookworm minbase pushed to the registry as bench/debian:1. debootstrap runs once;
    its tree is kept in /var/tmp/kiln-bench for later runs."""
    if not os.path.exists(os.path.join(DEBIAN_TREE, "etc/debian_version")):
        partial = DEBIAN_TREE + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(os.path.dirname(DEBIAN_TREE), exist_ok=True)
        mirror = os.environ.get("KILN_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
        sh("/usr/sbin/debootstrap", "--variant=minbase", "bookworm", partial, mirror)
        for d in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                  "usr/share/locale"):
            shutil.rmtree(os.path.join(partial, d), ignore_errors=True)
            os.makedirs(os.path.join(partial, d), exist_ok=True)
        os.rename(partial, DEBIAN_TREE)
    ctx = os.path.join(work, "debian-base")
    os.makedirs(ctx)
    sh("tar", "-C", DEBIAN_TREE, "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*",
       "-cf", os.path.join(ctx, "rootfs.tar"), ".")
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM scratch\nADD rootfs.tar /\nCMD [\"bash\"]\n")
    ref = f"{registry.addr}/bench/debian:1"
    sh(kiln_bin(), "build", "--context", ctx, "--destination", ref, "--insecure-registry", registry.addr,
       "--cache-dir", os.path.join(work, "debian-base-cache"))
    app = os.path.join(work, "debian-app")
    os.makedirs(app)
    with open(os.path.join(app, "Dockerfile"), "w") as f:
        f.write(DEBIAN_DOCKERFILE)
    return ref, app


def floor(work):
    """The cold build's floor: the RUN steps run natively (chroot into the Debian tree, each
    over a copy of the tree), plus gzip -1 of what they wrote on every core (pigz, as kiln
    compresses in parallel)."""
    root = os.path.join(work, "floor-root")
    shutil.rmtree(root, ignore_errors=True)
    sh("cp", "-a", DEBIAN_TREE, root)
    app = os.path.join(root, "srv/app")
    os.makedirs(app, exist_ok=True)
    os.sync()
    t_run = 0.0
    for i, cmd in enumerate(DEBIAN_RUNS):
        user = [] if i == 0 else ["--userspec=1000:1000"]
        start = time.monotonic()
        sh("chroot", *user, root, "sh", "-c", f"cd /srv/app && {cmd}")
        t_run += time.monotonic() - start
    tar = os.path.join(work, "floor-layers.tar")
    sh("tar", "-C", root, "-cf", tar, "srv/app")
    os.sync()
    start = time.monotonic()
    sh("sh", "-c", f"pigz -1 -c {tar} > {tar}.gz")
    t_gz = time.monotonic() - start
    size = os.path.getsize(tar)
    shutil.rmtree(root, ignore_errors=True)
    os.remove(tar)
    os.remove(tar + ".gz")
    return t_run, t_gz, size


def kiln_bin():
    return os.environ.get("KILN_BIN", os.path.join(REPO, "target/release/kiln"))


def kiln_works(registry, small, app, work):
    """Whether `kiln build` can build the app image (stops the benchmark when it cannot)."""
    out = os.path.join(work, "kiln-probe")
    p = subprocess.run([kiln_bin(), "build", "--context", app, "--dockerfile", f"{app}/Dockerfile",
                        "--build-arg", f"BASE={small}", "--no-push", "--oci-layout-path", out,
                        "--insecure-registry", registry.addr, "--cache-dir", f"{work}/kiln-probe-cache"],
                       capture_output=True)
    if p.returncode != 0:
        # A kiln that cannot build is a regression to see, not a column to drop.
        err = p.stderr.decode(errors="replace").strip()
        raise SystemExit(f"kiln cannot build the benchmark's image ({p.returncode}):\n{err[-2000:]}")
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="cold,cold-multi,cached,copy-big,copy-link,copy-index,cached-multi,cold-debian")
    opts = ap.parse_args()
    only = set(opts.only.split(","))
    if os.geteuid() != 0:
        raise SystemExit("run as root (buildah --isolation chroot and dockerd need it)")
    work = tempfile.mkdtemp(prefix="kiln-bench-")
    registry = Registry(work)
    dockerd = None
    try:
        app, cp, link, multi = make_contexts(work)
        small, big, big_layer = make_bases(registry, work)
        dockerd = Dockerd(work, registry)
        with_kiln = os.path.exists(kiln_bin()) and kiln_works(registry, small, app, work)
        if not os.path.exists(kiln_bin()):
            print(f"kiln: {kiln_bin()} missing (cargo build --release -p kiln-builder); left out")
        reg = registry.addr
        n = [0]

        def tag(name):
            n[0] += 1
            return f"{reg}/bench/{name}:{n[0]}"

        def kiln(ctx, base, *extra, binary=None, name="kiln"):
            return Contender(name, ["sh", "-c", " ".join([
                binary or kiln_bin(), "build", "--context", ctx, "--dockerfile", f"{ctx}/Dockerfile",
                "--build-arg", f"BASE={base}", "--insecure-registry", reg,
                "--destination", "$DEST", "--cache-dir", "$STATE/kiln-cache", *extra])])

        def bah(ctx, base, *extra):
            b = " ".join(buildah("$STATE/buildah"))
            return Contender("buildah bud", ["sh", "-c",
                f"{b} bud -q --isolation chroot --tls-verify=false --build-arg BASE={base} {' '.join(extra)} "
                f"-t $DEST {ctx} >/dev/null && {b} push -q --tls-verify=false $DEST docker://$DEST"])

        def bk(ctx, base, *extra):
            d = " ".join(dockerd.argv())
            return Contender("docker BuildKit", ["sh", "-c",
                f"{d} build -q --network host --build-arg BASE={base} {' '.join(extra)} -t $DEST {ctx} >/dev/null "
                f"&& {d} push -q $DEST >/dev/null"], env={"DOCKER_BUILDKIT": "1"})

        def fresh(c):
            """Before each run: no local state for anyone, a new destination tag."""
            state = os.path.join(work, "state")
            wipe_buildah(os.path.join(state, "buildah"))
            shutil.rmtree(state, ignore_errors=True)
            os.makedirs(state)
            dockerd.reset()
            # The deletions above leave journal and discard work behind (ext4 with `discard`);
            # flushed here, it does not land in the next contender's timed run.
            os.sync()
            c.env.update({"STATE": state, "DEST": tag(c.name.split()[0])})

        def field(c):
            return [c] if (c.name != "kiln" or with_kiln) else []

        if "cold" in only:
            cs = field(kiln(app, small)) + [bah(app, small), bk(app, small)]
            compare("cold build + push", cs, runs=opts.runs, setup=fresh)
        if "cold-multi" in only:
            cs = field(kiln(multi, small)) + [bah(multi, small), bk(multi, small)]
            compare("cold build + push, two-stage (WORKDIR, USER, COPY --from)", cs, runs=opts.runs, setup=fresh)

        def cached(title, ctx, name, downloads=False):
            kc = kiln(ctx, small, "--cache=true", f"--cache-repo={reg}/bench/{name}-kiln-cache")
            bc = bah(ctx, small, "--layers", f"--cache-from={reg}/bench/{name}-buildah-cache",
                     f"--cache-to={reg}/bench/{name}-buildah-cache")
            dc = bk(ctx, small, f"--cache-from={reg}/bench/{name}-docker-cache:1",
                    "--build-arg BUILDKIT_INLINE_CACHE=1")
            cs = field(kc) + [bc, dc]
            # Fill each registry cache once, untimed.
            for c in cs:
                fresh(c)
                if c.name.startswith("docker"):
                    c.env["DEST"] = f"{reg}/bench/{name}-docker-cache:1"
                subprocess.run(c.argv, env=dict(os.environ, **c.env), check=True, capture_output=True)
            compare(title, cs, runs=opts.runs, setup=fresh)
            if downloads:
                print("  blob bytes downloaded by one rebuild each (fresh local state):")
                for c in cs:
                    fresh(c)
                    b0 = registry.all_blob_bytes()
                    subprocess.run(c.argv, env=dict(os.environ, **c.env), check=True, capture_output=True)
                    print(f"    {c.name:<24} {(registry.all_blob_bytes() - b0) / (1 << 20):8.1f} MiB")

        if "cached" in only:
            cached("rebuild, no change, registry cache, fresh local state", app, "app")
        if "cached-multi" in only:
            cached("two-stage rebuild (WORKDIR, USER, COPY --from), registry cache, fresh local state",
                   multi, "multi", downloads=True)

        def copy_only(title, cs, setup=fresh):
            compare(f"{title} on a {big_layer['size'] >> 20} MiB base", cs, runs=opts.runs, setup=setup)
            # One more run each, alone, to count what it downloads: of the base's big layer, and
            # of all blobs (a layer index included).
            print("  bytes downloaded (one build each, fresh local state): base layer, all blobs (KiB)")
            for c in cs:
                setup(c)
                b0, a0 = registry.blob_bytes(big_layer["digest"]), registry.all_blob_bytes()
                subprocess.run(c.argv, env=dict(os.environ, **c.env), check=True, capture_output=True)
                got = registry.blob_bytes(big_layer["digest"]) - b0
                every = registry.all_blob_bytes() - a0
                print(f"    {c.name:<24} {got / (1 << 20):8.1f} MiB  {every / 1024:10.1f} KiB")

        if "copy-big" in only:
            copy_only("COPY-only image", field(kiln(cp, big)) + [bah(cp, big), bk(cp, big)])
        if "copy-link" in only and with_kiln:
            # kiln alone: buildah 1.28 refuses `--link`, and docker.io 20.10's built-in Dockerfile
            # frontend does too (it needs the `docker/dockerfile:1.4` frontend image, which these
            # machines cannot pull).
            copy_only("COPY --link-only image", [kiln(link, big)])
        if "copy-index" in only and with_kiln:
            # Issue 13: a plain COPY on fresh state whose base's layer index an earlier build
            # published in the cache repository. The context changes before every run, so the
            # COPY always runs (a registry-cache hit would prove nothing).
            repo = f"--cache-repo={reg}/bench/copy-index-kiln-cache"
            changed = os.path.join(cp, "files", "changed")

            def fresh_changed(c):
                fresh(c)
                with open(changed, "w") as f:
                    f.write(c.env["DEST"] + "\n")

            ki = kiln(cp, big, "--cache=true", repo)
            ki.name = "kiln (index)"
            ke = kiln(cp, big, "--cache=true", repo)
            ke.name = "kiln-extract (index off)"
            ke.env["KILN_LAYER_INDEX"] = "off"
            # The first build extracts the base and publishes its index, untimed.
            fresh_changed(ki)
            subprocess.run(ki.argv, env=dict(os.environ, **ki.env), check=True, capture_output=True)
            copy_only("COPY-only image, fresh state, index published", [ki, ke, bah(cp, big), bk(cp, big)],
                      setup=fresh_changed)
        if "cold-debian" in only and with_kiln:
            debian, dapp = debian_base(registry, work)
            cs = [kiln(dapp, debian)]
            before = os.environ.get("KILN_BEFORE_BIN")
            if before:
                cs.append(kiln(dapp, debian, binary=before, name="kiln before"))
            cs += [bah(dapp, debian), bk(dapp, debian)]
            compare("cold build + push, Debian base, WORKDIR + USER + 3 RUN (60-90 MB each)", cs,
                    runs=opts.runs, setup=fresh)
            c = kiln(dapp, debian, "--timings")
            fresh(c)
            p = subprocess.run(c.argv, env=dict(os.environ, **c.env), capture_output=True, check=True)
            err = p.stderr.decode(errors="replace").splitlines()
            print("  one more kiln build, --timings:")
            for line in err[next(i for i, l in enumerate(err) if l.startswith("step  stage")):]:
                print("    " + line)
            t_run, t_gz, size = floor(work)
            print(f"  floor: the RUN steps natively {t_run:.2f}s + pigz -1 of their {size / 1e6:.0f} MB "
                  f"{t_gz:.2f}s = {t_run + t_gz:.2f}s")
        print(f"\ndockerd peak RSS (VmHWM over the whole run): {dockerd.hwm_mib():.1f} MiB")
    finally:
        if dockerd:
            dockerd.stop()
        registry.stop()
        subprocess.run(["sh", "-c", f"grep -o '{work}[^ ]*' /proc/mounts | sort -r | xargs -r umount -l"])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
