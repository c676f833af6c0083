#!/usr/bin/python3
"""Runs docker-compose.yml's services natively, since no container engine runs
here: our services' commands with exactly their environment (after compose's
${VAR:-default} interpolation from this process's environment and .env), and
the engines the file pulls as images (postgres, redis, haproxy) as real local
processes set up as those images would be from the file (PostgreSQL's user,
password and database; Redis's command; HAProxy with the mounted config). All
on loopback, every service host name and port mapped to a free 127.0.0.1
port, a network alias to every replica answering to it.
Proves that the binaries know every setting compose gives them (each
variable names a flag of the binary) and start with them, that every health
check passes, that the edges refuse a WebSocket without a valid token (HTTP
401), and that a chat message between two users holding HS256 JWTs minted with
compose's JWT_SECRET crosses the running system through HAProxy, from one
edge to the other.

Usage: compose_test.py <build-dir>
"""
import base64
import hashlib
import hmac
import json
import os
import random
import shutil
import tempfile
import re
import resource
import socket
import subprocess
import sys
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
PG_BIN = "/usr/lib/postgresql/15/bin"
BINARIES = {
    "connection-service": os.path.join(BUILD, "connection-service", "connection-service"),
    "message-service": os.path.join(BUILD, "message-service", "message-service"),
    "edge": os.path.join(BUILD, "edge", "edge"),
}


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


_PORTS_GIVEN = set()


