"""Keyless access to the cluster: GitHub's OIDC ID token as the bearer token (``auth: github-oidc``).

The runner gives a job with ``permissions: id-token: write`` two variables:
``ACTIONS_ID_TOKEN_REQUEST_URL`` (already carrying a query, so the audience is
appended with ``&``) and ``ACTIONS_ID_TOKEN_REQUEST_TOKEN``, the bearer for
that URL. A GET answers ``{"value": "<jwt>"}`` (actions/toolkit
packages/core/src/oidc-utils.ts). The JWT lives minutes, while a build lasts
longer and buildx opens new exec connections all along, so the kubeconfig
names the token by file (``tokenFile``) and ``TokenFile`` rewrites that file,
atomically, before each token expires.

Pure decisions first (the request URL, a JWT's lifetime, when to refresh, the
messages), the edge last (one HTTP session, the refresher thread). No message
quotes a token, the request token, the request URL's query or a response body.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from kubebuildx import cancel, runner
from kubebuildx.errors import CredentialError, KubebuildxError
from kubebuildx.files import atomic_write

AUTH_GITHUB_OIDC = "github-oidc"
AUTH_MODES = ("", AUTH_GITHUB_OIDC)
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
# The audience the cluster's AuthenticationConfiguration lists (deploy/github-oidc/). A name of
# our own rather than the server's URL: it stays the same when the API server moves or has
# several names, and a token minted for kubebuildx is useless to a cloud's STS and vice versa.
DEFAULT_AUDIENCE = "kubebuildx"
URL_VAR = "ACTIONS_ID_TOKEN_REQUEST_URL"
TOKEN_VAR = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"  # noqa: S105 - the variable's name
PERMISSIONS_BLOCK = "permissions:\n  id-token: write\n  contents: read"
REQUEST_TIMEOUT = 10.0
ATTEMPTS = 3  # 5xx, 429 and connection failures only: a 4xx does not get better
RETRY_DELAY = 2.0
# Refresh when a third of the token's lifetime is left, at least 90 s and at most 5 minutes
# before it expires: GitHub's tokens live 5 minutes (https://docs.github.com/en/actions/
# reference/security/oidc), so a new one is fetched after about 3 minutes 20 seconds.
LEAD_FRACTION = 1 / 3
MIN_LEAD = 90.0  # client-go re-reads a tokenFile when its copy is a minute old
MAX_LEAD = 300.0
MIN_WAIT = 5.0  # never refresh in a busy loop, even for a token that arrives expired
FAILED_REFRESH_WAIT = 10.0


# ---- pure decisions --------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenTimes:
    """A JWT's ``iat`` and ``exp`` (seconds since the epoch, the issuer's clock)."""

    issued_at: float
    expires_at: float

    @property
    def lifetime(self) -> float:
        return self.expires_at - self.issued_at


def claims(jwt: str) -> dict[str, Any]:
    """A JWT's claims, unverified: the API server verifies the signature; we only read the
    times (to refresh) and the subject (to say who the cluster saw)."""
    parts = jwt.split(".")
    if len(parts) != 3 or not all(parts):
        raise CredentialError("the ID token is not a JWT (three dot-separated parts)")
    body = parts[1]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        raise CredentialError("the ID token's claims are not base64url-encoded JSON") from None
    if not isinstance(decoded, dict):
        raise CredentialError("the ID token's claims are not a JSON object")
    return decoded


MAX_LIFETIME = 24 * 3600.0  # GitHub's live 5 minutes; anything past a day is not a real token


def _number(value: Any) -> float | None:
    """A finite number (json.loads accepts NaN and Infinity, which would defeat every wait)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def token_times(jwt: str) -> TokenTimes:
    found = claims(jwt)
    expires = _number(found.get("exp"))
    if expires is None:
        raise CredentialError("the ID token has no exp (expiry) claim")
    issued = _number(found.get("iat"))
    issued = expires - 300 if issued is None else issued
    # The refresher waits on these: bounded, so that a broken endpoint cannot make it spin
    # (a lifetime of NaN or below zero) or sleep past the build (an exp of 1e300).
    lifetime = min(max(expires - issued, 0.0), MAX_LIFETIME)
    return TokenTimes(expires - lifetime, expires)


