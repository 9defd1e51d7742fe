"""Platforms: parsing and normalising like containerd, and the names derived from them."""

from __future__ import annotations

import pytest

from kubebuildx import platforms as plat
from kubebuildx.errors import InputError
from kubebuildx.inputs import parse_inputs
from kubebuildx.platforms import Platform


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/arm64", Platform("linux", "arm64")),
        ("linux/x86_64", Platform("linux", "amd64")),
        ("linux/x86-64", Platform("linux", "amd64")),
        ("linux/aarch64", Platform("linux", "arm64")),
        ("linux/arm64/v8", Platform("linux", "arm64")),
        ("linux/arm", Platform("linux", "arm", "v7")),
        ("linux/arm/v7", Platform("linux", "arm", "v7")),
        ("linux/arm/v6", Platform("linux", "arm", "v6")),
        ("linux/armhf", Platform("linux", "arm", "v7")),
        ("linux/armel", Platform("linux", "arm", "v6")),
        ("linux/arm/7", Platform("linux", "arm", "v7")),
        ("linux/arm/6", Platform("linux", "arm", "v6")),
        ("linux/arm64/8", Platform("linux", "arm64")),
        ("linux/aarch64/v8", Platform("linux", "arm64")),
        ("linux/i386", Platform("linux", "386")),
        ("linux/amd64/v1", Platform("linux", "amd64")),
        ("linux/amd64/v3", Platform("linux", "amd64", "v3")),
        ("linux/riscv64", Platform("linux", "riscv64")),
        ("linux/s390x", Platform("linux", "s390x")),
        ("windows/amd64", Platform("windows", "amd64")),
        # a bare architecture means linux
        ("amd64", Platform("linux", "amd64")),
        ("x86_64", Platform("linux", "amd64")),
        ("aarch64", Platform("linux", "arm64")),
        ("arm", Platform("linux", "arm", "v7")),
        # case and surrounding space do not matter
        ("  Linux/ARM64 ", Platform("linux", "arm64")),
    ],
)
def test_parse_normalises(text: str, expected: Platform) -> None:
    assert plat.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "   ", "linux/", "/amd64", "linux//amd64", "linux/arm/v7/extra", "linux/am d64", "linux/amd64;rm"],
)
def test_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(InputError) as exc:
        plat.parse(text)
    assert repr(text.strip()) in str(exc.value)
    assert "os/arch" in str(exc.value)


@pytest.mark.parametrize("text", ["arm64/linux", "plan9/amd64", "amd64/arm64"])
def test_parse_rejects_unknown_os_naming_the_value(text: str) -> None:
    with pytest.raises(InputError) as exc:
        plat.parse(text)
    message = str(exc.value)
    assert repr(text) in message
    assert repr(text.split("/", maxsplit=1)[0]) in message


@pytest.mark.parametrize(
    ("text", "string", "slug", "folder"),
    [
        ("linux/amd64", "linux/amd64", "linux-amd64", "linux_amd64"),
        ("aarch64", "linux/arm64", "linux-arm64", "linux_arm64"),
        ("linux/arm", "linux/arm/v7", "linux-arm-v7", "linux_arm_v7"),
        ("linux/arm/v6", "linux/arm/v6", "linux-arm-v6", "linux_arm_v6"),
    ],
)
def test_names(text: str, string: str, slug: str, folder: str) -> None:
    p = plat.parse(text)
    assert (str(p), p.slug, p.folder) == (string, slug, folder)


@pytest.mark.parametrize(
    ("text", "oci"),
    [
        ("linux/amd64", {"architecture": "amd64", "os": "linux"}),
        ("linux/arm/v7", {"architecture": "arm", "os": "linux", "variant": "v7"}),
    ],
)
def test_oci(text: str, oci: dict[str, str]) -> None:
    assert plat.parse(text).oci() == oci


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([], ""),
        ([""], ""),
        (["linux/amd64,linux/arm64"], "linux/amd64,linux/arm64"),
        (["linux/arm64", "linux/amd64"], "linux/arm64,linux/amd64"),
        # duplicates after normalising are dropped, the first mention keeps its place
        (["linux/arm64,linux/amd64", "aarch64", "x86_64, linux/arm"], "linux/arm64,linux/amd64,linux/arm/v7"),
        (["linux/arm64/v8", "linux/arm64"], "linux/arm64"),
        ([" linux/amd64 , , linux/arm/v7 "], "linux/amd64,linux/arm/v7"),
    ],
)
def test_parse_list(items: list[str], expected: str) -> None:
    assert plat.join(plat.parse_list(items)) == expected


def test_parse_list_names_the_bad_item() -> None:
    with pytest.raises(InputError, match="'linux/amd64/v2/x'"):
        plat.parse_list(["linux/arm64", "linux/amd64/v2/x"])


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("linux/amd64", "linux/amd64", True),
        ("linux/amd64", "linux/amd64/v3", True),
        ("linux/arm64", "linux/amd64", False),
        ("linux/arm/v7", "linux/arm/v7", True),
        ("linux/arm/v7", "linux/arm/v6", False),
        ("linux/amd64", "windows/amd64", False),
    ],
)
def test_same_cpu(a: str, b: str, same: bool) -> None:
    assert plat.parse(a).same_cpu(plat.parse(b)) is same
    assert plat.parse(b).same_cpu(plat.parse(a)) is same


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("linux/amd64/..", "has a part, '..', that cannot name the builder's Deployment"),
        ("linux/riscv64/-", "has a part, '-', that cannot name the builder's Deployment"),
        ("linux/arm64/v8.2", "has a part, 'v8.2'"),
        ("linux/mips_64", "has a part, 'mips_64'"),
        ("lin.ux/amd64", "is not of the form os/arch[/variant]"),  # containerd: no dot in the OS
        ("linux/amd64/v1/x", "is not of the form"),
        ("linux/amd64\n::error::x", "is not of the form"),
        ("windows(10.0.17763)/amd64", "is not of the form"),
        ("linux/*", "is not of the form"),
    ],
)
def test_parts_that_containerd_takes_but_cannot_name_a_deployment_are_refused(text: str, words: str) -> None:
    with pytest.raises(InputError) as exc:
        plat.parse(text)
    assert str(exc.value).startswith("platforms: platform ")
    assert words in str(exc.value)
    assert exc.value.hint == "write platforms like linux/amd64, linux/arm64 or linux/arm/v7"
    assert len(str(exc.value).splitlines()) == 2  # the message and its fix


def test_the_message_names_the_input_it_came_from() -> None:
    with pytest.raises(InputError, match=r"^driver-opts: platform 'linux/mips_64' has a part"):
        parse_inputs({"driver-opts": "linux/mips_64:replicas=2"})
    with pytest.raises(InputError, match=r"^platforms: platform 'linux/riscv64/-'"):
        parse_inputs({"platforms": "linux/amd64,linux/riscv64/-"})
