"""The proving ground: a heterogeneous Kubernetes cluster with native BuildKit on one machine.

  etcd -> kube-apiserver -> kube-controller-manager, kube-scheduler   (Kubernetes, loopback only)
  kwok (one process per node) -> nodes kwok-amd64, kwok-arm64          (pods become Running/Ready)
  podkit -> one buildkitd per builder pod, on the host                 (the arm64 ones through qemu)
  dockerd (Debian's docker.io, no bridge, no iptables)                 (builds and runs the action image)

Exec routing: each node has its own kwok process, which serves the kubelet API
for that node only, and reads kwok `Exec` objects from the cluster
(--enable-crds=Exec). The podkit controller (podkit.py) starts a buildkitd of the
node's architecture for every pod the scheduler puts on a kwok node and creates
that pod's Exec, which runs `buildctl dial-stdio` on the host with BUILDKIT_HOST
set to the pod's own daemon. There is no ClusterExec: kwok falls back to one for
a pod without an Exec, which would share a daemon again without a word; without
it such an exec fails loudly.

Run through scripts/cluster (see `scripts/cluster --help`).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import images
import install
import layout as L
import oidc
import pki
import podkit
from kube import Kube
from layout import Layout
from proc import Daemon, HarnessError, processes_under, rss_mib, run, say, wait_for

HERE = Path(__file__).resolve().parent
RBAC = L.REPO / "deploy" / "rbac.yaml"
OIDC_BINDINGS = L.REPO / "deploy" / "github-oidc" / "rolebinding.yaml"
FAULT_TAINT = "kubebuildx.dev/fault=true:NoSchedule"
TOKEN_SECONDS = 7 * 24 * 3600
# podkit.py needs only the standard library; a fixed interpreter keeps its argv[0], by which
# `down` finds it, the same whichever Python runs scripts/cluster.
PODKIT_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


# ---------------------------------------------------------------- daemons


def daemons(lay: Layout) -> list[Daemon]:
    """Every daemon in start order; `down` stops them in reverse."""
    p, k8s, kc = lay.pki, lay.kubernetes_bin, lay.kubeconfigs

    def d(name: str, argv: list[str], env: dict[str, str] | None = None) -> Daemon:
        return Daemon(name, tuple(argv), lay.logs / f"{name}.log", lay.run / f"{name}.pid", env or {})

    result = [
        d(
            "etcd",
            [
                str(lay.etcd_bin / "etcd"),
                "--name=kubebuildx",
                f"--data-dir={lay.etcd_data}",
                f"--listen-client-urls=http://127.0.0.1:{L.ETCD_CLIENT_PORT}",
                f"--advertise-client-urls=http://127.0.0.1:{L.ETCD_CLIENT_PORT}",
                f"--listen-peer-urls=http://127.0.0.1:{L.ETCD_PEER_PORT}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{L.ETCD_PEER_PORT}",
                f"--initial-cluster=kubebuildx=http://127.0.0.1:{L.ETCD_PEER_PORT}",
                "--quota-backend-bytes=1073741824",
                "--log-level=warn",
            ],
        ),
        # GitHub's OIDC issuer on loopback (hack/cluster/oidc.py), before the apiserver that
        # fetches its discovery document: the --authentication-config below points there.
        d(
            "oidc-issuer",
            [L.OIDC_PYTHON, str(HERE / "oidc.py"), "serve", f"--pki={p}", f"--port={L.OIDC_ISSUER_PORT}"],
        ),
        d(
            "kube-apiserver",
            [
                str(k8s / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{L.ETCD_CLIENT_PORT}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={L.APISERVER_PORT}",
                f"--tls-cert-file={p / 'apiserver.crt'}",
                f"--tls-private-key-file={p / 'apiserver.key'}",
                f"--client-ca-file={p / 'ca.crt'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={p / 'sa.pub'}",
                f"--service-account-signing-key-file={p / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--authorization-mode=RBAC",
                # deploy/github-oidc/authentication-config.yaml, discovery on the loopback issuer
                f"--authentication-config={lay.run / 'authentication-config.yaml'}",
                # buildx's builder Deployment runs its container privileged.
                "--allow-privileged=true",
                # The kubelet API (exec, logs) is served by kwok on each node's port.
                f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
                f"--kubelet-certificate-authority={p / 'ca.crt'}",
                "--kubelet-preferred-address-types=InternalIP",
                "--profiling=false",
                "--v=1",
            ],
        ),
        d(
            "kube-controller-manager",
            [
                str(k8s / "kube-controller-manager"),
                f"--kubeconfig={kc / 'controller-manager.yaml'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={L.CONTROLLER_MANAGER_PORT}",
                "--leader-elect=false",
                f"--service-account-private-key-file={p / 'sa.key'}",
                f"--root-ca-file={p / 'ca.crt'}",
                "--use-service-account-credentials=true",
                "--profiling=false",
                "--v=1",
            ],
        ),
        d(
            "kube-scheduler",
            [
                str(k8s / "kube-scheduler"),
                f"--kubeconfig={kc / 'scheduler.yaml'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={L.SCHEDULER_PORT}",
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ],
        ),
    ]
    result.append(
        d(
            "podkit",
            [
                PODKIT_PYTHON,
                str(HERE / "podkit.py"),
                str(lay.state),
                str(lay.run),
                str(lay.buildkit_bin),
                L.registry(),
            ],
        )
    )
    for index, arch in enumerate(L.ARCHES):
        port = L.KWOK_PORTS[arch]
        result.append(
            d(
                f"kwok-{arch}",
                [
                    str(lay.kwok_bin / "kwok"),
                    f"--kubeconfig={kc / 'kwok.yaml'}",
                    f"--config={lay.run / f'kwok-{arch}.yaml'}",
                    f"--manage-single-node={L.node_name(arch)}",
                    # Per-pod Exec objects from the API (podkit.py makes them), none in --config.
                    "--enable-crds=Exec",
                    # Renew a node Lease as a kubelet does: without it the only heartbeat is the
                    # node-ready Stage re-readying the node after the node controller has marked it
                    # Unknown (tainted unreachable:NoExecute) every 50 s, which a preflight can hit.
                    "--node-lease-duration-seconds=40",
                    "--node-ip=127.0.0.1",
                    f"--node-port={port}",
                    f"--server-address=127.0.0.1:{port}",
                    f"--cidr=10.244.{index}.1/24",
                    f"--tls-cert-file={p / 'kwok-serving.crt'}",
                    f"--tls-private-key-file={p / 'kwok-serving.key'}",
                ],
                env={"PATH": f"{lay.buildkit_bin}:/usr/local/bin:/usr/bin:/bin"},
            )
        )  # buildctl dial-stdio
    result.append(
        d(
            "dockerd",
            [
                L.DOCKERD,
                f"--host=unix://{lay.docker_socket}",
                f"--data-root={lay.docker_root}",
                f"--exec-root={lay.run / 'docker-exec'}",
                f"--pidfile={lay.run / 'dockerd.internal.pid'}",
                # Loopback only: no docker0 bridge and no private-range address, no NAT
                # rules; every container the tests start uses the host's network.
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--userland-proxy=false",
                "--log-level=warn",
            ],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},  # its containerd, runc and docker-init
        )
    )
    return result


# ---------------------------------------------------------------- config files


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig(server_ca: Path, user: dict[str, str], name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": name,
        "clusters": [
            {
                "name": "kubebuildx",
                "cluster": {
                    "server": f"https://127.0.0.1:{L.APISERVER_PORT}",
                    "certificate-authority-data": _b64(server_ca),
                },
            }
        ],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": "kubebuildx", "user": name}}],
    }


def _write(path: Path, text: str, mode: int = 0o600) -> bool:
    """Write atomically; True if the content changed."""
    if path.exists() and path.read_text() == text:
        path.chmod(mode)
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)
    return True


def write_component_configs(lay: Layout) -> set[str]:
    """Write the daemons' config files; return the daemons whose config changed."""
    p = lay.pki
    changed = set()

    def cert_user(stem: str) -> dict[str, str]:
        return {
            "client-certificate-data": _b64(p / f"{stem}.crt"),
            "client-key-data": _b64(p / f"{stem}.key"),
        }

    for name, stem in (
        ("admin", "admin"),
        ("controller-manager", "controller-manager"),
        ("scheduler", "scheduler"),
        ("kwok", "admin"),
    ):
        _write(
            lay.kubeconfigs / f"{name}.yaml",
            json.dumps(kubeconfig(p / "ca.crt", cert_user(stem), name), indent=2),
        )

    stages = (HERE / "kwok-stages.yaml").read_text()
    for arch in L.ARCHES:
        # No KwokConfiguration document: kwok's defaults apply only when there is none.
        # No ClusterExec either (see the module's docstring).
        if _write(lay.run / f"kwok-{arch}.yaml", stages, mode=0o644):
            changed.add(f"kwok-{arch}")
    if _write(lay.run / "podkit.registry", L.registry() + "\n", mode=0o644):
        changed.add("podkit")
    # The shipped AuthenticationConfiguration with discovery on the loopback issuer.
    oidc.ensure(p)
    if _write(lay.run / "authentication-config.yaml", oidc.rendered(p), mode=0o644):
        changed.add("kube-apiserver")
    # The registry the buildkitds were configured for, for `env` (KUBEBUILDX_REGISTRY may differ later).
    _write(lay.run / "registry", L.registry() + "\n", mode=0o644)
    return changed


