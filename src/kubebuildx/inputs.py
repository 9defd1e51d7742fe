"""Inputs: read once, validated once, into one frozen ``Inputs``.

The inputs themselves are declared in ``action_spec.INPUTS``. ``parse_inputs``
takes a mapping of input name to raw string and returns ``Inputs``, or raises
an ``InputError`` that names the input and the fix. It reads no environment,
but it does check that the local files the inputs name (context, file,
secret-files, buildkitd-config) exist, so that a typo fails before anything
runs. Both the action (``INPUT_*`` variables) and the CLI (flags) feed it the
same mapping.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kubebuildx import hostpaths
from kubebuildx import platforms as plat
from kubebuildx.action_spec import COMPRESSION_LEVELS, IF_NO_FILES_FOUND, INPUTS
from kubebuildx.errors import InputError
from kubebuildx.oidc import AUTH_MODES
from kubebuildx.platforms import Platform

INPUT_NAMES = frozenset(spec.name for spec in INPUTS)
SPEC_BY_NAME = {spec.name: spec for spec in INPUTS}

# buildx's kubernetes driver options (driver/kubernetes/factory.go, v0.36.1).
DRIVER_OPTS = frozenset(
    {
        "image",
        "namespace",
        "replicas",
        "requests.cpu",
        "requests.memory",
        "requests.ephemeral-storage",
        "persistent-volume-claim.requests.storage",
        "limits.cpu",
        "limits.memory",
        "limits.ephemeral-storage",
        "rootless",
        "schedulername",
        "serviceaccount",
        "nodeselector",
        "annotations",
        "labels",
        "tolerations",
        "loadbalance",
        "qemu.install",
        "qemu.image",
        "buildkit-root-volume-memory",
        "default-load",
        "timeout",
    }
)
_PLATFORM_PREFIX = re.compile(r"^(?P<platform>[a-z0-9_]+/[a-z0-9_]+(?:/[a-z0-9_]+)?):(?P<opt>[^=/:]+=.*)$")
# resource.Quantity's syntax, as buildx's kubernetes driver parses it
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_QUANTITY_KEYS = frozenset({"persistent-volume-claim.requests.storage", "buildkit-root-volume-memory"})
_DNS_LABEL = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")
_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_TOLERATION_FIELDS = frozenset({"key", "operator", "value", "effect", "tolerationSeconds"})
BUILDER_NAME_MAX = 40  # leaves room for "-linux-arm-v7" in a 63-character Deployment name


@dataclass(frozen=True)
class Inputs:
    kubeconfig: str = field(default="", repr=False)
    kube_context: str = ""
    namespace: str = ""
    auth: str = ""
    audience: str = "kubebuildx"
    token: str = field(default="", repr=False)
    server: str = ""
    certificate_authority_data: str = ""
    builder: str = ""
    platforms: tuple[Platform, ...] = ()
    driver_opts: tuple[tuple[str, str], ...] = ()
    platform_driver_opts: tuple[tuple[Platform, tuple[tuple[str, str], ...]], ...] = ()
    buildkitd_flags: str = ""
    buildkitd_config: str = ""
    buildkitd_config_inline: str = ""
    cleanup: bool = True
    qemu_fallback: bool = False
    context: str = "."
    file: str = ""
    target: str = ""
    build_args: tuple[str, ...] = ()
    build_contexts: tuple[str, ...] = ()
    secrets: tuple[str, ...] = field(default=(), repr=False)
    secret_files: tuple[str, ...] = ()
    secret_envs: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    annotations: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    push: bool = False
    outputs: tuple[str, ...] = ()
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    no_cache: bool = False
    no_cache_filters: tuple[str, ...] = ()
    pull: bool = False
    ulimit: tuple[str, ...] = ()
    shm_size: str = ""
    network: str = ""
    allow: tuple[str, ...] = ()
    provenance: str = ""
    sbom: str = ""
    attests: tuple[str, ...] = ()
    image: str = ""
    mode: str = "build"
    digests: tuple[str, ...] = ()
    registry: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    docker_config: str = field(default="", repr=False)
    upload_artifacts: bool = True
    artifact_name: str = ""
    artifact_per_platform: bool = True
    retention_days: int | None = None
    compression_level: int = 6
    if_no_files_found: str = "warn"
    overwrite: bool = False

    @property
    def persistent_storage(self) -> bool:
        """A node keeps its cache on a volume: buildx then makes a StatefulSet."""
        key = "persistent-volume-claim.requests.storage"
        return any(k == key for k, _ in self.driver_opts) or any(
            k == key for _, opts in self.platform_driver_opts for k, _ in opts
        )

    def driver_opts_for(self, platform: Platform) -> dict[str, str]:
        """Options for one node: the common ones, then that platform's own."""
        opts = dict(self.driver_opts)
        for p, extra in self.platform_driver_opts:
            if p == platform:
                opts.update(extra)
        return opts


