#!/usr/bin/python3
"""The public gRPC API used the way a backend service uses it, from Python.

Starts the three real binaries on free loopback ports (each with its own
SQLite files in a temporary directory, metrics off) with both credentials set:
--api_token for the public surface (ConnectionService, MessageService) and
--service_token for the internal one (EdgeRegistry, EdgeGateway). Python code
for chat.proto and google/rpc/*.proto is generated at run time with the
system protoc; RPCs are called by method path (no generated stubs). WebSocket
clients (python3-websocket) connect as alice, bob and carol, then:

  list_users        ListUsers in pages of 2 (page_token), and a bad page_size
  watch_snapshot    WatchPresence([alice, bob]): a snapshot (both online), then snapshot_end
  watch_restart     connection-service SIGKILLed and restarted on the same port and store:
                    the old stream ends, a new watch gets a fresh snapshot (both still
                    online, a new instance_id) and no transition was reported
  send_recipients   Send from "system" to [alice, bob] with a type and metadata: per-recipient
                    results, both sockets get the frame with "server": true
  batch             Batch: one good send, one to an unknown user, answered one by one
  watch_offline     bob closes his socket: the watch reports exactly that transition
  disconnect        Disconnect{carol, 4321, "bye"}: carol's socket closes with 4321 "bye"
  ban               Disconnect{carol, ban 60 s}: GetUser shows it, her next handshake gets 403
  delete_user       DeleteUser(carol), then GetUser(carol) is NOT_FOUND
  tls               a connection-service with --tls_cert/--tls_key/--tls_client_ca: a client
                    certificate from its CA gets in, no certificate or plaintext does not
  credentials       the API token is refused on an internal RPC, the internal token (and
                    no token) on public ones; the internal token works on internal RPCs
  error_model       GetUser of a 20 KB name: INVALID_ARGUMENT, a short message, a
                    google.rpc.Status in grpc-status-details-bin with an ErrorInfo

Every step waits on conditions with deadlines. A step that fails is reported
and the next ones still run; starting the processes or the WebSocket clients
failing ends the run. The last line is "N passed, M failed"; the exit code is
0 only when every step passed.

Usage: backend_client_test.py <build-dir>
"""
import importlib
import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

import grpc
import websocket

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
LOG_DIR = os.path.join(BUILD, "test-logs")
BINARIES = {
    "connection-service": os.path.join(BUILD, "connection-service", "connection-service"),
    "message-service": os.path.join(BUILD, "message-service", "message-service"),
    "edge": os.path.join(BUILD, "edge", "edge"),
}
API_TOKEN = "api-" + secrets.token_hex(16)
SERVICE_TOKEN = "svc-" + secrets.token_hex(16)
LEASE_MS = 3000  # the restarted registry's snapshot may wait up to one lease period
START_DEADLINE_S = 20
RPC_DEADLINE_S = 5
EVENT_DEADLINE_S = 15  # a WebSocket frame, a presence event, a close

pb = None  # chat.v1 messages (chat_pb2), generated at run time
rpc_status = None  # google.rpc.Status
rpc_details = None  # google.rpc.ErrorInfo, RetryInfo


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def generate_protos(out_dir):
    """protoc --python_out for the contract; imports the modules."""
    global pb, rpc_status, rpc_details
    protoc = shutil.which("protoc") or "/usr/bin/protoc"
    proto_dir = os.path.join(ROOT, "proto")
    os.makedirs(out_dir, exist_ok=True)
    subprocess.run([protoc, f"-I{proto_dir}", f"--python_out={out_dir}", "chat/v1/chat.proto",
                    "google/rpc/status.proto", "google/rpc/error_details.proto"],
                   cwd=proto_dir, check=True)
    sys.path.insert(0, out_dir)
    pb = importlib.import_module("chat.v1.chat_pb2")
    rpc_status = importlib.import_module("google.rpc.status_pb2")
    rpc_details = importlib.import_module("google.rpc.error_details_pb2")


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

