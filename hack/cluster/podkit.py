"""One BuildKit daemon per builder pod: the proving ground's stand-in for a kubelet's container.

A real cluster runs a buildkitd inside every builder pod; kwok runs no containers.
This controller watches (polls) the pods scheduled on the kwok nodes and, for each:

  1. starts a buildkitd of the node's architecture with its own root, socket and
     config (the daemon binary is native; arm64 RUN steps go through qemu by binfmt);
  2. creates a kwok `Exec` for the pod (same name and namespace, owned by the pod)
     that runs the exec'd command (`buildctl dial-stdio`) on the host with
     BUILDKIT_HOST set to that daemon's socket: routing is by socket only, never by
     kwok's fake pod IPs;
  3. once the daemon answers `buildctl debug workers`, sets the pod annotation
     READY_ANNOTATION, on which the kwok Stage that makes a pod Ready waits, so a
     builder's boot time includes its daemon's start, as on a cluster.

When a pod goes away (deleted, or being deleted), its daemon is killed at once, as
a kubelet does for a force-deleted pod: builds in flight on it fail. Then its
leftover processes and mounts go and its root is removed. On SIGTERM the
controller stops every daemon and removes every root; `scripts/cluster up` and
`down` clean up what a killed controller left (`sweep`).

Run by `scripts/cluster up` as the `podkit` daemon:
    podkit.py STATE_DIR RUN_DIR BUILDKIT_BIN REGISTRY
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import layout as L
from kube import Kube
from proc import HarnessError

READY_ANNOTATION = "kubebuildx.dev/buildkitd"  # value "ready": the pod's own daemon answers
POD_LABEL = "kubebuildx.dev/pod"  # worker label: namespace/name of the pod the daemon serves
POLL_SECONDS = 0.25
UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")  # the API server's
SOCKET_LIMIT = 100  # sun_path is 108 bytes with the NUL; keep a margin


@dataclass(frozen=True)
class PodRef:
    uid: str
    namespace: str
    name: str
    node: str
    arch: str


def wanted_pods(pods: Iterable[Mapping[str, Any]], nodes: Mapping[str, str]) -> dict[str, PodRef]:
    """uid -> pod, for the pods that should have a daemon: on a kwok node, not being deleted,
    not finished. `nodes` maps node name -> architecture."""
    wanted = {}
    for pod in pods:
        meta, spec = pod.get("metadata", {}), pod.get("spec", {})
        node = spec.get("nodeName") or ""
        phase = pod.get("status", {}).get("phase", "")
        if node not in nodes or meta.get("deletionTimestamp") or phase in ("Succeeded", "Failed"):
            continue
        uid = str(meta.get("uid", ""))
        if not UID.fullmatch(uid):  # names a folder that is removed later: never a path
            continue
        wanted[uid] = PodRef(uid, meta["namespace"], meta["name"], node, nodes[node])
    return wanted


def daemon_config(root: Path, socket: Path, arch: str, pod: PodRef, registry: str) -> str:
    """buildkitd.toml for one pod's daemon."""
    return "\n".join(
        [
            f"# Written by hack/cluster/podkit.py for pod {pod.namespace}/{pod.name} on {pod.node}.",
            f'root = "{root}"',
            "[grpc]",
            f'  address = ["unix://{socket}"]',
            "[worker.oci]",
            "  enabled = true",
            # buildkitd lists more platforms than this (every one the host runs natively or
            # through binfmt) when asked for its workers; kubebuildx's native check reads the
            # first, which is this one.
            f'  platforms = ["linux/{arch}"]',
            f'  labels = {{ "kubebuildx.dev/arch" = "{arch}", '
            f'"{POD_LABEL}" = "{pod.namespace}/{pod.name}" }}',
            '  snapshotter = "overlayfs"',
            '  networkMode = "host"  # RUN steps share the host network (no CNI here)',
            "  gc = true",
            '  maxUsedSpace = "4GB"  # the defaults scale with the disk; keep room for the rest',
            '  minFreeSpace = "5GB"',
            "[worker.containerd]",
            "  enabled = false",
            f'[registry."{registry}"]  # the loopback registry speaks plain HTTP',
            "  http = true",
            "  insecure = true",
            "",
        ]
    )


