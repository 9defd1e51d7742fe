"""The builder spec as buildx's own store, byte for byte.

The golden files in tests/fixtures/instance/ were written by Go's
encoding/json and net/url from copies of buildx v0.36.1's store.NodeGroup,
store.Node and store.current types (and ocispecs.Platform) fed the same data,
not by kubebuildx: if a test here fails, kubebuildx drifted from buildx.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from kubebuildx import buildx_store, files
from kubebuildx.builder import BuilderSpec, plan
from kubebuildx.inputs import parse_inputs
from kubebuildx.platforms import Platform

FIXTURES = Path(__file__).parent.parent / "fixtures" / "instance"
AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")
ARMV7 = Platform("linux", "arm", "v7")
CONFIG = (
    b'debug = true\ninsecure-entitlements = ["network.host"]\n'
    b'\n[registry."mirror.example:5000"]\n  http = true\n'
)


def two_node() -> BuilderSpec:
    inputs = parse_inputs({"driver-opts": "image=moby/buildkit:v0.20.0\nlinux/arm64:requests.memory=8Gi"})
    return plan(inputs, name="kbx-demo", namespace="buildkit", native=(AMD64, ARM64))


def with_config() -> BuilderSpec:
    inputs = parse_inputs(
        {
            "buildkitd-flags": "--debug",
            "driver-opts": "annotations=team=a&b<c>\nenv.HTTP_PROXY=http://proxy.example:3128\n"
            "linux/arm/v7:tolerations=key=arch,operator=Equal,value=arm,effect=NoSchedule;"
            "key=slow,operator=Exists",
        }
    )
    return plan(inputs, name="kbx-cfg", namespace="ci", native=(AMD64, ARMV7), config=CONFIG)


@pytest.mark.parametrize(
    ("case", "spec", "kubeconfig"),
    [
        ("two-node", two_node(), "/tmp/k"),
        ("buildkitd-config", with_config(), "/home/runner/work/_temp/kube config/ü+k"),
    ],
)
def test_instance_json_is_buildx_golden(case: str, spec: BuilderSpec, kubeconfig: str) -> None:
    golden = (FIXTURES / f"{case}.json").read_bytes()
    assert buildx_store.instance_json(spec, kubeconfig).encode() == golden


def test_golden_decodes_to_what_we_planned() -> None:
    """The golden files say what they should: a reader can check them by eye here."""
    doc = json.loads((FIXTURES / "buildkitd-config.json").read_text())
    assert [n["Name"] for n in doc["Nodes"]] == ["kbx-cfg-linux-amd64", "kbx-cfg-linux-arm-v7"]
    node = doc["Nodes"][1]
    assert node["Platforms"] == [{"architecture": "arm", "os": "linux", "variant": "v7"}]
    assert node["DriverOpts"]["annotations"] == "team=a&b<c>"
    assert node["Flags"] == ["--debug"]
    assert base64.b64decode(node["Files"]["buildkitd.toml"]) == CONFIG


@pytest.mark.parametrize(
    ("builder", "node", "kubeconfig", "expected"),
    [
        ("b", "b-linux-amd64", "/tmp/k", "kubernetes:///b?deployment=b-linux-amd64&kubeconfig=%2Ftmp%2Fk"),
        ("b", "b-linux-arm64", "", "kubernetes:///b?deployment=b-linux-arm64&kubeconfig="),
        (
            "kbx",
            "kbx-linux-arm-v7",
            "/a b/c~d_e.f-g",
            "kubernetes:///kbx?deployment=kbx-linux-arm-v7&kubeconfig=%2Fa+b%2Fc~d_e.f-g",
        ),
        (
            "x",
            "x-linux-amd64",
            "C:\\k&=?#",
            "kubernetes:///x?deployment=x-linux-amd64&kubeconfig=C%3A%5Ck%26%3D%3F%23",
        ),
    ],
)
def test_endpoint_is_url_values_encode(builder: str, node: str, kubeconfig: str, expected: str) -> None:
    assert buildx_store.endpoint(builder, node, kubeconfig) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": "<b>&c"}, '{"a":"\\u003cb\\u003e\\u0026c"}'),
        ({"a": None, "b": [], "c": False}, '{"a":null,"b":[],"c":false}'),
        ({"k": "ü\u2028\u2029"}, '{"k":"ü\\u2028\\u2029"}'),
        ({"k": "tab\there\nnl\x01"}, '{"k":"tab\\there\\nnl\\u0001"}'),
        ({"z": 1, "a": 2}, '{"z":1,"a":2}'),  # order as given: Go writes struct fields in order
    ],
)
def test_go_json(value: object, expected: str) -> None:
    assert buildx_store.go_json(value) == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"BUILDX_CONFIG": "/x/bx", "DOCKER_CONFIG": "/x/dc", "HOME": "/home/u"}, "/x/bx"),
        ({"DOCKER_CONFIG": "/x/dc", "HOME": "/home/u"}, "/x/dc/buildx"),
        ({"BUILDX_CONFIG": "", "DOCKER_CONFIG": "/x/dc", "HOME": "/home/u"}, "/x/dc/buildx"),
        ({"HOME": "/home/u"}, "/home/u/.docker/buildx"),
        ({"DOCKER_CONFIG": "", "HOME": "/home/u"}, "/home/u/.docker/buildx"),
    ],
)
def test_buildx_dir_precedence(env: dict[str, str], expected: str) -> None:
    assert buildx_store.buildx_dir(env) == Path(expected)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_creates_the_store_with_mode_0600(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    store = tmp_path / "buildx"
    spec = two_node()
    path = buildx_store.write(spec, "/tmp/k", store)
    assert path == store / "instances" / "kbx-demo"
    assert path.read_bytes() == (FIXTURES / "two-node.json").read_bytes()
    activity = (store / "activity" / "kbx-demo").read_text()
    assert len(activity) == 20
    assert activity.endswith("Z")
    assert activity[10] == "T"
    for f in (path, store / "activity" / "kbx-demo"):
        assert _mode(f) == 0o600, f
    # nothing left behind by the atomic writes
    assert sorted(p.name for p in (store / "instances").iterdir()) == ["kbx-demo"]
    assert sorted(p.name for p in store.iterdir()) == ["activity", "instances"], "never current"


def test_write_replaces_and_never_widens(tmp_path: Path) -> None:
    path = tmp_path / "instances" / "kbx-demo"
    path.parent.mkdir(parents=True)
    path.write_text("old")
    path.chmod(0o644)
    buildx_store.write(two_node(), "/tmp/k", tmp_path)
    assert _mode(path) == 0o600
    assert path.read_bytes() == (FIXTURES / "two-node.json").read_bytes()


def test_atomic_write_under_a_restrictive_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        files.atomic_write(tmp_path / "d" / "f", "x", mode=0o600)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "d" / "f") == 0o600
    assert _mode(tmp_path / "d") == 0o700


def test_atomic_write_failure_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: Path, target: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Path, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        files.atomic_write(tmp_path / "f", "x")
    assert list(tmp_path.iterdir()) == []


def test_remove_forgets_the_builder(tmp_path: Path) -> None:
    buildx_store.write(two_node(), "/tmp/k", tmp_path)
    buildx_store.remove("kbx-demo", tmp_path)
    assert not (tmp_path / "instances" / "kbx-demo").exists()
    assert not (tmp_path / "activity" / "kbx-demo").exists()


@pytest.mark.parametrize("name", ["other", "kbx-demo"])
def test_remove_leaves_current_as_it_is(tmp_path: Path, name: str) -> None:
    """As buildx's store.Txn.Remove: ``current`` is the user's, even when it names the builder."""
    buildx_store.write(two_node(), "/tmp/k", tmp_path)
    current = '{"Key":"unix:///var/run/docker.sock","Name":"' + name + '","Global":true}'
    (tmp_path / "current").write_text(current)
    buildx_store.remove("kbx-demo", tmp_path)
    assert (tmp_path / "current").read_text() == current


def test_kept_kubeconfig_is_private_and_removed_with_the_builder(tmp_path: Path) -> None:
    path = buildx_store.keep_kubeconfig_copy(tmp_path, "kbx-demo", "apiVersion: v1\n")
    assert (
        path
        == buildx_store.kept_kubeconfig(tmp_path, "kbx-demo")
        == tmp_path / "kubebuildx" / "kbx-demo.kubeconfig"
    )
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    buildx_store.write(two_node(), str(path), tmp_path)
    buildx_store.remove("kbx-demo", tmp_path)
    assert not path.exists()