def split_list(raw: str, *, ignore_comma: bool = False, quote: bool = True) -> tuple[str, ...]:
    """docker/actions-toolkit's ``Util.getList``: the text is CSV (a quoted
    item may hold commas, newlines and ``""``); each record gives its items,
    or with ``ignore_comma`` stays whole. With ``quote=False`` quotes are
    plain characters, so a line is kept exactly as written."""
    if not raw.strip():
        return ()
    if not quote:
        records = [line.split(",") for line in raw.splitlines()]
    else:
        try:
            records = list(csv.reader(io.StringIO(raw, newline="")))
        except csv.Error:
            records = [line.split(",") for line in raw.splitlines()]
    out: list[str] = []
    for record in records:
        items = record
        if ignore_comma:
            items = [",".join(record)]
        elif len(record) == 1:  # a lone quoted item is split too: "linux/arm64,linux/arm/v7"
            items = record[0].split(",")
        out.extend(item.strip() for item in items if item.strip())
    return tuple(out)


# build-push-action reads these with ignoreComma: a comma belongs to the value.
_IGNORE_COMMA = frozenset(
    {
        "build-args",
        "build-contexts",
        "secrets",
        "secret-files",
        "labels",
        "annotations",
        "outputs",
        "cache-from",
        "cache-to",
        "ulimit",
        "attests",
        "driver-opts",
    }
)
# ...and these also with quote: false: quotes stay part of the value.
_KEEP_QUOTES = frozenset({"outputs", "driver-opts"})


def _bool(name: str, raw: str) -> bool:
    value = raw.strip()
    if value in {"true", "True", "TRUE"}:
        return True
    if value in {"false", "False", "FALSE"}:
        return False
    raise InputError(
        f"input {name!r} must be true or false, got {value!r}", hint=f"set {name}: true or false"
    )


def _int(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise InputError(f"input {name!r} must be a whole number, got {raw.strip()!r}") from None
    if not low <= value <= high:
        raise InputError(f"input {name!r} must be between {low} and {high}, got {value}")
    return value


def _key_values(name: str, items: tuple[str, ...]) -> None:
    for n, item in enumerate(items, 1):
        if "=" not in item or item.startswith("="):
            # a secret without its key= is the secret itself: never quote it
            shown = f"item {n}" if name == "secrets" else repr(item.split("=")[0]) + "..."
            raise InputError(
                f"input {name!r}: {shown} is not of the form key=value",
                hint=f"write one key=value per line in {name}",
            )


def parse_duration(text: str) -> float | None:
    """Seconds in a Go duration without sign (``90s``, ``1h30m``, ``1.5m``); None when it is not one."""
    if not _DURATION.match(text):
        return None
    return sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))


def _toleration_pairs(value: str) -> list[list[list[str]]]:
    """``tolerations`` split as buildx splits it: by ``;``, then ``,``, then ``=``."""
    return [[pair.split("=") for pair in item.split(",")] for item in value.split(";")]


def parse_tolerations(value: str) -> tuple[dict[str, str], ...]:
    """buildx's ``tolerations`` driver option: ``key=k,operator=Exists,effect=E;...``."""
    out = []
    for item in _toleration_pairs(value):
        fields = {}
        for kv in item:
            if kv[0].strip():
                fields[kv[0].strip()] = "=".join(kv[1:]).strip()
        if fields:
            out.append(fields)
    return tuple(out)


