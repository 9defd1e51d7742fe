"""Inputs to the one ``buildx build`` argv: exact argv tables, in docker/build-push-action's
order (getBuildArgs, then getCommonArgs, then the context)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubebuildx import build
from kubebuildx.builder import plan
from kubebuildx.errors import InputError
from kubebuildx.inputs import parse_inputs
from kubebuildx.platforms import Platform
from kubebuildx.progress import Timings


@pytest.fixture(autouse=True)
def _workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The contexts and Dockerfiles the tables name exist, as in a checked-out workspace."""
    for folder in ("app", "ctx"):
        (tmp_path / folder).mkdir()
    for file in ("app/Dockerfile.ci", "ctx/Dockerfile", "Dockerfile"):
        (tmp_path / file).write_text("FROM scratch\n")
    monkeypatch.chdir(tmp_path)


AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")
PATHS = build.BuildPaths(Path("/w/metadata.json"), Path("/w/out"))
RUN_URL = "https://github.com/o/r/actions/runs/1/attempts/1"
HEAD = ["buildx", "build", "--builder", "b", "--progress", "rawjson"]
LOCAL = ["--output", "type=local,dest=/w/out,platform-split=true"]
TAIL = ["--metadata-file", "/w/metadata.json"]


def argv(
    raw: dict[str, str], *, platforms: tuple[Platform, ...] = (AMD64, ARM64), builder_id: str = ""
) -> list[str]:
    return build.argv(parse_inputs(raw), builder="b", platforms=platforms, paths=PATHS, builder_id=builder_id)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, [*HEAD, *LOCAL, "--platform", "linux/amd64,linux/arm64", *TAIL, "."]),
        (
            {"context": "./app", "file": "./app/Dockerfile.ci", "target": "release"},
            [
                *HEAD,
                "--file",
                "./app/Dockerfile.ci",
                *LOCAL,
                "--platform",
                "linux/amd64,linux/arm64",
                "--target",
                "release",
                *TAIL,
                "./app",
            ],
        ),
        (
            {"build-args": "A=1,2\nB=x y", "build-contexts": "alpine=docker-image://alpine:3.20"},
            [
                *HEAD,
                "--build-arg",
                "A=1,2",
                "--build-arg",
                "B=x y",
                "--build-context",
                "alpine=docker-image://alpine:3.20",
                *LOCAL,
                "--platform",
                "linux/amd64,linux/arm64",
                *TAIL,
                ".",
            ],
        ),
        (
            {
                "cache-from": "type=registry,ref=r/app:cache\ntype=gha",
                "cache-to": "type=registry,ref=r/app:cache,mode=max",
                "no-cache-filters": "test,lint",
            },
            [
                *HEAD,
                "--cache-from",
                "type=registry,ref=r/app:cache",
                "--cache-from",
                "type=gha",
                "--cache-to",
                "type=registry,ref=r/app:cache,mode=max",
                "--no-cache-filter",
                "test",
                "--no-cache-filter",
                "lint",
                *LOCAL,
                "--platform",
                "linux/amd64,linux/arm64",
                *TAIL,
                ".",
            ],
        ),
        (
            {
                "labels": "org.opencontainers.image.title=app\norg.opencontainers.image.description=a, b",
                "annotations": "index:org.opencontainers.image.title=app",
                "allow": "network.host",
            },
            [
                *HEAD,
                "--allow",
                "network.host",
                "--annotation",
                "index:org.opencontainers.image.title=app",
                "--label",
                "org.opencontainers.image.title=app",
                "--label",
                "org.opencontainers.image.description=a, b",
                *LOCAL,
                "--platform",
                "linux/amd64,linux/arm64",
                *TAIL,
                ".",
            ],
        ),
        (
            {"outputs": "type=local,dest=/tmp/o\ntype=tar,dest=/tmp/o.tar"},
            [
                *HEAD,
                "--output",
                "type=local,dest=/tmp/o",
                "--output",
                "type=tar,dest=/tmp/o.tar",
                "--platform",
                "linux/amd64,linux/arm64",
                *TAIL,
                ".",
            ],
        ),
        (
            {"push": "true", "tags": "ghcr.io/o/app:1.0,ghcr.io/o/app:latest"},
            [
                *HEAD,
                "--output",
                "type=image,push=true",
                "--platform",
                "linux/amd64,linux/arm64",
                "--tag",
                "ghcr.io/o/app:1.0",
                "--tag",
                "ghcr.io/o/app:latest",
                *TAIL,
                ".",
            ],
        ),
        (
            {
                "shm-size": "2g",
                "ulimit": "nofile=1024:1024\nnproc=512",
                "network": "host",
                "no-cache": "true",
                "pull": "true",
            },
            [
                *HEAD,
                *LOCAL,
                "--platform",
                "linux/amd64,linux/arm64",
                "--shm-size",
                "2g",
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=512",
                *TAIL,
                "--network",
                "host",
                "--no-cache",
                "--pull",
                ".",
            ],
        ),
        (
            {"secret-envs": "gh=GITHUB_TOKEN,npm=NPM_TOKEN", "file": "Dockerfile"},
            [
                *HEAD,
                "--secret",
                "id=gh,env=GITHUB_TOKEN",
                "--secret",
                "id=npm,env=NPM_TOKEN",
                "--file",
                "Dockerfile",
                *LOCAL,
                "--platform",
                "linux/amd64,linux/arm64",
                *TAIL,
                ".",
            ],
        ),
    ],
)
def test_argv(raw: dict[str, str], expected: list[str]) -> None:
    assert argv(raw) == expected


