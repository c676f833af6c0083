#!/usr/bin/python3
"""Runs docker-compose.yml's services natively, since no container engine runs
here: each service's command with exactly its environment, on loopback, with
service hostnames and ports mapped to free 127.0.0.1 ports. Proves that the
binaries accept what compose gives them, that the health checks pass, and that
a chat message crosses the running system.

Usage: compose_test.py <build-dir>
"""
import base64
import json
import os
import re
import socket
import subprocess
import sys
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
BINARIES = {
    "connection-service": os.path.join(BUILD, "connection-service", "connection-service"),
    "message-service": os.path.join(BUILD, "message-service", "message-service"),
    "edge": os.path.join(BUILD, "edge", "edge"),
}


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ordered(services):
    done, order = set(), []
    while len(order) < len(services):
        progress = False
        for name, svc in services.items():
            deps = svc.get("depends_on", {})
            if name not in done and all(d in done for d in deps):
                order.append(name)
                done.add(name)
                progress = True
        if not progress:
            fail("depends_on has a cycle")
    return order


def ws_exchange(port):
    """Minimal RFC 6455 client: alice sends bob a message, bob receives it."""
    def connect(name):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET /?name={name} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(1)
            if not chunk:
                fail("edge closed during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            fail("upgrade refused: " + head.decode(errors="replace"))
        return s

    def recv_exact(s, n):
        out = b""
        while len(out) < n:
            chunk = s.recv(n - len(out))
            if not chunk:
                fail("connection closed")
            out += chunk
        return out

    def read_frame(s):
        b0, b1 = recv_exact(s, 2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(recv_exact(s, 2), "big")
        elif n == 127:
            n = int.from_bytes(recv_exact(s, 8), "big")
        return json.loads(recv_exact(s, n))

    def send_frame(s, obj):
        data = json.dumps(obj).encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        if len(data) < 126:
            header += bytes([0x80 | len(data)])
        else:
            header += bytes([0x80 | 126]) + len(data).to_bytes(2, "big")
        s.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    alice, bob = connect("alice"), connect("bob")
    if read_frame(alice).get("action") != "hello" or read_frame(bob).get("action") != "hello":
        fail("no hello frame")
    send_frame(alice, {"action": "send", "message": "Hello World!", "send_to": "bob",
                       "sent_by": "alice"})
    got = read_frame(bob)
    if got.get("action") != "send" or got.get("message") != "Hello World!":
        fail(f"bob got {got}")


def main():
    with open(os.path.join(ROOT, "docker-compose.yml")) as f:
        compose = yaml.safe_load(f)
    services = compose["services"]
    images = {svc.get("image") for svc in services.values()}
    if len(images) != 1:
        fail(f"expected one image for every service, got {images}")
    published = [name for name, svc in services.items() if svc.get("ports")]
    if published != ["edge"]:
        fail(f"only the edge should publish a port, got {published}")

    # Every "host:port" a service listens on gets a free loopback port.
    mapping = {}  # "name:port" -> "127.0.0.1:free"
    for name, svc in services.items():
        env = svc.get("environment", {})
        m = re.fullmatch(r"[^:]*:(\d+)", str(env.get("LISTEN", "")))
        if not m:
            fail(f"{name}: LISTEN must be host:port, got {env.get('LISTEN')}")
        mapping[f"{name}:{m.group(1)}"] = f"127.0.0.1:{free_port()}"

    def rewrite(value):
        value = str(value)
        for src, dst in mapping.items():
            value = value.replace(src, dst)
        return value

    procs, ports = [], {}
    try:
        for name in ordered(services):
            svc = services[name]
            command = svc["command"]
            binary = BINARIES.get(command[0])
            if binary is None:
                fail(f"{name}: unknown command {command}")
            env = {k: rewrite(v) for k, v in svc.get("environment", {}).items()}
            listen_port = re.fullmatch(r".*:(\d+)", str(svc["environment"]["LISTEN"])).group(1)
            env["LISTEN"] = mapping[f"{name}:{listen_port}"]
            if "WEB_ROOT" in env:
                env["WEB_ROOT"] = os.path.join(ROOT, "edge", "web")  # the image's copy
            full_env = dict(os.environ)
            full_env.update(env)
            p = subprocess.Popen([binary] + command[1:], env=full_env, stdout=subprocess.PIPE,
                                 stderr=open(os.path.join(BUILD, f"compose-{name}.log"), "w"))
            procs.append(p)
            line = p.stdout.readline().decode()
            if not line.startswith("listening on "):
                fail(f"{name} did not start with compose's environment {env}: {line!r}")
            ports[name] = int(line.strip().rsplit(":", 1)[1])
            print(f"{name}: started with {env}")
        # Health checks, with the container's ports mapped.
        for name in ordered(services):
            test = services[name].get("healthcheck", {}).get("test")
            if not test:
                fail(f"{name} has no healthcheck")
            if test[0] != "CMD":
                fail(f"{name}: healthcheck must use the exec form")
            port = str(ports[name])
            argv = [re.sub(r"(127\.0\.0\.1[:/])\d+", lambda m: m.group(1) + port, a)
                    for a in test[1:]]
            deadline = time.time() + 15
            while subprocess.run(argv, capture_output=True).returncode != 0:
                if time.time() > deadline:
                    fail(f"{name}: healthcheck {argv} never passed")
                time.sleep(0.1)  # health checks are polled, as compose does
            print(f"{name}: healthcheck ok ({' '.join(argv)})")
        ws_exchange(ports["edge"])
        print("chat message delivered through the compose configuration")
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                code = p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                fail("a service did not exit on SIGTERM")
            if code != 0:
                fail(f"a service exited with {code} on SIGTERM")


if __name__ == "__main__":
    main()
