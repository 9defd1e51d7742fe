"""Building: from inputs to the one ``buildx build`` argv, then the build itself.

The argv is pure (paths and the secret files are given) and tested with
tables that assert it exactly; so are the decisions around it: the local
output, the provenance builder id. The edges, ``prepare`` (secret files, an
empty output folder) and ``run`` (buildx build, its progress, its metadata),
are at the end.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kubebuildx import cache, cmd, files, progress, registry, runner
from kubebuildx import platforms as plat
from kubebuildx.boot import Booted
from kubebuildx.builder import BuilderSpec, buildx_command
from kubebuildx.errors import BuildError
from kubebuildx.inputs import Inputs, secret_file_name
from kubebuildx.platforms import Platform
from kubebuildx.pod_faults import Fault
from kubebuildx.progress import Timings


def local_output(dest: Path) -> str:
    """The default output: one subfolder per platform, even for a single one,
    so that a matrix job and a multi-platform job lay files out the same."""
    return f"type=local,dest={dest},platform-split=true"


def _bool_or_attrs(kind: str, value: str, builder_id: str) -> str:
    if value.lower() == "true":
        return f"type={kind}" + (f",builder-id={builder_id}" if kind == "provenance" and builder_id else "")
    if value.lower() == "false":
        return f"type={kind},disabled=true"
    attrs = value
    if kind == "provenance" and builder_id and "builder-id=" not in attrs:
        attrs = f"{attrs},builder-id={builder_id}"
    return f"type={kind},{attrs}"


def _attest_type(attest: str) -> str:
    for field in next(csv.reader(io.StringIO(attest)), []):
        key, _, value = field.partition("=")
        if key.strip() == "type":
            return value.strip()
    return ""


def attest_args(inputs: Inputs, builder_id: str = "") -> list[str]:
    """build-push-action's getAttestArgs: provenance and sbom inputs win over attests."""
    args: list[str] = []
    if inputs.provenance:
        args += ["--attest", _bool_or_attrs("provenance", inputs.provenance, builder_id)]
    if inputs.sbom:
        args += ["--attest", _bool_or_attrs("sbom", inputs.sbom, builder_id)]
    for attest in inputs.attests:
        kind = _attest_type(attest)
        if (kind == "provenance" and inputs.provenance) or (kind == "sbom" and inputs.sbom):
            continue
        if kind == "provenance" and builder_id and "builder-id=" not in attest:
            # build-push-action's resolveProvenanceAttrs
            args += ["--attest", f"{attest},builder-id={builder_id}"]
        else:
            args += ["--attest", attest]
    return args


@dataclass(frozen=True)
class BuildPaths:
    metadata_file: Path
    output_dir: Path
    secret_files: tuple[tuple[str, Path], ...] = ()  # (id, file) for the `secrets` input


def secret_args(inputs: Inputs, written: Sequence[tuple[str, Path]]) -> list[str]:
    args: list[str] = []
    for key, path in written:
        args += ["--secret", f"id={key},src={path}"]
    for item in inputs.secret_files:
        key, _, src = item.partition("=")  # parse_inputs checked that src exists
        args += ["--secret", f"id={key},src={src}"]
    return args


def secret_env_args(inputs: Inputs) -> list[str]:
    args: list[str] = []
    for item in inputs.secret_envs:
        key, _, env = item.partition("=")
        args += ["--secret", f"id={key},env={env}"]
    return args


def writes_local_output(inputs: Inputs) -> bool:
    """Neither push nor outputs: the build writes the local output folder, one subfolder per platform."""
    return not inputs.outputs and not inputs.push


def builder_id(env: Mapping[str, str]) -> str:
    """The provenance ``builder-id``: this workflow run's URL, as build-push-action sets it."""
    server, repo, run_id = (
        env.get("GITHUB_SERVER_URL"),
        env.get("GITHUB_REPOSITORY"),
        env.get("GITHUB_RUN_ID"),
    )
    if server and repo and run_id:
        attempt = env.get("GITHUB_RUN_ATTEMPT", "1")
        return f"{server}/{repo}/actions/runs/{run_id}/attempts/{attempt}"
    return ""


def push_by_digest(inputs: Inputs) -> bool:
    """push with no tags: each platform job pushes by digest to ``image``, a merge job tags."""
    return inputs.push and not inputs.tags and not inputs.outputs


def output_args(inputs: Inputs, output_dir: Path) -> list[str]:
    """The ``--output`` values of ``buildx build``."""
    if not writes_local_output(inputs):
        if inputs.outputs:
            return list(inputs.outputs)
        if push_by_digest(inputs):  # parse_inputs made sure that image is set
            # docker's matrix recipe: https://docs.docker.com/build/ci/github-actions/multi-platform/
            return [f"type=image,name={inputs.image},push-by-digest=true,name-canonical=true,push=true"]
        return ["type=image,push=true"]
    return [local_output(output_dir)]


