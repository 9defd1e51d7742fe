"""A loopback proxy in front of Azurite that can fail chosen block uploads.

Signed upload URLs point here when a test wants faults; every request is
forwarded to Azurite unchanged unless a rule says otherwise. Rules are keyed by
block index (decoded from the ``blockid``; "commit" for Put Block List) and
consumed one per attempt: ``"503"`` answers 503 ServerBusy without forwarding,
``"drop"`` reads the request and closes the connection without a reply,
``"stall"`` waits ``STALL_SECONDS`` before forwarding (the client times out
first), ``"always503"`` fails every attempt.
"""

from __future__ import annotations

import base64
import http.client
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

STALL_SECONDS = 6.0
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection"}


@dataclass
class Plan:
    rules: dict[str, list[str]] = field(default_factory=dict)
    seen: list[tuple[str, str]] = field(default_factory=list)  # (target, outcome)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def decide(self, target: str) -> str:
        with self.lock:
            queue = self.rules.get(target, [])
            if queue and queue[0] == "always503":
                outcome = "503"
            elif queue:
                outcome = queue.pop(0)
            else:
                outcome = "forward"
            self.seen.append((target, outcome))
            return outcome

    def reset(self) -> None:
        with self.lock:
            self.rules.clear()
            self.seen.clear()


def target_of(path: str) -> str:
    query = parse_qs(urlsplit(path).query)
    comp = query.get("comp", [""])[0]
    if comp == "block":
        raw = base64.b64decode(query["blockid"][0]).decode()
        return f"block{int(raw[-6:])}"
    if comp == "blocklist":
        return "commit"
    return "other"


class _Handler(BaseHTTPRequestHandler):
    server: _Proxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if length else b""
        outcome = self.server.plan.decide(target_of(self.path)) if self.command == "PUT" else "forward"
        if outcome == "drop":
            self.close_connection = True
            self.connection.close()
            return
        if outcome == "stall":
            time.sleep(STALL_SECONDS)
        if outcome == "503":
            payload = b"<?xml version='1.0'?><Error><Code>ServerBusy</Code><Message>x</Message></Error>"
            self.send_response(503, "Service Unavailable")
            self.send_header("x-ms-error-code", "ServerBusy")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=120)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            self.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        finally:
            upstream.close()

    do_PUT = _forward
    do_GET = _forward
    do_HEAD = _forward


class _Proxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream_port: int, plan: Plan) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream_port = upstream_port
        self.plan = plan


@dataclass(frozen=True)
class RunningProxy:
    port: int
    plan: Plan
    account: str

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.account}"


@contextmanager
def proxy(upstream_port: int, account: str) -> Iterator[RunningProxy]:
    plan = Plan()
    server = _Proxy(upstream_port, plan)
    thread = threading.Thread(target=server.serve_forever, name="fault-proxy", daemon=True)
    thread.start()
    try:
        yield RunningProxy(server.server_address[1], plan, account)
    finally:
        server.shutdown()
        server.server_close()
