"""From inputs to a builder spec: which buildx nodes, on which Kubernetes
nodes, with which driver options. Pure functions over plain data.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shlex
import shutil
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from kubebuildx.errors import InputError
from kubebuildx.inputs import BUILDER_NAME_MAX, Inputs
from kubebuildx.kube import ARCH_LABEL, OS_LABEL
from kubebuildx.platforms import Platform
from kubebuildx.preflight import Plan

NETWORK_HOST_FLAG = "--allow-insecure-entitlement=network.host"


@dataclass(frozen=True)
class NodeSpec:
    """One buildx node: one BuildKit Deployment serving one platform."""

    name: str
    platform: Platform
    driver_opts: tuple[tuple[str, str], ...]
    emulated_on: Platform | None = None  # qemu-fallback: the CPU that emulates ``platform``


@dataclass(frozen=True)
class BuilderSpec:
    name: str
    namespace: str
    nodes: tuple[NodeSpec, ...]
    flags: tuple[str, ...]
    files: tuple[tuple[str, bytes], ...] = ()

    @property
    def platforms(self) -> tuple[Platform, ...]:
        return tuple(n.platform for n in self.nodes)


def buildx_command() -> list[str]:
    """Standalone ``buildx`` when on PATH, else the docker CLI plugin: every stage calls buildx so."""
    if shutil.which("buildx"):
        return ["buildx"]
    return ["docker", "buildx"]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def default_builder_name(
    env: Mapping[str, str], platforms: tuple[Platform, ...], keep: bool, nonce: str = ""
) -> str:
    """A name no other job collides with.

    With cleanup on, the name is the run id and a random part: matrix legs
    share the job id, the action id and often the platforms, so nothing in the
    environment tells them apart, and one leg's cleanup must never remove
    another's builder (the post step reads the name from the saved state).
    With cleanup off, it is stable per repository and platform set, so the
    next run finds the warm builder and its cache.
    """
    if keep:
        seed = f"{env.get('GITHUB_REPOSITORY', '')}|{','.join(str(p) for p in platforms)}|warm"
        return f"kbx-warm-{hashlib.sha256(seed.encode()).hexdigest()[:8]}"
    run = _slug(env.get("GITHUB_RUN_ID", ""))[:12] or "cli"
    return f"kbx-{run}-{nonce or secrets.token_hex(4)}"[:BUILDER_NAME_MAX]


def node_name(builder: str, platform: Platform) -> str:
    """``<builder>-linux-arm64``: a DNS label, and the Deployment's name."""
    return f"{builder}-{platform.slug}"


def _node_selector(platform: Platform, extra: str) -> str:
    pairs = [f"{ARCH_LABEL}={platform.arch}", f"{OS_LABEL}={platform.os}"]
    for item in extra.split(","):
        pair = item.strip()
        if pair and pair.split("=", 1)[0] != OS_LABEL:
            pairs.append(pair)
    return ",".join(pairs)


def _entitlements_seen_by_buildx(args: list[str]) -> list[str]:
    """The ``--allow-insecure-entitlement`` values buildx finds: it parses the
    flags with a pflag set that knows only that flag, and pflag stops at the
    first other flag, so an entitlement after e.g. ``--debug`` is not seen."""
    found: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            break
        if len(arg) < 2 or not arg.startswith("-"):
            continue  # a positional argument: pflag reads on
        name, eq, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if name != "allow-insecure-entitlement":
            break  # an unknown flag (or -x, --help): pflag stops with an error
        if not eq:
            if not rest:
                break
            value = rest.pop(0)
        found.append(value)
    return found


def buildkitd_flags(flags: str, config: bytes | None) -> tuple[str, ...]:
    """buildx's parseBuildkitdFlags: the user's flags, plus the network.host
    entitlement that buildx adds for container drivers unless the user chose
    entitlements themselves (in flags or in the config)."""
    try:
        parsed = shlex.split(flags)
    except ValueError as exc:
        raise InputError(f"buildkitd-flags cannot be parsed: {exc}") from None
    chosen = bool(_entitlements_seen_by_buildx(parsed))
    in_config = False
    if config:
        # BuildKit's config.Config: Entitlements `toml:"insecure-entitlements"`
        entitlements = read_config(config)[1].get("insecure-entitlements") or []
        in_config = "network.host" in entitlements
    if not chosen and not in_config:
        parsed.append(NETWORK_HOST_FLAG)
    return tuple(parsed)


