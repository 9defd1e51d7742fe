"""A test server for the artifact service that behaves as GitHub's does.

What it mirrors (from actions/toolkit's generated Twirp client and the
service's observed behaviour): POST ``/twirp/github.actions.results.api.v1.ArtifactService/<Method>``
with a bearer JWT whose ``scp`` names the run and job; JSON bodies in proto
field names (protojson also accepts lowerCamel, so do we); int64 as strings;
Twirp errors as ``{"code", "msg"}`` with Twirp's HTTP statuses (409
already_exists for a duplicate name, 404 not_found, 401 unauthenticated,
400 invalid_argument); signed URLs into Azurite with SAS tokens made here:
write-only for the upload, read-only (with content disposition) for
GetSignedArtifactURL. FinalizeArtifact checks that the blob exists with the
declared size, as the service does before it makes an artifact visible.

Every call is recorded (``calls``) so tests can assert on what was (not) sent.
Faults can be scripted per method (``faults``).
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
from urllib.parse import quote, urlencode

import requests
from artifact_peers import ACCOUNT, ACCOUNT_KEY

SERVICE_PATH = "/twirp/github.actions.results.api.v1.ArtifactService/"
CONTAINER = "actions-results"
SAS_VERSION = "2021-08-06"
JWT_SECRET = b"kubebuildx-test-only-secret"

TWIRP_STATUS = {
    "invalid_argument": 400,
    "unauthenticated": 401,
    "permission_denied": 403,
    "not_found": 404,
    "already_exists": 409,
    "failed_precondition": 412,
    "resource_exhausted": 429,
    "internal": 500,
    "unavailable": 503,
}


# --- tokens and SAS ----------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_token(run: str, job: str) -> str:
    """A JWT as the runner hands out: HS256 here, with the Actions.Results scope."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {
        "scp": f"Actions.ExampleScope Actions.Results:{run}:{job}",
        "exp": int((datetime.now(UTC) + timedelta(hours=6)).timestamp()),
        "iss": "kubebuildx-test",
    }
    payload = _b64url(json.dumps(claims).encode())
    signature = _b64url(hmac.new(JWT_SECRET, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


def _verify_token(token: str) -> tuple[str, str] | None:
    try:
        header, payload, signature = token.split(".")
    except ValueError:
        return None
    expected = _b64url(hmac.new(JWT_SECRET, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, signature):
        return None
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for scope in claims.get("scp", "").split(" "):
        parts = scope.split(":")
        if parts[0] == "Actions.Results" and len(parts) == 3:
            return parts[1], parts[2]
    return None


def _sign(string_to_sign: str) -> str:
    key = base64.b64decode(ACCOUNT_KEY)
    return base64.b64encode(hmac.new(key, string_to_sign.encode(), hashlib.sha256).digest()).decode()


def _expiry(hours: int = 6) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def blob_sas(blob: str, permissions: str, content_disposition: str = "") -> str:
    """A service SAS for one blob (string-to-sign of version 2020-12-06 and later)."""
    expiry = _expiry()
    fields = [
        permissions,
        "",
        expiry,
        f"/blob/{ACCOUNT}/{CONTAINER}/{blob}",
        "",
        "",
        "",
        SAS_VERSION,
        "b",
        "",
        "",
        "",
        content_disposition,
        "",
        "",
        "",
    ]
    params = {"sv": SAS_VERSION, "sr": "b", "sp": permissions, "se": expiry}
    if content_disposition:
        params["rscd"] = content_disposition
    params["sig"] = _sign("\n".join(fields))
    return urlencode(params, quote_via=quote)


def account_sas() -> str:
    expiry = _expiry()
    fields = [ACCOUNT, "rwdlac", "b", "sco", "", expiry, "", "", SAS_VERSION, "", ""]
    params = {
        "sv": SAS_VERSION,
        "ss": "b",
        "srt": "sco",
        "sp": "rwdlac",
        "se": expiry,
        "sig": _sign("\n".join(fields)),
    }
    return urlencode(params, quote_via=quote)


def create_container(blob_endpoint: str) -> None:
    url = f"{blob_endpoint}/{CONTAINER}?restype=container&{account_sas()}"
    response = requests.put(url, headers={"x-ms-version": SAS_VERSION}, timeout=30)
    if response.status_code not in (201, 409):
        raise RuntimeError(f"creating the container failed: {response.status_code} {response.text[:300]}")


# --- the service -------------------------------------------------------------------------------


@dataclass
class Artifact:
    id: int
    run: str
    job: str
    name: str
    blob: str
    created_at: datetime
    expires_at: str | None
    mime_type: str | None
    finalized: bool = False
    size: int = 0
    digest: str | None = None


@dataclass
class Call:
    method: str
    body: Any
    status: int


class TwirpError(Exception):
    def __init__(self, code: str, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def _get(body: dict[str, Any], snake: str, default: Any = None) -> Any:
    head, *rest = snake.split("_")
    camel = head + "".join(w.capitalize() for w in rest)
    return body.get(snake, body.get(camel, default))


def _string(body: dict[str, Any], snake: str, required: bool = True) -> str:
    value = _get(body, snake)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise TwirpError("invalid_argument", f"{snake} must be a non-empty string")
    return value


def _int64(body: dict[str, Any], snake: str) -> int:
    value = _get(body, snake)
    # protojson reads int64 from a JSON string or number; the official client sends strings.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TwirpError("invalid_argument", f"{snake} must be an int64")
    try:
        return int(value)
    except ValueError as exc:
        raise TwirpError("invalid_argument", f"{snake} must be an int64") from exc


class ArtifactService:
    """The state and the methods; the HTTP handler below only translates."""

    def __init__(self, blob_endpoint: str, upload_endpoint: str | None = None) -> None:
        self.blob_endpoint = blob_endpoint
        self.upload_endpoint = upload_endpoint or blob_endpoint
        self.artifacts: dict[int, Artifact] = {}
        self.calls: list[Call] = []
        self.faults: dict[str, list[str]] = {}
        self.camel_replies = False
        self.seen_auth: list[str] = []
        self.seen_user_agents: list[str] = []
        self._next_id = 4_300_000_000  # past 2**32, as real ids can be: int64 as strings matters
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.faults.clear()
            self.seen_auth.clear()
            self.seen_user_agents.clear()
            self.camel_replies = False
            self.upload_endpoint = self.blob_endpoint

    def methods_called(self) -> list[str]:
        return [c.method for c in self.calls]

    def _blob_url(self, endpoint: str, blob: str, sas: str) -> str:
        return f"{endpoint}/{CONTAINER}/{blob}?{sas}"

    def handle(self, method: str, ids: tuple[str, str], body: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, f"_{method}", None)
        if handler is None:
            raise TwirpError("bad_route", f"no handler for path {SERVICE_PATH}{method}")
        run = _string(body, "workflow_run_backend_id")
        job = _string(body, "workflow_job_run_backend_id")
        if method in ("CreateArtifact", "FinalizeArtifact") and (run, job) != ids:
            raise TwirpError("permission_denied", "the token does not grant access to this job")
        if run != ids[0]:
            raise TwirpError("permission_denied", "the token does not grant access to this run")
        result: dict[str, Any] = handler(run, job, body)
        return result

    def _find(self, run: str, name: str, finalized: bool | None = None) -> Artifact | None:
        for artifact in self.artifacts.values():
            same = artifact.run == run and artifact.name == name
            if same and (finalized is None or artifact.finalized == finalized):
                return artifact
        return None

    def _CreateArtifact(self, run: str, job: str, body: dict[str, Any]) -> dict[str, Any]:
        name = _string(body, "name")
        version = _get(body, "version")
        if not isinstance(version, int) or version < 4:
            raise TwirpError("invalid_argument", "version must be 4 or later")
        if self._find(run, name) is not None:
            raise TwirpError(
                "already_exists", f"an artifact with this name already exists on the workflow run: {name}"
            )
        expires_at = _get(body, "expires_at")
        if expires_at is not None:
            datetime.fromisoformat(str(expires_at).replace("Z", "+00:00"))
        self._next_id += 1
        artifact_id = self._next_id
        digest = hashlib.sha256(f"{run}/{job}/{name}".encode()).hexdigest()[:32]
        blob = f"{run}/workflow-job-run-{job}/artifacts/{digest}.zip"
        self.artifacts[artifact_id] = Artifact(
            artifact_id, run, job, name, blob, datetime.now(UTC), expires_at, _get(body, "mime_type")
        )
        url = self._blob_url(self.upload_endpoint, blob, blob_sas(blob, "cw"))
        return {"ok": True, "signed_upload_url": url}

    def _FinalizeArtifact(self, run: str, job: str, body: dict[str, Any]) -> dict[str, Any]:
        name = _string(body, "name")
        size = _int64(body, "size")
        digest = _get(body, "hash")
        if digest is not None and (not isinstance(digest, str) or not digest.startswith("sha256:")):
            raise TwirpError("invalid_argument", "hash must be sha256:<hex>")
        artifact = self._find(run, name, finalized=False)
        if artifact is None:
            raise TwirpError("not_found", f"no artifact {name} to finalize")
        head = requests.head(
            self._blob_url(self.blob_endpoint, artifact.blob, blob_sas(artifact.blob, "r")), timeout=30
        )
        if head.status_code != 200:
            raise TwirpError("failed_precondition", "the artifact's blob was not uploaded")
        if int(head.headers["Content-Length"]) != size:
            raise TwirpError("invalid_argument", "size does not match the uploaded blob")
        artifact.finalized = True
        artifact.size = size
        artifact.digest = digest
        return {"ok": True, "artifact_id": str(artifact.id)}

    def _ListArtifacts(self, run: str, job: str, body: dict[str, Any]) -> dict[str, Any]:
        name_filter = _get(body, "name_filter")
        id_filter = _get(body, "id_filter")
        found = []
        for artifact in sorted(self.artifacts.values(), key=lambda a: a.id):
            if artifact.run != run or not artifact.finalized:
                continue
            if name_filter is not None and artifact.name != name_filter:
                continue
            if id_filter is not None and artifact.id != int(id_filter):
                continue
            item = {
                "workflow_run_backend_id": artifact.run,
                "workflow_job_run_backend_id": artifact.job,
                "database_id": str(artifact.id),
                "name": artifact.name,
                "size": str(artifact.size),
                "created_at": artifact.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
            if artifact.digest:
                item["digest"] = artifact.digest
            found.append(item)
        return {"artifacts": found}

    def _GetSignedArtifactURL(self, run: str, job: str, body: dict[str, Any]) -> dict[str, Any]:
        artifact = self._find(run, _string(body, "name"), finalized=True)
        if artifact is None:
            raise TwirpError("not_found", "artifact not found")
        disposition = f'attachment; filename="{artifact.name}.zip"'
        sas = blob_sas(artifact.blob, "r", content_disposition=disposition)
        return {"signed_url": self._blob_url(self.blob_endpoint, artifact.blob, sas)}

    def _DeleteArtifact(self, run: str, job: str, body: dict[str, Any]) -> dict[str, Any]:
        artifact = self._find(run, _string(body, "name"), finalized=True)
        if artifact is None:
            raise TwirpError("not_found", "artifact not found")
        del self.artifacts[artifact.id]
        return {"ok": True, "artifact_id": str(artifact.id)}


def _camelize(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            head, *rest = key.split("_")
            out[head + "".join(w.capitalize() for w in rest)] = _camelize(item)
        return out
    if isinstance(value, list):
        return [_camelize(v) for v in value]
    return value


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        service = self.server.service
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        method = self.path[len(SERVICE_PATH) :] if self.path.startswith(SERVICE_PATH) else ""
        with service._lock:
            service.seen_auth.append(self.headers.get("Authorization", ""))
            service.seen_user_agents.append(self.headers.get("User-Agent", ""))
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
            fault = service.faults.get(method, [])
            injected = fault.pop(0) if fault else None
            status, payload, ctype = self._dispatch(service, method, body, injected)
            service.calls.append(Call(method or self.path, body, status))
        self._reply(status, payload, ctype)

    def _dispatch(
        self, service: ArtifactService, method: str, body: Any, injected: str | None
    ) -> tuple[int, bytes, str]:
        if injected == "html":
            return 502, b"<html><body>502 Bad Gateway</body></html>", "text/html"
        if injected == "quota":
            error = {"code": "resource_exhausted", "msg": "insufficient usage to create artifact"}
            return 429, json.dumps(error).encode(), "application/json"
        if injected is not None:
            status = int(injected)
            return status, json.dumps({"code": "unavailable", "msg": "injected"}).encode(), "application/json"
        try:
            if not method:
                raise TwirpError("bad_route", f"no handler for path {self.path}")
            if not self.headers.get("Content-Type", "").startswith("application/json"):
                raise TwirpError("bad_route", "unexpected Content-Type")
            auth = self.headers.get("Authorization", "")
            ids = _verify_token(auth[len("Bearer ") :]) if auth.startswith("Bearer ") else None
            if ids is None:
                raise TwirpError("unauthenticated", "invalid token")
            if not isinstance(body, dict):
                raise TwirpError("malformed", "the body is not a JSON object")
            reply = service.handle(method, ids, body)
        except TwirpError as exc:
            status = TWIRP_STATUS.get(exc.code, 400 if exc.code in ("malformed", "bad_route") else 500)
            if exc.code == "bad_route":
                status = 404
            return status, json.dumps({"code": exc.code, "msg": exc.msg}).encode(), "application/json"
        if service.camel_replies:
            reply = _camelize(reply)
        return 200, json.dumps(reply).encode(), "application/json"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, service: ArtifactService) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.service = service


@dataclass
class RunningService:
    service: ArtifactService
    port: int
    run: str = "ce7f54c7-61c7-4aae-887f-30da475f5f1a"
    job: str = "ca395085-040a-526b-2ce8-bdc85f692774"
    token: str = field(default="")

    @property
    def results_url(self) -> str:
        # The runner's ACTIONS_RESULTS_URL has a path; clients must use the origin only.
        return f"http://127.0.0.1:{self.port}/results/"

    def env(self) -> dict[str, str]:
        return {
            "ACTIONS_RUNTIME_TOKEN": self.token,
            "ACTIONS_RESULTS_URL": self.results_url,
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_REPOSITORY": "octo-org/kubebuildx-demo",
            "GITHUB_RUN_ID": "4242",
            "GITHUB_RETENTION_DAYS": "90",
        }


@contextmanager
def serve(blob_endpoint: str) -> Iterator[RunningService]:
    create_container(blob_endpoint)
    service = ArtifactService(blob_endpoint)
    server = _Server(service)
    thread = threading.Thread(target=server.serve_forever, name="twirp-test-server", daemon=True)
    thread.start()
    running = RunningService(service, server.server_address[1])
    running.token = make_token(running.run, running.job)
    try:
        yield running
    finally:
        server.shutdown()
        server.server_close()