# ---------------------------------------------------------------- health


def _insecure_get(url: str) -> bool:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if not url.startswith(("http://127.0.0.1:", "https://127.0.0.1:")):
        raise HarnessError(f"refusing to probe a non-loopback address: {url}")
    with urllib.request.urlopen(url, timeout=5, context=context) as response:  # noqa: S310 - loopback only
        return bool(response.status == 200)


def docker_ready(lay: Layout) -> bool:
    """The engine answers its API on its socket (GET /_ping, as the docker CLI does)."""
    if not lay.docker_socket.exists():
        return False
    with contextlib.closing(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)) as conn:
        conn.settimeout(5)
        conn.connect(str(lay.docker_socket))
        conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        return conn.recv(64).startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))


PRIVATE_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


def host_addresses() -> dict[str, list[str]]:
    """Interface name -> its IPv4 addresses, from `ip -4 -o addr`."""
    found: dict[str, list[str]] = {}
    for line in run(["ip", "-4", "-o", "addr", "show"], quiet=True).splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "inet":
            found.setdefault(fields[1], []).append(fields[3].split("/")[0])
    return found


def check_no_private_network(before: dict[str, list[str]]) -> None:
    """After the engine started: no docker0 and no new private-range address anywhere."""
    now = host_addresses()
    if "docker0" in now or Path("/sys/class/net/docker0").exists():
        raise HarnessError("the Docker engine made a docker0 bridge; it must run with --bridge=none")
    old = {a for addresses in before.values() for a in addresses}
    new_private = [
        f"{name} {address}"
        for name, addresses in now.items()
        for address in addresses
        if address not in old and any(ipaddress.ip_address(address) in n for n in PRIVATE_NETWORKS)
    ]
    if new_private:
        raise HarnessError(f"a private-range address appeared after the engine started: {new_private}")


