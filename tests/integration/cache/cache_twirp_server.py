"""A test server for GitHub's cache service v2 that behaves as GitHub's does.

What it mirrors (BuildKit v0.32.2's client, vendor/github.com/tonistiigi/go-actions-cache/cache_v2.go,
and actions/toolkit's generated ``packages/cache/src/generated/results/api/v1/cache.ts``):

- POST ``<ACTIONS_RESULTS_URL>twirp/github.actions.results.api.v1.CacheService/<Method>``
  with ``Authorization: Bearer <ACTIONS_RUNTIME_TOKEN>`` and a JSON body in proto field
  names (lowerCamel read too, as protojson does); int64 replies as strings.
- The token is a JWT whose ``ac`` claim is a JSON list of ``{"Scope", "Permission"}``
  (1 read, 2 write) and which has ``exp`` and ``nbf``: BuildKit refuses a token without
  them before it sends anything. Entries are written to the scope the token may write
  and read from every scope it may read, in the claim's order, as the service does for a
  pull request's ref and then its base branch.
- ``CreateCacheEntry {key, version}`` → ``{ok, signed_upload_url}``, a write-only SAS
  URL into Azurite; a key that exists in the scope (uploaded or not yet finalized) is a
  Twirp ``already_exists`` (409), which BuildKit's ``SaveMutable`` relies on to take the
  next index number.
- ``FinalizeCacheEntryUpload {key, size_bytes, version}`` → ``{ok, entry_id}``, once the
  blob is in Azurite with the declared size.
- ``GetCacheEntryDownloadURL {key, restore_keys, version}`` → ``{ok, signed_download_url,
  matched_key}``: the exact key first, then each restore key as a prefix, newest entry
  first; a miss is ``{ok: false}`` with status 200, not an error.
- Twirp errors as ``{"code", "msg"}`` with Twirp's statuses; the blobs, SAS signing, the
  container and the JWT secret are the artifact test server's (one Azurite serves both).

Every call is recorded (``calls``), with the Authorization header it came with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from artifact_twirp_server import (
    CONTAINER,
    JWT_SECRET,
    TWIRP_STATUS,
    TwirpError,
    _b64url,
    _get,
    _int64,
    _string,
    blob_sas,
    create_container,
)

SERVICE_PATH = "/twirp/github.actions.results.api.v1.CacheService/"
READ, WRITE = 1, 2
BRANCH_SCOPE = "refs/heads/main"


def make_token(scopes: list[tuple[str, int]], *, expires_in: timedelta = timedelta(hours=6)) -> str:
    """An ACTIONS_RUNTIME_TOKEN as the runner hands out for the cache: HS256 here."""
    now = datetime.now(UTC)
    claims = {
        "ac": json.dumps([{"Scope": scope, "Permission": permission} for scope, permission in scopes]),
        "scp": "Actions.GenericRead:00000000-0000-0000-0000-000000000000 Actions.Results:run:job",
        "nbf": int((now - timedelta(minutes=5)).timestamp()),
        "exp": int((now + expires_in).timestamp()),
        "iss": "kubebuildx-test",
    }
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(claims).encode())
    signature = _b64url(hmac.new(JWT_SECRET, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


def verify_token(token: str) -> list[tuple[str, int]] | None:
    """The token's scopes, or None when it is not ours, not yet valid or expired."""
    try:
        header, payload, signature = token.split(".")
        expected = _b64url(hmac.new(JWT_SECRET, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, signature):
            return None
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        now = datetime.now(UTC).timestamp()
        if not claims["nbf"] <= now < claims["exp"]:
            return None
        return [(str(s["Scope"]), int(s["Permission"])) for s in json.loads(claims["ac"])]
    except (ValueError, KeyError, TypeError):
        return None


@dataclass
class Entry:
    id: int
    scope: str
    key: str
    version: str
    blob: str
    created_at: datetime
    finalized: bool = False
    size: int = 0


@dataclass
class Call:
    method: str
    body: Any
    status: int
    authorization: str


class CacheService:
    """The state and the methods; the HTTP handler below only translates."""

    def __init__(self, blob_endpoint: str) -> None:
        self.blob_endpoint = blob_endpoint
        self.entries: list[Entry] = []
        self.calls: list[Call] = []
        self._next_id = 4_300_000_000  # past 2**32: int64 as strings matters
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.entries.clear()

    def methods_called(self) -> list[str]:
        return [c.method for c in self.calls]

    def finalized_keys(self, *, scope: str | None = None) -> list[str]:
        """Finalized keys, oldest first."""
        return [e.key for e in self.entries if e.finalized and scope in (None, e.scope)]

    def _url(self, blob: str, permissions: str) -> str:
        return f"{self.blob_endpoint}/{CONTAINER}/{blob}?{blob_sas(blob, permissions)}"

    def handle(self, method: str, scopes: list[tuple[str, int]], body: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, f"_{method}", None)
        if handler is None:
            raise TwirpError("bad_route", f"no handler for path {SERVICE_PATH}{method}")
        result: dict[str, Any] = handler(scopes, body)
        return result

    @staticmethod
    def _write_scope(scopes: list[tuple[str, int]]) -> str:
        writable = [scope for scope, permission in scopes if permission & WRITE]
        if not writable:
            raise TwirpError("permission_denied", "the token grants no scope to write")
        return writable[-1]

    def _find(self, scope: str, key: str, version: str) -> Entry | None:
        for entry in self.entries:
            if (entry.scope, entry.key, entry.version) == (scope, key, version):
                return entry
        return None

    def _CreateCacheEntry(self, scopes: list[tuple[str, int]], body: dict[str, Any]) -> dict[str, Any]:
        key, version = _string(body, "key"), _string(body, "version")
        scope = self._write_scope(scopes)
        if self._find(scope, key, version) is not None:
            raise TwirpError(
                "already_exists", "cache entry with the same key, version, and scope already exists"
            )
        self._next_id += 1
        digest = hashlib.sha256(f"{scope}\n{key}\n{version}".encode()).hexdigest()
        entry = Entry(self._next_id, scope, key, version, f"caches/{digest}", datetime.now(UTC))
        self.entries.append(entry)
        return {"ok": True, "signed_upload_url": self._url(entry.blob, "cw")}

    def _FinalizeCacheEntryUpload(
        self, scopes: list[tuple[str, int]], body: dict[str, Any]
    ) -> dict[str, Any]:
        key, version = _string(body, "key"), _string(body, "version")
        size = _int64(body, "size_bytes")
        entry = self._find(self._write_scope(scopes), key, version)
        if entry is None or entry.finalized:
            raise TwirpError("not_found", f"no cache entry {key} to finalize")
        head = requests.head(self._url(entry.blob, "r"), timeout=30)
        if head.status_code != 200:
            raise TwirpError("failed_precondition", "the cache entry's blob was not uploaded")
        if int(head.headers["Content-Length"]) != size:
            raise TwirpError("invalid_argument", "size_bytes does not match the uploaded blob")
        entry.finalized, entry.size = True, size
        return {"ok": True, "entry_id": str(entry.id)}

    def _GetCacheEntryDownloadURL(
        self, scopes: list[tuple[str, int]], body: dict[str, Any]
    ) -> dict[str, Any]:
        key, version = _string(body, "key"), _string(body, "version")
        restore_keys = _get(body, "restore_keys", []) or []
        if not isinstance(restore_keys, list) or not all(isinstance(k, str) for k in restore_keys):
            raise TwirpError("invalid_argument", "restore_keys must be a list of strings")
        readable = [scope for scope, permission in scopes if permission & READ]
        found = None
        for scope in readable:
            candidates = [
                e for e in self.entries if e.finalized and e.scope == scope and e.version == version
            ]
            found = next((e for e in candidates if e.key == key), None)
            for prefix in restore_keys:
                if found is not None:
                    break
                matches = [e for e in candidates if e.key.startswith(prefix)]
                found = max(matches, key=lambda e: (e.created_at, e.id), default=None)
            if found is not None:
                break
        if found is None:
            return {"ok": False, "signed_download_url": "", "matched_key": ""}
        return {"ok": True, "signed_download_url": self._url(found.blob, "r"), "matched_key": found.key}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        method = self.path[len(SERVICE_PATH) :] if self.path.startswith(SERVICE_PATH) else ""
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        self._answer(method, body)

    def do_GET(self) -> None:
        """No GET route: the v1 API (``/_apis/artifactcache/``) is not served, as on GitHub."""
        self._answer("", None)

    def _answer(self, method: str, body: Any) -> None:
        service = self.server.service
        auth = self.headers.get("Authorization", "")
        with service._lock:
            status, reply = self._dispatch(service, method, auth, body)
            service.calls.append(Call(method or f"{self.command} {self.path}", body, status, auth))
        payload = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _dispatch(
        self, service: CacheService, method: str, auth: str, body: Any
    ) -> tuple[int, dict[str, Any]]:
        try:
            if not method:
                raise TwirpError("bad_route", f"no handler for path {self.path}")
            if not self.headers.get("Content-Type", "").startswith("application/json"):
                raise TwirpError("bad_route", "unexpected Content-Type")
            scopes = verify_token(auth[len("Bearer ") :]) if auth.startswith("Bearer ") else None
            if scopes is None:
                raise TwirpError("unauthenticated", "invalid token")
            if not isinstance(body, dict):
                raise TwirpError("malformed", "the body is not a JSON object")
            return 200, service.handle(method, scopes, body)
        except TwirpError as exc:
            status = TWIRP_STATUS.get(exc.code, 400 if exc.code == "malformed" else 500)
            if exc.code == "bad_route":
                status = 404
            return status, {"code": exc.code, "msg": exc.msg}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, service: CacheService) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.service = service


@dataclass
class RunningCache:
    service: CacheService
    port: int
    token: str = field(default="")

    @property
    def results_url(self) -> str:
        # As the runner's ACTIONS_RESULTS_URL: the origin with a trailing slash. BuildKit
        # appends twirp/... to it as it is (actions/toolkit resolves it against the origin).
        return f"http://127.0.0.1:{self.port}/"

    def env(self) -> dict[str, str]:
        """What a job's container action gets: no ACTIONS_CACHE_SERVICE_V2, never."""
        return {"ACTIONS_RUNTIME_TOKEN": self.token, "ACTIONS_RESULTS_URL": self.results_url}


@contextmanager
def serve(blob_endpoint: str) -> Iterator[RunningCache]:
    create_container(blob_endpoint)
    service = CacheService(blob_endpoint)
    server = _Server(service)
    thread = threading.Thread(target=server.serve_forever, name="cache-twirp-test-server", daemon=True)
    thread.start()
    running = RunningCache(service, server.server_address[1])
    running.token = make_token([(BRANCH_SCOPE, READ | WRITE), ("refs/heads/default", READ)])
    try:
        yield running
    finally:
        server.shutdown()
        server.server_close()
