"""Inputs to a builder spec: nodes, node selectors, driver options, flags and names."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from kubebuildx import builder
from kubebuildx.builder import NETWORK_HOST_FLAG, NodeSpec, config_files, plan, read_config
from kubebuildx.errors import InputError
from kubebuildx.inputs import BUILDER_NAME_MAX, parse_inputs
from kubebuildx.platforms import Platform

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")
ARMV7 = Platform("linux", "arm", "v7")
DNS_LABEL = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")


def _opts(node: NodeSpec) -> dict[str, str]:
    return dict(node.driver_opts)


def test_one_node_per_platform_pinned_to_its_architecture() -> None:
    spec = plan(parse_inputs({}), name="kbx", namespace="buildkit", native=(AMD64, ARM64))
    assert spec.name == "kbx"
    assert spec.namespace == "buildkit"
    assert spec.platforms == (AMD64, ARM64)
    assert [n.name for n in spec.nodes] == ["kbx-linux-amd64", "kbx-linux-arm64"]
    assert [_opts(n) for n in spec.nodes] == [
        {"namespace": "buildkit", "nodeselector": "kubernetes.io/arch=amd64,kubernetes.io/os=linux"},
        {"namespace": "buildkit", "nodeselector": "kubernetes.io/arch=arm64,kubernetes.io/os=linux"},
    ]
    assert all(n.emulated_on is None for n in spec.nodes)
    assert spec.flags == (NETWORK_HOST_FLAG,)
    assert spec.files == ()


def test_driver_opts_are_sorted_by_key() -> None:
    spec = plan(
        parse_inputs({"driver-opts": "replicas=2\nimage=moby/buildkit:v0.20.0"}),
        name="b",
        namespace="ns",
        native=(AMD64,),
    )
    keys = [k for k, _ in spec.nodes[0].driver_opts]
    assert keys == sorted(keys) == ["image", "namespace", "nodeselector", "replicas"]


@pytest.mark.parametrize(
    ("driver_opts", "platform", "expected"),
    [
        ("", AMD64, "kubernetes.io/arch=amd64,kubernetes.io/os=linux"),
        ("", ARMV7, "kubernetes.io/arch=arm,kubernetes.io/os=linux"),
        (
            "nodeselector=pool=builders",
            ARM64,
            "kubernetes.io/arch=arm64,kubernetes.io/os=linux,pool=builders",
        ),
        (
            "nodeselector=pool=builders, disk=ssd",
            AMD64,
            "kubernetes.io/arch=amd64,kubernetes.io/os=linux,pool=builders,disk=ssd",
        ),
        # the OS is ours to pin as well
        (
            "nodeselector=kubernetes.io/os=windows,pool=a",
            AMD64,
            "kubernetes.io/arch=amd64,kubernetes.io/os=linux,pool=a",
        ),
        (
            "nodeselector=pool=a\nlinux/arm64:nodeselector=pool=big",
            ARM64,
            "kubernetes.io/arch=arm64,kubernetes.io/os=linux,pool=big",
        ),
    ],
)
def test_node_selector(driver_opts: str, platform: Platform, expected: str) -> None:
    spec = plan(parse_inputs({"driver-opts": driver_opts}), name="b", namespace="ns", native=(platform,))
    assert _opts(spec.nodes[0])["nodeselector"] == expected


def test_per_platform_options_apply_to_their_node_only() -> None:
    inputs = parse_inputs(
        {
            "platforms": "linux/amd64,linux/arm64",
            "driver-opts": "requests.memory=2Gi\nreplicas=2\n"
            "linux/arm64:requests.memory=8Gi\n"
            "linux/arm64:tolerations=key=arch,operator=Equal,value=arm64,effect=NoSchedule",
        }
    )
    spec = plan(inputs, name="b", namespace="ns", native=(AMD64, ARM64))
    amd, arm = (_opts(n) for n in spec.nodes)
    assert amd["requests.memory"] == "2Gi"
    assert "tolerations" not in amd
    assert arm["requests.memory"] == "8Gi"
    assert arm["tolerations"] == "key=arch,operator=Equal,value=arm64,effect=NoSchedule"
    assert amd["replicas"] == arm["replicas"] == "2"


def test_namespace_is_the_planned_one() -> None:
    spec = plan(parse_inputs({}), name="b", namespace="ci-builds", native=(AMD64,))
    assert _opts(spec.nodes[0])["namespace"] == "ci-builds"


def test_qemu_fallback_node_runs_on_the_host_cpu_with_qemu() -> None:
    spec = plan(parse_inputs({}), name="b", namespace="ns", native=(AMD64,), emulated={ARM64: AMD64})
    assert [(n.name, n.platform, n.emulated_on) for n in spec.nodes] == [
        ("b-linux-amd64", AMD64, None),
        ("b-linux-arm64", ARM64, AMD64),
    ]
    emulated = _opts(spec.nodes[1])
    assert emulated["nodeselector"] == "kubernetes.io/arch=amd64,kubernetes.io/os=linux"
    assert emulated["qemu.install"] == "true"
    assert "qemu.install" not in _opts(spec.nodes[0])


def test_qemu_install_set_by_the_user_wins() -> None:
    inputs = parse_inputs({"driver-opts": "qemu.install=false"})
    spec = plan(inputs, name="b", namespace="ns", native=(), emulated={ARM64: AMD64})
    assert _opts(spec.nodes[0])["qemu.install"] == "false"


def test_buildkitd_config_is_carried_in_files() -> None:
    config = b'insecure-entitlements = ["network.host"]\n'
    spec = plan(parse_inputs({}), name="b", namespace="ns", native=(AMD64,), config=config)
    assert spec.files == (("buildkitd.toml", config),)
    assert spec.flags == ()


def test_node_names_are_dns_labels_for_the_longest_builder_name() -> None:
    name = "b" * BUILDER_NAME_MAX
    for p in (AMD64, ARM64, ARMV7, Platform("linux", "amd64", "v3"), Platform("linux", "riscv64")):
        assert DNS_LABEL.match(builder.node_name(name, p))


# buildx v0.36.1 builder.parseBuildkitdFlags for the kubernetes driver.
@pytest.mark.parametrize(
    ("flags", "config", "expected"),
    [
        ("", None, (NETWORK_HOST_FLAG,)),
        ("--debug", None, ("--debug", NETWORK_HOST_FLAG)),
        (
            "--debug --oci-worker-gc-keepstorage=10000",
            None,
            ("--debug", "--oci-worker-gc-keepstorage=10000", NETWORK_HOST_FLAG),
        ),
        (
            "--allow-insecure-entitlement=security.insecure",
            None,
            ("--allow-insecure-entitlement=security.insecure",),
        ),
        (
            "--allow-insecure-entitlement security.insecure --debug",
            None,
            ("--allow-insecure-entitlement", "security.insecure", "--debug"),
        ),
        ("--allow-insecure-entitlement=network.host", None, ("--allow-insecure-entitlement=network.host",)),
        # pflag stops at the first flag it does not know, so buildx never sees this entitlement
        (
            "--debug --allow-insecure-entitlement=security.insecure",
            None,
            ("--debug", "--allow-insecure-entitlement=security.insecure", NETWORK_HOST_FLAG),
        ),
        # quoting as a shell would
        ("--debug --foo='a b'", None, ("--debug", "--foo=a b", NETWORK_HOST_FLAG)),
        # the config chooses network.host itself
        ("", b'insecure-entitlements = ["network.host"]\n', ()),
        ("--debug", b'insecure-entitlements = [ "network.host", "security.insecure" ]\n', ("--debug",)),
        # ...but other entitlements in the config do not stop buildx from adding network.host
        ("", b'insecure-entitlements = ["security.insecure"]\n', (NETWORK_HOST_FLAG,)),
        ("", b"debug = true\n", (NETWORK_HOST_FLAG,)),
        # not BuildKit's key: BuildKit ignores it, so buildx does too
        ("", b'entitlements = ["network.host"]\n', (NETWORK_HOST_FLAG,)),
    ],
)
def test_buildkitd_flags(flags: str, config: bytes | None, expected: tuple[str, ...]) -> None:
    assert builder.buildkitd_flags(flags, config) == expected


@pytest.mark.parametrize(
    ("flags", "config", "words"),
    [
        ('--debug "unterminated', None, "buildkitd-flags"),
        ("", b"insecure-entitlements = [", "TOML"),
    ],
)
def test_buildkitd_flags_errors(flags: str, config: bytes | None, words: str) -> None:
    with pytest.raises(InputError, match=words):
        builder.buildkitd_flags(flags, config)


# ---- default names --------------------------------------------------------------------------

RUN = {
    "GITHUB_REPOSITORY": "octo/app",
    "GITHUB_RUN_ID": "12345678901",
    "GITHUB_RUN_ATTEMPT": "1",
    "GITHUB_JOB": "build",
    "GITHUB_ACTION": "__run",
}


def test_default_name_names_the_run_and_differs_for_every_leg_of_a_matrix() -> None:
    """Matrix legs share run, job, action and often platforms: only a random part tells them apart."""
    names = {builder.default_builder_name(dict(RUN), (AMD64, ARM64), keep=False) for _ in range(20)}
    assert len(names) == 20
    assert all(re.fullmatch(r"kbx-12345678901-[0-9a-f]{8}", n) for n in names)
    assert builder.default_builder_name({}, (AMD64,), keep=False, nonce="ab12cd34") == "kbx-cli-ab12cd34"


def test_warm_name_is_stable_per_repository_and_platforms() -> None:
    warm = builder.default_builder_name(RUN, (AMD64, ARM64), keep=True)
    later = {**RUN, "GITHUB_RUN_ID": "99999999999", "GITHUB_RUN_ATTEMPT": "3", "GITHUB_JOB": "other"}
    assert builder.default_builder_name(later, (AMD64, ARM64), keep=True) == warm
    assert (
        builder.default_builder_name({**RUN, "GITHUB_REPOSITORY": "octo/b"}, (AMD64, ARM64), keep=True)
        != warm
    )
    assert builder.default_builder_name(RUN, (AMD64,), keep=True) != warm
    assert builder.default_builder_name(RUN, (AMD64,), keep=False) != builder.default_builder_name(
        RUN, (AMD64,), keep=True
    )


def test_cli_name_with_cleanup_is_unique_per_invocation() -> None:
    """Two CLI jobs on one cluster (no GitHub run id): one's cleanup must not remove the other's builder."""
    a = builder.default_builder_name({}, (AMD64,), keep=False, nonce="job-a")
    assert a == builder.default_builder_name({}, (AMD64,), keep=False, nonce="job-a")
    assert a != builder.default_builder_name({}, (AMD64,), keep=False, nonce="job-b")
    assert builder.default_builder_name({}, (AMD64,), keep=False) != builder.default_builder_name(
        {}, (AMD64,), keep=False
    )
    assert a != builder.default_builder_name({}, (AMD64,), keep=True)


@pytest.mark.parametrize(
    "env",
    [
        {},
        RUN,
        {**RUN, "GITHUB_RUN_ID": "9" * 30, "GITHUB_REPOSITORY": "o" * 100 + "/" + "r" * 100},
    ],
)
@pytest.mark.parametrize("keep", [True, False])
def test_default_name_is_a_valid_builder_name(env: dict[str, str], keep: bool) -> None:
    name = builder.default_builder_name(env, (AMD64, ARM64, ARMV7), keep=keep)
    assert len(name) <= BUILDER_NAME_MAX
    assert DNS_LABEL.match(name)
    assert parse_inputs({"builder": name}).builder == name


def test_default_name_outside_actions_is_unique_per_invocation() -> None:
    local = {"GITHUB_REPOSITORY": ""}
    a = builder.default_builder_name(local, (AMD64,), keep=False, nonce="1")
    assert builder.default_builder_name(local, (AMD64,), keep=False, nonce="1") == a
    assert builder.default_builder_name(local, (AMD64,), keep=False, nonce="2") != a
    assert builder.default_builder_name(local, (AMD64,), keep=False) != builder.default_builder_name(
        local, (AMD64,), keep=False
    )
    # a warm builder is found again, in or outside Actions
    assert builder.default_builder_name(local, (AMD64,), keep=True) == builder.default_builder_name(
        local, (AMD64,), keep=True
    )


def test_config_files_carry_registry_certificates_like_buildx(tmp_path: Path) -> None:
    """buildx's confutil.LoadConfigFiles: certs travel as certs/<registry>/<file>, the
    config points at /etc/buildkit/certs/..., where the kubernetes driver mounts them."""
    ca, key, cert = (tmp_path / n for n in ("myca.pem", "key.pem", "cert.pem"))
    for f in (ca, key, cert):
        f.write_text(f"FAKE {f.name}")
    config = (
        f'debug = true\n[registry."reg.example:5000"]\n  ca = ["{ca}"]\n'
        f'  [[registry."reg.example:5000".keypair]]\n    key = "{key}"\n    cert = "{cert}"\n'
    ).encode()
    files = dict(builder.config_files(config, lambda p: Path(p).read_bytes()))
    assert sorted(files) == [
        "buildkitd.toml",
        "certs/reg.example_5000/cert.pem",
        "certs/reg.example_5000/key.pem",
        "certs/reg.example_5000/myca.pem",
    ]
    assert files["certs/reg.example_5000/myca.pem"] == b"FAKE myca.pem"
    toml = tomllib.loads(files["buildkitd.toml"].decode())
    reg = toml["registry"]["reg.example:5000"]
    assert reg["ca"] == ["/etc/buildkit/certs/reg.example_5000/myca.pem"]
    assert reg["keypair"] == [
        {
            "key": "/etc/buildkit/certs/reg.example_5000/key.pem",
            "cert": "/etc/buildkit/certs/reg.example_5000/cert.pem",
        }
    ]
    assert toml["debug"] is True


def test_config_files_name_an_unreadable_certificate(tmp_path: Path) -> None:
    config = b'[registry."r"]\n  ca = ["/nope/ca.pem"]\n'
    with pytest.raises(InputError, match=re.escape("/nope/ca.pem")):
        builder.config_files(config, lambda p: Path(p).read_bytes())


@pytest.mark.parametrize("config", [b"[registry", b"\xff\xfe", b'insecure-entitlements = "x" = 1'])
def test_a_config_that_is_not_toml_fails_the_same_way_wherever_it_is_read(config: bytes) -> None:
    with pytest.raises(InputError, match="the BuildKit config is not valid TOML") as flags:
        plan(parse_inputs({}), name="b", namespace="ns", native=(AMD64,), config=config)
    with pytest.raises(InputError, match="the BuildKit config is not valid TOML") as files:
        config_files(config, lambda path: b"")
    assert str(flags.value) == str(files.value)


def test_read_config_gives_the_text_and_the_table() -> None:
    text = 'insecure-entitlements = ["network.host"]\n[registry."r:5000"]\n  http = true\n'
    assert read_config(text.encode()) == (
        text,
        {"registry": {"r:5000": {"http": True}}, "insecure-entitlements": ["network.host"]},
    )
    spec = plan(parse_inputs({}), name="b", namespace="ns", native=(AMD64,), config=text.encode())
    assert NETWORK_HOST_FLAG not in spec.flags  # the entitlement is chosen in the config itself
