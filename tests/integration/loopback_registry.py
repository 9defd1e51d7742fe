"""A real registry on loopback for the tests: Debian's docker-registry (the CNCF
distribution registry), started per test session, with or without basic auth.

scripts/registry installs it; this starts and stops instances and reads them
back through the registry's HTTP API, so that tests check what the registry
holds rather than what kubebuildx says it pushed.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import io
import json
import secrets
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json"
)
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
)


def install() -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "registry"), "install"], check=True, capture_output=True, text=True
    )


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    root: Path
    address: str  # 127.0.0.1:PORT
    user: str = ""
    password: str = field(default="", repr=False)
    proc: subprocess.Popen[bytes] | None = None
    netns: str = ""  # run inside this network namespace (a test host), not on this machine's loopback

    def start(self) -> Registry:
        host, _, port = self.address.rpartition(":")
        with socket.socket() as s:
            if s.connect_ex((host, int(port))) == 0:
                raise RuntimeError(f"{self.address} is taken: stop whatever listens there (ss -ltnp)")
        self.root.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "version": "0.1",
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.root / "data")},
                "delete": {"enabled": True},
            },
            "http": {"addr": self.address, "secret": base64.b64encode(self.root.name.encode()).decode()},
        }
        if self.user:
            htpasswd = self.root / "htpasswd"
            subprocess.run(
                ["htpasswd", "-B", "-i", "-c", str(htpasswd), self.user],
                input=self.password,
                text=True,
                check=True,
                capture_output=True,
            )
            config["auth"] = {"htpasswd": {"realm": "kubebuildx-tests", "path": str(htpasswd)}}
        (self.root / "config.yml").write_text(json.dumps(config))  # JSON is YAML
        log = (self.root / "registry.log").open("wb")
        inside = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.proc = subprocess.Popen(
            [*inside, "docker-registry", "serve", str(self.root / "config.yml")], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"docker-registry exited: {(self.root / 'registry.log').read_text()[-2000:]}"
                )
            try:
                self.get("/v2/", anonymous=True)
                return self
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"docker-registry did not answer on {self.address}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.root / "data", ignore_errors=True)

    # ---- the registry's HTTP API -----------------------------------------------------------------

    def get(self, path: str, accept: str = "", anonymous: bool = False) -> tuple[bytes, dict[str, str]]:
        request = urllib.request.Request(f"http://{self.address}{path}")
        if accept:
            request.add_header("Accept", accept)
        if self.user and not anonymous:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.read(), dict(response.headers)

    def put_image(self, repo: str, os_name: str, arch: str) -> str:
        """A one-config, no-layer image pushed through the API; returns its manifest digest."""
        import hashlib

        def put_blob(data: bytes) -> str:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            start = urllib.request.Request(f"http://{self.address}/v2/{repo}/blobs/uploads/", method="POST")
            self._auth(start)
            with urllib.request.urlopen(start, timeout=20) as response:
                location = response.headers["Location"]
            url = location if location.startswith("http") else f"http://{self.address}{location}"
            put = urllib.request.Request(
                f"{url}{'&' if '?' in url else '?'}digest={digest}",
                data=data,
                method="PUT",
                headers={"Content-Type": "application/octet-stream"},
            )
            self._auth(put)
            urllib.request.urlopen(put, timeout=20).close()
            return digest

        config = json.dumps(
            {"architecture": arch, "os": os_name, "rootfs": {"type": "layers", "diff_ids": []}}
        )
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": put_blob(config.encode()),
                    "size": len(config),
                },
                "layers": [],
            }
        ).encode()
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        put = urllib.request.Request(
            f"http://{self.address}/v2/{repo}/manifests/{digest}",
            data=manifest,
            method="PUT",
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        self._auth(put)
        urllib.request.urlopen(put, timeout=20).close()
        return digest

    def _auth(self, request: urllib.request.Request) -> None:
        if self.user:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")

    def manifest(self, repo: str, reference: str) -> tuple[dict[str, Any], str]:
        """The manifest or index, and the digest the registry serves it under."""
        body, headers = self.get(
            f"/v2/{repo}/manifests/{reference}", accept=f"{INDEX_TYPES}, {MANIFEST_TYPES}"
        )
        return json.loads(body), headers.get("Docker-Content-Digest", "")

    def exists(self, repo: str, reference: str) -> bool:
        try:
            self.manifest(repo, reference)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise
        return True

    def tags(self, repo: str) -> list[str]:
        try:
            body, _ = self.get(f"/v2/{repo}/tags/list")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise
        return list(json.loads(body).get("tags") or [])

    def file_in_image(self, repo: str, manifest_digest: str, name: str) -> bytes | None:
        """A file from an image's layers, read from the blobs the registry stores."""
        manifest, _ = self.manifest(repo, manifest_digest)
        for layer in manifest.get("layers", []):
            blob, _ = self.get(f"/v2/{repo}/blobs/{layer['digest']}")
            data = gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                for member in tar.getmembers():
                    if member.name.lstrip("./") == name and member.isfile():
                        extracted = tar.extractfile(member)
                        return extracted.read() if extracted else None
        return None


@contextlib.contextmanager
def test_host() -> Iterator[str]:
    """A test host of our own: a network namespace joined to this machine by a veth
    pair, so a registry there is not on loopback (buildx then wants plain HTTP
    configured) and no traffic leaves the machine. Yields the host's address."""
    tag = secrets.token_hex(3)
    ns, here, there = f"kbx-reg-{tag}", f"kbxh{tag}", f"kbxn{tag}"
    net = f"10.213.{secrets.randbelow(200) + 20}"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    ip("netns", "add", ns)
    try:
        ip("link", "add", here, "type", "veth", "peer", "name", there)
        ip("link", "set", there, "netns", ns)
        ip("addr", "add", f"{net}.1/30", "dev", here)
        ip("link", "set", here, "up")
        ip("netns", "exec", ns, "ip", "addr", "add", f"{net}.2/30", "dev", there)
        ip("netns", "exec", ns, "ip", "link", "set", there, "up")
        ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield ns
    finally:
        subprocess.run(["ip", "link", "del", here], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def test_host_address(ns: str) -> str:
    out = subprocess.run(["ip", "netns", "exec", ns, "ip", "-4", "-o", "addr", "show", "scope", "global"],
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    return out.split()[3].split("/")[0]


def platform_of(descriptor: dict[str, Any]) -> str:
    p = descriptor.get("platform") or {}
    return "/".join(x for x in (p.get("os", ""), p.get("architecture", ""), p.get("variant", "")) if x)


def images_of(index: dict[str, Any]) -> dict[str, str]:
    """platform -> image manifest digest, attestation manifests left out."""
    return {
        platform_of(m): m["digest"]
        for m in index.get("manifests", [])
        if "vnd.docker.reference.type" not in (m.get("annotations") or {})
    }
