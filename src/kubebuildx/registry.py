"""Registry credentials: docker/login-action's inputs to a private docker config.

The username and password are masked the moment they are read and written
only to ``config.json`` (mode 0600) in a folder of the run's workdir, which
cleanup deletes. buildx reads it through ``DOCKER_CONFIG``; because buildx
derives its store from ``DOCKER_CONFIG`` too, ``BUILDX_CONFIG`` pins the
store where the builder's instance file already is.

``auth_key`` and ``config_json`` mirror the docker CLI's config file format
(https://github.com/docker/cli/blob/v28.0.0/cli/config/configfile/file.go):
Docker Hub's credentials live under ``https://index.docker.io/v1/``.
The login check speaks the registry's token protocol as ``docker login`` does
(https://distribution.github.io/distribution/spec/auth/token/), so that wrong
credentials fail before a build, with the registry and user named.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from kubebuildx import files, runner
from kubebuildx.errors import InputError, RegistryError

DOCKER_HUB = "docker.io"
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = frozenset(
    {"", "docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)
CONFIG_DIR = "docker-config"


@dataclass(frozen=True)
class Credentials:
    registry: str  # as the user wrote it; empty means Docker Hub
    username: str
    password: str = field(repr=False)

    @property
    def host(self) -> str:
        return registry_host(self.registry)


def registry_host(registry: str) -> str:
    """``https://ghcr.io/`` → ``ghcr.io``; empty or a Docker Hub alias → ``docker.io``."""
    host = re.sub(r"^[a-z]+://", "", registry.strip()).split("/", 1)[0].lower()
    return DOCKER_HUB if host in _HUB_ALIASES else host


def auth_key(registry: str) -> str:
    """The key of ``auths`` in config.json: the host, except Docker Hub's legacy URL."""
    host = registry_host(registry)
    return DOCKER_HUB_AUTH_KEY if host == DOCKER_HUB else host


def reference_host(ref: str) -> str:
    """The registry of an image reference, as distribution/reference splits it:
    the first path component when it looks like a host, else Docker Hub."""
    first, sep, _ = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first.lower()
    return DOCKER_HUB


def from_inputs(registry: str, username: str, password: str) -> Credentials | None:
    """Read the credentials once, mask them, and refuse half of a pair."""
    runner.mask(password)
    if not username and not password:
        return None
    if not username or not password:
        missing = "password" if username else "username"
        raise InputError(
            f"registry credentials need both username and password; {missing} is empty",
            hint=f"set {missing} (from a secret), or neither to push without logging in",
        )
    creds = Credentials(registry.strip(), username.strip(), password)
    runner.mask(_auth_value(creds))
    return creds


def check_refs(creds: Credentials | None, refs: Sequence[str]) -> str:
    """A warning when no image we push lives on the registry the credentials are for."""
    if creds is None or not refs:
        return ""
    hosts = sorted({reference_host(r) for r in refs})
    if creds.host in hosts:
        return ""
    return (
        f"the registry credentials are for {creds.host}, but the image is pushed to "
        f"{', '.join(hosts)}; set the registry input to the image's registry"
    )


def _auth_value(creds: Credentials) -> str:
    return base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


_AUTH_SECRETS = ("auth", "password", "identitytoken", "registrytoken")


def parse_docker_config(text: str, name: str = "docker-config") -> dict[str, dict[str, str]]:
    """The ``auths`` of a user's config.json, every credential masked on read;
    ``name`` says where it came from in a message.

    Credential helpers and stores (``credsStore``, ``credHelpers``) need
    programs the action image does not have, so they are refused with the fix.
    """
    if not text.strip():
        return {}
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:  # its message quotes no content, only the position
        raise InputError(
            f"{name} is not JSON (line {exc.lineno}, column {exc.colno})",
            hint="store the content of ~/.docker/config.json (after `docker login`) as the secret",
        ) from None
    except RecursionError:  # nested deeper than the decoder's stack: not a config.json
        raise InputError(
            "docker-config nests too deeply to be a docker config.json",
            hint="store the content of ~/.docker/config.json (after `docker login`) as the secret",
        ) from None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict) or not all(isinstance(v, dict) for v in auths.values()):
        raise InputError(
            f"{name} has no `auths` object",
            hint="log in with `docker login`, then store ~/.docker/config.json as the secret",
        )
    for entry in auths.values():
        for key in _AUTH_SECRETS:
            if isinstance(entry.get(key), str):
                runner.mask(entry[key])
    if (
        isinstance(doc, dict)
        and (doc.get("credsStore") or doc.get("credHelpers"))
        and not any(entry.get("auth") or entry.get("identitytoken") for entry in auths.values())
    ):
        raise InputError(
            f"{name} keeps its credentials in a credential helper, which is not available here",
            hint="store a config.json with the credentials inline (`auths.<registry>.auth`), or use "
            "the username and password inputs",
        )
    return {
        str(host): {k: str(v) for k, v in entry.items() if isinstance(v, str)}
        for host, entry in auths.items()
    }


def from_job(folder: Path) -> str:
    """The config.json of a ``DOCKER_CONFIG`` an earlier step set (docker/login-action logs in
    there), checked and masked as the docker-config input; empty when it holds no ``auths``."""
    file = folder / "config.json"
    if not file.is_file():
        return ""
    text = file.read_text()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None  # parse_docker_config says where
    if isinstance(doc, dict) and not doc.get("auths"):
        return ""
    parse_docker_config(text, name="$DOCKER_CONFIG/config.json")
    return text


