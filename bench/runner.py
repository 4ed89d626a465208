#!/usr/bin/env python3
"""kiln-runner against the tests' fake GitLab (runner/examples/fake_gitlab.rs).

Measures, with medians of several runs:
  idle      RSS of `kiln-runner run` after 10 s of 204s (target <= 20 MiB);
  ack       time from a job being queued in the fake GitLab to the runner's `PUT state=running`
            (target <= 200 ms), with the fake answering 204 at once and with it holding the
            request as Workhorse's long polling does;
  burst     100 jobs (`sleep 1; echo done`, local executor) queued at once with concurrent = 100:
            wall time, the runner's peak RSS, every job `success` with the right trace checksum.

Usage: bench/runner.py [--runs N] [--samples N] [--only idle,ack,burst]
Builds the release binaries first unless KILN_RUNNER_BIN and FAKE_GITLAB_BIN are set.
Processes it starts are stopped by their pid.
"""

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build():
    runner = os.environ.get("KILN_RUNNER_BIN")
    fake = os.environ.get("FAKE_GITLAB_BIN")
    if runner and fake:
        return runner, fake
    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "kiln-runner", "--bin", "kiln-runner",
         "--example", "fake_gitlab"],
        cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return (os.path.join(target, "release", "kiln-runner"),
            os.path.join(target, "release", "examples", "fake_gitlab"))


class Fake:
    """The fake GitLab in its own process."""

    def __init__(self, binary, long_poll_ms=None):
        argv = [binary] + (["--long-poll-ms", str(long_poll_ms)] if long_poll_ms else [])
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.stop()
            sys.exit(f"fake GitLab did not start: {self.url!r}")

    def _call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def queue(self, count, script):
        self._call("POST", "/_fake/jobs", {"count": count, "script": script})

    def stats(self):
        return self._call("GET", "/_fake/stats")["jobs"]

    def reset(self):
        self._call("POST", "/_fake/reset")

    def wait_done(self, count, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = self.stats()
            if len(jobs) >= count and all(j["state"] for j in jobs):
                return jobs
            time.sleep(0.05)
        sys.exit(f"jobs not finished after {timeout}s: {self.stats()}")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Runner:
    """`kiln-runner run` with a config of its own."""

    def __init__(self, binary, url, concurrent=1, check_interval=3):
        self.dir = tempfile.TemporaryDirectory(prefix="kiln-runner-bench-")
        cfg = os.path.join(self.dir.name, "config.toml")
        with open(cfg, "w") as f:
            f.write(f'concurrent = {concurrent}\ncheck_interval = {check_interval}\n'
                    f'log_level = "warn"\nshutdown_timeout = 10\n\n'
                    f'[[runners]]\nname = "bench"\nurl = "{url}"\ntoken = "glrt-bench-token"\n'
                    f'executor = "local"\n')
        self.log = open(os.path.join(self.dir.name, "runner.log"), "w")
        self.proc = subprocess.Popen([binary, "run", "--config", cfg], stdout=self.log,
                                     stderr=self.log, stdin=subprocess.DEVNULL)

    def status(self):
        """VmRSS, VmHWM (KiB) and thread count from /proc."""
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "Threads"):
                    out[k] = int(v.split()[0])
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # utime + stime of the runner itself (its jobs' processes are not counted).
        out["cpu_s"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return out

    def kill(self):
        """Stops it if still running (after a failed measurement)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.log.close()
        if code != 0:
            with open(self.log.name) as f:
                sys.exit(f"kiln-runner exited {code}:\n{f.read()[-2000:]}")
        self.dir.cleanup()


def med(xs):
    return statistics.median(xs)


def bench_idle(runner_bin, fake_bin, runs):
    rss, threads = [], []
    for _ in range(runs):
        fake, r = Fake(fake_bin), None
        try:
            r = Runner(runner_bin, fake.url)
            time.sleep(10)
            st = r.status()
            rss.append(st["VmRSS"] / 1024)
            threads.append(st["Threads"])
            r.stop()
        finally:
            if r:
                r.kill()
            fake.stop()
    print(f"\nidle RSS after 10 s, fake GitLab answering 204 ({runs} runs)")
    print(f"  median {med(rss):6.1f} MiB  (runs {min(rss):.1f}-{max(rss):.1f})  threads {med(threads):.0f}"
          f"  target <= 20 MiB: {'ok' if med(rss) <= 20 else 'MISSED'}")


def bench_ack(runner_bin, fake_bin, samples, long_poll_ms):
    fake, r = Fake(fake_bin, long_poll_ms), None
    try:
        r = Runner(runner_bin, fake.url, concurrent=1, check_interval=3)
        time.sleep(0.5)
        rng = random.Random(42)
        acks = []
        for i in range(samples):
            # A random phase against the runner's 3 s request cycle.
            time.sleep(rng.uniform(0, 3))
            fake.queue(1, ["true"])
            jobs = fake.wait_done(i + 1)
            acks.append(jobs[-1]["ack_ms"])
        r.stop()
    finally:
        if r:
            r.kill()
        fake.stop()
    mode = f"fake holds requests up to {long_poll_ms} ms (long polling)" if long_poll_ms else \
        "fake answers 204 at once, check_interval = 3"
    print(f"\nqueue-to-ack, {mode} ({samples} jobs)")
    print(f"  median {med(acks):8.1f} ms  (min {min(acks):.1f}, max {max(acks):.1f})"
          f"  target <= 200 ms: {'ok' if med(acks) <= 200 else 'MISSED'}")


def bench_burst(runner_bin, fake_bin, runs, jobs=100):
    walls, from_first, peaks, cpus = [], [], [], []
    for _ in range(runs):
        fake, r = Fake(fake_bin, long_poll_ms=50_000), None
        try:
            r = Runner(runner_bin, fake.url, concurrent=jobs, check_interval=3)
            time.sleep(0.5)
            fake.queue(jobs, ["sleep 1", "echo done"])
            got = fake.wait_done(jobs)
            st = r.status()
            peaks.append(st["VmHWM"] / 1024)
            cpus.append(st["cpu_s"])
            r.stop()
        finally:
            if r:
                r.kill()
            fake.stop()
        bad = [j for j in got if j["state"] != "success" or not j["checksum_ok"]]
        if bad:
            sys.exit(f"{len(bad)} of {jobs} jobs not success with the right checksum: {bad[:3]}")
        walls.append(max(j["done_ms"] for j in got) / 1000)
        from_first.append((max(j["done_ms"] for j in got) - min(j["ack_ms"] for j in got)) / 1000)
    print(f"\n{jobs} jobs `sleep 1; echo done` at once, concurrent = {jobs} ({runs} runs;"
          f" all success, checksums right)")
    print(f"  wall, queued to last final update  median {med(walls):6.2f} s  (runs {min(walls):.2f}-{max(walls):.2f})")
    print(f"  wall, first ack to last update     median {med(from_first):6.2f} s")
    print(f"  runner peak RSS                    median {med(peaks):6.1f} MiB  (max {max(peaks):.1f})")
    print(f"  runner CPU time (user+sys)         median {med(cpus):6.2f} s  (load average now"
          f" {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--only", default="idle,ack,burst")
    a = ap.parse_args()
    runner_bin, fake_bin = build()
    only = a.only.split(",")
    if "idle" in only:
        bench_idle(runner_bin, fake_bin, a.runs)
    if "ack" in only:
        bench_ack(runner_bin, fake_bin, a.samples, None)
        bench_ack(runner_bin, fake_bin, a.samples, 50_000)
    if "burst" in only:
        bench_burst(runner_bin, fake_bin, a.runs)


if __name__ == "__main__":
    main()
