"""cache-from / cache-to entries as buildx gets them: GitHub's cache service v2 for type=gha,
a gha scope per platform in a single-platform build, registry refs left as the user wrote them."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubebuildx import build, cache, cmd, runner
from kubebuildx.inputs import parse_inputs
from kubebuildx.platforms import Platform

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")
ARMV7 = Platform("linux", "arm", "v7")
BOTH = (AMD64, ARM64)
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJhYyI6IltdIn0.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("type=gha", {"type": "gha"}),
        ("type=gha,scope=app,mode=max", {"type": "gha", "scope": "app", "mode": "max"}),
        ("TYPE=gha,Scope=app", {"type": "gha", "scope": "app"}),  # buildx lowercases keys
        ("r/app:cache", {"type": "registry", "ref": "r/app:cache"}),  # the ref-only form
        ('type=gha,"scope=a,b"', {"type": "gha", "scope": "a,b"}),  # CSV quoting, as csvvalue
        (
            "type=registry,ref=r/a:c,oci-mediatypes=true",
            {"type": "registry", "ref": "r/a:c", "oci-mediatypes": "true"},
        ),
    ],
)
def test_attrs_parse_as_buildx_does(entry: str, expected: dict[str, str]) -> None:
    assert cache.attrs(entry) == expected


@pytest.mark.parametrize(
    ("entry", "platforms", "v2", "expected"),
    [
        # no results service: v1 as before; several platforms: BuildKit's own default scope
        ("type=gha", BOTH, False, "type=gha"),
        ("type=gha,mode=max", BOTH, False, "type=gha,mode=max"),
        # the results service: version=2; url_v2 and the token come from buildx's environment
        ("type=gha", BOTH, True, "type=gha,version=2"),
        ("type=gha,mode=max,scope=app", BOTH, True, "type=gha,mode=max,scope=app,version=2"),
        # the entry already says which service: left alone
        ("type=gha,version=1", BOTH, True, "type=gha,version=1"),
        ("type=gha,version=2", BOTH, True, "type=gha,version=2"),
        ("type=gha,url=https://cache.example/", BOTH, True, "type=gha,url=https://cache.example/"),
        ("type=gha,url_v2=http://127.0.0.1:9/", BOTH, True, "type=gha,url_v2=http://127.0.0.1:9/"),
        # one platform: a scope of its own, so two matrix legs do not replace each other's index
        ("type=gha", (ARM64,), False, "type=gha,scope=buildkit-linux-arm64"),
        ("type=gha,mode=max", (AMD64,), True, "type=gha,mode=max,version=2,scope=buildkit-linux-amd64"),
        ("type=gha", (ARMV7,), False, "type=gha,scope=buildkit-linux-arm-v7"),
        # ...unless the user named one: legs that share it on purpose keep sharing it
        ("type=gha,scope=app", (ARM64,), False, "type=gha,scope=app"),
        ("type=gha,SCOPE=app", (ARM64,), True, "type=gha,SCOPE=app,version=2"),
        # a registry ref of a single-platform build: one of its own per platform
        (
            "type=registry,ref=r/app:cache,mode=max",
            (ARM64,),
            True,
            "type=registry,ref=r/app:cache-linux-arm64,mode=max",
        ),
        ("r/app:cache", (ARM64,), True, "r/app:cache-linux-arm64"),
        (
            "type=registry,ref=127.0.0.1:5000/app",
            (AMD64,),
            False,
            "type=registry,ref=127.0.0.1:5000/app:linux-amd64",
        ),
        # ...unless it names the architecture already, or is a digest, or the build has several
        ("type=registry,ref=r/app:cache-arm64", (ARM64,), True, "type=registry,ref=r/app:cache-arm64"),
        ("type=registry,ref=r/app-arm64:cache", (ARM64,), True, "type=registry,ref=r/app-arm64:cache"),
        # the architecture as a word, not a substring: "charm" names no arm
        (
            "type=registry,ref=r/charm:cache",
            (ARMV7,),
            True,
            "type=registry,ref=r/charm:cache-linux-arm-v7",
        ),
        (
            "type=registry,ref=r/app@sha256:" + "a" * 64,
            (ARM64,),
            True,
            "type=registry,ref=r/app@sha256:" + "a" * 64,
        ),
        ("type=registry,ref=r/app:cache", BOTH, True, "type=registry,ref=r/app:cache"),
        ("r/app:cache", BOTH, True, "r/app:cache"),
        # other types are never touched, one platform or not
        ("type=local,dest=/w/cache", (ARM64,), True, "type=local,dest=/w/cache"),
        ("type=inline", (ARM64,), True, "type=inline"),
    ],
)
def test_for_buildx(entry: str, platforms: tuple[Platform, ...], v2: bool, expected: str) -> None:
    assert cache.for_buildx(entry, platforms=platforms, service_v2=v2) == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),
        ({"ACTIONS_CACHE_URL": "https://artifactcache.example/"}, False),
        ({"ACTIONS_RESULTS_URL": ""}, False),
        ({"ACTIONS_RESULTS_URL": "https://results-receiver.actions.githubusercontent.com/"}, True),
    ],
)
def test_speaks_v2_when_the_job_has_the_results_service(env: dict[str, str], expected: bool) -> None:
    assert cache.speaks_v2(env) is expected


@pytest.mark.parametrize(
    ("cache_to", "platforms", "noted"),
    [
        (["type=registry,ref=r/app:cache"], (ARM64,), [("r/app:cache", "r/app:cache-linux-arm64")]),
        (["r/app:cache"], (ARM64,), [("r/app:cache", "r/app:cache-linux-arm64")]),
        (["type=registry,ref=r/app:cache-arm64"], (ARM64,), []),  # already one per platform
        (["type=registry,ref=r/app-arm64:cache"], (ARM64,), []),
        (["type=registry,ref=r/app:cache"], BOTH, []),  # one build for all: nothing to replace
        (["type=gha", "type=local,dest=/w/c"], (ARM64,), []),
        (
            ["type=registry,ref=127.0.0.1:5000/amd64/app:cache"],
            (AMD64,),
            [("127.0.0.1:5000/amd64/app:cache", "127.0.0.1:5000/amd64/app:cache-linux-amd64")],
        ),
    ],
)
def test_notes_say_which_registry_refs_became_per_platform(
    cache_to: list[str], platforms: tuple[Platform, ...], noted: list[tuple[str, str]]
) -> None:
    got = cache.notes(cache_to, cache_to, platforms)
    assert len(got) == 2 * len(noted)
    for note, (ref, own) in zip(got, noted * 2, strict=True):
        assert f": {ref} -> {own}: a single-platform job keeps a registry cache of its own" in note
    assert all(n.startswith("cache-from") for n in got[: len(noted)])


def test_the_runtime_token_never_reaches_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """buildx reads it from its environment for version=2 (build/opt.go addGithubToken): the argv we
    print says version=2 only, and the child's environment carries the token and the URL."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    inputs = parse_inputs({"cache-from": "type=gha", "cache-to": "type=gha,mode=max"})
    paths = build.BuildPaths(tmp_path / "m.json", tmp_path / "out")
    argv = build.argv(inputs, builder="b", platforms=(ARM64,), paths=paths, cache_v2=True)
    assert argv[argv.index("--cache-from") + 1] == "type=gha,version=2,scope=buildkit-linux-arm64"
    assert argv[argv.index("--cache-to") + 1] == "type=gha,mode=max,version=2,scope=buildkit-linux-arm64"
    env = {"ACTIONS_RUNTIME_TOKEN": TOKEN, "ACTIONS_RESULTS_URL": "https://results.example/", "PATH": "/bin"}
    child = cmd.child_env(argv, base=env)
    assert (
        child["ACTIONS_RUNTIME_TOKEN"] == TOKEN and child["ACTIONS_RESULTS_URL"] == env["ACTIONS_RESULTS_URL"]
    )
    assert TOKEN not in " ".join(argv)


