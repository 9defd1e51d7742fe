"""The artifact service (the v4 "results" service): environment, ids, Twirp calls.

Mirrors actions/toolkit ``packages/artifact``: one getter per environment
variable, each failing with the variable's name; the backend ids from the
``scp`` claim of ``ACTIONS_RUNTIME_TOKEN``; requests as protobuf-ts writes
them (``toJson`` with proto field names: snake_case, int64 as strings,
wrappers as bare values, timestamps as RFC 3339 with millisecond precision);
replies read in either snake_case or camelCase, since protobuf JSON parsers
accept both. Request bodies are built by pure functions with golden files in
``tests/fixtures/artifacts/``.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

import requests

from kubebuildx import __version__, cancel, runner
from kubebuildx.artifacts import retry
from kubebuildx.artifacts.retry import Backoff, Verdict, twirp_verdict
from kubebuildx.errors import ArtifactError

SERVICE = "github.actions.results.api.v1.ArtifactService"
ARTIFACT_VERSION = 7  # what @actions/artifact 2.2+ sends with mime_type
ZIP_MIME_TYPE = "application/zip"
USER_AGENT = f"kubebuildx/{__version__}"
TIMEOUT = (10.0, 60.0)

NETWORK_HINT = (
    "if you use a self-hosted runner, make sure it can reach all GitHub endpoints: "
    "https://docs.github.com/en/actions/hosting-your-own-runners/managing-self-hosted-runners/"
    "about-self-hosted-runners#communication-between-self-hosted-runners-and-github"
)
QUOTA_HINT = (
    "delete old artifacts or lower retention-days; storage limits: "
    "https://docs.github.com/en/billing/managing-billing-for-github-actions/"
    "about-billing-for-github-actions#calculating-minute-and-storage-spending"
)


# --- environment: one getter per variable --------------------------------------------------


def _required(env: Mapping[str, str], name: str, what: str) -> str:
    value = env.get(name, "")
    if not value:
        raise ArtifactError(
            f"Unable to get the {name} environment variable ({what}).",
            hint="run inside a GitHub Actions job; a container action receives it from the runner",
        )
    return value


def runtime_token(env: Mapping[str, str]) -> str:
    token = _required(env, "ACTIONS_RUNTIME_TOKEN", "the token for the artifact service")
    runner.mask(token)
    return token


def results_origin(env: Mapping[str, str]) -> str:
    url = _required(env, "ACTIONS_RESULTS_URL", "the artifact service's address")
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ArtifactError(f"ACTIONS_RESULTS_URL is not a URL: {redact_url(url)}.")
    return f"{parts.scheme}://{parts.netloc}"


def server_url(env: Mapping[str, str]) -> str:
    return env.get("GITHUB_SERVER_URL") or "https://github.com"


def repository(env: Mapping[str, str]) -> str:
    return _required(env, "GITHUB_REPOSITORY", "owner/name, for the artifact's link")


def run_id(env: Mapping[str, str]) -> str:
    return _required(env, "GITHUB_RUN_ID", "the workflow run, for the artifact's link")


def max_retention_days(env: Mapping[str, str]) -> int | None:
    """GITHUB_RETENTION_DAYS, the repository's limit; None when unset or not a number."""
    try:
        return int(env.get("GITHUB_RETENTION_DAYS", ""))
    except ValueError:
        return None


def is_ghes(url: str) -> bool:
    """The v4 service exists on github.com and GHE.com only (config.ts ``isGhes``)."""
    host = (urlsplit(url).hostname or "").strip().upper()
    return not (host == "GITHUB.COM" or host.endswith(".GHE.COM") or host.endswith(".LOCALHOST"))


# --- the token -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendIds:
    workflow_run_backend_id: str
    workflow_job_run_backend_id: str


