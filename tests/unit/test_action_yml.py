"""action.yml, the README tables and the CLI flags cannot drift from INPUTS and OUTPUTS.

Each file is parsed on its own terms (YAML, Markdown) and compared with the
lists in the code, so that a hand edit is caught as surely as a stale
generator (scripts/gen-action-yml, whose output is also compared byte for byte).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from kubebuildx import build, cli, summary
from kubebuildx.action_spec import INPUTS, OUTPUT_NAMES, OUTPUTS
from kubebuildx.artifacts import artifact_outputs
from kubebuildx.builder import BuilderSpec
from kubebuildx.progress import Timings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

# Outputs written by code other than summary.step_outputs and artifacts.artifact_outputs
# (pipeline.merge_all writes only digest and metadata, which the build writes too);
# name them here with the module that sets them.
EXTRA_PRODUCED: frozenset[str] = frozenset()


@pytest.fixture(scope="module")
def action() -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "action.yml").read_text())
    assert isinstance(doc, dict)
    return doc


def _generator() -> ModuleType:
    path = ROOT / "scripts" / "gen-action-yml"
    loader = importlib.machinery.SourceFileLoader("gen_action_yml", str(path))
    spec = importlib.util.spec_from_loader("gen_action_yml", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _table(marker: str) -> list[list[str]]:
    """The rows of the README table between the markers, cells stripped."""
    text = README.read_text()
    match = re.search(rf"<!-- {marker}:start -->\n(.*?)\n<!-- {marker}:end -->", text, re.S)
    assert match, f"README.md has no <!-- {marker}:start/end --> markers"
    lines = match.group(1).splitlines()
    assert len(lines) >= 2 and set(lines[1]) <= set("|-: "), "a header and a separator row first"
    rows = []
    for line in lines[2:]:
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        rows.append([c.strip().replace("\\|", "|") for c in cells])
    return rows


def _unquote(cell: str) -> str:
    return cell[1:-1] if len(cell) >= 2 and cell[0] == cell[-1] == "`" else cell


# ---- action.yml ---------------------------------------------------------------------------------


def test_action_inputs_are_inputs_in_order(action: dict[str, Any]) -> None:
    assert list(action["inputs"]) == [spec.name for spec in INPUTS]


@pytest.mark.parametrize("spec", INPUTS, ids=lambda s: s.name)
def test_action_input_matches_spec(action: dict[str, Any], spec: Any) -> None:
    declared = action["inputs"][spec.name]
    assert declared["description"] == spec.description
    assert str(declared.get("default", "")) == spec.default
    assert declared.get("required", False) is False  # every input has a meaning when absent


def test_action_outputs_are_outputs(action: dict[str, Any]) -> None:
    assert [(name, out["description"]) for name, out in action["outputs"].items()] == list(OUTPUTS)


def test_action_runs_kubebuildx_action_and_post(action: dict[str, Any]) -> None:
    runs = action["runs"]
    assert runs["using"] == "docker"
    assert runs["image"] == "Dockerfile"
    assert runs["args"] == ["action"]  # ENTRYPOINT ["kubebuildx"] + args: `kubebuildx action`
    assert runs["post-if"] == "always()"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["kubebuildx"]' in dockerfile
    # the post-entrypoint is the wrapper the Dockerfile writes, and it runs the post step
    post = runs["post-entrypoint"]
    assert f">{post}" in dockerfile
    assert "exec kubebuildx action --post" in dockerfile


def test_generated_files_are_current() -> None:
    gen = _generator()
    assert (ROOT / "action.yml").read_text() == gen.action_yml(), "run scripts/gen-action-yml"
    assert README.read_text() == gen.readme(README.read_text()), "run scripts/gen-action-yml"


# ---- the release's action.yml (scripts/gen-action-yml --image) ---------------------------------

DIGEST = "sha256:" + "0123456789abcdef" * 4
RELEASE_REFS = [
    f"docker://ghcr.io/octo/kubebuildx@{DIGEST}",
    f"docker://127.0.0.1:5000/kubebuildx@{DIGEST}",
    f"docker://registry.example.com:443/a/b-c/d__e@{DIGEST}",
]


@pytest.mark.parametrize("ref", RELEASE_REFS)
def test_release_action_yml_differs_only_in_runs_image(action: dict[str, Any], ref: str) -> None:
    release = yaml.safe_load(_generator().action_yml(ref))
    assert release["runs"]["image"] == ref
    assert {**release["runs"], "image": "Dockerfile"} == action["runs"]
    assert {k: v for k, v in release.items() if k != "runs"} == {
        k: v for k, v in action.items() if k != "runs"
    }


@pytest.mark.parametrize(
    ("ref", "says"),
    [
        ("ghcr.io/octo/kubebuildx@" + DIGEST, "expected docker://"),
        ("docker://ghcr.io/octo/kubebuildx:v1.0.0", "by digest"),
        ("docker://ghcr.io/Octo/kubebuildx@" + DIGEST, "lowercase"),
        ("docker://ghcr.io/octo/kubebuildx@sha256:abc", "64 hex"),
        ("docker://ghcr.io/octo/kubebuildx@" + DIGEST.upper().replace("SHA256", "sha256"), "64 hex"),
        ("docker://ghcr.io/octo/kubebuildx:v1@" + DIGEST, "REPOSITORY@sha256"),
        # a newline would let a tag name write its own keys into action.yml
        (f"docker://ghcr.io/octo/kubebuildx@{DIGEST}\n  entrypoint: /bin/sh", "64 hex"),
        (f"docker://ghcr.io/octo/kubebuildx@{DIGEST} ", "64 hex"),
    ],
)
def test_release_image_must_be_a_digest_reference(ref: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        _generator().release_image(ref)


def test_release_action_yml_is_written_where_asked(tmp_path: Path, action: dict[str, Any]) -> None:
    out = tmp_path / "release" / "action.yml"
    assert _generator().main(["--image", RELEASE_REFS[0], "--out", str(out)]) == 0
    assert yaml.safe_load(out.read_text())["runs"]["image"] == RELEASE_REFS[0]
    assert (ROOT / "action.yml").read_text() == _generator().action_yml(), "the repo's file is untouched"


def test_release_action_yml_refuses_a_tag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "action.yml"
    with pytest.raises(SystemExit) as exit_info:
        _generator().main(["--image", "docker://ghcr.io/octo/kubebuildx:latest", "--out", str(out)])
    assert exit_info.value.code == 2
    assert "by digest" in capsys.readouterr().err
    assert not out.exists()


# ---- README -------------------------------------------------------------------------------------


def test_readme_inputs_table() -> None:
    rows = _table("inputs")
    assert [_unquote(r[0]) for r in rows] == [spec.name for spec in INPUTS]
    assert [_unquote(r[1]) for r in rows] == [spec.default for spec in INPUTS]
    assert [r[2] for r in rows] == [spec.description for spec in INPUTS]


def test_readme_outputs_table() -> None:
    rows = _table("outputs")
    assert [(_unquote(r[0]), r[1]) for r in rows] == list(OUTPUTS)


# ---- outputs are real ---------------------------------------------------------------------------


def _produced() -> set[str]:
    result = build.BuildResult(
        spec=BuilderSpec("b", "buildkit", (), ()),
        timings=Timings((), (), {}, 0.0),
        pod_nodes={},
        metadata={},
        output_dir="",
        seconds=0.0,
    )
    return set(summary.step_outputs(result)) | set(artifact_outputs({})) | EXTRA_PRODUCED


def test_every_declared_output_is_written() -> None:
    assert set(OUTPUT_NAMES) - _produced() == set()


def test_every_written_output_is_declared() -> None:
    assert _produced() - set(OUTPUT_NAMES) == set()


# `kubebuildx upload-artifact` is a command for run steps, not the action: its outputs are its own.
NOT_ACTION_OUTPUTS = {Path("artifacts/cli.py")}


def test_every_literal_set_output_is_declared() -> None:
    """Outputs set by name anywhere in the package (e.g. pipeline.merge_all) are declared."""
    package = ROOT / "src" / "kubebuildx"
    found = {
        (path.relative_to(package), name)
        for path in package.rglob("*.py")
        for name in re.findall(r"set_output\(\s*\"([^\"]+)\"", path.read_text())
    }
    undeclared = {
        (str(path), name)
        for path, name in found
        if path not in NOT_ACTION_OUTPUTS and name not in OUTPUT_NAMES
    }
    assert undeclared == set()


def test_output_names_are_unique() -> None:
    assert len(set(OUTPUT_NAMES)) == len(OUTPUT_NAMES)


# ---- the CLI ------------------------------------------------------------------------------------


def test_every_input_is_a_build_flag() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    build = sub.choices["build"]  # type: ignore[index]
    flags = {opt for action in build._actions for opt in action.option_strings}
    missing = {f"--{spec.name}" for spec in INPUTS if spec.name != "context"} - flags
    assert missing == set(), "context is the positional argument; every other input is a flag"