def node_ready(kube: Kube, name: str) -> bool:
    node = kube.get("Node", name)
    conditions = (node or {}).get("status", {}).get("conditions", [])
    # After a restart the node lifecycle controller may still carry not-ready or
    # unreachable taints from before; builds right after `up` must not meet them.
    taints = (node or {}).get("spec", {}).get("taints", [])
    stale = [t for t in taints if t["key"].startswith("node.kubernetes.io/")]
    return not stale and any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def readiness(lay: Layout, kube: Kube) -> dict[str, Callable[[], bool]]:
    checks: dict[str, Callable[[], bool]] = {
        "etcd": lambda: _insecure_get(f"http://127.0.0.1:{L.ETCD_CLIENT_PORT}/health"),
        "oidc-issuer": lambda: _insecure_get(oidc.discovery_url()),
        "kube-apiserver": kube.ready,
        "kube-controller-manager": lambda: _insecure_get(
            f"https://127.0.0.1:{L.CONTROLLER_MANAGER_PORT}/healthz"
        ),
        "kube-scheduler": lambda: _insecure_get(f"https://127.0.0.1:{L.SCHEDULER_PORT}/healthz"),
    }
    checks["dockerd"] = lambda: docker_ready(lay)
    controller = next(d for d in daemons(lay) if d.name == "podkit")
    checks["podkit"] = lambda: controller.pid() is not None
    for arch in L.ARCHES:
        checks[f"kwok-{arch}"] = lambda arch=arch: _insecure_get(  # type: ignore[misc]
            f"https://127.0.0.1:{L.KWOK_PORTS[arch]}/healthz"
        )
    return checks


# ---------------------------------------------------------------- cluster objects


def load_manifests(path: Path) -> list[dict[str, Any]]:
    import yaml  # only `up` needs it; `env` runs without the venv

    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def bootstrap_objects(kube: Kube) -> None:
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": L.NAMESPACE}})
    for arch in L.ARCHES:
        name = L.node_name(arch)
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": {
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": arch,
                        "kubernetes.io/hostname": name,
                        "type": "kwok",
                    },
                    # kwok manages only nodes it is told to; this marks them as fake for humans and tools.
                    "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                },
            }
        )
    if not RBAC.exists():
        raise HarnessError(f"{RBAC} is missing; the limited identity is bound to exactly that RBAC")
    for obj in load_manifests(RBAC):
        kube.apply(obj)
    for obj in load_manifests(OIDC_BINDINGS):  # acme/widgets' main branch, as users bind theirs
        kube.apply(obj)


def apply_kwok_crds(lay: Layout, kube: Kube) -> None:
    """kwok's Exec CRD, from kwok's own module at its pin, established before kwok starts."""
    crd = load_manifests(install.kwok_exec_crd(lay))[0]
    kube.apply(crd)
    name = crd["metadata"]["name"]

    def established() -> bool:
        current = kube.get("CustomResourceDefinition", name) or {}
        conditions = current.get("status", {}).get("conditions", [])
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_for(f"CRD {name} established", established, timeout=30)