def exec_object(pod: PodRef, socket: Path) -> dict[str, Any]:
    """The kwok Exec that sends `kubectl exec` into this pod to its own daemon."""
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Exec",
        "metadata": {
            "name": pod.name,
            "namespace": pod.namespace,
            "labels": {"app.kubernetes.io/managed-by": "kubebuildx-podkit"},
            # The garbage collector removes it with the pod should the controller miss that.
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": pod.name, "uid": pod.uid}],
        },
        "spec": {"execs": [{"local": {"envs": [{"name": "BUILDKIT_HOST", "value": f"unix://{socket}"}]}}]},
    }


# ---------------------------------------------------------------- processes and files


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def descendants(pid: int) -> list[int]:
    """pid's children, their children, and so on: a daemon's runc and its RUN steps' processes
    (which run in their own pid and mount namespaces, but are its descendants seen from here)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL pid and every descendant, taken before the kill so that none is reparented first."""
    for victim in [pid, *descendants(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def unmount_under(root: Path) -> None:
    prefix = str(root) + "/"
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False, capture_output=True)


def remove_tree(root: Path) -> None:
    """Unmount what is mounted under root, then delete it."""
    unmount_under(root)
    shutil.rmtree(root, ignore_errors=True)


def sweep(pods_dir: Path, buildkit_bin: Path) -> list[str]:
    """What a killed controller left: its daemons (found by their config under pods_dir),
    their containers, mounts and roots. Returns what was removed, for the log."""
    removed = []
    marker = str(pods_dir) + "/"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = str((entry / "exe").readlink())
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if exe.startswith(str(buildkit_bin) + "/") and marker in cmdline:
            kill_tree(int(entry.name))
            removed.append(f"buildkitd pid {entry.name} and its RUN steps")
    if pods_dir.exists():
        for child in sorted(pods_dir.iterdir()):
            remove_tree(child)
            removed.append(str(child))
    return removed


def running_daemons(pods_dir: Path, buildkit_bin: Path) -> list[tuple[int, str]]:
    """(pid, first line of its config) of every pod's buildkitd, for `scripts/cluster status`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = str((entry / "exe").readlink())
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        config = next((a.removeprefix("--config=") for a in argv if a.startswith("--config=")), "")
        if exe.startswith(str(buildkit_bin) + "/") and config.startswith(str(pods_dir) + "/"):
            with contextlib.suppress(OSError):
                found.append((int(entry.name), Path(config).read_text().splitlines()[0].lstrip("# ")))
    return found


class PodDaemon:
    """One pod's buildkitd: its folder is pods_dir/<uid>, its socket run_dir/pod-<uid>.sock."""

    def __init__(self, pod: PodRef, pods_dir: Path, run_dir: Path, buildkit_bin: Path, registry: str):
        self.pod = pod
        self.home = pods_dir / pod.uid
        self.root = self.home / "root"
        self.socket = run_dir / f"pod-{pod.uid}.sock"
        if len(str(self.socket)) > SOCKET_LIMIT:
            raise HarnessError(f"socket path too long for a unix socket: {self.socket}")
        self.buildkit_bin = buildkit_bin
        self.registry = registry
        self.process: subprocess.Popen[bytes] | None = None
        self.ready = False
        self.routed = False  # its kwok Exec exists
        self.started_at = 0.0

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        config = self.home / "buildkitd.toml"
        config.write_text(daemon_config(self.root, self.socket, self.pod.arch, self.pod, self.registry))
        with (self.home / "buildkitd.log").open("ab") as out:
            self.process = subprocess.Popen(
                [str(self.buildkit_bin / "buildkitd"), f"--config={config}"],
                env={
                    **os.environ,
                    "PATH": f"{self.buildkit_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin",
                },
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group, so stopping one pod's daemon spares the rest
            )
        self.ready = False
        self.started_at = time.monotonic()

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def answers(self) -> bool:
        if not self.socket.exists():
            return False
        buildctl = str(self.buildkit_bin / "buildctl")
        result = subprocess.run(
            [buildctl, f"--addr=unix://{self.socket}", "--timeout=2", "debug", "workers"],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def stop(self) -> None:
        """Kill at once (a force-deleted pod's container gets no grace), then remove everything."""
        if self.process is not None and self.process.poll() is None:
            kill_tree(self.process.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        remove_tree(self.home)
        self.socket.unlink(missing_ok=True)


# ---------------------------------------------------------------- the loop


class Controller:
    def __init__(self, kube: Kube, state: Path, run_dir: Path, buildkit_bin: Path, registry: str) -> None:
        self.kube = kube
        self.pods_dir = state / "pods"
        self.run_dir = run_dir
        self.buildkit_bin = buildkit_bin
        self.registry = registry
        self.nodes = {L.node_name(arch): arch for arch in L.ARCHES}
        self.daemons: dict[str, PodDaemon] = {}
        self.stopping = False

    def list_pods(self) -> list[dict[str, Any]]:
        _, result = self.kube.request("GET", "/api/v1/pods")
        return list(result.get("items", []))

    def reconcile(self, pods: list[dict[str, Any]]) -> None:
        wanted = wanted_pods(pods, self.nodes)
        for uid in [u for u in self.daemons if u not in wanted]:
            daemon = self.daemons.pop(uid)
            _log(f"pod {daemon.pod.namespace}/{daemon.pod.name} is gone: killing its buildkitd")
            daemon.stop()
            with contextlib.suppress(HarnessError):
                self.kube.request(
                    "DELETE",
                    f"/apis/kwok.x-k8s.io/v1alpha1/namespaces/{daemon.pod.namespace}/execs/{daemon.pod.name}",
                    ok=(200, 202, 404),
                )
        for uid, pod in wanted.items():
            daemon = self.daemons.get(uid)
            if daemon is None:
                daemon = self.daemons[uid] = PodDaemon(
                    pod, self.pods_dir, self.run_dir, self.buildkit_bin, self.registry
                )
                daemon.start()
                _log(f"pod {pod.namespace}/{pod.name} on {pod.node}: started buildkitd ({daemon.socket})")
            elif daemon.exited():
                _log(f"pod {pod.namespace}/{pod.name}: its buildkitd exited; starting it again")
                daemon.start()
            if not daemon.routed:
                self.kube.apply(exec_object(pod, daemon.socket))
                daemon.routed = True
            if not daemon.ready and daemon.answers():
                daemon.ready = True
                with contextlib.suppress(HarnessError):  # the pod may have gone meanwhile
                    self.kube.patch(
                        "Pod",
                        pod.name,
                        {"metadata": {"annotations": {READY_ANNOTATION: "ready"}}},
                        namespace=pod.namespace,
                    )
                seconds = time.monotonic() - daemon.started_at
                _log(f"pod {pod.namespace}/{pod.name}: buildkitd answers after {seconds:.1f}s; Ready")

    def run(self) -> None:
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        for what in sweep(self.pods_dir, self.buildkit_bin):
            _log(f"removed what an earlier controller left: {what}")
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        while not self.stopping:
            try:
                self.reconcile(self.list_pods())
            except (HarnessError, OSError) as error:  # the apiserver restarting; try again
                _log(f"cannot reconcile now: {error}")
                time.sleep(1)
            time.sleep(POLL_SECONDS)
        for daemon in self.daemons.values():
            daemon.stop()
        _log("stopped every pod's buildkitd")


def main(argv: list[str]) -> int:
    state, run_dir, buildkit_bin, registry = Path(argv[0]), Path(argv[1]), Path(argv[2]), argv[3]
    controller = Controller(Kube(L.APISERVER_PORT, state / "pki"), state, run_dir, buildkit_bin, registry)

    def stop(_signum: int, _frame: object) -> None:
        controller.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    controller.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
