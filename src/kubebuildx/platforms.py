"""Platforms: parsing, normalising and naming, the way containerd and buildx do it.

One ``Platform`` value per target. Names derived from it are used everywhere
(builder node names, output folders, artifact names), so they live here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from kubebuildx.errors import InputError

# containerd's platforms.Normalize, for the architectures a cluster may have.
_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armhf": "arm",
    "armel": "arm",  # with variant v6, below
    "i386": "386",
    "i686": "386",
}
_DEFAULT_VARIANT = {"arm": "v7"}
_KNOWN_OS = {"linux", "windows", "darwin", "freebsd"}
# containerd's specifier grammar (containerd/platforms platforms.go: osAndVersionRe without the
# "(OSVersion)" part, and specifierRe for the architecture and variant)...
_OS_PART = re.compile(r"^[a-z0-9_-]+$")
_PART = re.compile(r"^[a-z0-9_.-]+$")
# ...narrowed to what can name things: once normalised, every part goes into a Deployment name
# (kbx-1-linux-arm-v7, a DNS label), a folder and an artifact name. containerd takes
# linux/amd64/.. and linux/riscv64/-; the builder would only fail at boot with an invalid name.
_NAME_PART = re.compile(r"^[a-z0-9]+$")
_FORM_HINT = "write platforms like linux/amd64, linux/arm64 or linux/arm/v7"


@dataclass(frozen=True, order=True)
class Platform:
    os: str
    arch: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.arch, self.variant) if p)

    @property
    def slug(self) -> str:
        """``linux-arm-v7``: for Kubernetes names and artifact names."""
        return "-".join(p for p in (self.os, self.arch, self.variant) if p)

    @property
    def folder(self) -> str:
        """``linux_arm_v7``: the subfolder buildx's local exporter writes for this platform."""
        return "_".join(p for p in (self.os, self.arch, self.variant) if p)

    def oci(self) -> dict[str, str]:
        """The OCI image-spec platform object, as buildx stores it."""
        out = {"architecture": self.arch, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out

    def same_cpu(self, other: Platform) -> bool:
        """True when one CPU serves both: same OS and architecture; the variant
        only matters for 32-bit arm, where v6/v7 differ in what runs."""
        if (self.os, self.arch) != (other.os, other.arch):
            return False
        return self.arch != "arm" or self.variant == other.variant


def parse(text: str, source: str = "platforms") -> Platform:
    """Parse ``os/arch[/variant]`` (or a bare ``arch``, meaning linux).

    ``source`` names the input the text came from, for the message."""
    raw = text.strip().lower()
    parts = raw.split("/")
    shown = repr(text.strip()[:80])
    grammar = [_OS_PART, _PART, _PART] if len(parts) > 1 else [_PART]
    if not raw or len(parts) > 3 or not all(g.match(p) for g, p in zip(grammar, parts, strict=False)):
        raise InputError(f"{source}: platform {shown} is not of the form os/arch[/variant]", hint=_FORM_HINT)
    if len(parts) == 1:
        parts = ["linux", parts[0]]
    os_name, arch = parts[0], _ARCH_ALIASES.get(parts[1], parts[1])
    if os_name not in _KNOWN_OS:
        raise InputError(
            f"{source}: platform {shown} names an unknown OS {os_name!r}",
            hint="the OS part comes first: linux/arm64, not arm64/linux",
        )
    variant = parts[2] if len(parts) == 3 else _DEFAULT_VARIANT.get(arch, "")
    if parts[1] == "armel":
        variant = "v6"  # containerd: armel is arm/v6, armhf arm/v7
    if arch == "arm" and variant in {"5", "6", "7", "8"}:
        variant = "v" + variant  # containerd accepts linux/arm/7 for linux/arm/v7
    if arch == "arm64" and variant in {"8", "v8", "v8.0"}:
        variant = ""  # containerd normalises arm64/v8 to arm64
    if arch == "amd64" and variant == "v1":
        variant = ""
    bad = next((p for p in (arch, variant) if p and not _NAME_PART.match(p)), None)
    if bad is not None:
        raise InputError(
            f"{source}: platform {shown} has a part, {bad!r}, that cannot name the builder's Deployment "
            "(only lowercase letters and digits)",
            hint=_FORM_HINT,
        )
    return Platform(os_name, arch, variant)


def parse_list(items: Iterable[str], source: str = "platforms") -> tuple[Platform, ...]:
    """Parse a list of platforms (each item may hold several, comma-separated);
    duplicates are dropped, first mention wins the order."""
    seen: dict[Platform, None] = {}
    for item in items:
        for part in item.split(","):
            if part.strip():
                seen.setdefault(parse(part, source), None)
    return tuple(seen)


def join(platforms: Iterable[Platform]) -> str:
    return ",".join(str(p) for p in platforms)