def config_json(creds: Credentials | None, auths: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """config.json as the docker CLI writes it after ``docker login``: the
    given ``auths`` (from docker-config), then the username/password on top."""
    merged: dict[str, Mapping[str, str]] = dict(auths or {})
    if creds is not None:
        merged[auth_key(creds.registry)] = {"auth": _auth_value(creds)}
    return json.dumps({"auths": merged}, indent="\t") + "\n"


def write_config(
    creds: Credentials | None, workdir: Path, auths: Mapping[str, Mapping[str, str]] | None = None
) -> Path:
    """Write ``<workdir>/docker-config/config.json`` with mode 0600; return the folder."""
    folder = workdir / CONFIG_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    files.atomic_write(folder / "config.json", config_json(creds, auths), mode=0o600)
    return folder


def tool_env(docker_config: Path | None, store: Path) -> dict[str, str]:
    """Environment for buildx when we log in: our config, and the store where it was."""
    if docker_config is None:
        return {}
    return {"DOCKER_CONFIG": str(docker_config), "BUILDX_CONFIG": str(store)}


def login(
    creds: Credentials | None, auths: Mapping[str, Mapping[str, str]], workdir: Path, refs: Sequence[str]
) -> Path:
    """Write the private config.json; with credentials, warn about tags they do not
    cover and check them against the registry. Returns the config's folder."""
    if creds is None:
        docker_config = write_config(None, workdir, auths)
        runner.info("registries: " + ", ".join(runner.one_line(host) for host in sorted(auths)))
        return docker_config
    docker_config = write_config(creds, workdir, auths)
    warning = check_refs(creds, refs)
    if warning:
        runner.warning(warning)
    runner.info(runner.one_line(check_login(creds)))  # it quotes the registry's challenge
    return docker_config


_REFUSED = re.compile(
    r"401 Unauthorized|403 Forbidden|insufficient_scope|denied: |authorization failed", re.I
)


def push_hint(error: str, *, logged_in: bool) -> str:
    """The fix for a build whose push the registry refused; empty for other failures."""
    if not _REFUSED.search(error):
        return ""
    if logged_in:
        return (
            "the registry refused the push with these credentials: check that the token may write "
            "to this repository (for ghcr.io: permissions: packages: write)"
        )
    return "the registry refused the push: set registry, username and password (from secrets)"


# ---- login check ------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """containerd's docker.MatchLocalhost, which buildx and BuildKit use to speak plain HTTP:
    ``localhost`` or a loopback IP address (127.0.0.0/8, ::1), with or without a port.

    An address is parsed, never matched by prefix, and a name is not resolved:
    ``127.attacker.example`` is a name that anyone's DNS may point anywhere."""
    name = host.strip()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def may_send_credentials(url: str) -> bool:
    """Credentials go over https only, or over plain http to a loopback address, where they
    never leave the machine (the only registries we speak http to)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.netloc)
    return parts.scheme == "http" and is_loopback(parts.netloc.rpartition("@")[2])


def api_base(host: str) -> str:
    real = DOCKER_HUB_API if host == DOCKER_HUB else host
    return f"{'http' if is_loopback(real) else 'https'}://{real}/v2/"


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="https://ghcr.io/token",service="ghcr.io"`` → ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]


Get = Callable[[str, "tuple[str, str] | None"], Reply]


def _requests_get(url: str, auth: tuple[str, str] | None) -> Reply:
    import requests

    response = requests.get(url, auth=auth, timeout=20, allow_redirects=True)
    return Reply(response.status_code, dict(response.headers))


def check_login(creds: Credentials, get: Get | None = None) -> str:
    """Log in as ``docker login`` would, without storing anything.

    Returns a note for the log; raises ``RegistryError`` when the registry
    refuses the credentials. A registry we cannot reach from here is only a
    warning: BuildKit may reach it from the cluster when we cannot.
    """
    fetch = get or _requests_get
    base = api_base(creds.host)
    pair = (creds.username, creds.password)
    try:
        reply = fetch(base, None)
        if reply.status == 200:
            return f"{creds.host} accepts anonymous requests; credentials not checked"
        if reply.status != 401:
            return f"{creds.host} answered {reply.status} on /v2/; credentials not checked"
        scheme, params = parse_challenge(_header(reply.headers, "www-authenticate"))
        realm = params.get("realm", "")
        if scheme == "basic":
            if not may_send_credentials(base):
                return f"{creds.host} asks for Basic authentication over plain http; credentials not sent"
            reply = fetch(base, pair)
        elif scheme == "bearer" and realm and not may_send_credentials(realm):
            return f"{creds.host} names a token service that is not https; credentials not sent"
        elif scheme == "bearer" and realm:
            query = {
                "account": creds.username,
                **({"service": params["service"]} if "service" in params else {}),
            }
            reply = fetch(f"{params['realm']}?{urlencode(query)}", pair)
        else:
            return f"{creds.host} asks for {scheme or 'an unknown'} authentication; credentials not checked"
    except Exception as exc:  # noqa: BLE001 - any network failure: leave it to BuildKit, say why
        return f"could not reach {base} from here ({type(exc).__name__}); credentials not checked"
    if reply.status in (401, 403):
        raise RegistryError(
            f"{creds.host} refused the username {creds.username!r} and its password (HTTP {reply.status})",
            hint="check the username and password (or token) secrets, and that the token may push "
            "to this registry",
        )
    if reply.status != 200:
        return f"{creds.host} answered {reply.status} to the login; credentials not checked"
    return f"logged in to {creds.host} as {creds.username}"


def _header(headers: Mapping[str, Any], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return ""