def _invalid_token() -> ArtifactError:
    return ArtifactError(
        "Failed to get backend IDs: ACTIONS_RUNTIME_TOKEN is not a valid JWT with an "
        "Actions.Results:<run>:<job> scope.",
        hint="use the token the runner provides; do not override ACTIONS_RUNTIME_TOKEN",
    )


def backend_ids(token: str) -> BackendIds:
    """The run and job ids from the JWT's ``scp`` claim (util.ts ``getBackendIdsFromToken``).

    The signature is not checked: the service does that; we only read our ids.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise _invalid_token()
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, binascii.Error) as exc:
        raise _invalid_token() from exc
    scp = claims.get("scp") if isinstance(claims, dict) else None
    if not isinstance(scp, str) or not scp:
        raise _invalid_token()
    for scope in scp.split(" "):
        fields = scope.split(":")
        if fields[0] != "Actions.Results":
            continue
        if len(fields) != 3:
            raise _invalid_token()
        return BackendIds(fields[1], fields[2])
    raise _invalid_token()


# --- request bodies (pure) -------------------------------------------------------------------


def timestamp_json(moment: datetime) -> str:
    """protobuf-ts ``Timestamp.toJson`` of a JS Date: UTC, milliseconds only when non-zero."""
    moment = moment.astimezone(UTC)
    millis = moment.microsecond // 1000
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def expiration(
    retention_days: int | None, max_days: int | None, now: datetime
) -> tuple[datetime | None, str | None]:
    """The ``expires_at`` to send, and a warning when the repository's limit clamps it."""
    if not retention_days:
        return None, None
    warning = None
    if max_days and max_days < retention_days:
        warning = (
            f"retention-days {retention_days} is more than the repository allows; using {max_days} instead."
        )
        retention_days = max_days
    return now + timedelta(days=retention_days), warning


def _ids(ids: BackendIds) -> dict[str, Any]:
    return {
        "workflow_run_backend_id": ids.workflow_run_backend_id,
        "workflow_job_run_backend_id": ids.workflow_job_run_backend_id,
    }


def create_request(ids: BackendIds, name: str, expires_at: datetime | None) -> dict[str, Any]:
    body = {**_ids(ids), "name": name}
    if expires_at is not None:
        body["expires_at"] = timestamp_json(expires_at)
    body["version"] = ARTIFACT_VERSION
    body["mime_type"] = ZIP_MIME_TYPE
    return body


def finalize_request(ids: BackendIds, name: str, size: int, sha256_hex: str) -> dict[str, Any]:
    return {**_ids(ids), "name": name, "size": str(size), "hash": f"sha256:{sha256_hex}"}


def list_request(
    ids: BackendIds, name_filter: str | None = None, id_filter: int | None = None
) -> dict[str, Any]:
    body = _ids(ids)
    if name_filter is not None:
        body["name_filter"] = name_filter
    if id_filter is not None:
        body["id_filter"] = str(id_filter)
    return body


def delete_request(ids: BackendIds, name: str) -> dict[str, Any]:
    return {**_ids(ids), "name": name}


# --- replies (pure) --------------------------------------------------------------------------


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(word.capitalize() for word in rest)


def field(body: Mapping[str, Any], snake: str, default: Any = None) -> Any:
    """A reply field by its proto name or its JSON (lowerCamel) name."""
    if snake in body:
        return body[snake]
    return body.get(_camel(snake), default)


def int64(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"The artifact service sent an invalid {what}: {value!r}.") from exc


@dataclass(frozen=True)
class ListedArtifact:
    ids: BackendIds
    database_id: int
    name: str
    size: int
    digest: str | None


def parse_list(body: Mapping[str, Any]) -> list[ListedArtifact]:
    found = []
    for item in field(body, "artifacts", []) or []:
        found.append(
            ListedArtifact(
                BackendIds(
                    str(field(item, "workflow_run_backend_id", "")),
                    str(field(item, "workflow_job_run_backend_id", "")),
                ),
                int64(field(item, "database_id", "0"), "artifact id"),
                str(field(item, "name", "")),
                int64(field(item, "size", "0"), "artifact size"),
                field(item, "digest"),
            )
        )
    return found