def refresh_delay(times: TokenTimes) -> float:
    """Seconds after a token was fetched to fetch the next one. Counted from when we got it
    and from its lifetime (exp - iat), never by comparing our clock with the issuer's: a
    runner whose clock is a minute off still refreshes in time."""
    lead = min(max(times.lifetime * LEAD_FRACTION, MIN_LEAD), MAX_LEAD)
    return max(times.lifetime - lead, MIN_WAIT)


def request_url(base: str, audience: str) -> str:
    """The runner's URL with ``audience`` appended, as actions/toolkit's getIDToken does."""
    if not audience:
        return base
    return f"{base}{'&' if '?' in base else '?'}audience={quote(audience, safe='')}"


def _where(url: str) -> str:
    """The endpoint's host, for messages: never its query."""
    return urlsplit(url).hostname or "the runner's token endpoint"


def missing_permission(missing: list[str], on_github: bool) -> CredentialError:
    if not on_github:
        return CredentialError(
            "auth: github-oidc asks GitHub Actions for an ID token, and this is not a GitHub Actions job "
            f"({' and '.join(missing)} not set)",
            hint="outside GitHub Actions give a kubeconfig with credentials, or a token in a file "
            "(kubebuildx build --token FILE ...)",
        )
    return CredentialError(
        f"auth: github-oidc needs an ID token from GitHub, but {' and '.join(missing)} "
        f"{'is' if len(missing) == 1 else 'are'} not set: the job does not have the id-token: write "
        "permission",
        hint=f"add to the job (or the workflow):\n{PERMISSIONS_BLOCK}\n"
        "A job's permissions replace the defaults, so list the others it needs too. Workflows run "
        "for a pull request from a fork get no ID token: use a token input there, or no cluster.",
    )


def http_error(status: int, url: str) -> CredentialError:
    where = _where(url)
    if status in (401, 403):
        return CredentialError(
            f"GitHub's token endpoint ({where}) refused the runner's request token (HTTP {status})",
            hint="the request token is valid for the job that got it only: do not copy "
            f"{TOKEN_VAR} between jobs or steps, and check that the job has\n{PERMISSIONS_BLOCK}",
        )
    if status == 429 or status >= 500:
        return CredentialError(
            f"GitHub's token endpoint ({where}) failed with HTTP {status} after {ATTEMPTS} attempts",
            hint="GitHub's token service is failing or rate-limited: re-run the job "
            "(https://www.githubstatus.com)",
        )
    return CredentialError(
        f"GitHub's token endpoint ({where}) answered HTTP {status}",
        hint="check the audience input (a plain string such as kubebuildx)",
    )


def unreachable(url: str, exc: BaseException) -> CredentialError:
    return CredentialError(
        f"cannot reach GitHub's token endpoint ({_where(url)}): {type(exc).__name__}",
        hint="a self-hosted runner needs HTTPS access to it (proxy, firewall)",
    )


def token_from_body(body: bytes) -> str:
    """The ``value`` of the endpoint's JSON; an error that quotes none of it otherwise."""
    try:
        decoded = json.loads(body)
    except ValueError:
        decoded = None
    value = decoded.get("value") if isinstance(decoded, dict) else None
    if not isinstance(value, str) or not value:
        raise CredentialError(
            'GitHub\'s token endpoint answered without a token (no "value" in its JSON)',
            hint="re-run the job; if it persists, the runner's ID token service is broken",
        )
    return value


# ---- the edge --------------------------------------------------------------------------------


