"""Inputs: one mapping of raw strings in, one frozen Inputs out, or an InputError naming the input."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubebuildx.action_spec import INPUTS
from kubebuildx.errors import InputError
from kubebuildx.inputs import Inputs, parse_duration, parse_inputs, parse_tolerations, split_list
from kubebuildx.platforms import Platform

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")


def test_defaults() -> None:
    got = parse_inputs({})
    assert got == Inputs()
    assert got.cleanup is True
    assert got.qemu_fallback is False
    assert got.push is False
    assert got.context == "."
    assert got.upload_artifacts is True
    assert got.compression_level == 6
    assert got.retention_days is None
    assert got.platforms == ()


def test_declared_defaults_are_the_defaults() -> None:
    """A runner passes every input of action.yml to a container action, with its default."""
    assert parse_inputs({spec.name: spec.default for spec in INPUTS}) == Inputs()


@pytest.mark.parametrize("name", [s.name for s in INPUTS if s.kind in {"bool", "int", "list"}])
def test_empty_bools_ints_and_lists_are_defaults(name: str) -> None:
    assert parse_inputs({name: ""}) == Inputs()


# docker/actions-toolkit __tests__/util.test.ts (getInputList), as tables.
@pytest.mark.parametrize(
    ("raw", "ignore_comma", "quote", "expected"),
    [
        ("", False, True, ()),
        ("  \n ", False, True, ()),
        ("bar", False, True, ("bar",)),
        ("bar\nbaz", False, True, ("bar", "baz")),
        ("bar\n\nbaz", False, True, ("bar", "baz")),
        ("bar,baz", False, True, ("bar", "baz")),
        ("bar,baz,", False, True, ("bar", "baz")),
        ("bar\r\nbaz", False, True, ("bar", "baz")),
        ("bar\r\nbaz,bat", False, True, ("bar", "baz", "bat")),
        ("linux/amd64, linux/arm64 ", False, True, ("linux/amd64", "linux/arm64")),
        (
            "user/app:cache\ntype=local,src=path/to/dir",
            True,
            True,
            ("user/app:cache", "type=local,src=path/to/dir"),
        ),
        (
            "user/app:cache\r\ntype=local,src=path/to/dir",
            True,
            True,
            ("user/app:cache", "type=local,src=path/to/dir"),
        ),
        ("foo=bar\nbar=qux#baz", False, True, ("foo=bar", "bar=qux#baz")),
        (
            'linux/amd64\n"linux/arm64,linux/arm/v7"',
            False,
            True,
            ("linux/amd64", "linux/arm64", "linux/arm/v7"),
        ),
        # quote: false (outputs, driver-opts): quotes are part of the value
        (
            '"env.no_proxy=localhost,127.0.0.1,.mydomain"',
            True,
            False,
            ('"env.no_proxy=localhost,127.0.0.1,.mydomain"',),
        ),
        (
            'type=image,"name=ghcr.io/a/b,docker.io/a/b",push-by-digest=true,push=true',
            True,
            False,
            ('type=image,"name=ghcr.io/a/b,docker.io/a/b",push-by-digest=true,push=true',),
        ),
        # a quoted item keeps its commas, and loses its quotes
        ('"MYSECRET=a,b"\nFOO=bar', True, True, ("MYSECRET=a,b", "FOO=bar")),
        ('MY_ARG="a,b"', True, True, ('MY_ARG="a,b"',)),
        # multi-line values, quoted
        (
            'GIT_AUTH_TOKEN=abcdefgh,ijklmno=0123456789\n"MYSECRET=aaaaaaaa\nbbbbbbb\nccccccccc"\nFOO=bar',
            True,
            True,
            (
                "GIT_AUTH_TOKEN=abcdefgh,ijklmno=0123456789",
                "MYSECRET=aaaaaaaa\nbbbbbbb\nccccccccc",
                "FOO=bar",
            ),
        ),
        (
            'A=1\n"EMPTYLINE=aaaa\n\nbbbb\nccc"',
            True,
            True,
            ("A=1", "EMPTYLINE=aaaa\n\nbbbb\nccc"),
        ),
        (
            '"MYSECRET=aaaaaaaa\nbbbb""bbb\nccccccccc"\nFOO=bar',
            True,
            True,
            ('MYSECRET=aaaaaaaa\nbbbb"bbb\nccccccccc', "FOO=bar"),
        ),
        (
            '"JSON={""key1"":""value1"",""key2"":""value2""}"',
            True,
            True,
            ('JSON={"key1":"value1","key2":"value2"}',),
        ),
        # multi-line values without quotes are separate items
        ("MYSECRET=aaaaaaaa\nbbbbbbb\nFOO=bar", True, True, ("MYSECRET=aaaaaaaa", "bbbbbbb", "FOO=bar")),
    ],
)
def test_split_list(raw: str, ignore_comma: bool, quote: bool, expected: tuple[str, ...]) -> None:
    assert split_list(raw, ignore_comma=ignore_comma, quote=quote) == expected


@pytest.mark.parametrize(
    ("name", "raw", "attr", "expected"),
    [
        ("build-args", "A=1,2\nB=3", "build_args", ("A=1,2", "B=3")),
        ("build-args", '"A=x,y"', "build_args", ("A=x,y",)),
        ("labels", "org.opencontainers.image.title=a, b", "labels", ("org.opencontainers.image.title=a, b",)),
        ("secrets", '"token=abc\ndef"', "secrets", ("token=abc\ndef",)),
        ("cache-from", "type=registry,ref=r/app:cache", "cache_from", ("type=registry,ref=r/app:cache",)),
        ("cache-to", "type=inline", "cache_to", ("type=inline",)),
        ("outputs", 'type=local,"dest=a,b"', "outputs", ('type=local,"dest=a,b"',)),
        ("ulimit", "nofile=1024:1024", "ulimit", ("nofile=1024:1024",)),
        ("attests", "type=sbom,generator=image", "attests", ("type=sbom,generator=image",)),
        ("annotations", "index:foo=a,b", "annotations", ("index:foo=a,b",)),
        (
            "build-contexts",
            "alpine=docker-image://alpine:3.20",
            "build_contexts",
            ("alpine=docker-image://alpine:3.20",),
        ),
        # these split on commas
        ("tags", "r/app:1,r/app:latest\nr/app:x", "tags", ("r/app:1", "r/app:latest", "r/app:x")),
        ("allow", "network.host,security.insecure", "allow", ("network.host", "security.insecure")),
        ("secret-envs", "a=A,b=B", "secret_envs", ("a=A", "b=B")),
        ("no-cache-filters", "build,test", "no_cache_filters", ("build", "test")),
        ("platforms", "linux/arm64\nlinux/amd64,linux/arm64", "platforms", (ARM64, AMD64)),
        ("platforms", "aarch64,x86_64", "platforms", (ARM64, AMD64)),
    ],
)
def test_lists(name: str, raw: str, attr: str, expected: tuple[object, ...]) -> None:
    assert getattr(parse_inputs({name: raw}), attr) == expected


@pytest.mark.parametrize("value", ["true", "True", "TRUE"])
def test_bool_true(value: str) -> None:
    got = parse_inputs({"push": value, "no-cache": value, "qemu-fallback": value, "tags": "r/a:1"})
    assert (got.push, got.no_cache, got.qemu_fallback) == (True, True, True)


@pytest.mark.parametrize("value", ["false", "False", "FALSE"])
def test_bool_false(value: str) -> None:
    got = parse_inputs({"cleanup": value, "upload-artifacts": value, "overwrite": value})
    assert (got.cleanup, got.upload_artifacts, got.overwrite) == (False, False, False)


@pytest.mark.parametrize("name", ["cleanup", "push", "pull", "qemu-fallback", "artifact-per-platform"])
@pytest.mark.parametrize("value", ["yes", "1", "on", "tRue", "t"])
def test_bool_rejects_other_spellings(name: str, value: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_inputs({name: value})
    assert repr(name) in str(exc.value)
    assert repr(value) in str(exc.value)


@pytest.mark.parametrize(
    ("name", "raw", "attr", "expected"),
    [
        ("retention-days", "1", "retention_days", 1),
        ("retention-days", " 90 ", "retention_days", 90),
        ("retention-days", "", "retention_days", None),
        ("retention-days", "0", "retention_days", None),  # upload-artifact: 0 is the repository's default
        ("retention-days", "180", "retention_days", 180),  # the service caps it, with a warning
        ("compression-level", "0", "compression_level", 0),
        ("compression-level", "9", "compression_level", 9),
        ("compression-level", "", "compression_level", 6),
    ],
)
def test_ints(name: str, raw: str, attr: str, expected: int | None) -> None:
    assert getattr(parse_inputs({name: raw}), attr) == expected


@pytest.mark.parametrize(
    ("name", "raw", "words"),
    [
        ("retention-days", "-1", "between 0 and 400"),
        ("retention-days", "401", "between 0 and 400"),
        ("retention-days", "seven", "whole number"),
        ("compression-level", "10", "between 0 and 9"),
        ("compression-level", "-1", "between 0 and 9"),
        ("compression-level", "1.5", "whole number"),
    ],
)
def test_ints_rejected(name: str, raw: str, words: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_inputs({name: raw})
    assert repr(name) in str(exc.value)
    assert words in str(exc.value)


# ---- driver-opts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "common", "per"),
    [
        ("", (), ()),
        ("replicas=2", (("replicas", "2"),), ()),
        (
            "requests.cpu=2\nimage=moby/buildkit:v0.20.0\nreplicas=1",
            (("image", "moby/buildkit:v0.20.0"), ("replicas", "1"), ("requests.cpu", "2")),
            (),
        ),
        # a comma belongs to the value: one option per line
        (
            "tolerations=key=arch,operator=Exists;key=gpu,operator=Exists",
            (("tolerations", "key=arch,operator=Exists;key=gpu,operator=Exists"),),
            (),
        ),
        ("nodeselector=pool=builders,disk=ssd", (("nodeselector", "pool=builders,disk=ssd"),), ()),
        ("env.BUILDKIT_STEP_LOG_MAX_SIZE=10485760", (("env.BUILDKIT_STEP_LOG_MAX_SIZE", "10485760"),), ()),
        ("timeout=5m", (("timeout", "5m"),), ()),
        ("timeout=1h30m", (("timeout", "1h30m"),), ()),
        ("timeout=90s", (("timeout", "90s"),), ()),
        ('labels="team=ci,tier=build"', (("labels", '"team=ci,tier=build"'),), ()),
        (
            "tolerations=key=a,operator=Exists,effect=NoExecute,tolerationSeconds=30;operator=Exists",
            (("tolerations", "key=a,operator=Exists,effect=NoExecute,tolerationSeconds=30;operator=Exists"),),
            (),
        ),
        ("rootless=true\nloadbalance=random", (("loadbalance", "random"), ("rootless", "true")), ()),
        # per platform
        (
            "requests.memory=2Gi\nlinux/arm64:requests.memory=8Gi",
            (("requests.memory", "2Gi"),),
            ((ARM64, (("requests.memory", "8Gi"),)),),
        ),
        (
            "linux/arm64:tolerations=key=arch,value=arm64,effect=NoSchedule\nlinux/amd64:replicas=3",
            (),
            (
                (AMD64, (("replicas", "3"),)),
                (ARM64, (("tolerations", "key=arch,value=arm64,effect=NoSchedule"),)),
            ),
        ),
        # a platform prefix is normalised like any platform
        ("linux/aarch64:replicas=2", (), ((ARM64, (("replicas", "2"),)),)),
    ],
)
def test_driver_opts(
    raw: str,
    common: tuple[tuple[str, str], ...],
    per: tuple[tuple[Platform, tuple[tuple[str, str], ...]], ...],
) -> None:
    got = parse_inputs({"driver-opts": raw})
    assert got.driver_opts == common
    assert got.platform_driver_opts == per


def test_driver_opts_for_merges_platform_over_common() -> None:
    got = parse_inputs(
        {
            "platforms": "linux/amd64,linux/arm64",
            "driver-opts": "requests.memory=2Gi\nreplicas=2\nlinux/arm64:requests.memory=8Gi",
        }
    )
    assert got.driver_opts_for(ARM64) == {"requests.memory": "8Gi", "replicas": "2"}
    assert got.driver_opts_for(AMD64) == {"requests.memory": "2Gi", "replicas": "2"}


def test_driver_opts_unknown_key_lists_the_valid_ones() -> None:
    with pytest.raises(InputError) as exc:
        parse_inputs({"driver-opts": "request.cpu=2"})
    message = str(exc.value)
    assert "driver-opts" in message
    assert "'request.cpu'" in message
    for valid in ("requests.cpu", "tolerations", "nodeselector", "replicas", "env.<NAME>"):
        assert valid in message
    assert "namespace," not in message  # not offered: it has its own input


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("namespace=other", "namespace"),
        ("linux/arm64:namespace=other", "namespace"),
        ("nodeselector=kubernetes.io/arch=arm64", "kubernetes.io/arch"),
        ("nodeselector=pool=a,kubernetes.io/arch=arm64", "kubernetes.io/arch"),
        ("timeout=5", "timeout"),
        ("timeout=five minutes", "timeout"),
        ("replicas=0", "replicas"),
        ("replicas=two", "replicas"),
        ("rootless=yes", "rootless"),
        ("loadbalance=roundrobin", "loadbalance"),
        ("replicas", "key=value"),
        ("=2", "key=value"),
        ("env.=x", "env."),
        ("Linux/ARM64:replicas=2", "Linux/ARM64:replicas"),
        # what buildx would only refuse when it boots the builder
        ("nodeselector=pool", "nodeselector must be key=value pairs"),
        ("nodeselector=pool=a=b", "nodeselector must be key=value pairs"),
        ("labels=team=a,b", "labels must be key=value pairs"),
        ("annotations=", "annotations must be key=value pairs"),
        ("tolerations=key=arch,op=Exists", "'op' is not a toleration field"),
        ("linux/arm64:tolerations=key=a,operator=Exists;keys=b", "'keys' is not a toleration field"),
    ],
)
def test_driver_opts_rejected(raw: str, words: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_inputs({"driver-opts": raw})
    message = str(exc.value)
    assert "driver-opts" in message
    assert words.lower() in message.lower()


# ---- combinations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"push": "true", "outputs": "type=registry"}, ("push", "outputs")),
        ({"push": "true", "outputs": "type=local,dest=out"}, ("push", "outputs")),
        (
            {"buildkitd-config": "bk.toml", "buildkitd-config-inline": "debug = true"},
            ("buildkitd-config", "buildkitd-config-inline"),
        ),
        ({"buildkitd-config": "/nonexistent/buildkitd.toml"}, ("buildkitd-config",)),
        ({"builder": "My_Builder"}, ("builder",)),
        ({"builder": "1builder"}, ("builder",)),
        ({"builder": "builder-"}, ("builder",)),
        ({"builder": "b" * 41}, ("builder",)),
        ({"namespace": "Build_Kit"}, ("namespace",)),
        (
            {"platforms": "linux/amd64", "driver-opts": "linux/arm64:replicas=2"},
            ("driver-opts", "linux/arm64", "platforms"),
        ),
        ({"if-no-files-found": "fail"}, ("if-no-files-found",)),
        ({"build-args": "NOVALUE"}, ("build-args", "NOVALUE")),
        ({"labels": "=x"}, ("labels",)),
        ({"secret-files": "onlyafile"}, ("secret-files",)),
        ({"no-such-input": "x"}, ("no-such-input",)),
    ],
)
def test_bad_combinations_name_the_inputs(raw: dict[str, str], names: tuple[str, ...]) -> None:
    with pytest.raises(InputError) as exc:
        parse_inputs(raw)
    for name in names:
        assert name in str(exc.value)


def test_builder_name_of_40_characters_is_fine() -> None:
    assert parse_inputs({"builder": "b" * 40}).builder == "b" * 40


def test_buildkitd_config_file_that_exists(tmp_path: Path) -> None:
    config = tmp_path / "buildkitd.toml"
    config.write_text("debug = true\n")
    assert parse_inputs({"buildkitd-config": str(config)}).buildkitd_config == str(config)


def test_per_platform_opts_without_platforms_are_kept() -> None:
    """platforms empty: the cluster decides, so any platform prefix may apply."""
    got = parse_inputs({"driver-opts": "linux/riscv64:replicas=2"})
    assert got.platform_driver_opts == ((Platform("linux", "riscv64"), (("replicas", "2"),)),)


def test_push_with_image_outputs_is_one_or_the_other() -> None:
    assert parse_inputs({"push": "true", "tags": "r/a:1"}).push is True
    assert parse_inputs({"outputs": "type=image,push=true"}).outputs == ("type=image,push=true",)


def test_secret_without_key_is_not_quoted_in_the_error() -> None:
    secret = "ghp_FAKEFAKEFAKEFAKEFAKEFAKEFAKE0000"
    with pytest.raises(InputError) as exc:
        parse_inputs({"secrets": f"good=1\n{secret}"})
    assert "secrets" in str(exc.value)
    assert "item 2" in str(exc.value)
    assert "ghp_" not in str(exc.value)
    assert "ghp_" not in repr(exc.value.args)


def test_kubeconfig_is_kept_verbatim() -> None:
    text = "apiVersion: v1\nkind: Config\n"
    assert parse_inputs({"kubeconfig": text}).kubeconfig == text


def test_secrets_are_not_in_repr() -> None:
    got = parse_inputs({"secrets": "token=FAKE-SECRET-VALUE"})
    assert "FAKE-SECRET-VALUE" not in repr(got)


@pytest.mark.parametrize(
    "opt", ["requests.cpu=lots", "limits.memory=4 GB", "persistent-volume-claim.requests.storage=big"]
)
def test_resource_quantities_are_checked_before_anything_runs(opt: str) -> None:
    with pytest.raises(InputError, match="not a Kubernetes quantity"):
        parse_inputs({"driver-opts": opt})
    assert parse_inputs({"driver-opts": "requests.cpu=500m\nlimits.memory=4Gi"}).driver_opts == (
        ("limits.memory", "4Gi"),
        ("requests.cpu", "500m"),
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        ("key=arch,operator=Exists", ({"key": "arch", "operator": "Exists"},)),
        (
            "key=arch,operator=Equal,value=arm64,effect=NoSchedule;key=dedicated,operator=Exists",
            (
                {"key": "arch", "operator": "Equal", "value": "arm64", "effect": "NoSchedule"},
                {"key": "dedicated", "operator": "Exists"},
            ),
        ),
        ("operator=Exists", ({"operator": "Exists"},)),
        (" key = a , effect = NoExecute ;", ({"key": "a", "effect": "NoExecute"},)),
    ],
)
def test_parse_tolerations(value: str, expected: tuple[dict[str, str], ...]) -> None:
    assert parse_tolerations(value) == expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90.0), ("5m", 300.0), ("1h30m", 5400.0), ("1.5m", 90.0), ("250ms", 0.25), ("2m0s", 120.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "five minutes", "-5m", "5 m", "m5"])
def test_parse_duration_refuses_what_is_not_a_go_duration(text: str) -> None:
    assert parse_duration(text) is None


# ---- secret ids: valid, and each used once, before anything runs ---------------------------------


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"secrets": "..=FAKE-SECRET-x"}, "item 1 has a secret id that is not a name"),
        ({"secrets": "ok=1\n.=FAKE-SECRET-x"}, "item 2 has a secret id that is not a name"),
        ({"secrets": "a/../b=FAKE-SECRET-x"}, "item 1 has a secret id that is not a name"),
        ({"secrets": "a,src=/etc/shadow=FAKE"}, "item 1 has a secret id that is not a name"),
        ({"secrets": '"a b"=FAKE'}, "item 1 has a secret id that is not a name"),
        ({"secret-envs": "/abs=HOME"}, "input 'secret-envs': item 1 has a secret id"),
        (
            {"secrets": "a/b=FAKE-1\na_b=FAKE-2"},
            "secret ids 'a/b' and 'a_b' would be written to the same file",
        ),
        ({"secrets": "npm=FAKE-1\nnpm=FAKE-2"}, "secret id 'npm' is also given in input 'secrets'"),
        ({"secrets": "npm=FAKE-1", "secret-envs": "npm=NPM_TOKEN"}, "secret id 'npm' is also given"),
    ],
    ids=["..", ".", "a/../b", "comma", "quote", "leading slash", "a/b and a_b", "twice", "across inputs"],
)
def test_secret_ids_are_refused_before_any_request(raw: dict[str, str], words: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_inputs(raw)
    assert words in str(exc.value)
    assert "FAKE" not in str(exc.value)


@pytest.mark.parametrize("secret_id", ["npm_token", "aws/credentials", "GIT_AUTH_TOKEN.github.com", "a-b.c"])
def test_secret_ids_that_are_names_are_kept(secret_id: str) -> None:
    assert parse_inputs({"secrets": f"{secret_id}=FAKE-value"}).secrets == (f"{secret_id}=FAKE-value",)