def free_port():
    """A loopback port nothing listens on, for a service to bind a moment later.
    Chosen below the kernel's ephemeral range: a port the kernel handed out for
    port 0 is free again once closed, and the other tests running alongside
    (servers on port 0, clients' outgoing connections) take theirs from that
    range, so one of them could take it before the service binds."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_low = int(f.read().split()[0])
    low = 20000 if ephemeral_low > 21000 else 10000
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(low, ephemeral_low)
        if port in _PORTS_GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PORTS_GIVEN.add(port)
        return port
    fail(f"no free loopback port in {low}..{ephemeral_low - 1}")


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
    servers = []
    for sock, name in ((alice, "alice"), (bob, "bob")):
        hello = read_frame(sock)
        if hello.get("action") != "hello" or hello.get("user") != name:
            fail(f"expected hello for {name}, got {hello}")
        servers.append(hello.get("server"))
    send_frame(alice, {"action": "send", "message": "Hello World!", "send_to": "bob",
                       "sent_by": "alice"})
    got = read_frame(bob)
    if (got.get("action") != "send" or got.get("message") != "Hello World!"
            or got.get("sent_by") != "alice"):
        fail(f"bob got {got}")
    return servers


def engine(svc):
    """Which engine an image-only service is: postgres, redis or haproxy."""
    image = str(svc.get("image", ""))
    for name in ("postgres", "redis", "haproxy"):
        if image == name or image.startswith(name + ":"):
            return name
    return None


def container_port(name, svc):
    """The port the service listens on inside its container."""
    kind = engine(svc)
    if kind == "postgres":
        return "5432"
    if kind == "redis":
        return "6379"
    if kind == "haproxy":
        ports = svc.get("ports", [])
        if len(ports) != 1:
            fail(f"{name}: expected one published port, got {ports}")
        return str(ports[0]).rsplit(":", 1)[1]
    env = svc.get("environment", {})
    m = re.fullmatch(r"[^:]*:(\d+)", str(env.get("LISTEN", "")))
    if not m:
        fail(f"{name}: LISTEN must be host:port, got {env.get('LISTEN')}")
    return m.group(1)


def aliases(svc):
    networks = svc.get("networks") or {}
    if isinstance(networks, list):
        return []
    return [a for net in networks.values() if net for a in net.get("aliases", [])]


def known_flags(binary):
    """The flags `binary` defines, from --helpfull."""
    out = subprocess.run([binary, "--helpfull"], capture_output=True, text=True).stdout
    return set(re.findall(r"^\s+--([a-z0-9_]+)", out, re.M))


def as_server_user(argv):
    """PostgreSQL refuses to run as root: run it as "postgres" then."""
    return ["runuser", "-u", "postgres", "--"] + argv if os.geteuid() == 0 else argv


def start_postgres(svc, port, work):
    """A PostgreSQL 15 cluster as the postgres:15 image makes one from its
    environment: POSTGRES_USER (superuser, password POSTGRES_PASSWORD, checked:
    scram-sha-256 over TCP) and the database POSTGRES_DB."""
    env = svc.get("environment", {})
    user = env.get("POSTGRES_USER", "postgres")
    password = env.get("POSTGRES_PASSWORD")
    database = env.get("POSTGRES_DB", user)
    if not password:
        fail("postgres: the image needs POSTGRES_PASSWORD")
    mounts = [str(v).split(":") for v in svc.get("volumes", [])]
    if not any(len(m) >= 2 and not m[0].startswith(".") and m[1] == "/var/lib/postgresql/data"
               for m in mounts):
        fail("postgres: /var/lib/postgresql/data is not on a named volume: data would die "
             "with the container")
    if not os.path.exists(os.path.join(PG_BIN, "postgres")):
        fail(f"PostgreSQL 15 is not installed ({PG_BIN}): scripts/install-deps.sh")
    root = os.path.join(work, "postgres")
    os.makedirs(root)
    data = os.path.join(root, "data")
    pwfile = os.path.join(root, "password")
    with open(pwfile, "w") as f:
        f.write(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    run = lambda argv, **kw: subprocess.run(as_server_user(argv), capture_output=True, text=True,
                                            **kw)
    r = run([f"{PG_BIN}/initdb", "-N", "-D", data, "-U", user, f"--pwfile={pwfile}",
             "-A", "scram-sha-256", "-E", "UTF8"])
    if r.returncode != 0:
        fail(f"initdb: {r.stderr}")
    r = run([f"{PG_BIN}/pg_ctl", "-D", data, "-l", os.path.join(root, "log"), "-w", "-o",
             f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"])
    if r.returncode != 0:
        fail(f"pg_ctl start: {r.stderr}")
    if database != "postgres":
        r = subprocess.run(["psql", "-v", "ON_ERROR_STOP=1", "-c",
                            f'CREATE DATABASE "{database}"',
                            f"postgresql://{user}@127.0.0.1:{port}/postgres"],
                           env=dict(os.environ, PGPASSWORD=password), capture_output=True,
                           text=True)
        if r.returncode != 0:
            fail(f"CREATE DATABASE {database}: {r.stderr}")
    return lambda: run([f"{PG_BIN}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"])


def start_redis(name, svc, port, work):
    """The service's command (redis-server and its options), on our port."""
    command = svc.get("command") or ["redis-server"]
    if command[0] != "redis-server":
        fail(f"{name}: expected a redis-server command, got {command}")
    directory = os.path.join(work, name)
    os.makedirs(directory)
    p = subprocess.Popen(["/usr/bin/redis-server"] + command[1:] +
                         ["--port", str(port), "--bind", "127.0.0.1", "--dir", directory],
                         stdout=open(os.path.join(BUILD, f"compose-{name}.log"), "w"),
                         stderr=subprocess.STDOUT)
    return p