class Service:
    """One binary: started, waited for ("listening on host:port"), signalled."""

    def __init__(self, name, args, log_name=None):
        self.name, self.args = name, args
        self.proc, self.port = None, None
        self.log_path = os.path.join(LOG_DIR, f"grpc_py.{log_name or name}.log")

    def start(self, port=0):
        argv = [BINARIES[self.name], f"--listen=127.0.0.1:{port}"] + self.args
        if not os.access(argv[0], os.X_OK):
            raise Failure(f"{argv[0]} is missing: build the edge, connection-service and "
                          "message-service targets first")
        log = open(self.log_path, "ab")
        log.write(f"=== {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=log)
        log.close()
        listening = queue.Queue()

        def read_stdout(proc):
            for line in proc.stdout:
                text = line.decode(errors="replace").strip()
                if text.startswith("listening on "):
                    listening.put(int(text.rsplit(":", 1)[1]))

        threading.Thread(target=read_stdout, args=(self.proc,), daemon=True).start()
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            try:
                self.port = listening.get(timeout=0.1)
                return self.port
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
        self.stop()
        raise Failure(f"{self.name} did not start (exit code {self.proc.returncode}); "
                      f"last log lines:\n{self.log_tail()}")

    def log_tail(self, lines=15):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def kill(self):
        """SIGKILL, as a crash."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wait_ready(port):
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)  # polling interval, bounded by the deadline
    raise Failure("the edge never answered /readyz with 200")


def make_certificates(d):
    """A CA, a server certificate for 127.0.0.1 and a client certificate (openssl)."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
            "-subj", "/CN=grpc-py test CA")
    extensions = {"server": "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
                  "client": "extendedKeyUsage=clientAuth\n"}
    for name, ext in extensions.items():
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext)
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj",
                f"/CN=grpc-py {name}")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.pem")


# ---------------------------------------------------------------------------
# gRPC, by method path
# ---------------------------------------------------------------------------

def bearer(token):
    return [("authorization", "Bearer " + token)] if token else []


def unary(channel, method, request, response_type, token=API_TOKEN, timeout=RPC_DEADLINE_S):
    call = channel.unary_unary(method, request_serializer=type(request).SerializeToString,
                               response_deserializer=response_type.FromString)
    return call(request, metadata=bearer(token), timeout=timeout)


def expect_error(code, fn, what):
    """Runs fn, which must fail with `code`; returns the grpc.RpcError."""
    try:
        fn()
    except grpc.RpcError as e:
        check(e.code() == code, f"{what}: expected {code.name}, got {e.code().name}: "
                                f"{(e.details() or '')[:200]!r}")
        return e
    raise Failure(f"{what}: expected {code.name}, the call succeeded")