def parse_driver_opts(
    lines: tuple[str, ...],
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[Platform, tuple[tuple[str, str], ...]], ...]]:
    """Split ``driver-opts`` lines into common and per-platform options and
    check every key against what buildx's kubernetes driver accepts."""
    common: dict[str, str] = {}
    per: dict[Platform, dict[str, str]] = {}
    for line in lines:
        target: dict[str, str] = common
        opt = line
        match = _PLATFORM_PREFIX.match(line)
        if match:
            target = per.setdefault(plat.parse(match["platform"], "driver-opts"), {})
            opt = match["opt"]
        key, sep, value = opt.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(
                f"driver-opts line {line!r} is not of the form key=value",
                hint="write e.g. replicas=2, or linux/arm64:requests.cpu=4",
            )
        if key == "namespace":
            raise InputError("driver-opts cannot set namespace", hint="use the `namespace` input instead")
        if key not in DRIVER_OPTS and not (key.startswith("env.") and len(key) > 4):
            raise InputError(
                f"driver-opts: {key!r} is not an option of buildx's kubernetes driver",
                hint="valid options: " + ", ".join(sorted(DRIVER_OPTS - {"namespace"})) + ", env.<NAME>",
            )
        value = value.strip()
        if (key.startswith(("requests.", "limits.")) or key in _QUANTITY_KEYS) and not _QUANTITY.match(value):
            raise InputError(
                f"driver-opts {key}={value!r} is not a Kubernetes quantity",
                hint="write e.g. requests.cpu=500m, requests.memory=4Gi",
            )
        if key == "replicas":
            _int("driver-opts replicas", value, 1, 100)
        if key == "timeout" and parse_duration(value) is None:
            raise InputError(f"driver-opts timeout {value!r} is not a duration", hint="write e.g. timeout=5m")
        if key in {"rootless", "default-load", "qemu.install"}:
            _bool(f"driver-opts {key}", value)
        if key == "loadbalance" and value not in {"sticky", "random"}:
            raise InputError(f"driver-opts loadbalance must be sticky or random, got {value!r}")
        if key == "nodeselector":
            for pair in value.split(","):
                if pair.split("=", 1)[0].strip() == "kubernetes.io/arch":
                    raise InputError(
                        "driver-opts nodeselector cannot set kubernetes.io/arch",
                        hint="kubebuildx pins each node to its platform's architecture; choose "
                        "architectures with the `platforms` input",
                    )
        # buildx parses these only when it boots the builder (driver/kubernetes/factory.go):
        # fail now, with the same rules.
        if key in {"nodeselector", "labels", "annotations"} and any(
            len(pair.split("=")) != 2 for pair in value.strip('"').split(",")
        ):
            raise InputError(
                f"driver-opts {key} must be key=value pairs separated by commas, got {value!r}",
                hint=f"write e.g. {key}=a=1,b=2 (a value cannot hold '=' or ',')",
            )
        if key == "tolerations":
            # buildx reads only key=value pairs, and refuses an unknown key among them
            pairs = [kv for item in _toleration_pairs(value) for kv in item]
            bad = [kv[0] for kv in pairs if len(kv) == 2 and kv[0] not in _TOLERATION_FIELDS]
            if bad:
                raise InputError(
                    f"driver-opts tolerations: {bad[0]!r} is not a toleration field",
                    hint="write e.g. tolerations=key=arch,operator=Equal,value=arm64,effect=NoSchedule"
                    " (several separated by ';')",
                )
        target[key] = value
    return tuple(sorted(common.items())), tuple(
        (p, tuple(sorted(opts.items()))) for p, opts in sorted(per.items())
    )