def start_haproxy(name, svc, port, rewrite, work):
    """HAProxy with the configuration compose mounts, its server addresses
    and bind port mapped like everything else."""
    mounted = None
    for volume in svc.get("volumes", []):
        parts = str(volume).split(":")
        if len(parts) >= 2 and parts[1] == "/usr/local/etc/haproxy/haproxy.cfg":
            mounted = os.path.join(ROOT, parts[0])
    if mounted is None or not os.path.exists(mounted):
        fail(f"{name}: no config mounted at /usr/local/etc/haproxy/haproxy.cfg ({mounted})")
    with open(mounted) as f:
        config = f.read()
    published = container_port(name, svc)
    config, binds = re.subn(rf"(?m)^(\s*bind\s+)(?:\*|0\.0\.0\.0)?:{published}\b",
                            rf"\g<1>127.0.0.1:{port}", config)
    if binds != 1:
        fail(f"{name}: expected one `bind :{published}` in {mounted}")
    config = rewrite(config)
    # Tests on this machine pick free ports and bind them later: HAProxy's
    # default SO_REUSEPORT would let it share a port some other process got in
    # between (and take half of that process's connections) instead of failing.
    config, globals_ = re.subn(r"(?m)^global\s*$", "global\n    noreuseport", config, count=1)
    if globals_ != 1:
        fail(f"{name}: no `global` section in {mounted}")
    # HAProxy wants two descriptors per connection of `maxconn`; containers
    # allow many more open files than this machine may.
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    m = re.search(r"(?m)^(\s*maxconn\s+)(\d+)", config)
    if m and 2 * int(m.group(2)) + 100 > limit:
        fitting = (limit - 100) // 2
        print(f"{name}: maxconn {m.group(2)} lowered to {fitting} for this machine's {limit} files")
        config = config[:m.start(2)] + str(fitting) + config[m.end(2):]
    path = os.path.join(work, "haproxy.cfg")
    with open(path, "w") as f:
        f.write(config)
    check = subprocess.run(["/usr/sbin/haproxy", "-c", "-f", path], capture_output=True,
                           text=True)
    if check.returncode != 0:
        fail(f"{name}: haproxy -c refused {mounted}: {check.stdout}{check.stderr}")
    return subprocess.Popen(["/usr/sbin/haproxy", "-db", "-f", path],
                            stdout=open(os.path.join(BUILD, f"compose-{name}.log"), "w"),
                            stderr=subprocess.STDOUT)


def wait_port(name, port, proc):
    deadline = time.time() + 15
    while True:
        if proc is not None and proc.poll() is not None:
            fail(f"{name} exited with {proc.returncode} (see compose-{name}.log)")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.time() > deadline:
                fail(f"{name} is not listening on {port}")
            time.sleep(0.05)  # polling a port that has no event to wait on


def healthcheck_argv(name, svc, port):
    """The health check's command, pointed at the mapped port: `127.0.0.1:N`
    and `/dev/tcp/127.0.0.1/N` rewritten; pg_isready and redis-cli, which
    use their defaults in the container, told the host and port."""
    test = svc.get("healthcheck", {}).get("test")
    if not test:
        fail(f"{name} has no healthcheck")
    if test[0] != "CMD":
        fail(f"{name}: healthcheck must use the exec form")
    argv = [re.sub(r"(127\.0\.0\.1[:/])\d+", lambda m: m.group(1) + str(port), a)
            for a in test[1:]]
    if argv[0] == "pg_isready":
        argv += ["-h", "127.0.0.1", "-p", str(port)]
    elif argv[0] == "redis-cli":
        argv[1:1] = ["-p", str(port)]
    return argv


def check_image_libraries():
    """The image's last stage installs (with what apt pulls in) the package
    of every shared library our binaries link: else they would not start in
    the container (compose cannot be run here, ldd can)."""
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        dockerfile = f.read().replace("\\\n", " ")
    runtime = re.split(r"(?m)^FROM\s", dockerfile)[-1]
    packages = []
    for m in re.finditer(r"apt-get install ([^&\n]*)", runtime):
        packages += [p for p in m.group(1).split() if not p.startswith("-")]
    if not packages:
        fail("Dockerfile: no apt-get install in the runtime stage")
    closure = subprocess.run(
        ["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
         "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"] + packages,
        capture_output=True, text=True).stdout
    installed = {line.split(":")[0] for line in closure.splitlines()
                 if line and not line.startswith((" ", "<"))}
    installed |= {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}  # in debian:12 already
    # Every library each binary needs, with the paths dpkg may know it by
    # (Debian 12 merged /lib into /usr/lib: dpkg knows one of the two).
    needed = []  # (binary name, library, candidate paths)
    for name, binary in BINARIES.items():
        dynamic = subprocess.run(["readelf", "-d", binary], capture_output=True,
                                 text=True).stdout
        paths = dict(re.findall(r"^\s*(\S+) => (\S+)", subprocess.run(
            ["ldd", binary], capture_output=True, text=True).stdout, re.M))
        for library in re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dynamic):
            path = paths.get(library)
            if path is None:
                fail(f"{name}: ldd cannot find {library}")
            candidates = {path, os.path.realpath(path)}
            candidates |= {c[len("/usr"):] if c.startswith("/usr/") else "/usr" + c
                           for c in set(candidates)}
            needed.append((name, library, candidates))
    # One dpkg query for all of them: dpkg reads its whole database per call
    # (about a second each here; one call per library took over a minute).
    everything = sorted(set().union(*(c for _, _, c in needed)))
    owners = {}
    for line in subprocess.run(["dpkg", "-S"] + everything, capture_output=True,
                               text=True).stdout.splitlines():
        package, _, path = line.partition(": ")
        owners[path.strip()] = package.split(":")[0]
    for name, library, candidates in needed:
        owner = next((owners[c] for c in sorted(candidates) if c in owners), "")
        if owner not in installed:
            fail(f"{name} links {library} ({owner or 'no package'}), which the Dockerfile's "
                 f"runtime stage does not install")
    print(f"Dockerfile: the runtime stage provides every library the binaries link "
          f"({len(packages)} packages)")