def status_details(error):
    """The google.rpc.Status of a failed call (grpc-status-details-bin), or None."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return rpc_status.Status.FromString(value)
    return None


def error_info(error, what):
    """Checks the error model on a failed call; returns its ErrorInfo."""
    status = status_details(error)
    check(status is not None, f"{what}: no grpc-status-details-bin trailer")
    check(status.code == error.code().value[0],
          f"{what}: google.rpc.Status code {status.code} != the call's {error.code().name}")
    infos, retry = [], []
    for any_ in status.details:
        if any_.Is(rpc_details.ErrorInfo.DESCRIPTOR):
            info = rpc_details.ErrorInfo()
            any_.Unpack(info)
            infos.append(info)
        elif any_.Is(rpc_details.RetryInfo.DESCRIPTOR):
            retry.append(any_)
    check(len(infos) == 1, f"{what}: expected one ErrorInfo detail, got {len(infos)} "
                           f"({[a.type_url for a in status.details]})")
    info = infos[0]
    check(info.domain == "chat.v1", f"{what}: ErrorInfo domain {info.domain!r}")
    check(info.reason and info.reason.replace("_", "").isalnum() and info.reason.isupper(),
          f"{what}: ErrorInfo reason {info.reason!r} is not UPPER_SNAKE_CASE")
    retryable = info.metadata.get("retryable")
    check(retryable in ("true", "false"), f"{what}: metadata retryable={retryable!r}")
    check((retryable == "true") == bool(retry),
          f"{what}: retryable={retryable} but {len(retry)} RetryInfo details")
    return info


class Watch:
    """A WatchPresence stream read by a thread into a queue."""

    def __init__(self, channel, users, token=API_TOKEN):
        call = channel.unary_stream("/chat.v1.ConnectionService/WatchPresence",
                                    request_serializer=pb.WatchPresenceRequest.SerializeToString,
                                    response_deserializer=pb.PresenceEvent.FromString)
        self.call = call(pb.WatchPresenceRequest(users=users), metadata=bearer(token))
        self.events = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for event in self.call:
                self.events.put(("event", event))
            self.events.put(("end", None))
        except grpc.RpcError as e:
            self.events.put(("error", e))

    def next(self, what, timeout=EVENT_DEADLINE_S):
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise Failure(f"{what}: nothing on the presence stream within {timeout} s")

    def snapshot(self, what):
        """Reads up to snapshot_end: {name: event}, and the instance ids seen."""
        seen, instances = {}, set()
        while True:
            kind, value = self.next(what)
            if kind != "event":
                raise Failure(f"{what}: stream ended before snapshot_end: {describe(kind, value)}")
            if value.instance_id:
                instances.add(value.instance_id)
            if value.snapshot_end:
                check(not value.name, f"{what}: snapshot_end carries a name {value.name!r}")
                return seen, instances
            check(value.snapshot, f"{what}: event before snapshot_end without snapshot: {value}")
            check(value.name not in seen, f"{what}: {value.name} twice in the snapshot")
            seen[value.name] = value

    def cancel(self):
        self.call.cancel()


def describe(kind, value):
    if kind == "error":
        return f"{value.code().name}: {value.details()}"
    return f"{kind} {value}".strip()


# ---------------------------------------------------------------------------
# WebSocket clients
# ---------------------------------------------------------------------------

class Ws:
    """A WebSocket client whose frames a thread puts in a queue."""

    def __init__(self, port, name):
        self.name = name
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}/?name={name}", timeout=10)
        self.ws.settimeout(None)  # the reader blocks; waits have their own deadlines
        self.frames = queue.Queue()
        self.seen = []  # frames read while waiting for another one
        threading.Thread(target=self._read, daemon=True).start()
        self.hello = self.expect(lambda f: f.get("action") == "hello", "hello")
        check(self.hello.get("user") == name, f"{name}: hello for {self.hello.get('user')!r}")

    def _read(self):
        ABNF = websocket.ABNF
        text = b""
        try:
            while True:
                frame = self.ws.recv_frame()
                if frame.opcode in (ABNF.OPCODE_TEXT, ABNF.OPCODE_CONT):
                    data = frame.data
                    text += data.encode() if isinstance(data, str) else data
                    if frame.fin:
                        self.frames.put(("text", json.loads(text)))
                        text = b""
                elif frame.opcode == ABNF.OPCODE_PING:
                    self.ws.pong(frame.data)
                elif frame.opcode == ABNF.OPCODE_CLOSE:
                    data = frame.data if isinstance(frame.data, bytes) else frame.data.encode()
                    code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                    self.frames.put(("close", (code, data[2:].decode(errors="replace"))))
                    try:
                        self.ws.send_close()  # the answering close frame
                    except Exception:  # the server may already have cut the socket
                        pass
                    return
        except Exception as e:  # the socket went away without a close frame
            self.frames.put(("gone", repr(e)))

    def _get(self, what, deadline):
        try:
            return self.frames.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise Failure(f"{self.name}: no {what} within {EVENT_DEADLINE_S} s "
                          f"(frames meanwhile: {self.seen[-5:]})")

    def expect(self, predicate, what):
        deadline = time.monotonic() + EVENT_DEADLINE_S
        while True:
            kind, value = self._get(what, deadline)
            if kind != "text":
                raise Failure(f"{self.name}: connection ended ({kind} {value}) while waiting "
                              f"for {what}")
            if predicate(value):
                return value
            self.seen.append(value)

    def expect_close(self):
        """(code, reason) of the server's close frame; other frames are skipped."""
        deadline = time.monotonic() + EVENT_DEADLINE_S
        while True:
            kind, value = self._get("close frame", deadline)
            if kind == "close":
                return value
            if kind == "gone":
                raise Failure(f"{self.name}: socket dropped without a close frame: {value}")
            self.seen.append(value)

    def close(self):
        """Starts the closing handshake; the reader sees the answer."""
        try:
            self.ws.send_close()
        except Exception:
            pass

    def abort(self):
        try:
            self.ws.sock and self.ws.sock.close()
        except Exception:
            pass