def write_identities(lay: Layout, kube: Kube) -> None:
    """Kubeconfigs for failure tests: limited ServiceAccount, invalid token, wrong CA."""
    p = lay.pki
    token = kube.token(L.NAMESPACE, L.SERVICE_ACCOUNT, TOKEN_SECONDS)
    limited = kubeconfig(p / "ca.crt", {"token": token}, "kubebuildx-limited")
    limited["contexts"][0]["context"]["namespace"] = L.NAMESPACE
    _write(lay.kubeconfigs / "limited.yaml", json.dumps(limited, indent=2))
    # Well-formed JWT shape, signed by nobody the apiserver trusts.
    header, body = (
        base64.urlsafe_b64encode(json.dumps(x).encode()).decode().rstrip("=")
        for x in ({"alg": "RS256", "kid": "invalid"}, {"sub": "system:serviceaccount:buildkit:nobody"})
    )
    bad_token = kubeconfig(p / "ca.crt", {"token": f"{header}.{body}.aW52YWxpZA"}, "kubebuildx-bad-token")
    bad_token["contexts"][0]["context"]["namespace"] = L.NAMESPACE
    _write(lay.kubeconfigs / "bad-token.yaml", json.dumps(bad_token, indent=2))
    bad_ca = kubeconfig(p / "wrong-ca.crt", {"token": token}, "kubebuildx-bad-ca")
    bad_ca["contexts"][0]["context"]["namespace"] = L.NAMESPACE
    _write(lay.kubeconfigs / "bad-ca.yaml", json.dumps(bad_ca, indent=2))


def ensure_stand_in_inputs(lay: Layout) -> bool:
    """The rootfs tars the action image's base stand-ins are made from; True if made now."""
    return any([images.ensure_rootfs(lay, arch) for arch in L.ARCHES])


def ensure_action_images(lay: Layout) -> bool:
    """Stand-ins for the Dockerfile's FROM images, in the engine and as OCI layouts."""
    names = images.standins()
    made = ensure_stand_in_inputs(lay)
    made = images.ensure_layouts(lay, names) or made
    return images.ensure_engine_images(lay, names) or made


def ensure_base_image(lay: Layout, apt: install.Apt) -> bool:
    """Build the base image layout unless present; True if it was built now."""
    if (lay.base_image / "index.json").exists():
        return False
    import baseimage

    debs = apt.download_busybox(lay.debs)
    baseimage.build(lay.base_image, L.BASE_IMAGE_TAG, debs)
    say(f"base image: {lay.base_image_context} (from {', '.join(d.name for d in debs.values())})")
    return True


# ---------------------------------------------------------------- commands


def admin(lay: Layout) -> Kube:
    return Kube(L.APISERVER_PORT, lay.pki)


def cmd_up(lay: Layout, _args: argparse.Namespace) -> int:
    started_at = time.monotonic()
    steps: list[tuple[str, float]] = []

    def step(name: str, t0: float) -> None:
        steps.append((name, time.monotonic() - t0))

    t0 = time.monotonic()
    apt, built = install.ensure_all(lay)
    step("install (apt, binfmt, Go builds)", t0)

    t0 = time.monotonic()
    for directory in (lay.logs, lay.run, lay.kubeconfigs):
        directory.mkdir(parents=True, exist_ok=True)
    pki.ensure(lay.pki)
    changed = write_component_configs(lay)
    for daemon in daemons(lay):
        if daemon.name in changed and daemon.stop():
            say(f"stopped {daemon.name}: its config changed; starting it again")
    step("certificates and configs", t0)

    kube = admin(lay)
    checks = readiness(lay, kube)
    t0 = time.monotonic()
    started = []
    addresses_before = host_addresses()
    for daemon in daemons(lay):
        if daemon.name == "podkit" and daemon.pid() is None:
            # A controller killed with the session leaves its pods' daemons, mounts and roots.
            for what in podkit.sweep(lay.state / "pods", lay.buildkit_bin):
                say(f"removed what a killed podkit left: {what}")
        if daemon.start():
            started.append(daemon.name)
        wait_for(daemon.name, checks[daemon.name], timeout=90, log=daemon.log)
        if daemon.name == "kube-apiserver":
            bootstrap_objects(kube)
            apply_kwok_crds(lay, kube)
        if daemon.name == "dockerd":
            check_no_private_network(addresses_before)
    for arch in L.ARCHES:
        wait_for(
            f"node {L.node_name(arch)} Ready",
            lambda arch=arch: node_ready(kube, L.node_name(arch)),
            timeout=60,
            log=lay.logs / f"kwok-{arch}.log",
        )
    step("daemons (started: " + (", ".join(started) or "none, all were running") + ")", t0)

    t0 = time.monotonic()
    write_identities(lay, kube)
    if ensure_base_image(lay, apt):
        built.append("base image")
    step("identities and base image", t0)

    t0 = time.monotonic()
    if ensure_action_images(lay):
        built.append("action base images")
    step("stand-ins for the action image's bases (Docker engine and OCI layouts)", t0)

    say("")
    say(f"proving ground is up (state {lay.state})")
    for name, seconds in steps:
        say(f"  {seconds:7.1f}s  {name}")
    total = time.monotonic() - started_at
    # Cold: something had to be built (binaries or the base image); warm: caches hit.
    kind = f"cold: built {', '.join(built)}" if built else "warm: nothing to build"
    say(f"  {total:7.1f}s  total ({kind}; started {len(started)} of {len(daemons(lay))} daemons)")
    say("logs:")
    for daemon in daemons(lay):
        say(f"  {daemon.name:24} {daemon.log}")
    say(f"  {'go builds':24} {lay.logs}/build-*.log")
    say('use it: eval "$(scripts/cluster env)"')
    return 0