class IdTokenSource:
    """GitHub's ID token endpoint, as the runner announces it in ``env``: one session, a
    few retries for what may pass (5xx, 429, a failed connection), every token masked."""

    def __init__(self, env: Mapping[str, str], audience: str, session: Any = None) -> None:
        self.url, self._bearer = env.get(URL_VAR, ""), env.get(TOKEN_VAR, "")
        runner.mask(self._bearer)
        missing = [name for name, value in ((URL_VAR, self.url), (TOKEN_VAR, self._bearer)) if not value]
        if missing:
            raise missing_permission(missing, env.get("GITHUB_ACTIONS") == "true")
        self.audience = audience
        self._session = session

    def _get(self) -> Any:
        if self._session is None:
            import requests  # only auth: github-oidc needs it at start-up

            self._session = requests.Session()
        return self._session.get(
            request_url(self.url, self.audience),
            headers={"Authorization": f"Bearer {self._bearer}", "Accept": "application/json"},
            timeout=REQUEST_TIMEOUT,
            allow_redirects=False,  # the bearer goes to the runner's endpoint, nowhere else
        )

    def fetch(self, sleep: Callable[[float], None] = cancel.sleep) -> str:
        failure: CredentialError | None = None
        for attempt in range(ATTEMPTS):
            if attempt:
                sleep(RETRY_DELAY * attempt)
            try:
                response = self._get()
            except (OSError, ValueError) as exc:  # requests' errors are OSErrors; a bad URL a ValueError
                failure = unreachable(self.url, exc)
                continue
            status = int(response.status_code)
            if status == 200:
                token = token_from_body(response.content)
                runner.mask(token)
                token_times(token)  # a token we cannot schedule is refused now, not at expiry
                return token
            failure = http_error(status, self.url)
            if status != 429 and status < 500:
                break
        assert failure is not None
        raise failure


_active: list[TokenFile] = []
_active_lock = threading.Lock()


class TokenFile:
    """The file the kubeconfig's ``tokenFile`` names: written (0600, atomically) with a fresh
    token now, and again ``refresh_delay`` after each fetch, until ``stop``. A failed refresh
    warns and retries; the file keeps the last token, which the cluster refuses once expired."""

    def __init__(
        self, path: Path, fetch: Callable[[], str], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path, self._fetch, self._clock = path, fetch, clock
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.next_refresh = 0.0  # on self._clock

    def refresh(self) -> None:
        """Fetch and write one token; raises CredentialError when it cannot."""
        token = self._fetch()
        fetched = self._clock()
        with self._lock:
            if self._stopped.is_set():  # cleanup has begun: never write into a folder being deleted
                return
            atomic_write(self.path, token + "\n", make_parents=False)
            self.next_refresh = fetched + refresh_delay(token_times(token))

    def _run(self) -> None:
        while not self._stopped.wait(max(self.next_refresh - self._clock(), 0.0)):
            try:
                self.refresh()
            except cancel.Cancelled:  # the job is ending: its cleanup stops us anyway
                return
            except (KubebuildxError, OSError) as exc:
                if self._stopped.is_set():
                    return
                runner.warning(f"could not refresh the cluster's ID token: {exc}")
                self.next_refresh = self._clock() + FAILED_REFRESH_WAIT

    def start(self) -> None:
        """The first token, synchronously (its errors are the step's), then the thread."""
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="kubebuildx-token-refresh", daemon=True)
        with _active_lock:
            _active.append(self)
        self._thread.start()

    def stop(self) -> None:
        """After this returns, the file is never written again."""
        with self._lock:
            self._stopped.set()


def start_token_file(path: Path, env: Mapping[str, str], audience: str) -> TokenFile:
    source = IdTokenSource(env, audience)
    token_file = TokenFile(path, source.fetch)
    token_file.start()
    return token_file


def stop_all() -> None:
    """Before a run's folder is deleted: no refresher may write a token into it again."""
    with _active_lock:
        running, _active[:] = list(_active), []
    for token_file in running:
        token_file.stop()
