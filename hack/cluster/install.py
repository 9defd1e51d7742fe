"""Installs what the proving ground needs and is missing: Debian packages, the
binfmt_misc entry for arm64, and the pinned Go binaries (built from the Go module
proxy by the recipes in hack/gomod/).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import layout as L
from layout import Layout
from proc import HarnessError, run, say

BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU_AARCH64_RULE = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")  # from Debian's qemu-user-static


def _dpkg_version(package: str) -> str | None:
    try:
        out = run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}|${Version}", package], quiet=True)
    except HarnessError:
        return None
    status, _, version = out.partition("|")
    return version if status.startswith("ii") else None


class Apt:
    def __init__(self) -> None:
        self.updated = False

    def update(self) -> None:
        if not self.updated:
            run(["apt-get", "update", "-q"], quiet=True, env={"DEBIAN_FRONTEND": "noninteractive"})
            self.updated = True

    def ensure(self, packages: dict[str, str | None]) -> None:
        missing = {p: v for p, v in packages.items() if _dpkg_version(p) is None}
        if not missing:
            return
        self.update()
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        pinned = [f"{p}={v}" if v else p for p, v in missing.items()]
        try:
            run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *pinned], env=env)
        except HarnessError:
            # Debian drops superseded versions from its mirror after a point release;
            # take the current one rather than fail, and say which it was.
            say(f"pinned versions not available ({' '.join(pinned)}); installing the current ones")
            run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)
        for package in missing:
            say(f"installed {package} {_dpkg_version(package)}")

    def download_busybox(self, directory: Path) -> dict[str, Path]:
        """busybox-static .deb of each architecture (needs arm64 as a dpkg foreign architecture)."""
        directory.mkdir(parents=True, exist_ok=True)
        debs = {arch: next(iter(directory.glob(f"busybox-static_*_{arch}.deb")), None) for arch in L.ARCHES}
        if all(debs.values()):
            return {a: p for a, p in debs.items() if p}
        foreign = run(["dpkg", "--print-foreign-architectures"], quiet=True).split()
        if "arm64" not in foreign:
            run(["dpkg", "--add-architecture", "arm64"])
            self.updated = False
        self.update()
        names = [f"busybox-static:{arch}" for arch in L.ARCHES]
        try:
            run(["apt-get", "download", *[f"{n}={L.BUSYBOX_STATIC_VERSION}" for n in names]], cwd=directory)
        except HarnessError:
            say(f"busybox-static {L.BUSYBOX_STATIC_VERSION} not available; downloading the current one")
            run(["apt-get", "download", *names], cwd=directory)
        return {arch: next(directory.glob(f"busybox-static_*_{arch}.deb")) for arch in L.ARCHES}


def ensure_binfmt() -> None:
    """Register qemu-aarch64 with the F flag so that RUN steps in arm64 containers work.

    F (fix binary) makes the kernel open the interpreter at registration, so it
    runs inside a container's rootfs that does not contain it.
    """
    if not (BINFMT / "register").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)])
    entry = BINFMT / "qemu-aarch64"
    if entry.exists():
        text = entry.read_text()
        flags = next(
            (line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("flags:")), ""
        )
        if text.startswith("enabled") and "F" in flags:
            return
        entry.write_text("-1")  # registered without F (or disabled): register again
    rule = QEMU_AARCH64_RULE.read_text().strip()
    name, _, _rest = rule.lstrip(":").partition(":")
    interpreter_flags = rule.rsplit(":", 1)[1]
    if "F" not in interpreter_flags:
        rule += "F"
    (BINFMT / "register").write_text(rule)
    say(f"registered binfmt_misc entry {name}: {entry.read_text().splitlines()[0]}")


@dataclass(frozen=True)
class GoBuild:
    name: str
    directory: Path  # output folder, keyed by the pinned version
    binaries: tuple[str, ...]
    argv: tuple[str, ...]  # go build/install argv; "{out}" stands for the output folder
    cwd: Path | None = None
    gobin: bool = False  # `go install` writes to GOBIN instead of -o
    goarch: str | None = None  # cross-compile: `go install` writes to GOPATH/bin/linux_<arch>/

    def present(self) -> bool:
        return all((self.directory / b).is_file() for b in self.binaries)

    def build(self, logs: Path) -> bool:
        """Build unless present; True if it was built now."""
        if self.present():
            return False
        partial = self.directory.with_name(self.directory.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        argv = [a.replace("{out}", str(partial) + "/") for a in self.argv]
        env = {"GOTOOLCHAIN": "local", "CGO_ENABLED": "1", "GOFLAGS": "-mod=readonly"}
        if self.gobin:
            env["GOBIN"] = str(partial)
            env["GOFLAGS"] = ""
        if self.goarch:
            # go refuses GOBIN for a cross-compiled install; it writes under GOPATH instead,
            # so GOPATH is the output folder and the module cache is named where it already is.
            env.update(
                GOOS="linux",
                GOARCH=self.goarch,
                CGO_ENABLED="0",
                GOFLAGS="",
                GOPATH=str(partial),
                GOMODCACHE=go_env("GOMODCACHE"),
            )
        log = logs / f"build-{self.name}.log"
        say(f"building {self.name} into {self.directory} (log {log}); this takes minutes on a cold cache")
        run(argv, cwd=self.cwd, env=env, log=log)
        shutil.rmtree(self.directory, ignore_errors=True)
        partial.rename(self.directory)
        return True


def go_env(name: str) -> str:
    return run(["go", "env", name], quiet=True).strip()


def go_builds(lay: Layout) -> list[GoBuild]:
    k8s_ldflags = " ".join(
        [
            "-s -w",
            f"-X k8s.io/component-base/version.gitVersion={L.KUBERNETES_VERSION}",
            "-X k8s.io/component-base/version.gitMajor=1",
            f"-X k8s.io/component-base/version.gitMinor={L.KUBERNETES_VERSION.split('.')[1]}",
            f"-X k8s.io/client-go/pkg/version.gitVersion={L.KUBERNETES_VERSION}",
        ]
    )
    k8s_cmds = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
    buildx_install = (
        "go",
        "install",
        "-trimpath",
        "-ldflags",
        f"-s -w -X github.com/docker/buildx/version.Version={L.BUILDX_VERSION}",
        f"github.com/docker/buildx/cmd/buildx@{L.BUILDX_VERSION}",
    )
    return [
        GoBuild(
            "kubernetes",
            lay.kubernetes_bin,
            k8s_cmds,
            (
                "go",
                "build",
                "-trimpath",
                "-ldflags",
                k8s_ldflags,
                "-o",
                "{out}",
                *[f"k8s.io/kubernetes/cmd/{c}" for c in k8s_cmds],
            ),
            cwd=L.GOMOD / "kubernetes",
        ),
        GoBuild(
            "etcd",
            lay.etcd_bin,
            ("etcd",),
            # `-o DIR/` would name the binary after the package's last element
            # ("server", v3 being a major-version suffix), so name it outright.
            ("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", "{out}etcd", "go.etcd.io/etcd/server/v3"),
            cwd=L.GOMOD / "etcd",
        ),
        GoBuild(
            "buildkit",
            lay.buildkit_bin,
            ("buildkitd", "buildctl"),
            (
                "go",
                "build",
                "-trimpath",
                "-ldflags",
                f"-s -w -X github.com/moby/buildkit/version.Version={L.BUILDKIT_VERSION}",
                "-o",
                "{out}",
                "github.com/moby/buildkit/cmd/buildkitd",
                "github.com/moby/buildkit/cmd/buildctl",
            ),
            cwd=L.GOMOD / "buildkit",
        ),
        GoBuild(
            "kwok",
            lay.kwok_bin,
            ("kwok",),
            (
                "go",
                "install",
                "-trimpath",
                "-ldflags",
                "-s -w",
                f"sigs.k8s.io/kwok/cmd/kwok@{L.KWOK_VERSION}",
            ),
            gobin=True,
        ),
        GoBuild(
            "buildx",
            lay.buildx_bin,
            ("buildx",),
            buildx_install,
            gobin=True,
        ),
        GoBuild(
            "act",
            lay.act_bin,
            ("act",),
            ("go", "install", "-trimpath", "-ldflags", "-s -w", f"github.com/nektos/act@{L.ACT_VERSION}"),
            gobin=True,
        ),
        # The arm64 /buildx of the docker/buildx-bin stand-in for kubebuildx's own release build.
        GoBuild(
            "buildx-arm64",
            lay.bin_for("buildx-arm64", L.BUILDX_VERSION),
            ("bin/linux_arm64/buildx",),
            buildx_install,
            goarch="arm64",
        ),
    ]


def kwok_exec_crd(lay: Layout) -> Path:
    """kwok's Exec CustomResourceDefinition, kept beside the kwok binary of the same pin."""
    return lay.kwok_bin / "kwok.x-k8s.io_execs.yaml"