def cmd_install(lay: Layout, args: argparse.Namespace) -> int:
    started_at = time.monotonic()
    apt, built = install.ensure_all(lay)
    if ensure_base_image(lay, apt):
        built.append("base image")
    if not args.no_rootfs and ensure_stand_in_inputs(lay):
        built.append("python rootfs for the action image's base")
    what = ", ".join(built) or "nothing (caches hit)"
    say(f"installed in {time.monotonic() - started_at:.1f}s; built: {what}")
    return 0


def pinned_version(daemon_name: str) -> str:
    """What `<argv[0]> --version` must print for the daemon of that name."""
    pins = {
        "etcd": L.ETCD_VERSION.removeprefix("v"),
        "kube-": L.KUBERNETES_VERSION,
        "kwok-": L.KWOK_VERSION,
        "dockerd": L.APT_PACKAGES["docker.io"].split("+")[0],
        "oidc-issuer": L.OIDC_PYTHON_VERSION,  # `python3 --version` of the interpreter that runs oidc.py
    }
    for prefix, version in pins.items():
        if daemon_name.startswith(prefix):
            return str(version)
    raise HarnessError(f"no pinned version for daemon {daemon_name}; add it to pinned_version()")


def tools(lay: Layout) -> dict[str, tuple[Path, str]]:
    """Binaries the tests and scripts run besides the daemons: path and pinned version."""
    return {
        "buildx": (lay.bin / "buildx", L.BUILDX_VERSION),
        "buildctl": (lay.bin / "buildctl", L.BUILDKIT_VERSION),
        "buildkitd": (lay.buildkit_bin / "buildkitd", L.BUILDKIT_VERSION),  # podkit starts one per pod
        "act": (lay.act_bin / "act", L.ACT_VERSION.removeprefix("v")),
    }


def check_binaries(lay: Layout) -> list[str]:
    """Every daemon `up` starts (by its argv[0]) and every tool exists and reports its pin."""
    # podkit is a Python script; the daemons it starts are buildkitd, checked as a tool.
    wanted = [(d.name, Path(d.argv[0]), pinned_version(d.name)) for d in daemons(lay) if d.name != "podkit"]
    wanted += [(name, path, version) for name, (path, version) in tools(lay).items()]
    problems, seen = [], set()
    if not install.kwok_exec_crd(lay).is_file():
        problems.append(f"kwok's Exec CRD: {install.kwok_exec_crd(lay)} is missing")
    for name, binary, version in wanted:
        if binary in seen:
            continue
        seen.add(binary)
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            problems.append(f"{name}: {binary} is missing")
            continue
        argv = [str(binary), "version"] if name in ("buildx",) else [str(binary), "--version"]
        try:
            printed = run(argv, quiet=True)
        except HarnessError as error:
            problems.append(f"{name}: {' '.join(argv)} failed: {error}")
            continue
        if version not in printed:
            problems.append(f"{name}: {binary} reports {printed.strip()[:120]!r}, not {version}")
        else:
            say(f"  ok  {name:24} {binary} ({version})")
    return problems