def parse_inputs(raw: Mapping[str, str], mounts: hostpaths.Mounts | None = None) -> Inputs:
    """Validate every input; the first problem raises ``InputError``. With ``mounts`` (a
    runner's container action), host paths in the inputs become the container's paths first."""
    unknown = sorted(set(raw) - INPUT_NAMES)
    if unknown:
        raise InputError(f"unknown input(s): {', '.join(unknown)}", hint="see the inputs table in the README")

    def get(name: str) -> str:
        value = raw.get(name)
        return SPEC_BY_NAME[name].default if value is None else value

    def lst(name: str) -> tuple[str, ...]:
        return split_list(get(name), ignore_comma=name in _IGNORE_COMMA, quote=name not in _KEEP_QUOTES)

    values: dict[str, object] = {}
    for spec in INPUTS:
        attr = spec.name.replace("-", "_")
        text = get(spec.name)
        if spec.kind == "bool":
            values[attr] = _bool(spec.name, text or spec.default)
        elif spec.kind == "list":
            values[attr] = lst(spec.name)
        elif spec.kind == "int":
            values[attr] = None if not text.strip() else text.strip()
        elif spec.name != "kubeconfig":
            values[attr] = text.strip()
        else:
            values[attr] = text

    values["platforms"] = plat.parse_list(lst("platforms"))
    values["driver_opts"], values["platform_driver_opts"] = parse_driver_opts(lst("driver-opts"))
    # As actions/upload-artifact: 0 means the repository's default; the service caps the rest.
    days = (
        None
        if values["retention_days"] is None
        else _int("retention-days", str(values["retention_days"]), 0, 400)
    )
    values["retention_days"] = days or None
    low, high = COMPRESSION_LEVELS[0], COMPRESSION_LEVELS[-1]
    values["compression_level"] = _int(
        "compression-level", str(values["compression_level"] or "6"), low, high
    )
    if values["if_no_files_found"] not in IF_NO_FILES_FOUND:
        raise InputError(
            f"input 'if-no-files-found' must be warn, error or ignore, got {values['if_no_files_found']!r}"
        )
    for name in ("build-args", "secrets", "secret-files", "secret-envs", "labels"):
        _key_values(name, lst(name))
    _check_secret_ids({name: lst(name) for name in ("secrets", "secret-files", "secret-envs")})

    inputs = Inputs(**hostpaths.apply(values, mounts or hostpaths.Mounts()))  # type: ignore[arg-type]
    _check_combinations(inputs)
    if inputs.mode != "merge":
        _check_files(inputs)
    return inputs


# What a secret id may be: BuildKit takes any string, but ours go into `--secret id=ID,src=FILE`
# (CSV: a comma or a quote would change the fields) and name a file of the run (`secret_file_name`).
_SECRET_ID = re.compile(r"^[A-Za-z0-9_.-][A-Za-z0-9_./-]*$")


def secret_file_name(secret_id: str) -> str:
    """The file a ``secrets`` item is written to: its id, with ``/`` as ``_`` (one folder)."""
    return secret_id.replace("/", "_")


def _check_secret_ids(items: Mapping[str, tuple[str, ...]]) -> None:
    """Every secret id valid and used once, checked before anything runs: ``..`` named the
    secrets folder itself, and ``a/b`` and ``a_b`` were written to one file, so the build got
    the wrong secret."""
    seen: dict[str, str] = {}
    files: dict[str, str] = {}
    for name, entries in items.items():
        for n, item in enumerate(entries, 1):
            key = item.partition("=")[0].strip()
            if not _SECRET_ID.match(key) or ".." in key.split("/") or key in {".", ".."}:
                raise InputError(
                    f"input {name!r}: item {n} has a secret id that is not a name (letters, digits, "
                    "'_', '.', '-' and '/', not '.' or '..')",
                    hint=f"give each line of {name} an id such as npm_token or aws/credentials",
                )
            if key in seen:
                raise InputError(
                    f"input {name!r}: secret id {key!r} is also given in {seen[key]}",
                    hint="give each secret its own id",
                )
            seen[key] = f"input {name!r}"
            if name == "secrets":
                file = secret_file_name(key)
                if file in files:
                    raise InputError(
                        f"input 'secrets': secret ids {files[file]!r} and {key!r} would be written to "
                        "the same file",
                        hint="rename one of them: ids that differ only in '/' against '_' collide",
                    )
                files[file] = key


_REMOTE_CONTEXT = re.compile(r"^(https?://|git@|git://|ssh://)|^-$")


def _check_files(inputs: Inputs) -> None:
    """Local paths the build will read, checked now rather than after the builder booted."""
    if not _REMOTE_CONTEXT.match(inputs.context):
        if not Path(inputs.context).is_dir():
            raise InputError(
                f"context {inputs.context!r} is not a folder",
                hint="give a folder relative to the workspace (check out the repository first), or a Git URL",
            )
        if inputs.file and not Path(inputs.file).is_file():
            raise InputError(
                f"file {inputs.file!r} does not exist",
                hint="the Dockerfile path is relative to the workspace, not to the context",
            )
    for item in inputs.secret_files:
        key, _, src = item.partition("=")
        if not Path(src).is_file():
            raise InputError(f"secret-files: {src!r} (for {key}) does not exist")