def test_every_input_in_build_push_action_order(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("not a real key")
    inputs = parse_inputs(
        {
            "context": "ctx",
            "allow": "security.insecure",
            "annotations": "manifest:a=1",
            "build-args": "A=1",
            "build-contexts": "base=../base",
            "cache-from": "type=gha",
            "cache-to": "type=gha,mode=max",
            "secret-envs": "e=ENV",
            "file": "ctx/Dockerfile",
            "labels": "l=1",
            "no-cache-filters": "t",
            "outputs": "type=image,name=r/a,push=true",
            "provenance": "mode=max",
            "sbom": "true",
            "secrets": "s=value",
            "secret-files": f"f={key}",
            "shm-size": "1g",
            "tags": "r/a:1",
            "target": "final",
            "ulimit": "nofile=1:1",
            "network": "none",
            "no-cache": "true",
            "pull": "true",
        }
    )
    paths = build.BuildPaths(Path("/w/m.json"), Path("/w/out"), secret_files=(("s", Path("/w/secrets/s")),))
    got = build.argv(
        inputs,
        builder="kbx",
        platforms=(ARM64,),
        paths=paths,
        builder_id=RUN_URL,
        buildx=("docker", "buildx"),
    )
    assert got == [
        "docker",
        "buildx",
        "build",
        "--builder",
        "kbx",
        "--progress",
        "rawjson",
        "--allow",
        "security.insecure",
        "--annotation",
        "manifest:a=1",
        "--build-arg",
        "A=1",
        "--build-context",
        "base=../base",
        "--cache-from",
        "type=gha,scope=buildkit-linux-arm64",  # one platform: its own gha scope (cache.py)
        "--cache-to",
        "type=gha,mode=max,scope=buildkit-linux-arm64",
        "--secret",
        "id=e,env=ENV",
        "--file",
        "ctx/Dockerfile",
        "--label",
        "l=1",
        "--no-cache-filter",
        "t",
        "--output",
        "type=image,name=r/a,push=true",
        "--platform",
        "linux/arm64",
        "--attest",
        f"type=provenance,mode=max,builder-id={RUN_URL}",
        "--attest",
        "type=sbom",
        "--secret",
        "id=s,src=/w/secrets/s",
        "--secret",
        f"id=f,src={key}",
        "--shm-size",
        "1g",
        "--tag",
        "r/a:1",
        "--target",
        "final",
        "--ulimit",
        "nofile=1:1",
        "--metadata-file",
        "/w/m.json",
        "--network",
        "none",
        "--no-cache",
        "--pull",
        "ctx",
    ]
    assert "value" not in " ".join(got)  # a secret's value goes to a file, never into argv


def test_single_platform_still_splits_the_local_output() -> None:
    assert argv({}, platforms=(ARM64,)) == [
        *HEAD,
        *LOCAL,
        "--platform",
        "linux/arm64",
        *TAIL,
        ".",
    ]


# build-push-action getAttestArgs / getProvenanceInput / resolveProvenanceAttrs
@pytest.mark.parametrize(
    ("raw", "builder_id", "expected"),
    [
        ({}, RUN_URL, []),
        ({"provenance": "true"}, RUN_URL, [f"type=provenance,builder-id={RUN_URL}"]),
        ({"provenance": "True"}, "", ["type=provenance"]),
        ({"provenance": "false"}, RUN_URL, ["type=provenance,disabled=true"]),
        ({"provenance": "FALSE"}, RUN_URL, ["type=provenance,disabled=true"]),
        ({"provenance": "mode=max"}, RUN_URL, [f"type=provenance,mode=max,builder-id={RUN_URL}"]),
        ({"provenance": "mode=min,inline-only=true"}, "", ["type=provenance,mode=min,inline-only=true"]),
        ({"provenance": "mode=max,builder-id=mine"}, RUN_URL, ["type=provenance,mode=max,builder-id=mine"]),
        ({"sbom": "true"}, RUN_URL, ["type=sbom"]),
        ({"sbom": "false"}, RUN_URL, ["type=sbom,disabled=true"]),
        (
            {"sbom": "generator=docker/buildkit-syft-scanner"},
            RUN_URL,
            ["type=sbom,generator=docker/buildkit-syft-scanner"],
        ),
        (
            {"provenance": "false", "sbom": "true"},
            RUN_URL,
            ["type=provenance,disabled=true", "type=sbom"],
        ),
        # the provenance and sbom inputs win over attests of their type
        (
            {"provenance": "mode=min", "attests": "type=provenance,mode=max\ntype=sbom,generator=x"},
            "",
            ["type=provenance,mode=min", "type=sbom,generator=x"],
        ),
        (
            {"sbom": "false", "attests": "type=sbom,generator=x\ntype=provenance,mode=max"},
            RUN_URL,
            ["type=sbom,disabled=true", f"type=provenance,mode=max,builder-id={RUN_URL}"],
        ),
        ({"attests": "type=provenance,mode=max"}, "", ["type=provenance,mode=max"]),
        (
            {"attests": "mode=max, type=provenance"},
            RUN_URL,
            [f"mode=max, type=provenance,builder-id={RUN_URL}"],
        ),
    ],
)
def test_attest_args(raw: dict[str, str], builder_id: str, expected: list[str]) -> None:
    args = build.attest_args(parse_inputs(raw), builder_id)
    assert args[0::2] == ["--attest"] * len(expected)
    assert args[1::2] == expected


def test_secrets_are_passed_as_files_and_envs(tmp_path: Path) -> None:
    f = tmp_path / "npmrc"
    f.write_text("not a real npmrc")
    inputs = parse_inputs({"secret-files": f"npmrc={f}", "secret-envs": "tok=TOKEN"})
    written = (("gh", Path("/w/s/gh")),)
    assert build.secret_args(inputs, written) == [
        "--secret",
        "id=gh,src=/w/s/gh",
        "--secret",
        f"id=npmrc,src={f}",
    ]
    assert build.secret_env_args(inputs) == ["--secret", "id=tok,env=TOKEN"]


def test_missing_secret_file_is_an_input_error_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="secret-files"):
        parse_inputs({"secret-files": f"npmrc={tmp_path / 'nope'}"})