# --- secrets in URLs -------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """A URL fit for a log: the query (a SAS token: sig=...) is dropped."""
    parts = urlsplit(url)
    query = "<redacted>" if parts.query else ""
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def mask_signed_url(url: str) -> None:
    """Mask the SAS signature, as maskSigUrl does, in case the URL is ever printed."""
    for sig in parse_qs(urlsplit(url).query).get("sig", []):
        runner.mask(sig)
        runner.mask(quote(sig, safe=""))


class TwirpFailure(ArtifactError):
    """The service answered a call with an error that is not worth retrying."""

    def __init__(self, message: str, *, status: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


# --- the client ------------------------------------------------------------------------------


class TwirpClient:
    """JSON Twirp over one ``requests`` session, with the official client's retries."""

    def __init__(
        self,
        origin: str,
        token: str,
        *,
        session: requests.Session | None = None,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = cancel.sleep,
    ) -> None:
        self.origin = origin.rstrip("/")
        self._session = session or requests.Session()
        self._session.headers.update(
            {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT, "Content-Type": "application/json"}
        )
        self._backoff = backoff or retry.TWIRP_BACKOFF
        self._sleep = sleep

    def url(self, method: str) -> str:
        return f"{self.origin}/twirp/{SERVICE}/{method}"

    def call(self, method: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST one method; returns the reply or raises ArtifactError naming the method."""
        data = json.dumps(body, separators=(",", ":"))
        problem = ""
        for attempt in range(self._backoff.attempts):
            cancel.check()
            try:
                response = self._session.post(self.url(method), data=data, timeout=TIMEOUT)
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                raise ArtifactError(
                    f"Failed to {method}: unable to reach the artifact service at {self.origin} "
                    f"({type(exc).__name__}).",
                    hint=NETWORK_HINT,
                ) from exc
            except requests.Timeout:
                problem = f"no reply within {TIMEOUT[1]:.0f}s"
            else:
                reply, verdict, problem = self._judge(response)
                if verdict is Verdict.OK and reply is not None:
                    return reply
                if verdict is Verdict.QUOTA:
                    raise ArtifactError(
                        f"Failed to {method}: the artifact storage quota has been hit; "
                        "no new artifact can be uploaded.",
                        hint=QUOTA_HINT,
                    )
                if verdict is Verdict.FAIL:
                    raise TwirpFailure(f"Failed to {method}: {problem}.", status=response.status_code)
            if attempt + 1 < self._backoff.attempts:
                wait = self._backoff.delay(attempt, random.random())  # noqa: S311 - jitter, not crypto
                runner.info(
                    f"{method}: attempt {attempt + 1} of {self._backoff.attempts} failed ({problem}); "
                    f"retrying in {wait:.1f}s"
                )
                self._sleep(wait)
        raise ArtifactError(
            f"Failed to {method} after {self._backoff.attempts} attempts: {problem}.",
            hint="GitHub's artifact service may be having trouble; try again later",
        )

    @staticmethod
    def _judge(response: requests.Response) -> tuple[dict[str, Any] | None, Verdict, str]:
        try:
            reply = response.json()
        except ValueError:
            reply = None
        is_json = isinstance(reply, dict)
        msg = str(reply.get("msg", "")) if isinstance(reply, dict) else ""
        if isinstance(reply, dict):
            for key in ("signed_upload_url", "signedUploadUrl", "signed_url", "signedUrl"):
                if isinstance(reply.get(key), str):
                    mask_signed_url(reply[key])
        problem = f"HTTP {response.status_code} {response.reason}"
        if msg:
            problem += f": {msg}"
        elif not is_json:
            problem += " (reply is not JSON)"
        verdict = twirp_verdict(response.status_code, is_json, msg)
        return (reply if is_json else None), verdict, problem
