"""No stage module imports a later stage: the code follows the data, and no arrow points back up.

The order is the order of the log (pipeline.py); the helpers every stage may
use come first, the entry points last. The artifacts package counts as one
stage. A new module must be placed here, which is the point: its place in the
order is a decision, made once.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "kubebuildx"

ORDER = (
    # helpers: errors, files, the runner's I/O, subprocesses, platforms, declarations
    "errors",
    "cancel",  # issue 10's cancel flag: imports nothing of ours
    "files",
    "runner",
    "cmd",
    "platforms",
    "progress",
    "action_spec",
    "hostpaths",  # host paths and the action's container: plain paths, used from inputs on
    "oidc",  # GitHub's ID token and its refresher: read by inputs (auth modes), used by kube
    # the stages, in the order of the log
    "inputs",
    "registry",
    "kubeconfig",
    "kube",
    "configmap",
    "preflight",
    "builder",
    "buildx_store",
    "pod_faults",  # the builder's pods: recorded when it boots, judged when its build fails
    "boot",
    "cache",  # cache-from / cache-to as buildx gets them: part of the build's argv
    "build",
    "merge",
    "artifacts",
    "summary",
    "cleanup",
    "run_folders",  # where a run keeps its files: the pipeline's first step
    # the entry points
    "pipeline",
    "action",
    "cli",
    "__main__",
)


def stage_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def imported_stages(path: Path) -> set[str]:
    """Every kubebuildx module imported anywhere in the file, deferred imports included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "kubebuildx":
                continue
            if len(parts) > 1:
                found.add(parts[1])
            else:
                found |= {a.name for a in node.names if (PACKAGE / f"{a.name}.py").exists()}
                found |= {a.name for a in node.names if (PACKAGE / a.name).is_dir()}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("kubebuildx.")}
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_module_has_its_place() -> None:
    assert {stage_of(p) for p in MODULES} - set(ORDER) == set()


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_later_stage(path: Path) -> None:
    own = ORDER.index(stage_of(path))
    later = {m for m in imported_stages(path) - {stage_of(path)} if ORDER.index(m) > own}
    assert later == set(), f"{stage_of(path)} imports later stages"


def test_the_check_sees_an_arrow_back_up(tmp_path: Path) -> None:
    """The test itself can fail: an import of a later stage is found, deferred or not."""
    module = PACKAGE / "preflight.py"
    text = module.read_text() + "\n\ndef _late() -> None:\n    from kubebuildx import build  # noqa\n"
    probe = tmp_path / "preflight.py"
    probe.write_text(text)
    assert "build" in imported_stages(probe)
