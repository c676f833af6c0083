#!/usr/bin/python3
"""Runs scripts/up.sh the way the README says, many times in a row, and checks
every run: it prints the URL, the edge answers /healthz and a WebSocket hello,
the three services and the script are still running a few seconds later, and
Ctrl-C (SIGINT to the script's whole process group, as a terminal sends it)
stops everything cleanly: the script exits 0 and no process it started is
left.

up.sh's ports are fixed (8080, 50051, 50052; metrics 9101, 9102): ctest gives this test a
RESOURCE_LOCK so that no other test holding that lock runs meanwhile, and a
run fails at once if something else holds one of them.

Usage: up_test.py <build-dir> [runs]   (the build dir's binaries are used:
CHAT_BUILD_DIR; the data goes to a fresh temporary CHAT_DATA_DIR)
"""
import base64
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 20
PORTS = {"edge": 8080, "connection-service": 50051, "message-service": 50052}
SERVICES = set(PORTS)
# Every fixed port up.sh's services bind: the three above and the gRPC services' metrics.
FIXED_PORTS = dict(PORTS, **{"connection-service metrics": 9101, "message-service metrics": 9102})
URL = "http://127.0.0.1:8080/"
START_DEADLINE_S = 60  # up.sh waits up to 30 s per service itself
STAY_UP_S = 3  # the original bug stopped everything within a second of the URL line
STOP_DEADLINE_S = 30  # the edge drains for up to 5 s; up.sh kills after 20 s


class Failure(Exception):
    pass


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def proc_stat(pid):
    """(state, ppid, pgrp, comm) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2]), comm


def all_pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def services_of(script_pid):
    """The script's children that are services: {comm: pid} (comm is at most 15 chars)."""
    found = {}
    for pid in all_pids():
        st = proc_stat(pid)
        if st and st[1] == script_pid and st[0] != "Z":
            for name in SERVICES:
                if name[:15] == st[3]:
                    found[name] = pid
    return found


def group_members(pgrp):
    out = []
    for pid in all_pids():
        st = proc_stat(pid)
        if st and st[2] == pgrp and st[0] != "Z":
            out.append((pid, st[3]))
    return out


def read_until(proc, sel, needle, deadline, transcript):
    """Reads the script's stdout until a line contains `needle`."""
    while time.time() < deadline:
        if proc.poll() is not None:
            raise Failure(f"up.sh exited with {proc.returncode} before printing {needle!r}")
        for _key, _ in sel.select(timeout=max(0.0, min(1.0, deadline - time.time()))):
            line = proc.stdout.readline()
            if not line:
                continue
            transcript.append(line.decode(errors="replace").rstrip("\n"))
            if needle in transcript[-1]:
                return
    raise Failure(f"no line with {needle!r} within {START_DEADLINE_S} s")


def healthz():
    with urllib.request.urlopen(URL + "healthz", timeout=5) as r:
        if r.status != 200:
            raise Failure(f"/healthz answered {r.status}")


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise Failure("the edge closed the WebSocket")
        out += chunk
    return out


