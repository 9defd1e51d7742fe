"""runner.mask and runner.redact: what reaches a log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kubebuildx import runner


@pytest.fixture(autouse=True)
def _fresh_masks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(runner, "_masked", set())
    yield


def test_a_short_secret_is_still_masked() -> None:
    runner.mask("hunter2")
    assert runner.redact("password is hunter2.") == "password is ***."


def test_a_multiline_secret_masks_its_key_lines_but_not_its_yaml_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    pem_line = "MIIBFAKEFAKEFAKEFAKEFAKEFAKEFAKE0123456789"
    runner.mask(f"apiVersion: v1\nkind: Config\n-----BEGIN FAKE-----\n{pem_line}\n-----END FAKE-----\n")
    assert runner.redact(f"x {pem_line} y") == "x *** y"
    assert runner.redact("apiVersion: v1 kind: Config") == "apiVersion: v1 kind: Config"
    printed = capsys.readouterr().out
    assert f"::add-mask::{pem_line}" in printed
    assert "::add-mask::apiVersion: v1\n" not in printed


def test_annotations_carry_only_a_title(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    runner.mask("s3cr3t-token")
    runner.error("bad s3cr3t-token\nFix: x", title="Invalid input")
    assert capsys.readouterr().out.splitlines()[-1] == "::error title=Invalid input::bad ***%0AFix: x"


# ---- workflow commands from outside stay text --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("tag\n::error::pwned", "tag\\n::error::pwned"),
        ("a\r\nb", "a\\r\\nb"),
        ("a\u2028::warning::b", "a\\u2028::warning::b"),
        ("a\u2029b\x85c\x0bd\x0ce\x1cf", "a\\u2029b\\x85c\\x0bd\\x0ce\\x1cf"),
        ("plain", "plain"),
    ],
)
def test_one_line_shows_every_line_separator(text: str, shown: str) -> None:
    assert runner.one_line(text) == shown
    assert len(runner.one_line(text).splitlines()) == 1


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().out.splitlines()


def test_verbatim_turns_workflow_commands_off_with_a_random_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    with runner.verbatim():
        runner.info("::error::forged")
    with runner.verbatim():
        runner.info("::stop-commands::mine")
    first, text, end, second, *_ = _lines(capsys)
    token = first.removeprefix("::stop-commands::")
    assert len(token) == 32 and text == "::error::forged" and end == f"::{token}::"
    assert second.removeprefix("::stop-commands::") != token


def test_masks_and_annotations_inside_verbatim_turn_commands_on_around_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The runner ignores ::add-mask:: while commands are stopped."""
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    with runner.verbatim():
        runner.info("before")
        runner.mask("FAKE-secret-while-stopped")
        runner.warning("a warning of ours")
        runner.info("after FAKE-secret-while-stopped")
    lines = _lines(capsys)
    tokens = [
        line.removeprefix("::stop-commands::") for line in lines if line.startswith("::stop-commands::")
    ]
    assert lines == [
        f"::stop-commands::{tokens[0]}",
        "before",
        f"::{tokens[0]}::",
        "::add-mask::FAKE-secret-while-stopped",
        f"::stop-commands::{tokens[1]}",
        f"::{tokens[1]}::",
        "::warning::a warning of ours",
        f"::stop-commands::{tokens[2]}",
        "after ***",
        f"::{tokens[2]}::",
    ]


def test_verbatim_outside_github_prints_the_text_only(capsys: pytest.CaptureFixture[str]) -> None:
    with runner.verbatim():
        runner.info("::error::x")
    assert _lines(capsys) == ["::error::x"]


def test_annotations_and_groups_hold_no_line_break(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    runner.error("bad\u2028::error::forged\nFix: x", title="t\n::warning::y")
    with runner.group("Building\n::error::z"):
        pass
    lines = _lines(capsys)
    assert lines[0] == "::error title=t\\n%3A%3Awarning%3A%3Ay::bad\\u2028::error::forged%0AFix: x"
    assert lines[1] == "::group::Building\\n::error::z"
    assert not any(line.startswith(("::error::", "::warning::")) for line in lines)


# ---- redaction: not too short, not structured values ----------------------------------------------


@pytest.mark.parametrize("short", ["s", "ab", "abc"])
def test_values_too_short_to_be_secrets_are_not_masked(
    short: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    runner.mask(short)
    assert runner.redact("cluster abc is ready") == "cluster abc is ready"
    assert "::add-mask::" not in capsys.readouterr().out


def test_the_minimum_is_documented_and_masks_four_characters() -> None:
    assert runner.MIN_SECRET_LENGTH == 4
    runner.mask("abcd")
    assert runner.redact("x abcd y") == "x *** y"


DIGEST = "sha256:" + "abcd1234" * 8


@pytest.mark.parametrize(
    ("value", "structured"),
    [
        (DIGEST, True),
        ("", True),
        ("linux/amd64,linux/arm/v7", True),
        ('{"linux/amd64":12,"linux/arm64":"' + DIGEST + '"}', True),
        ('{"all":3.25}', True),
        ("{}", True),
        ('{"containerimage.digest":"' + DIGEST + '","buildx.build.ref":"abcd1234"}', False),
        ("abcd1234", False),
        ("sha256:abcd1234", False),
    ],
)
def test_structured_values(value: str, structured: bool) -> None:
    assert runner.is_structured(value) is structured


def test_structured_outputs_are_not_redacted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    output = tmp_path / "output"
    output.touch()
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    runner.mask("abcd1234")  # a short secret that happens to be hex
    runner.set_output("digest", DIGEST)
    runner.set_output("metadata", '{"ref":"abcd1234"}')
    written = output.read_text()
    assert DIGEST in written
    assert '{"ref":"***"}' in written