def test_a_token_written_into_an_entry_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "_masked", set())
    cache.mask_tokens(
        [f"type=gha,token={TOKEN}\ntype=gha,ghtoken=ghp_0123456789abcdef", "type=registry,ref=r/a"]
    )
    shown = cmd.display(["buildx", "build", "--cache-from", f"type=gha,token={TOKEN}"])
    assert TOKEN not in shown and "token=***" in shown
    assert runner.redact("ghtoken=ghp_0123456789abcdef") == "ghtoken=***"


def test_the_action_masks_the_runtime_token_and_a_token_in_its_cache_inputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kubebuildx import action

    monkeypatch.setattr(runner, "_masked", set())
    action.mask_secret_inputs(
        {"ACTIONS_RUNTIME_TOKEN": TOKEN, "INPUT_CACHE-TO": "type=gha,token=s3cr3t-v4lue"}
    )
    assert runner.redact(f"{TOKEN} s3cr3t-v4lue") == "*** ***"


def test_a_token_in_a_quoted_cache_entry_is_masked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """A quoted whole entry parses as one field, yet buildx gets it unquoted."""
    monkeypatch.setattr(runner, "_masked", set())
    cache.mask_tokens(['"type=gha,token=FAKE-quoted-cache-token-0011"'])
    assert "FAKE-quoted-cache-token-0011" in runner._masked