def ensure_kwok_crd(lay: Layout) -> None:
    """Copy the Exec CRD out of kwok's module (its kustomize/crd/bases) at the pinned version."""
    target = kwok_exec_crd(lay)
    if target.is_file():
        return
    module = f"sigs.k8s.io/kwok@{L.KWOK_VERSION}"
    info = json.loads(run(["go", "mod", "download", "-json", module], quiet=True, env={"GOFLAGS": ""}))
    source = Path(info["Dir"]) / "kustomize" / "crd" / "bases" / target.name
    if not source.is_file():
        raise HarnessError(f"kwok {L.KWOK_VERSION}'s module has no {source}")
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(target)


def link_binaries(lay: Layout) -> None:
    """One bin folder for PATH, plus buildx as the docker CLI plugin."""
    lay.bin.mkdir(parents=True, exist_ok=True)
    for build in go_builds(lay):
        if build.goarch:
            continue  # not for this machine's PATH
        for binary in build.binaries:
            _symlink(build.directory / binary, lay.bin / binary)
    _symlink(lay.buildx_bin / "buildx", lay.bin / "docker-buildx")
    plugins = Path.home() / ".docker" / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    _symlink(lay.buildx_bin / "buildx", plugins / "docker-buildx")


def _symlink(target: Path, link: Path) -> None:
    if link.is_symlink() and str(link.readlink()) == str(target):
        return
    tmp = link.with_name(link.name + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)


def ensure_all(lay: Layout) -> tuple[Apt, list[str]]:
    """Install what is missing; return the apt helper and the names of what was built now."""
    apt = Apt()
    apt.ensure(L.APT_PACKAGES)
    ensure_binfmt()
    lay.logs.mkdir(parents=True, exist_ok=True)
    built = [build.name for build in go_builds(lay) if build.build(lay.logs)]
    ensure_kwok_crd(lay)
    link_binaries(lay)
    return apt, built
