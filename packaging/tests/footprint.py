#!/usr/bin/env python3
"""Footprint of a ttp-worker binary (the packaged one by default): start to 'subscribed' and
idle resident memory, against a real nats-server on a free loopback port.

    packaging/tests/footprint.py [BINARY] [--runs N]

Start to subscribed: from just before exec to the log line 'connected to NATS ... subscribed
to 9 subjects', median and worst of N runs, built-in pack, fresh store each run.
Idle RSS: VmRSS (with RssAnon, the part that is the process's own rather than file pages it
shares with the page cache, and VmHWM, the peak) of the daemon 3 s after it logged its state
(or, after traffic, 3 s after the store stopped changing, by when it has settled), for: built-in
pack connected to NATS, plain and with the environment the packaged unit adds
(MALLOC_ARENA_MAX=2); the same after it has tagged DECNET's 1k-event dev corpus
(../shared/compat or $TTP_COMPAT_DIR, when present) and settled, which shows what traffic leaves behind (rule
regexes compiled on first use; the caches a burst grows are given back), and after 20 such
bursts of distinct events (the corpus `make bench-tag` writes, when present; one start, about
two minutes); built-in pack with --no-bus; no rules and --no-bus. Each is the median
of 3 starts unless said otherwise.
Prints a Markdown table. A measurement, not a pass/fail test.
"""
import json
import re
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

args = [a for a in sys.argv[1:] if not a.startswith("--")]
runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 20
binary = os.path.abspath(args[0] if args and args[0] != str(runs) else "target/deb/ttp-worker")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nats_server():
    exe = next((p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if os.path.exists(p)), "nats-server")
    port = free_port()
    proc = subprocess.Popen([exe, "-a", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("nats-server did not start")


def start(extra, env_extra, until):
    """Starts the worker; returns (process, seconds until a stderr line contains `until`)."""
    state = tempfile.mkdtemp(prefix="ttp-footprint-")
    env = {"PATH": "/usr/bin:/bin", "RUST_LOG": "info", "DECNET_TTP_DB": os.path.join(state, "ttp.db")}
    start.db = env["DECNET_TTP_DB"]
    env.update(env_extra)
    t0 = time.perf_counter()
    proc = subprocess.Popen([binary] + extra, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if until in line:
            return proc, time.perf_counter() - t0
    raise SystemExit(f"worker exited before logging {until!r}")


# The shared compat fixtures, found as the tests find them.
COMPAT = os.environ.get("TTP_COMPAT_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../shared/compat")
CORPUS = os.path.join(COMPAT, "corpus/dev-1k.jsonl")


# 20,000 distinct events (dev-1k twenty times, ids rewritten per copy), made by `make bench-tag`.
BENCH_CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../target/bench-data/tag-20x-dev-1k.jsonl")


def read_lines(path):
    with open(path, "rb") as f:
        return [l.strip() for l in f if l.strip()]


def publish(port, lines):
    """Publishes each envelope line on its `topic` with the plain NATS protocol."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.recv(4096)  # INFO
        out = [b'CONNECT {"verbose":false,"pedantic":false}\r\n']
        for line in lines:
            topic = json.loads(line)["topic"].encode()
            out.append(b"PUB %s %d\r\n%s\r\n" % (topic, len(line), line))
        out.append(b"PING\r\n")
        s.sendall(b"".join(out))
        reply = b""
        while b"PONG" not in reply:
            reply += s.recv(4096)


def wait_until_store_settles(db):
    """Waits until `ttp-worker stats` reads the same twice in a row, 1 s apart."""
    last = None
    for _ in range(60):
        now = subprocess.run([binary, "stats", "--db", db], capture_output=True, text=True).stdout
        if now == last and not re.search(r"^tags\s+0$", now, re.M):
            return
        last = now
        time.sleep(1)
    raise SystemExit("the store did not settle after a burst was published")


def stop(proc):
    proc.terminate()
    proc.wait(timeout=10)


def rss(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    kib = lambda key: int(fields[key].split()[0])
    return kib("VmRSS"), kib("VmHWM"), kib("RssAnon")


server, port = nats_server()
url = f"nats://127.0.0.1:{port}"
try:
    times = []
    for _ in range(runs):
        proc, elapsed = start([], {"DECNET_BUS_URL": url}, "subscribed to")
        times.append(elapsed * 1000)
        stop(proc)
    print(f"binary: {binary} ({os.path.getsize(binary) / 1e6:.1f} MB)\n")
    print("| measurement | value |\n|---|---|")
    print(f"| start to subscribed (built-in pack, {runs} runs) | median {statistics.median(times):.1f} ms, worst {max(times):.1f} ms |")
    unit_env = {"MALLOC_ARENA_MAX": "2"}
    # (label, extra arguments, environment, log line that means started, bursts to publish
    # one after the other, each followed by waiting until the daemon has settled, starts)
    rows = [
        ("idle RSS, built-in pack, connected to NATS", [], {}, "subscribed to", [], 3),
        ("idle RSS, built-in pack, connected, unit's MALLOC_ARENA_MAX=2", [], unit_env, "subscribed to", [], 3),
        ("idle RSS, built-in pack, --no-bus", ["--no-bus"], {}, "bus disabled", [], 3),
        ("idle RSS, no rules, --no-bus", ["--no-bus", "--no-builtin-rules"], {}, "bus disabled", [], 3),
    ]
    if os.path.exists(BENCH_CORPUS):
        lines = read_lines(BENCH_CORPUS)
        bursts = [lines[i:i + 1000] for i in range(0, len(lines), 1000)]
        rows.insert(2, (f"idle RSS after {len(bursts)} bursts of 1,000 distinct events, connected, MALLOC_ARENA_MAX=2",
                        [], unit_env, "subscribed to", bursts, 1))
    else:
        print(f"(no {BENCH_CORPUS}, made by `make bench-tag`: the long-traffic row is left out)\n")
    if os.path.exists(CORPUS):
        rows.insert(2, ("idle RSS after tagging the 1k dev corpus, connected, MALLOC_ARENA_MAX=2",
                        [], unit_env, "subscribed to", [read_lines(CORPUS)], 3))
    else:
        print(f"(no {CORPUS}: the after-traffic row is left out)\n")
    for label, extra, env, until, bursts, starts in rows:
        samples = []
        for _ in range(starts):
            proc, _ = start(extra, {"DECNET_BUS_URL": url, **env}, until)
            for burst in bursts:
                publish(port, burst)
                wait_until_store_settles(start.db)
            time.sleep(3)
            samples.append(rss(proc.pid))
            stop(proc)
        now = sorted(samples)[len(samples) // 2]
        peak = max(sample[1] for sample in samples)
        print(f"| {label} | {now[0] / 1024:.1f} MiB, {now[2] / 1024:.1f} MiB of it anonymous "
              f"(peak {peak / 1024:.1f} MiB) |")
finally:
    server.terminate()
    server.wait()