def test_push_without_tags_or_image_is_an_input_error() -> None:
    with pytest.raises(InputError) as exc:
        build.output_args(parse_inputs({"push": "true"}), Path("/w/out"))
    assert "push" in str(exc.value)
    assert "tags" in str(exc.value)


def test_local_output() -> None:
    assert build.local_output(Path("/runner/_temp/kbx/out")) == (
        "type=local,dest=/runner/_temp/kbx/out,platform-split=true"
    )


def _result(error: str) -> build.BuildResult:
    spec = plan(parse_inputs({}), name="b", namespace="ns", native=(AMD64,))
    return build.BuildResult(spec, Timings((), (), {}, 0.0), {}, {}, "", 1.0, error)


@pytest.mark.parametrize(
    ("error", "logged_in", "hint"),
    [
        ("ERROR: failed to solve: process did not complete", False, "the failing step's log is in the"),
        ("push: 401 Unauthorized", True, "check that the token may write to this repository"),
        ("push: 401 Unauthorized", False, "set registry, username and password"),
    ],
)
def test_failure_is_a_build_error_with_the_fix(error: str, logged_in: bool, hint: str) -> None:
    failure = build.failure(_result(error), logged_in=logged_in)
    assert failure is not None and failure.exit_code == 6
    assert failure.message == error
    assert hint in (failure.hint or "")


def test_a_build_without_error_is_no_failure() -> None:
    assert build.failure(_result(""), logged_in=True) is None


@pytest.mark.parametrize(
    ("raw", "local"),
    [({}, True), ({"push": "true", "tags": "r/a:1"}, False), ({"outputs": "type=tar,dest=out.tar"}, False)],
)
def test_writes_local_output(raw: dict[str, str], local: bool) -> None:
    inputs = parse_inputs(raw)
    assert build.writes_local_output(inputs) is local
    assert (build.output_args(inputs, Path("/w/out")) == [build.local_output(Path("/w/out"))]) is local


@pytest.mark.parametrize(
    ("env", "builder_id"),
    [
        (
            {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "o/r", "GITHUB_RUN_ID": "7"},
            "https://github.com/o/r/actions/runs/7/attempts/1",
        ),
        (
            {
                "GITHUB_SERVER_URL": "https://ghe.example",
                "GITHUB_REPOSITORY": "o/r",
                "GITHUB_RUN_ID": "7",
                "GITHUB_RUN_ATTEMPT": "3",
            },
            "https://ghe.example/o/r/actions/runs/7/attempts/3",
        ),
        ({"GITHUB_REPOSITORY": "o/r", "GITHUB_RUN_ID": "7"}, ""),
        ({}, ""),
    ],
)
def test_builder_id(env: dict[str, str], builder_id: str) -> None:
    assert build.builder_id(env) == builder_id