# ---------------------------------------------------------------------------
# The scenario
# ---------------------------------------------------------------------------

class Scenario:
    def __init__(self, data_dir):
        self.data_dir = data_dir
        tokens = [f"--api_token={API_TOKEN}", f"--service_token={SERVICE_TOKEN}"]
        self.conn = Service("connection-service", [
            f"--store=sqlite:{data_dir}/users.db", "--metrics_listen=",
            f"--lease_timeout_ms={LEASE_MS}"] + tokens)
        self.msg = None
        self.edge = None
        self.clients = {}
        self.channels = []

    def channel(self, port):
        ch = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.channels.append(ch)
        return ch

    def start(self):
        conn_port = self.conn.start()
        self.msg = Service("message-service", [
            f"--connection_service=127.0.0.1:{conn_port}", f"--store=sqlite:{self.data_dir}/messages.db",
            "--metrics_listen=", f"--api_token={API_TOKEN}", f"--service_token={SERVICE_TOKEN}"])
        msg_port = self.msg.start()
        self.edge = Service("edge", [
            f"--connection_service=127.0.0.1:{conn_port}", f"--message_service=127.0.0.1:{msg_port}",
            "--edge_id=py1", f"--service_token={SERVICE_TOKEN}"])
        wait_ready(self.edge.start())
        self.cs = self.channel(conn_port)
        self.ms = self.channel(msg_port)

    def connect_clients(self):
        for name in ("alice", "bob", "carol"):
            self.clients[name] = Ws(self.edge.port, name)

    def stop(self):
        for ws in self.clients.values():
            ws.abort()
        for ch in self.channels:
            ch.close()
        for service in (self.edge, self.msg, self.conn):
            if service is not None:
                service.stop()

    # -- steps ---------------------------------------------------------------

    def list_users(self):
        method = "/chat.v1.ConnectionService/ListUsers"
        first = unary(self.cs, method, pb.ListUsersRequest(page_size=2), pb.ListUsersResponse)
        check([u.name for u in first.users] == ["alice", "bob"],
              f"page 1: {[u.name for u in first.users]}")
        check(all(u.online for u in first.users), f"page 1 not all online: {first.users}")
        check(first.next_page_token, "page 1 has no next_page_token")
        second = unary(self.cs, method,
                       pb.ListUsersRequest(page_size=2, page_token=first.next_page_token),
                       pb.ListUsersResponse)
        check([(u.name, u.online) for u in second.users] == [("carol", True)],
              f"page 2: {second.users}")
        check(second.next_page_token == "", f"page 2 next_page_token {second.next_page_token!r}")
        error = expect_error(grpc.StatusCode.INVALID_ARGUMENT,
                             lambda: unary(self.cs, method, pb.ListUsersRequest(page_size=1001),
                                           pb.ListUsersResponse), "page_size 1001")
        error_info(error, "page_size 1001")

    def watch_snapshot(self):
        self.watch = Watch(self.cs, ["alice", "bob"])
        seen, instances = self.watch.snapshot("first watch")
        check(set(seen) == {"alice", "bob"}, f"snapshot names {sorted(seen)}")
        check(all(e.online for e in seen.values()), f"snapshot not all online: {seen}")
        check(len(instances) == 1, f"instance ids in the snapshot: {instances}")
        self.instance = instances.pop()

    def watch_restart(self):
        port = self.conn.port
        self.conn.kill()
        # The old stream ends with an error; it must not have reported anyone offline.
        while True:
            kind, value = self.watch.next("old stream after SIGKILL")
            if kind == "event":
                raise Failure(f"old stream reported a transition before breaking: {value}")
            break
        self.conn.start(port)
        # A backend watches again, retrying while the service comes back.
        self.cs = self.channel(port)
        deadline = time.monotonic() + EVENT_DEADLINE_S
        while True:
            self.watch = Watch(self.cs, ["alice", "bob"])
            try:
                seen, instances = self.watch.snapshot("watch after the restart")
                break
            except Failure as e:
                if time.monotonic() > deadline or "UNAVAILABLE" not in str(e):
                    raise
                time.sleep(0.2)  # retry backoff, bounded by the deadline
        check(set(seen) == {"alice", "bob"}, f"fresh snapshot names {sorted(seen)}")
        offline = [n for n, e in seen.items() if not e.online]
        check(not offline, f"fresh snapshot reports {offline} offline: their sockets never closed")
        check(len(instances) == 1 and self.instance not in instances,
              f"instance id should change across the restart: {self.instance} -> {instances}")

    def send_recipients(self):
        request = pb.SendRequest(sent_by="system", recipients=["alice", "bob"],
                                 message="Maintenance at 18:00", type="notice.maintenance",
                                 metadata='{"window_min":30}', idempotency_key="py-notice-1")
        # UNAVAILABLE is retryable (message-service may still be reconnecting to the
        # restarted registry): retried with the same idempotency key, as documented.
        deadline = time.monotonic() + EVENT_DEADLINE_S
        while True:
            try:
                response = unary(self.ms, "/chat.v1.MessageService/Send", request,
                                 pb.SendResponse)
                break
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        check(response.status == pb.SEND_OK, f"status {response.status}")
        check([r.send_to for r in response.results] == ["alice", "bob"],
              f"results {[r.send_to for r in response.results]}")
        for r in response.results:
            check(r.status.code == 0, f"{r.send_to}: status {r.status}")
            check(r.id and r.seq >= 1 and r.useq >= 1 and r.conversation,
                  f"{r.send_to}: numbers missing: {r}")
            check(r.delivered >= 1, f"{r.send_to}: delivered {r.delivered}, they are online")
        check(response.results[0].id != response.results[1].id, "one id for two messages")
        for r in response.results:
            frame = self.clients[r.send_to].expect(
                lambda f, r=r: f.get("action") == "send" and f.get("id") == r.id,
                f"the system notice {r.id}")
            check(frame.get("server") is True, f"{r.send_to}: frame without \"server\": true: {frame}")
            check(frame.get("sent_by") == "system" and frame.get("send_to") == r.send_to,
                  f"{r.send_to}: sent_by/send_to {frame}")
            check(frame.get("message") == "Maintenance at 18:00", f"{r.send_to}: {frame}")
            check(frame.get("type") == "notice.maintenance", f"{r.send_to}: type in {frame}")
            # The edge embeds the metadata as a JSON object, not as the text sent.
            check(frame.get("metadata") == {"window_min": 30}, f"{r.send_to}: metadata in {frame}")
        # The same key again: the first answers, nothing delivered twice.
        again = unary(self.ms, "/chat.v1.MessageService/Send", request, pb.SendResponse)
        check([(r.id, r.duplicate) for r in again.results] ==
              [(r.id, True) for r in response.results], f"repeat: {again.results}")

    def batch(self):
        request = pb.BatchRequest(sends=[
            pb.SendRequest(sent_by="billing", send_to="alice", message="Invoice ready"),
            pb.SendRequest(sent_by="billing", send_to="nobody-py", message="lost"),
        ])
        response = unary(self.ms, "/chat.v1.MessageService/Batch", request, pb.BatchResponse)
        check(len(response.results) == 2, f"{len(response.results)} results")
        ok, missing = response.results
        check(ok.status.code == 0 and ok.response.id, f"first: {ok}")
        check(missing.status.code == grpc.StatusCode.NOT_FOUND.value[0],
              f"second (unknown user) status: {missing.status}")
        frame = self.clients["alice"].expect(
            lambda f: f.get("action") == "send" and f.get("id") == ok.response.id,
            "the batched message")
        check(frame.get("server") is True and frame.get("sent_by") == "billing", f"{frame}")

    def watch_offline(self):
        # Nothing happened to alice or bob since the snapshot.
        try:
            kind, value = self.watch.events.get_nowait()
            raise Failure(f"unexpected item on the presence stream: {describe(kind, value)}")
        except queue.Empty:
            pass
        self.clients["bob"].close()
        kind, value = self.watch.next("bob's offline event")
        check(kind == "event", f"stream: {describe(kind, value)}")
        check((value.name, value.online, value.snapshot) == ("bob", False, False),
              f"expected bob offline, got {value}")
        check(value.ts_ms > 0, f"no ts_ms: {value}")
        self.watch.cancel()

    def disconnect(self):
        response = unary(self.cs, "/chat.v1.ConnectionService/Disconnect",
                         pb.DisconnectRequest(user="carol", code=4321, reason="bye"),
                         pb.DisconnectResponse)
        check(response.disconnected == 1, f"disconnected {response.disconnected}")
        code, reason = self.clients["carol"].expect_close()
        check((code, reason) == (4321, "bye"), f"carol's close: {code} {reason!r}")

    def ban(self):
        before_ms = int(time.time() * 1000)
        response = unary(self.cs, "/chat.v1.ConnectionService/Disconnect",
                         pb.DisconnectRequest(user="carol", ban={"seconds": 60}),
                         pb.DisconnectResponse)
        check(response.banned_until_ms >= before_ms + 59_000,
              f"banned_until_ms {response.banned_until_ms}, asked for 60 s from {before_ms}")
        user = unary(self.cs, "/chat.v1.ConnectionService/GetUser", pb.GetUserRequest(name="carol"),
                     pb.User)
        check(user.banned_until_ms == response.banned_until_ms, f"GetUser: {user}")
        # The ban reaches the edge on its route stream: poll until the handshake is refused.
        deadline = time.monotonic() + EVENT_DEADLINE_S
        while True:
            try:
                Ws(self.edge.port, "carol").abort()
                status = 101
            except websocket.WebSocketBadStatusException as e:
                status = e.status_code
            if status == 403:
                return
            check(time.monotonic() < deadline, f"carol's handshake while banned: HTTP {status}")
            time.sleep(0.1)  # polling interval, bounded by the deadline

    def tls(self):
        """A connection-service of its own with mutual TLS: a backend with a client
        certificate (and the API token) gets in; without the certificate, or in
        plaintext, it does not."""
        d = os.path.join(self.data_dir, "tls")
        os.makedirs(d)
        make_certificates(d)
        read = lambda name: open(os.path.join(d, name), "rb").read()
        service = Service("connection-service", [
            f"--store=sqlite:{d}/users.db", "--metrics_listen=", f"--api_token={API_TOKEN}",
            f"--service_token={SERVICE_TOKEN}", f"--tls_cert={d}/server.pem",
            f"--tls_key={d}/server.key", f"--tls_client_ca={d}/ca.pem"], "connection-service-tls")
        port = service.start()
        try:
            target = f"127.0.0.1:{port}"
            mutual = grpc.ssl_channel_credentials(root_certificates=read("ca.pem"),
                                                  private_key=read("client.key"),
                                                  certificate_chain=read("client.pem"))
            counts = lambda channel: unary(channel, "/chat.v1.ConnectionService/GetCounts",
                                           pb.GetCountsRequest(), pb.GetCountsResponse)
            with grpc.secure_channel(target, mutual) as channel:
                counts(channel)
            no_cert = grpc.ssl_channel_credentials(root_certificates=read("ca.pem"))
            with grpc.secure_channel(target, no_cert) as channel:
                expect_error(grpc.StatusCode.UNAVAILABLE, lambda: counts(channel),
                             "TLS without a client certificate")
            with grpc.insecure_channel(target) as channel:
                expect_error(grpc.StatusCode.UNAVAILABLE, lambda: counts(channel), "plaintext")
        finally:
            service.stop()

    def delete_user(self):
        response = unary(self.ms, "/chat.v1.MessageService/DeleteUser",
                         pb.DeleteUserRequest(name="carol"), pb.DeleteUserResponse)
        error = expect_error(grpc.StatusCode.NOT_FOUND,
                             lambda: unary(self.cs, "/chat.v1.ConnectionService/GetUser",
                                           pb.GetUserRequest(name="carol"), pb.User),
                             "GetUser after DeleteUser")
        error_info(error, "GetUser after DeleteUser")

    def credentials(self):
        U = grpc.StatusCode.UNAUTHENTICATED
        register = lambda token: unary(self.cs, "/chat.v1.EdgeRegistry/Register",
                                       pb.RegisterRequest(), pb.RegisterResponse, token=token)
        list_users = lambda token: unary(self.cs, "/chat.v1.ConnectionService/ListUsers",
                                         pb.ListUsersRequest(), pb.ListUsersResponse, token=token)
        send = lambda token: unary(self.ms, "/chat.v1.MessageService/Send",
                                   pb.SendRequest(sent_by="system", send_to="alice", message="x"),
                                   pb.SendResponse, token=token)
        error_info(expect_error(U, lambda: register(API_TOKEN), "API token on EdgeRegistry/Register"),
                   "API token on Register")
        expect_error(U, lambda: list_users(SERVICE_TOKEN), "internal token on ListUsers")
        expect_error(U, lambda: send(SERVICE_TOKEN), "internal token on MessageService/Send")
        expect_error(U, lambda: list_users(None), "no token on ListUsers")
        # The internal token still works where it belongs.
        user = unary(self.cs, "/chat.v1.EdgeRegistry/LookupUser", pb.GetUserRequest(name="alice"),
                     pb.User, token=SERVICE_TOKEN)
        check(user.name == "alice", f"LookupUser: {user}")

    def error_model(self):
        big = "x" * 20480
        error = expect_error(grpc.StatusCode.INVALID_ARGUMENT,
                             lambda: unary(self.cs, "/chat.v1.ConnectionService/GetUser",
                                           pb.GetUserRequest(name=big), pb.User),
                             "GetUser of a 20 KB name")
        details = error.details() or ""
        check(0 < len(details.encode()) <= 256 and "x" * 64 not in details,
              f"message is not short ({len(details)} chars): {details[:120]!r}")
        info = error_info(error, "GetUser of a 20 KB name")
        check(info.metadata["retryable"] == "false", f"retryable {info.metadata['retryable']}")
        print(f"  INVALID_ARGUMENT {details!r}, reason {info.reason}")
        error = expect_error(grpc.StatusCode.NOT_FOUND,
                             lambda: unary(self.cs, "/chat.v1.ConnectionService/GetUser",
                                           pb.GetUserRequest(name="nobody-py"), pb.User),
                             "GetUser of an unknown name")
        print(f"  NOT_FOUND reason {error_info(error, 'unknown name').reason}")


