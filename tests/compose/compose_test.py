#!/usr/bin/python3
"""Runs docker-compose.yml's services natively, since no container engine runs
here: each service's command with exactly its environment (after compose's
${VAR:-default} interpolation from this process's environment and .env), on
loopback, with service hostnames and ports mapped to free 127.0.0.1 ports.
Proves that the binaries accept what compose gives them, that the health checks
pass, that the edge refuses a WebSocket without a valid token (HTTP 401), and
that a chat message between two users holding HS256 JWTs minted with compose's
JWT_SECRET crosses the running system.

Usage: compose_test.py <build-dir>
"""
import base64
import hashlib
import hmac
import json
import os
import shutil
import tempfile
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


# Compose's variable substitution: $$, $VAR, ${VAR}, ${VAR:-default},
# ${VAR-default}, ${VAR:?error}, ${VAR?error}, ${VAR:+alt}, ${VAR+alt}.
INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<named>[A-Za-z_][A-Za-z0-9_]*)|"
    r"\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|(?P<invalid>))")


def compose_variables():
    """What compose substitutes from: the .env file next to the compose file,
    overridden by the environment."""
    variables = {}
    dotenv = os.path.join(ROOT, ".env")
    if os.path.exists(dotenv):
        with open(dotenv) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#") and "=" in line:
                    key, value = line.split("=", 1)
                    variables[key.strip()] = value.strip().strip("'\"")
    variables.update(os.environ)
    return variables


def interpolate(node, variables):
    if isinstance(node, dict):
        return {k: interpolate(v, variables) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, variables) for v in node]
    if not isinstance(node, str):
        return node

    def substitute(m):
        if m.group("escaped"):
            return "$"
        if m.group("invalid") is not None:
            fail(f"invalid interpolation in {node!r}")
        name = m.group("named") or m.group("braced")
        value, op, arg = variables.get(name), m.group("op"), m.group("arg")
        if "${" in (arg or ""):
            fail(f"nested interpolation is not supported by this test: {node!r}")
        if op is None:
            return value or ""
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op in (":?", "?"):
            if value is None or (op == ":?" and not value):
                fail(f"compose requires {name}: {arg}")
            return value
        if op == ":+":
            return arg if value else ""
        return arg if value is not None else ""  # "+"

    return INTERPOLATION.sub(substitute, node)


def shown(env):
    """An environment for the log, secrets masked."""
    return {k: ("***" if re.search("SECRET|TOKEN|PASSWORD", k) else v) for k, v in env.items()}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_hs256(secret, claims):
    """A JWT as an identity provider sharing JWT_SECRET with the edge makes it."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"


def handshake(port, target="/", headers=()):
    """Sends a WebSocket upgrade; returns (HTTP status, response head, socket)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
    s.sendall((f"GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            fail(f"edge closed during the handshake for {target}")
        head += chunk
    status = int(head.split(b"\r\n")[0].split()[1])
    return status, head.decode(errors="replace"), s


def expect_refused(port, status, why, target="/", headers=()):
    got, head, s = handshake(port, target, headers)
    s.close()
    if got != status:
        fail(f"{why}: expected HTTP {status}, got {head!r}")
    print(f"refused with {status}: {why}")


def ws_exchange(port, secret):
    """Minimal RFC 6455 client: alice sends bob a message, bob receives it;
    both sign in with a JWT the way the web UI does."""
    def token(user, ttl=300, key=secret):
        now = int(time.time())
        return mint_hs256(key, {"sub": user, "iat": now, "exp": now + ttl})

    def connect(name):
        status, head, s = handshake(port, "/", [("Sec-WebSocket-Protocol",
                                                 f"authorization, {token(name)}")])
        if status != 101:
            fail(f"upgrade for {name} refused: {head}")
        answered = re.search(r"(?im)^Sec-WebSocket-Protocol:\s*(.*?)\s*$", head)
        if not answered or answered.group(1) != "authorization":
            fail(f"the edge must answer Sec-WebSocket-Protocol: authorization, got {head!r}")
        return s

    expect_refused(port, 401, "no token")
    expect_refused(port, 401, "?name= is no identity in jwt mode", target="/?name=alice")
    expect_refused(port, 401, "token signed with another secret",
                   headers=[("Sec-WebSocket-Protocol",
                             f"authorization, {token('alice', key='x' * 40)}")])
    expect_refused(port, 401, "expired token",
                   headers=[("Authorization", f"Bearer {token('alice', ttl=-300)}")])

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
    for sock, name in ((alice, "alice"), (bob, "bob")):
        hello = read_frame(sock)
        if hello.get("action") != "hello" or hello.get("user") != name:
            fail(f"expected hello for {name}, got {hello}")
    send_frame(alice, {"action": "send", "message": "Hello World!", "send_to": "bob",
                       "sent_by": "alice"})
    got = read_frame(bob)
    if (got.get("action") != "send" or got.get("message") != "Hello World!"
            or got.get("sent_by") != "alice"):
        fail(f"bob got {got}")


def main():
    with open(os.path.join(ROOT, "docker-compose.yml")) as f:
        compose = interpolate(yaml.safe_load(f), compose_variables())
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

    # Identity and service credentials: the edge verifies JWTs, and every
    # service holds the same SERVICE_TOKEN (else their calls are refused).
    edge_env = services["edge"].get("environment", {})
    if edge_env.get("AUTH") != "jwt":
        fail(f"the edge must run with AUTH=jwt, got {edge_env.get('AUTH')!r}")
    secret = str(edge_env.get("JWT_SECRET", ""))
    if len(secret.encode()) < 32:
        fail("the edge's JWT_SECRET must be at least 32 bytes")
    tokens = {name: str(svc.get("environment", {}).get("SERVICE_TOKEN", ""))
              for name, svc in services.items()}
    if not all(tokens.values()) or len(set(tokens.values())) != 1:
        fail("every service needs the same non-empty SERVICE_TOKEN: "
             + ", ".join(f"{n}: {'set' if t else 'missing'}" for n, t in tokens.items()))

    def rewrite(value):
        value = str(value)
        for src, dst in mapping.items():
            value = value.replace(src, dst)
        return value

    procs, ports = [], {}
    data_dir = tempfile.mkdtemp(prefix="chat-compose-")
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
            if command[0] != "edge":
                # Tests run side by side on this machine: no fixed metrics port.
                env["METRICS_LISTEN"] = "127.0.0.1:0"
            if "STORE" in env:
                # The named volume, here a fresh directory.
                mounts = [v.split(":") for v in svc.get("volumes", [])]
                for volume, target in mounts:
                    if env["STORE"].startswith("sqlite:" + target + "/"):
                        env["STORE"] = env["STORE"].replace(target, os.path.join(data_dir, volume), 1)
                        break
                else:
                    fail(f"{name}: STORE {env['STORE']} is not on a volume: data would die with the container")
            full_env = dict(os.environ)
            full_env.update(env)
            p = subprocess.Popen([binary] + command[1:], env=full_env, stdout=subprocess.PIPE,
                                 stderr=open(os.path.join(BUILD, f"compose-{name}.log"), "w"))
            procs.append(p)
            line = p.stdout.readline().decode()
            if not line.startswith("listening on "):
                fail(f"{name} did not start with compose's environment {shown(env)}: {line!r}")
            ports[name] = int(line.strip().rsplit(":", 1)[1])
            print(f"{name}: started with {shown(env)}")
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
        ws_exchange(ports["edge"], secret)
        print("chat message delivered between JWT users through the compose configuration")
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
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
