"""Fuzzing the parsers of what a user (or an attacker) hands us: only our error classes escape.

parse_inputs, kubeconfig.parse, registry.parse_docker_config and platforms.parse get
arbitrary text and arbitrary documents (deep, odd types, YAML aliases). Any exception
other than a KubebuildxError is a bug: it would be a traceback, or main's last resort.

In the unit tests each target runs for a few hundred examples (seconds). For a long run:

    scripts/fuzz 600      # ten minutes, split between the targets

which sets KUBEBUILDX_FUZZ_SECONDS and keeps drawing new examples until the time is up.
"""

from __future__ import annotations

import contextlib
import json
import os
import string
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubebuildx import kubeconfig, runner
from kubebuildx import platforms as plat
from kubebuildx.errors import KubebuildxError
from kubebuildx.inputs import INPUT_NAMES, INPUTS, parse_inputs
from kubebuildx.registry import parse_docker_config

BUDGET = float(os.environ.get("KUBEBUILDX_FUZZ_SECONDS") or 0)
EXAMPLES = 100 if not BUDGET else 2_000
TARGETS = 4

SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis folder in the checkout; a failure prints its example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.setattr(runner, "_masked", set())
    monkeypatch.chdir(tmp_path)  # parse_inputs checks local paths: give it an empty folder


def keep_going(test: Callable[[], None]) -> None:
    """Run a hypothesis test once (unit tests), or again and again until its share of the budget."""
    deadline = time.monotonic() + BUDGET / TARGETS
    test()
    while time.monotonic() < deadline:
        test()


# ---- strategies -------------------------------------------------------------------------------

# Characters that matter to our parsers, and some that should never matter.
SPICE = "\n\r\t\x00\u2028\u2029\x85:=,;/\\.\"'{}[]#&*!|>-?@%` " + "\udcff"
texts = st.text(alphabet=st.characters(codec=None) | st.sampled_from(SPICE), max_size=80)
small_texts = st.text(alphabet=string.ascii_letters + string.digits + SPICE, max_size=20)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | small_texts
documents = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(small_texts, children, max_size=4),
    max_leaves=30,
)

KEYS = ["apiVersion", "kind", "current-context", "contexts", "clusters", "users", "name", "context",
        "cluster", "user", "server", "namespace", "token", "tokenFile", "exec", "command", "env",
        "auth-provider", "config", "client-key", "client-key-data", "certificate-authority",
        "certificate-authority-data", "insecure-skip-tls-verify", "password"]  # fmt: skip
kube_values = st.recursive(
    scalars | st.sampled_from(["ci", "lab", "u", "https://10.0.0.1:6443", "http://x", "Config"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(KEYS), children, max_size=5)
    ),
    max_leaves=40,
)


def _kubeconfig_like(shape: dict[str, Any]) -> dict[str, Any]:
    """A document with a kubeconfig's skeleton, so that the checks past the first are reached."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "ci",
        "contexts": [{"name": "ci", "context": {"cluster": "lab", "user": "u"}}],
        "clusters": [{"name": "lab", "cluster": {"server": "https://10.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "FAKE-TOKEN-fuzz"}}],
        **shape,
    }


def _yaml(doc: Any) -> str:
    try:
        return yaml.safe_dump(doc)
    except (yaml.YAMLError, RecursionError, ValueError):
        return "{}"


kubeconfig_texts = (
    texts
    | documents.map(_yaml)
    | st.dictionaries(st.sampled_from(KEYS), kube_values, max_size=6).map(_kubeconfig_like).map(_yaml)
    # deeper than MAX_DEPTH (test_kubeconfig has the recursion limit: PyYAML takes 2 s to hit it)
    | st.sampled_from([40, 200]).map(lambda n: "users: " + "[" * n + "]" * n)
    | st.builds(lambda t: yaml.safe_dump(_kubeconfig_like({})).replace("FAKE-TOKEN-fuzz", t), small_texts)
)
docker_config_texts = (
    texts
    | documents.map(lambda d: json.dumps(d, allow_nan=True))
    | st.dictionaries(small_texts, documents, max_size=3).map(lambda a: json.dumps({"auths": a}))
    | st.dictionaries(
        st.sampled_from(["auths", "credsStore", "credHelpers"]),
        st.dictionaries(
            small_texts, st.dictionaries(st.sampled_from(["auth", "password", "identitytoken"]), scalars)
        ),
    ).map(json.dumps)
    | st.sampled_from([40, 3000]).map(lambda n: '{"auths": ' * n + "{}" + "}" * n)
)
PLATFORM_PARTS = [
    "linux",
    "windows",
    "amd64",
    "arm64",
    "arm",
    "v7",
    "v8",
    "8",
    "x86_64",
    "aarch64",
    "..",
    "-",
    "",
]
platform_texts = texts | st.lists(st.sampled_from(PLATFORM_PARTS) | small_texts, max_size=5).map("/".join)
raw_inputs = st.dictionaries(
    st.sampled_from(sorted(INPUT_NAMES)) | small_texts,
    texts | st.sampled_from(["true", "false", "0", "6", "merge", "linux/amd64", "a=b", "-", "."]),
    max_size=6,
)


# ---- targets ----------------------------------------------------------------------------------


def only_ours(call: Callable[[], object]) -> None:
    with contextlib.suppress(KubebuildxError):
        call()


@SETTINGS
@given(raw_inputs)
def _fuzz_parse_inputs(raw: dict[str, str]) -> None:
    only_ours(lambda: parse_inputs(raw))


@settings(SETTINGS, max_examples=EXAMPLES // 2)  # YAML is slow to parse: fewer in the unit tests
@given(kubeconfig_texts, st.sampled_from(["", "ci", "other"]))
def _fuzz_kubeconfig(text: str, context: str) -> None:
    only_ours(lambda: kubeconfig.parse(text, context=context, base_dir=Path.cwd()))
    only_ours(lambda: kubeconfig.absolutize(text, Path.cwd()))


@SETTINGS
@given(docker_config_texts)
def _fuzz_docker_config(text: str) -> None:
    only_ours(lambda: parse_docker_config(text))


@SETTINGS
@given(platform_texts)
def _fuzz_platform(text: str) -> None:
    only_ours(lambda: plat.parse(text))
    only_ours(lambda: plat.parse_list([text, text.replace("/", ",")]))


def test_parse_inputs_raises_only_input_errors() -> None:
    keep_going(_fuzz_parse_inputs)


def test_kubeconfig_parse_raises_only_kubeconfig_errors() -> None:
    keep_going(_fuzz_kubeconfig)


def test_parse_docker_config_raises_only_input_errors() -> None:
    keep_going(_fuzz_docker_config)


def test_platform_parse_raises_only_input_errors() -> None:
    keep_going(_fuzz_platform)


def test_every_input_is_fuzzed() -> None:
    assert {spec.name for spec in INPUTS} == INPUT_NAMES
