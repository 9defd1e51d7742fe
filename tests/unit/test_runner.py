"""runner.mask and runner.redact: what reaches a log."""

from __future__ import annotations

from collections.abc import Iterator

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
