"""Certificates and keys for the proving ground, made with Debian's openssl CLI.

Every file is made once and kept: a warm `up` reuses them, so kubeconfigs that
tests copied stay valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from proc import run

DAYS = "3650"
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Leaf:
    name: str  # file stem: <name>.crt, <name>.key
    common_name: str
    organization: str | None = None
    server_names: tuple[str, ...] = ()  # subjectAltName entries, "IP:..." or "DNS:..."
    server: bool = False
    client: bool = False


def _subject(common_name: str, organization: str | None) -> str:
    return (f"/O={organization}" if organization else "") + f"/CN={common_name}"


def _self_or_ca_signed(key: Path, crt: Path, subject: str, extra: list[str]) -> None:
    """One `openssl req -x509 -new` with a fresh EC key; ``extra`` adds the CA and extensions."""
    if crt.exists() and key.exists():
        return
    run(
        ["openssl", "req", "-x509", "-new", *EC_KEY, "-keyout", str(key), "-out", str(crt),
         "-subj", subject, "-days", DAYS, *extra],
        quiet=True,
    )  # fmt: skip
    key.chmod(0o600)


def make_ca(directory: Path, name: str, common_name: str) -> None:
    _self_or_ca_signed(directory / f"{name}.key", directory / f"{name}.crt", _subject(common_name, None), [])


def make_leaf(directory: Path, ca: str, leaf: Leaf) -> None:
    usages = [u for u, on in (("serverAuth", leaf.server), ("clientAuth", leaf.client)) if on]
    extra = [
        "-CA", str(directory / f"{ca}.crt"), "-CAkey", str(directory / f"{ca}.key"),
        "-addext", "basicConstraints=critical,CA:FALSE",
        "-addext", "keyUsage=critical,digitalSignature,keyEncipherment",
        "-addext", "extendedKeyUsage=" + ",".join(usages),
    ]  # fmt: skip
    if leaf.server_names:
        extra += ["-addext", "subjectAltName=" + ",".join(leaf.server_names)]
    subject = _subject(leaf.common_name, leaf.organization)
    _self_or_ca_signed(directory / f"{leaf.name}.key", directory / f"{leaf.name}.crt", subject, extra)


def make_service_account_key(directory: Path) -> None:
    """RSA pair that signs and checks ServiceAccount tokens (sa.key, sa.pub)."""
    key, pub = directory / "sa.key", directory / "sa.pub"
    if key.exists() and pub.exists():
        return
    run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key)],
        quiet=True,
    )
    key.chmod(0o600)
    run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], quiet=True)


LOOPBACK = ("IP:127.0.0.1", "DNS:localhost")
LEAVES = (
    Leaf(
        "apiserver",
        "kube-apiserver",
        server=True,
        server_names=(
            *LOOPBACK,
            "IP:10.96.0.1",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ),
    ),
    Leaf("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters", client=True),
    Leaf("admin", "kubebuildx-admin", "system:masters", client=True),
    Leaf("controller-manager", "system:kube-controller-manager", client=True),
    Leaf("scheduler", "system:kube-scheduler", client=True),
    # kwok serves the kubelet API (exec, logs) that the apiserver calls.
    Leaf("kwok-serving", "kwok", server=True, server_names=LOOPBACK),
)


def ensure(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    make_ca(directory, "ca", "kubebuildx-proving-ground-ca")
    # A second CA that signs nothing the cluster trusts: the wrong-CA kubeconfig uses it.
    make_ca(directory, "wrong-ca", "kubebuildx-wrong-ca")
    for leaf in LEAVES:
        make_leaf(directory, "ca", leaf)
    make_service_account_key(directory)