def cmd_check_fresh(lay: Layout, args: argparse.Namespace) -> int:
    """`install` into an empty cache and HOME, with the Go caches kept warm, then check
    that every binary `up` would start is there and is the pinned version."""
    go_caches = {name: install.go_env(name) for name in ("GOCACHE", "GOMODCACHE")}
    with tempfile.TemporaryDirectory(prefix="kubebuildx-fresh-") as scratch:
        fresh = Layout(cache=Path(scratch) / "cache", state=Path(scratch) / "cache" / "cluster")
        home = Path(scratch) / "home"
        home.mkdir()
        env = {
            **os.environ,
            **go_caches,
            "HOME": str(home),
            "KUBEBUILDX_CACHE": str(fresh.cache),
            "KUBEBUILDX_CLUSTER_STATE": str(fresh.state),
        }
        env.pop("XDG_CACHE_HOME", None)
        say(f"install into an empty cache {fresh.cache} and HOME {home} (Go caches: {go_caches})")
        started_at = time.monotonic()
        # The python rootfs tars are images, not binaries, and take minutes under qemu;
        # every fresh CI machine makes them anyway before the image tests use them.
        result = subprocess.run(
            [sys.executable, str(HERE / "cluster.py"), "install", "--no-rootfs"],
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        seconds = time.monotonic() - started_at
        if result.returncode != 0:
            raise HarnessError(
                f"install into an empty cache failed (exit {result.returncode}) after {seconds:.0f}s"
            )
        problems = check_binaries(fresh)
        if args.keep:
            shutil.copytree(fresh.cache, args.keep, symlinks=True, dirs_exist_ok=True)
    if problems:
        raise HarnessError("a fresh install lacks what `up` starts:\n  " + "\n  ".join(problems))
    say(f"a fresh install has every binary `up` starts, each at its pin ({seconds:.0f}s)")
    return 0


def cmd_down(lay: Layout, args: argparse.Namespace) -> int:
    for daemon in reversed(daemons(lay)):
        if daemon.stop():
            say(f"stopped {daemon.name}")
    strays = processes_under([lay.kubernetes_bin, lay.etcd_bin, lay.buildkit_bin, lay.kwok_bin])
    for pid, exe in strays:
        say(f"stopping stray {exe} (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 15)
    for what in podkit.sweep(lay.state / "pods", lay.buildkit_bin):
        say(f"removed what podkit left: {what}")
    for sock in lay.run.glob("pod-*.sock"):
        sock.unlink(missing_ok=True)
    _unmount_under(lay.state)
    _unmount_under(lay.docker_root)
    lay.docker_socket.unlink(missing_ok=True)
    busy = [port for port in _ports() if _listening(port)]
    if args.purge:
        shutil.rmtree(lay.state, ignore_errors=True)
        say(f"removed {lay.state}")
    if busy:
        raise HarnessError(f"ports still in use after down: {busy}")
    say("proving ground is down; no process of it is running and its ports are free")
    return 0


def _ports() -> list[int]:
    return [
        L.ETCD_CLIENT_PORT,
        L.ETCD_PEER_PORT,
        L.APISERVER_PORT,
        L.CONTROLLER_MANAGER_PORT,
        L.SCHEDULER_PORT,
        *L.KWOK_PORTS.values(),
        L.OIDC_ISSUER_PORT,
    ]


def _listening(port: int) -> bool:
    wanted = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[1].endswith(wanted) and fields[3] == "0A":  # 0A: LISTEN
                return True
    return False


def _unmount_under(root: Path) -> None:
    prefix = str(root.resolve()) + "/"
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        run(["umount", "-l", mount])


def environment(lay: Layout) -> dict[str, Any]:
    kc = lay.kubeconfigs
    return {
        "running": all(d.pid() is not None for d in daemons(lay)),
        "state": str(lay.state),
        "logs": str(lay.logs),
        "bin": str(lay.bin),
        "kubeconfig": {
            "admin": str(kc / "admin.yaml"),
            "limited": str(kc / "limited.yaml"),
            "bad_token": str(kc / "bad-token.yaml"),
            "bad_ca": str(kc / "bad-ca.yaml"),
        },
        "namespace": L.NAMESPACE,
        "service_account": L.SERVICE_ACCOUNT,
        "nodes": {arch: L.node_name(arch) for arch in L.ARCHES},
        "base_image": {
            "name": L.BASE_IMAGE_TAG,
            "layout": str(lay.base_image),
            "context": lay.base_image_context,
            "build_context_arg": f"{L.BASE_IMAGE_TAG}={lay.base_image_context}",
        },
        "registry": _configured_registry(lay),
        "docker": {
            "host": f"unix://{lay.docker_socket}",
            "cli": L.DOCKER_CLI,
            "act": str(lay.act_bin / "act"),
            "job_image": images.JOB_IMAGE,
            "stand_ins": list(images.standins().names),
            "stand_in_build_contexts": [images.layout_context(lay, name) for name in images.standins().names],
        },
        "apiserver": f"https://127.0.0.1:{L.APISERVER_PORT}",
        "oidc": {  # the loopback GitHub issuer: mint tokens with hack/cluster/oidc.py and this key
            "issuer": oidc.GITHUB_ISSUER,
            "discovery_url": oidc.discovery_url(),
            "ca": str(lay.pki / f"{oidc.CA}.crt"),
            "signing_key": str(lay.pki / oidc.SIGNING_KEY),
            "audience": oidc.AUDIENCE,
            "authentication_config": str(lay.run / "authentication-config.yaml"),
        },
        "versions": {
            "kubernetes": L.KUBERNETES_VERSION,
            "etcd": L.ETCD_VERSION,
            "buildkit": L.BUILDKIT_VERSION,
            "kwok": L.KWOK_VERSION,
            "buildx": L.BUILDX_VERSION,
            "act": L.ACT_VERSION,
            "docker.io": L.APT_PACKAGES["docker.io"],
        },
    }


def _configured_registry(lay: Layout) -> str:
    try:
        return (lay.run / "registry").read_text().strip()
    except OSError:
        return L.registry()


def env_lines(info: dict[str, Any]) -> list[str]:
    kc, base = info["kubeconfig"], info["base_image"]
    pairs = {
        "KUBECONFIG": kc["admin"],
        "KUBEBUILDX_KUBECONFIG_ADMIN": kc["admin"],
        "KUBEBUILDX_KUBECONFIG_LIMITED": kc["limited"],
        "KUBEBUILDX_KUBECONFIG_BAD_TOKEN": kc["bad_token"],
        "KUBEBUILDX_KUBECONFIG_BAD_CA": kc["bad_ca"],
        "KUBEBUILDX_NAMESPACE": info["namespace"],
        "KUBEBUILDX_BIN": info["bin"],
        "KUBEBUILDX_BASE_IMAGE_CONTEXT": base["build_context_arg"],
        "KUBEBUILDX_BASE_IMAGE_LAYOUT": base["layout"],
        "KUBEBUILDX_NODE_AMD64": info["nodes"]["amd64"],
        "KUBEBUILDX_NODE_ARM64": info["nodes"]["arm64"],
        "KUBEBUILDX_REGISTRY": info["registry"],
        "KUBEBUILDX_CLUSTER_STATE": info["state"],
        "KUBEBUILDX_OIDC_DISCOVERY_URL": info["oidc"]["discovery_url"],
        "KUBEBUILDX_OIDC_SIGNING_KEY": info["oidc"]["signing_key"],
        "KUBEBUILDX_OIDC_CA": info["oidc"]["ca"],
        "DOCKER_HOST": info["docker"]["host"],
        "KUBEBUILDX_DOCKER": info["docker"]["cli"],
        "KUBEBUILDX_ACT": info["docker"]["act"],
        "KUBEBUILDX_ACT_JOB_IMAGE": info["docker"]["job_image"],
        # Newline-separated, as the action's list inputs take them.
        "KUBEBUILDX_ACTION_BASE_CONTEXTS": "\n".join(info["docker"]["stand_in_build_contexts"]),
    }
    lines = [f"export {k}={_shell_quote(v)}" for k, v in pairs.items()]
    lines.append(f'export PATH={_shell_quote(info["bin"])}:"$PATH"')
    return lines


def _shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def cmd_env(lay: Layout, args: argparse.Namespace) -> int:
    info = environment(lay)
    print(json.dumps(info, indent=2) if args.json else "\n".join(env_lines(info)))
    return 0


def cmd_bench_images(lay: Layout, _args: argparse.Namespace) -> int:
    print(images.ensure_compiler_layout(lay))
    return 0


def cmd_status(lay: Layout, _args: argparse.Namespace) -> int:
    for daemon in daemons(lay):
        pid = daemon.pid()
        memory = f"{rss_mib(pid):7.1f} MiB" if pid else " " * 11
        print(f"{daemon.name:24} {'running pid ' + str(pid) if pid else 'stopped':20} {memory}  {daemon.log}")
    pod_daemons = podkit.running_daemons(lay.state / "pods", lay.buildkit_bin)
    for pid, what in pod_daemons:
        print(f"  buildkitd pid {pid:<10} {rss_mib(pid):7.1f} MiB  {what}")
    if pod_daemons:
        total = sum(rss_mib(pid) for pid, _ in pod_daemons)
        print(f"  {len(pod_daemons)} pod buildkitd(s), {total:.1f} MiB in all")
    return 0


def _parse_taint(text: str) -> dict[str, str]:
    key_value, _, effect = text.partition(":")
    key, _, value = key_value.partition("=")
    if effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise HarnessError(f"taint {text!r}: effect must be NoSchedule, PreferNoSchedule or NoExecute")
    return {"key": key, "value": value, "effect": effect}


def _set_taints(
    kube: Kube, node: str, change: Callable[[list[dict[str, str]]], list[dict[str, str]]]
) -> None:
    current = kube.get("Node", node)
    if current is None:
        raise HarnessError(f"no node {node!r}; the nodes are {', '.join(L.node_name(a) for a in L.ARCHES)}")
    taints = change(list(current["spec"].get("taints", [])))
    kube.patch(
        "Node",
        node,
        {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]}, "spec": {"taints": taints}},
        content_type="application/merge-patch+json",
    )
    print(f"{node}: taints now {json.dumps(taints)}")