def _check_credentials(inputs: Inputs) -> None:
    """auth, token and server: one source of credentials, one of the cluster."""
    if inputs.auth not in AUTH_MODES:
        raise InputError(
            f"input 'auth' must be github-oidc or empty, got {inputs.auth!r}",
            hint="set auth: github-oidc, or leave it empty for the kubeconfig's own credentials",
        )
    if inputs.auth and inputs.token:
        raise InputError(
            "auth: github-oidc and token are both set", hint="keep one source of credentials for the cluster"
        )
    if inputs.auth and not inputs.audience:
        raise InputError("auth: github-oidc needs an audience", hint="set audience (default: kubebuildx)")
    if (inputs.server or inputs.certificate_authority_data) and inputs.kubeconfig.strip():
        raise InputError(
            "server (or certificate-authority-data) and kubeconfig are both set",
            hint="give the cluster either as a kubeconfig or as server and certificate-authority-data",
        )
    if inputs.certificate_authority_data and not inputs.server:
        raise InputError("certificate-authority-data is set without server", hint="set server too")
    if inputs.server and not inputs.server.startswith("https://"):
        raise InputError(
            "input 'server' must be an https:// URL", hint="e.g. server: https://203.0.113.10:6443"
        )
    if inputs.server and not (inputs.auth or inputs.token):
        raise InputError(
            "server is set but gives no credentials",
            hint="set auth: github-oidc, or a token from an earlier step, or give a whole kubeconfig",
        )


def _check_combinations(inputs: Inputs) -> None:
    _check_credentials(inputs)
    if inputs.builder and (not _DNS_LABEL.match(inputs.builder) or len(inputs.builder) > BUILDER_NAME_MAX):
        raise InputError(
            f"builder name {inputs.builder!r} cannot name Kubernetes Deployments",
            hint=f"use lowercase letters, digits and '-', starting with a letter, at most "
            f"{BUILDER_NAME_MAX} characters",
        )
    if inputs.namespace and not _DNS_LABEL.match(inputs.namespace):
        raise InputError(f"namespace {inputs.namespace!r} is not a valid Kubernetes namespace name")
    if inputs.buildkitd_config and inputs.buildkitd_config_inline:
        raise InputError(
            "buildkitd-config and buildkitd-config-inline are both set", hint="set only one of them"
        )
    if inputs.buildkitd_config and not Path(inputs.buildkitd_config).is_file():
        raise InputError(
            f"buildkitd-config file {inputs.buildkitd_config!r} does not exist",
            hint="give a path relative to the workspace, or use buildkitd-config-inline",
        )
    if inputs.push and inputs.outputs:
        raise InputError(
            "push and outputs are both set",
            hint="push is a shorthand for outputs: type=registry; keep one of them",
        )
    if inputs.push and any(o.startswith(("type=local", "type=tar")) for o in inputs.outputs):
        raise InputError("push cannot be combined with a local or tar output")
    if inputs.push and not inputs.tags and not inputs.image:
        raise InputError(
            "push is set but there are neither tags nor an image",
            hint="set tags (e.g. ghcr.io/owner/app:latest), or image (e.g. ghcr.io/owner/app) to push "
            "by digest and merge the platforms in a later job (mode: merge)",
        )
    if inputs.image and ("@" in inputs.image or ":" in inputs.image.rpartition("/")[2]):
        raise InputError(
            f"image {inputs.image!r} names a tag or digest",
            hint="give the repository only (e.g. ghcr.io/owner/app); tags go in the tags input",
        )
    if inputs.mode not in {"build", "merge"}:
        raise InputError(f"input 'mode' must be build or merge, got {inputs.mode!r}")
    if inputs.mode == "merge":
        _check_merge(inputs)
    elif inputs.digests:
        raise InputError("digests is set but mode is build", hint="set mode: merge to merge digests")
    for p, _ in inputs.platform_driver_opts:
        if inputs.platforms and p not in inputs.platforms:
            raise InputError(
                f"driver-opts names platform {p}, which is not among the platforms "
                f"({plat.join(inputs.platforms)})",
                hint=f"add {p} to platforms or remove its driver-opts line",
            )


def _check_merge(inputs: Inputs) -> None:
    for name, value, hint in (
        ("tags", inputs.tags, "the tags of the multi-platform image, e.g. ghcr.io/owner/app:1.0"),
        ("platforms", inputs.platforms, "every platform the build jobs built, e.g. linux/amd64,linux/arm64"),
        ("digests", inputs.digests, "the folder the digest artifacts were downloaded to"),
    ):
        if not value:
            raise InputError(f"mode: merge needs {name}", hint=f"set {name}: {hint}")