def main():
    with open(os.path.join(ROOT, "docker-compose.yml")) as f:
        compose = interpolate(yaml.safe_load(f), compose_variables())
    services = compose["services"]
    ours = {name: svc for name, svc in services.items() if engine(svc) is None}
    engines = {name: engine(svc) for name, svc in services.items() if engine(svc)}
    images = {svc.get("image") for svc in ours.values()}
    if len(images) != 1:
        fail(f"expected one image for every chat service, got {images}")
    if sorted(engines.values()) != ["haproxy", "postgres", "redis"]:
        fail(f"expected postgres, redis and haproxy images, got {engines}")
    published = [name for name, svc in services.items() if svc.get("ports")]
    if published != [n for n, kind in engines.items() if kind == "haproxy"]:
        fail(f"only HAProxy should publish a port, got {published}")
    kinds = {}
    for name, svc in ours.items():
        command = svc.get("command", [])
        if not command or command[0] not in BINARIES:
            fail(f"{name}: unknown command {command}")
        kinds.setdefault(command[0], []).append(name)
    for binary in BINARIES:
        if len(kinds.get(binary, [])) < 2:
            fail(f"expected at least two replicas of {binary}, got {kinds.get(binary)}")

    check_image_libraries()

    # Every setting is a flag the binary knows (a misspelt variable would be
    # ignored silently).
    flags = {binary: known_flags(path) for binary, path in BINARIES.items()}
    for name, svc in ours.items():
        binary = svc["command"][0]
        for key in svc.get("environment", {}):
            if key.lower() not in flags[binary]:
                fail(f"{name}: {key} is no flag of {binary} (--{key.lower()})")

    # Every "host:port" a service listens on gets a free loopback port; a
    # network alias stands for every service that has it.
    mapping = {}  # "name:port" -> "127.0.0.1:free"
    ports = {}    # service -> free port
    for name, svc in services.items():
        ports[name] = free_port()
        mapping[f"{name}:{container_port(name, svc)}"] = f"127.0.0.1:{ports[name]}"
    alias_targets = {}  # "alias:port" -> ["127.0.0.1:free", ...]
    for name, svc in services.items():
        for alias in aliases(svc):
            alias_targets.setdefault(f"{alias}:{container_port(name, svc)}", []).append(
                f"127.0.0.1:{ports[name]}")

    def rewrite(value):
        value = str(value)
        # gRPC resolves dns:///alias:port to every replica: here, a list of them.
        for alias, targets in alias_targets.items():
            value = value.replace(f"dns:///{alias}", ",".join(targets))
        for src, dst in mapping.items():
            value = re.sub(rf"(?<![\w.-]){re.escape(src)}(?!\d)", dst, value)
        return value

    # Identity and service credentials: the edges verify JWTs, and every
    # chat service holds the same SERVICE_TOKEN (else their calls are refused).
    secrets = set()
    for name in kinds["edge"]:
        edge_env = ours[name].get("environment", {})
        if edge_env.get("AUTH") != "jwt":
            fail(f"{name} must run with AUTH=jwt, got {edge_env.get('AUTH')!r}")
        secrets.add(str(edge_env.get("JWT_SECRET", "")))
    if len(secrets) != 1:
        fail("every edge needs the same JWT_SECRET")
    secret = secrets.pop()
    if len(secret.encode()) < 32:
        fail("the edges' JWT_SECRET must be at least 32 bytes")
    edge_ids = [str(ours[n].get("environment", {}).get("EDGE_ID", "")) for n in kinds["edge"]]
    if "" in edge_ids or len(set(edge_ids)) != len(edge_ids):
        fail(f"every edge needs its own EDGE_ID, got {edge_ids}")
    tokens = {name: str(svc.get("environment", {}).get("SERVICE_TOKEN", ""))
              for name, svc in ours.items()}
    if not all(tokens.values()) or len(set(tokens.values())) != 1:
        fail("every service needs the same non-empty SERVICE_TOKEN: "
             + ", ".join(f"{n}: {'set' if t else 'missing'}" for n, t in tokens.items()))

    procs, stops = [], []
    work = tempfile.mkdtemp(prefix="chat-compose-")
    if os.geteuid() == 0:
        os.chmod(work, 0o755)  # PostgreSQL runs as "postgres" inside it
    try:
        for name in ordered(services):
            svc = services[name]
            kind = engine(svc)
            if kind == "postgres":
                stops.append(start_postgres(svc, ports[name], work))
                print(f"{name}: PostgreSQL started as the image would be")
                continue
            if kind == "redis":
                p = start_redis(name, svc, ports[name], work)
                procs.append((name, p))
                wait_port(name, ports[name], p)
                print(f"{name}: started {svc.get('command')}")
                continue
            if kind == "haproxy":
                p = start_haproxy(name, svc, ports[name], rewrite, work)
                procs.append((name, p))
                wait_port(name, ports[name], p)
                print(f"{name}: HAProxy started with the mounted configuration")
                continue
            command = svc["command"]
            env = {k: rewrite(v) for k, v in svc.get("environment", {}).items()}
            env["LISTEN"] = mapping[f"{name}:{container_port(name, svc)}"]
            if "WEB_ROOT" in env:
                env["WEB_ROOT"] = os.path.join(ROOT, "edge", "web")  # the image's copy
            if command[0] != "edge":
                # Tests run side by side on this machine: no fixed metrics port.
                env["METRICS_LISTEN"] = "127.0.0.1:0"
            if "STORE" in env and not env["STORE"].startswith("postgresql://"):
                fail(f"{name}: STORE must be the shared PostgreSQL, got {env['STORE']}")
            full_env = dict(os.environ)
            full_env.update(env)
            p = subprocess.Popen([BINARIES[command[0]]] + command[1:], env=full_env,
                                 stdout=subprocess.PIPE,
                                 stderr=open(os.path.join(BUILD, f"compose-{name}.log"), "w"))
            procs.append((name, p))
            line = p.stdout.readline().decode()
            if not line.startswith("listening on "):
                fail(f"{name} did not start with compose's environment {shown(env)}: {line!r}"
                     f" (see compose-{name}.log)")
            print(f"{name}: started with {shown(env)}")
        # Health checks, with the containers' ports mapped.
        for name in ordered(services):
            argv = healthcheck_argv(name, services[name], ports[name])
            deadline = time.time() + 15
            while subprocess.run(argv, capture_output=True).returncode != 0:
                if time.time() > deadline:
                    fail(f"{name}: healthcheck {argv} never passed")
                time.sleep(0.1)  # health checks are polled, as compose does
            print(f"{name}: healthcheck ok ({' '.join(argv)})")
        haproxy = published[0]
        # HAProxy's own checks put both edges in rotation (rise 2 x inter 1s):
        # until then both users could land on the same edge.
        servers = set()
        deadline = time.time() + 15
        while True:
            servers = set(ws_exchange(ports[haproxy], secret))
            if len(servers) == 2 or time.time() > deadline:
                break
            time.sleep(0.2)  # waits for HAProxy's checks, which have no event
        if len(servers) != 2:
            fail(f"both users landed on {servers}: HAProxy never spread them over the edges")
        print(f"chat message delivered between JWT users through HAProxy, from {' to '.join(servers)}")
    finally:
        for name, p in reversed(procs):
            p.terminate()
        for name, p in procs:
            try:
                code = p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                fail(f"{name} did not exit on SIGTERM")
            # Ours exit cleanly; the engines' exit status is not our concern.
            if code != 0 and name in ours:
                fail(f"{name} exited with {code} on SIGTERM")
        for stop in stops:
            stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