def websocket_hello(name):
    """Opens ws://127.0.0.1:8080/?name=<name>, returns the first frame as JSON."""
    with socket.create_connection(("127.0.0.1", PORTS["edge"]), timeout=10) as s:
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET /?name={name} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += recv_exact(s, 1)
        status = head.split(b"\r\n")[0].decode()
        if " 101 " not in status + " ":
            raise Failure(f"WebSocket upgrade refused: {status}")
        _b0, b1 = recv_exact(s, 2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(recv_exact(s, 2), "big")
        elif n == 127:
            n = int.from_bytes(recv_exact(s, 8), "big")
        hello = json.loads(recv_exact(s, n))
        # A masked close frame (code 1000), then we are done.
        mask = os.urandom(4)
        payload = (1000).to_bytes(2, "big")
        s.sendall(bytes([0x88, 0x80 | len(payload)]) + mask +
                  bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        return hello


def eventually(check, what, deadline_s=15):
    deadline = time.time() + deadline_s
    while True:
        try:
            return check()
        except (OSError, Failure, ValueError) as e:
            if time.time() > deadline:
                raise Failure(f"{what}: {e}")
            time.sleep(0.1)  # polled: another process's readiness


def one_run(run, data_dir):
    for name, port in FIXED_PORTS.items():
        # The fixed ports lie in the kernel's ephemeral range (32768-60999):
        # a client socket of a test running alongside may hold one as its
        # local port for a moment. Something listening there for long is a
        # real conflict.
        def free(port=port, name=name):
            if not port_free(port):
                raise Failure(f"port {port} ({name}) is in use by something else: "
                              "up.sh cannot start; stop it and run again")
        eventually(free, f"port {port}", deadline_s=30)
    env = dict(os.environ, CHAT_BUILD_DIR=BUILD, CHAT_DATA_DIR=data_dir)
    # Its own session, like a shell's foreground job: Ctrl-C is SIGINT to this group.
    proc = subprocess.Popen([os.path.join(ROOT, "scripts", "up.sh")], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, bufsize=0)
    transcript = []
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        read_until(proc, sel, URL, time.time() + START_DEADLINE_S, transcript)
        eventually(healthz, "/healthz")
        hello = eventually(lambda: websocket_hello(f"upcheck{run}"), "WebSocket hello")
        if hello.get("action") != "hello" or hello.get("user") != f"upcheck{run}":
            raise Failure(f"unexpected first frame: {hello}")
        services = services_of(proc.pid)
        if set(services) != SERVICES:
            raise Failure(f"expected the three services as up.sh's children, found {services}")
        # Still up a while later: watch the script and every service throughout.
        until = time.time() + STAY_UP_S
        while time.time() < until:
            if proc.poll() is not None:
                raise Failure(f"up.sh exited with {proc.returncode} while it should run")
            for name, pid in services.items():
                st = proc_stat(pid)
                if st is None or st[0] == "Z":
                    raise Failure(f"{name} (pid {pid}) died while up.sh should keep it running")
            time.sleep(0.1)
        healthz()

        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        deadline = time.time() + STOP_DEADLINE_S
        while proc.poll() is None and time.time() < deadline:
            for _key, _ in sel.select(timeout=0.2):
                line = proc.stdout.readline()
                if line:
                    transcript.append(line.decode(errors="replace").rstrip("\n"))
        if proc.poll() is None:
            raise Failure(f"up.sh still running {STOP_DEADLINE_S} s after Ctrl-C")
        if proc.returncode != 0:
            raise Failure(f"up.sh exited with {proc.returncode} after Ctrl-C")
        left = group_members(proc.pid)  # the services and up.sh's helpers
        if left:
            raise Failure(f"processes left after up.sh exited: {sorted(set(left))}")
        for name, port in FIXED_PORTS.items():
            if not port_free(port):
                raise Failure(f"port {port} ({name}) still in use after up.sh exited")
    except Failure:
        print(f"--- up.sh output, run {run}:", file=sys.stderr)
        print("\n".join(transcript), file=sys.stderr)
        raise
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid, _ in group_members(proc.pid):
            os.kill(pid, signal.SIGKILL)
        sel.close()
        proc.stdout.close()


def main():
    for name in SERVICES:
        binary = os.path.join(BUILD, name, name)
        if not os.access(binary, os.X_OK):
            print(f"FAIL: {binary} is not built", file=sys.stderr)
            sys.exit(1)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="chat-up-test-") as data_dir:
        for run in range(1, RUNS + 1):
            t0 = time.time()
            try:
                one_run(run, data_dir)
            except Failure as e:
                print(f"FAIL: run {run} of {RUNS}: {e}", file=sys.stderr)
                sys.exit(1)
            print(f"run {run}/{RUNS}: up, healthy, still up after {STAY_UP_S} s, "
                  f"stopped cleanly by Ctrl-C ({time.time() - t0:.1f} s)", flush=True)
    print(f"{RUNS} of {RUNS} runs passed in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