def main():
    os.makedirs(LOG_DIR, exist_ok=True)
    for name in list(BINARIES) + ["connection-service-tls"]:
        path = os.path.join(LOG_DIR, f"grpc_py.{name}.log")
        if os.path.exists(path):
            os.remove(path)
    data_dir = tempfile.mkdtemp(prefix="chat-grpc-py-")
    scenario = Scenario(data_dir)
    passed, failed = [], []
    try:
        generate_protos(os.path.join(data_dir, "gen"))
        try:
            scenario.start()
            scenario.connect_clients()
        except Exception as e:
            print(f"FAIL start: {e}", flush=True)
            traceback.print_exc()
            print("0 passed, 1 failed")
            return 1
        steps = ["list_users", "watch_snapshot", "watch_restart", "send_recipients", "batch",
                 "watch_offline", "disconnect", "ban", "delete_user", "tls", "credentials", "error_model"]
        for step in steps:
            started = time.monotonic()
            try:
                getattr(scenario, step)()
                passed.append(step)
                print(f"PASS {step} ({time.monotonic() - started:.1f} s)", flush=True)
            except grpc.RpcError as e:
                failed.append(step)
                print(f"FAIL {step}: {e.code().name}: {(e.details() or '')[:200]}", flush=True)
            except Exception as e:
                failed.append(step)
                print(f"FAIL {step}: {e}", flush=True)
                if not isinstance(e, Failure):
                    traceback.print_exc()
    finally:
        scenario.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    if failed:
        print(f"failed steps: {' '.join(failed)} (logs: {LOG_DIR}/grpc_py.*.log)")
    print(f"{len(passed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