def cmd_taint(lay: Layout, args: argparse.Namespace) -> int:
    taint = _parse_taint(args.taint)
    _set_taints(admin(lay), args.node, lambda ts: [t for t in ts if t["key"] != taint["key"]] + [taint])
    return 0


def cmd_untaint(lay: Layout, args: argparse.Namespace) -> int:
    _set_taints(admin(lay), args.node, lambda ts: [t for t in ts if t["key"] != args.key])
    return 0


def cmd_delete_builder_pod(lay: Layout, args: argparse.Namespace) -> int:
    kube = admin(lay)
    deployment = kube.get("Deployment", args.deployment, args.namespace)
    if deployment is None:
        raise HarnessError(f"no Deployment {args.namespace}/{args.deployment}")
    labels = deployment["spec"]["selector"]["matchLabels"]
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    pods = (kube.get("Pod", namespace=args.namespace, labelSelector=selector) or {}).get("items", [])
    if not pods:
        raise HarnessError(f"Deployment {args.namespace}/{args.deployment} has no pod ({selector})")
    if args.one:
        pods = sorted(pods, key=lambda p: p["metadata"]["name"])[:1]
    for pod in pods:
        kube.delete("Pod", pod["metadata"]["name"], args.namespace, grace_seconds=0)
        print(f"deleted pod {args.namespace}/{pod['metadata']['name']} (node {pod['spec'].get('nodeName')})")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="scripts/cluster",
        description="The proving ground: Kubernetes " + L.KUBERNETES_VERSION + " with two kwok nodes "
        "(kwok-amd64, kwok-arm64) and one native buildkitd per builder pod, all on 127.0.0.1.",
        epilog="State (certs, etcd data, logs, pids, sockets) lives in $KUBEBUILDX_CLUSTER_STATE "
        "(default ~/.cache/kubebuildx/cluster); built binaries in ~/.cache/kubebuildx/bin/<name>-<version>.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "up",
        help="install what is missing, start what is not running (idempotent); prints timings "
        "and where each log lives",
    ).set_defaults(func=cmd_up)
    install_cmd = sub.add_parser(
        "install",
        help="only install and build what is missing (Debian packages, Go binaries, base image, "
        "the rootfs of the action image's stand-in bases)",
    )
    install_cmd.add_argument(
        "--no-rootfs", action="store_true", help="leave out the stand-in bases' rootfs (mmdebstrap)"
    )
    install_cmd.set_defaults(func=cmd_install)
    fresh = sub.add_parser(
        "check-fresh",
        help="install into an empty cache and HOME (Go caches kept warm) and check that every "
        "binary `up` starts is there, at its pinned version",
    )
    fresh.add_argument("--keep", type=Path, help="copy the fresh cache there before it is removed")
    fresh.set_defaults(func=cmd_check_fresh)
    down = sub.add_parser("down", help="stop every process `up` started and free every port")
    down.add_argument(
        "--purge", action="store_true", help="also delete the state folder (certs, etcd data, ...)"
    )
    down.set_defaults(func=cmd_down)
    env = sub.add_parser("env", help="print `export VAR=...` lines to use the cluster (eval them)")
    env.add_argument("--json", action="store_true", help="print the same as one JSON object")
    env.set_defaults(func=cmd_env)
    sub.add_parser(
        "bench-images",
        help=f"make benchmarks/cache.py's compiler image ({images.COMPILER_IMAGE}, an OCI layout) unless "
        "cached, and print its --build-context value; minutes under qemu the first time",
    ).set_defaults(func=cmd_bench_images)
    sub.add_parser("status", help="list the daemons, their pids, memory and logs").set_defaults(
        func=cmd_status
    )
    taint = sub.add_parser("taint", help=f"add a taint to NODE (default {FAULT_TAINT})")
    taint.add_argument("node")
    taint.add_argument("taint", nargs="?", default=FAULT_TAINT, help="KEY[=VALUE]:EFFECT")
    taint.set_defaults(func=cmd_taint)
    untaint = sub.add_parser("untaint", help="remove the taint with KEY from NODE")
    untaint.add_argument("node")
    untaint.add_argument("key", nargs="?", default=FAULT_TAINT.split("=", maxsplit=1)[0])
    untaint.set_defaults(func=cmd_untaint)
    delete = sub.add_parser(
        "delete-builder-pod",
        help="delete the pods of a builder Deployment (grace 0), which kills their BuildKit and any "
        "build on it; its ReplicaSet makes new ones",
    )
    delete.add_argument("namespace")
    delete.add_argument("deployment")
    delete.add_argument("--one", action="store_true", help="delete only one pod (the first by name)")
    delete.set_defaults(func=cmd_delete_builder_pod)
    return top


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(Layout.default(), args))
    except HarnessError as error:
        say(f"scripts/cluster {args.command}: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