def plan(
    inputs: Inputs,
    *,
    name: str,
    namespace: str,
    native: tuple[Platform, ...],
    emulated: Mapping[Platform, Platform] | None = None,
    config: bytes | None = None,
    files: tuple[tuple[str, bytes], ...] | None = None,
) -> BuilderSpec:
    """One node per platform, pinned to nodes of that architecture.

    ``native`` platforms get a node on their own CPU; ``emulated`` (only with
    qemu-fallback) maps a platform to the CPU whose nodes emulate it.
    """
    emulated = dict(emulated or {})
    nodes = []
    for platform in (*native, *emulated):
        opts = inputs.driver_opts_for(platform)
        host = emulated.get(platform, platform)
        opts["nodeselector"] = _node_selector(host, opts.get("nodeselector", ""))
        opts["namespace"] = namespace
        if platform in emulated:
            opts.setdefault("qemu.install", "true")
        nodes.append(
            NodeSpec(
                node_name(name, platform),
                platform,
                tuple(sorted(opts.items())),
                emulated_on=emulated.get(platform),
            )
        )
    if files is None:
        files = (("buildkitd.toml", config),) if config else ()
    return BuilderSpec(name, namespace, tuple(nodes), buildkitd_flags(inputs.buildkitd_flags, config), files)


def read_config(config: bytes) -> tuple[str, dict[str, Any]]:
    """The BuildKit config as text and as TOML, or InputError: the one place it is parsed."""
    try:
        text = config.decode()
        return text, tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"the BuildKit config is not valid TOML: {exc}") from None


BUILDKIT_CONFIG_DIR = "/etc/buildkit"  # where buildx's kubernetes driver mounts the config files


def config_files(config: bytes, read: Callable[[str], bytes]) -> tuple[tuple[str, bytes], ...]:
    """The config and the registry certificates it names, as buildx's
    confutil.LoadConfigFiles lays them out: each CA and key pair file travels
    as ``certs/<registry>/<file>``, and the config points at where the driver
    mounts it (``/etc/buildkit/certs/...``), not at a path on this machine."""
    text, data = read_config(config)
    extra: dict[str, bytes] = {}
    for registry, conf in (data.get("registry") or {}).items():
        if not isinstance(conf, dict):
            continue
        prefix = "certs/" + re.sub(r"[^a-zA-Z0-9.-]+", "_", registry)
        paths = [p for p in conf.get("ca") or [] if isinstance(p, str)]
        for pair in conf.get("keypair") or []:
            paths += [
                pair[k] for k in ("key", "cert") if isinstance(pair, dict) and isinstance(pair.get(k), str)
            ]
        for path in paths:
            name = f"{prefix}/{PurePosixPath(path).name}"
            try:
                extra[name] = read(path)
            except OSError:
                raise InputError(
                    f"the BuildKit config names {path!r} for registry {registry}, which cannot be read",
                    hint="give a path relative to the workspace, or embed the certificate next to the config",
                ) from None
            for quote in ('"', "'"):
                text = text.replace(f"{quote}{path}{quote}", f"{quote}{BUILDKIT_CONFIG_DIR}/{name}{quote}")
    return (("buildkitd.toml", text.encode()), *sorted(extra.items()))


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def buildkit_config(inputs: Inputs, read: Callable[[str], bytes] = _read) -> bytes | None:
    """The BuildKit config: inline, or the file parse_inputs checked exists."""
    if inputs.buildkitd_config_inline:
        return inputs.buildkitd_config_inline.encode()
    if inputs.buildkitd_config:
        return read(inputs.buildkitd_config)
    return None


def spec_for(
    inputs: Inputs,
    env: Mapping[str, str],
    namespace: str,
    placement: Plan,
    read: Callable[[str], bytes] = _read,
) -> BuilderSpec:
    """The builder for preflight's plan: its name, nodes, flags and config files."""
    name = inputs.builder or default_builder_name(env, placement.platforms, keep=not inputs.cleanup)
    config = buildkit_config(inputs, read)
    return plan(
        inputs,
        name=name,
        namespace=namespace,
        native=placement.native,
        emulated=placement.emulated,
        config=config,
        files=config_files(config, read) if config else (),
    )
