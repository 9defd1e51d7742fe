"""Artifact names: the official client's character table, and our per-platform names."""

from __future__ import annotations

import pytest

from kubebuildx.artifacts.names import (
    platform_artifact_name,
    platform_from_dirname,
    validate_artifact_name,
    validate_file_path,
)
from kubebuildx.errors import InputError


@pytest.mark.parametrize("name", ["app", "app-linux-amd64", "my artifact (1)", "ünïcode", "a.b_c"])
def test_valid_names(name: str) -> None:
    validate_artifact_name(name)


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("", "empty"),
        ('a"b', "Double quote"),
        ("a:b", "Colon"),
        ("a<b", "Less than"),
        ("a>b", "Greater than"),
        ("a|b", "Vertical bar"),
        ("a*b", "Asterisk"),
        ("a?b", "Question mark"),
        ("a\rb", "Carriage return"),
        ("a\nb", "Line feed"),
        ("a\\b", "Backslash"),
        ("a/b", "Forward slash"),
    ],
)
def test_invalid_names_say_which_character(name: str, label: str) -> None:
    with pytest.raises(InputError, match=label):
        validate_artifact_name(name)


def test_paths_may_hold_slashes_but_not_the_rest() -> None:
    validate_file_path("dir/sub/file.txt")
    with pytest.raises(InputError, match="Colon"):
        validate_file_path("dir/c:file")


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("dir/sub\\file.txt", "contains Backslash"),  # the official client stores it: zip-slip on Windows
        ("..\\..\\evil.dll", "contains Backslash"),
        ("caf\udce9.txt", "is not UTF-8: 'caf\\udce9.txt'"),  # latin-1 bytes, decoded with surrogateescape
    ],
)
def test_names_a_zip_cannot_store_safely_are_refused(path: str, words: str) -> None:
    with pytest.raises(InputError) as exc:
        validate_file_path(path)
    assert words in str(exc.value)


def test_an_artifact_name_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(InputError, match="not UTF-8"):
        validate_artifact_name("app-\udcff")


@pytest.mark.parametrize(
    ("dirname", "platform"),
    [
        ("linux_amd64", "linux/amd64"),
        ("linux_arm64", "linux/arm64"),
        ("linux_arm_v7", "linux/arm/v7"),
        ("linux_riscv64", "linux/riscv64"),
        ("windows_amd64", "windows/amd64"),
        ("usr", None),
        ("linux", None),
        ("linux_amd64_v2_x", None),
        ("Linux_AMD64", None),
    ],
)
def test_platform_from_dirname(dirname: str, platform: str | None) -> None:
    assert platform_from_dirname(dirname) == platform


@pytest.mark.parametrize(
    ("platform", "name"),
    [("linux/amd64", "app-linux-amd64"), ("linux/arm/v7", "app-linux-arm-v7")],
)
def test_platform_artifact_name(platform: str, name: str) -> None:
    assert platform_artifact_name("app", platform) == name
    validate_artifact_name(name)