def argv(
    inputs: Inputs,
    *,
    builder: str,
    platforms: Sequence[Platform],
    paths: BuildPaths,
    builder_id: str = "",
    cache_v2: bool = False,
    buildx: Sequence[str] = ("buildx",),
) -> list[str]:
    """The whole ``buildx build`` command line, in build-push-action's order. ``cache_v2``: the
    job has GitHub's cache service v2 (``cache.speaks_v2``)."""
    return [
        *buildx, "build", "--builder", builder, "--progress", "rawjson",
        *_each("--allow", inputs.allow),
        *_each("--annotation", inputs.annotations),
        *_each("--build-arg", inputs.build_args),
        *_each("--build-context", inputs.build_contexts),
        *_each("--cache-from", cache.entries(inputs.cache_from, platforms=platforms, service_v2=cache_v2)),
        *_each("--cache-to", cache.entries(inputs.cache_to, platforms=platforms, service_v2=cache_v2)),
        *secret_env_args(inputs),
        *_each("--file", [inputs.file] if inputs.file else []),
        *_each("--label", inputs.labels),
        *_each("--no-cache-filter", inputs.no_cache_filters),
        *_each("--output", output_args(inputs, paths.output_dir)),
        "--platform", plat.join(platforms),
        *attest_args(inputs, builder_id),
        *secret_args(inputs, paths.secret_files),
        *_each("--shm-size", [inputs.shm_size] if inputs.shm_size else []),
        *_each("--tag", inputs.tags),
        *_each("--target", [inputs.target] if inputs.target else []),
        *_each("--ulimit", inputs.ulimit),
        "--metadata-file", str(paths.metadata_file),
        *_each("--network", [inputs.network] if inputs.network else []),
        *(["--no-cache"] if inputs.no_cache else []),
        *(["--pull"] if inputs.pull else []),
        inputs.context or ".",
    ]  # fmt: skip


def _each(flag: str, values: Sequence[str]) -> list[str]:
    """``--flag v1 --flag v2``: one flag per value, as buildx repeats them."""
    return [word for value in values for word in (flag, value)]


# ---- the edges: prepare, then build ----------------------------------------------------------


@dataclass(frozen=True)
class BuildResult:
    """What the build left: the summary and the step outputs are written from it, failed or not."""

    spec: BuilderSpec
    timings: Timings
    pod_nodes: Mapping[str, str]  # buildx node → Kubernetes node its pod ran on
    metadata: Mapping[str, Any]
    output_dir: str  # the local output folder; empty when push or outputs is set
    seconds: float
    error: str = ""
    hint: str = ""  # the fix, when kubebuildx knows why the build failed (a builder pod was lost)

    @property
    def digest(self) -> str:
        """The pushed image's digest (``containerimage.digest``); empty when nothing was pushed."""
        value = self.metadata.get("containerimage.digest", "")
        return value if isinstance(value, str) else ""


def failure(result: BuildResult, *, logged_in: bool) -> BuildError | None:
    """The error a failed build ends the run with, once its outputs and summary are written."""
    if not result.error:
        return None
    return BuildError(
        result.error,
        hint=result.hint
        or registry.push_hint(result.error, logged_in=logged_in)
        or "the failing step's log is in the 'Building' group above",
    )


def with_fault(result: BuildResult, fault: Fault | None) -> BuildResult:
    """A failed build whose builder pod was lost: what happened to the pod first, then
    buildx's own words (never replaced: they may say something the pods do not)."""
    if fault is None or not result.error:
        return result
    return replace(result, error=runner.redact(f"{fault.message}\n{result.error}"), hint=fault.hint)


def write_secrets(inputs: Inputs, folder: Path) -> tuple[tuple[str, Path], ...]:
    """The ``secrets`` input as private files for ``--secret id=...,src=...``, masked as they are read."""
    out = []
    for item in inputs.secrets:
        key, _, value = item.partition("=")
        runner.mask(value)
        path = folder / secret_file_name(key)
        files.atomic_write(path, value)
        out.append((key, path))
    return tuple(out)


def prepare(inputs: Inputs, workdir: Path, output_dir: Path) -> BuildPaths:
    """Secret files in the private ``workdir``; an empty local output folder when the build writes one."""
    if writes_local_output(inputs):
        shutil.rmtree(output_dir, ignore_errors=True)
        output_dir.mkdir(parents=True, exist_ok=True)
    return BuildPaths(workdir / "metadata.json", output_dir, write_secrets(inputs, workdir / "secrets"))


def _metadata(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data: dict[str, Any] = json.loads(path.read_text() or "{}")
    except ValueError:
        return {}
    return data


def run(
    inputs: Inputs,
    booted: Booted,
    paths: BuildPaths,
    *,
    builder_id: str,
    env: Mapping[str, str],
    cache_v2: bool = False,
) -> BuildResult:
    """``buildx build``, its progress shown as a plain log. A failed build is a
    result with its error (the last error lines), not an exception, so that the
    outputs and the summary are still written."""
    spec = booted.spec
    command = argv(
        inputs,
        builder=spec.name,
        platforms=spec.platforms,
        paths=paths,
        builder_id=builder_id,
        cache_v2=cache_v2,
        buildx=buildx_command(),
    )
    for note in cache.notes(inputs.cache_from, inputs.cache_to, spec.platforms):
        runner.info(note)
    prog = progress.Progress()

    def show(line: str) -> None:
        for text in prog.feed(line):
            runner.info(text)

    started = time.monotonic()
    code = cmd.stream(command, on_stdout=show, on_stderr=show, env=dict(env))
    seconds = time.monotonic() - started
    single = str(spec.platforms[0]) if len(spec.platforms) == 1 else ""
    error = ""
    if code != 0:
        error = "\n".join(prog.errors()[-3:] + prog.other[-5:]) or f"buildx build exited {code}"
    local = str(paths.output_dir) if writes_local_output(inputs) else ""
    return BuildResult(
        spec,
        prog.timings(single),
        dict(booted.pod_nodes),
        _metadata(paths.metadata_file),
        local,
        seconds,
        runner.redact(error),
    )
