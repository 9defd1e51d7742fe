"""The only place that knows the order. It reads like the log:

Reading inputs → Connecting to the cluster → Preflight → Writing the
builder instance → Booting the builder → Building → Uploading artifacts
→ Outputs and summary → (post) Cleanup
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubebuildx import boot as boot_stage
from kubebuildx import (
    build,
    builder,
    cmd,
    files,
    instance,
    kube,
    kubeconfig,
    merge,
    preflight,
    progress,
    registry,
    runner,
    summary,
)
from kubebuildx.builder import BuilderSpec
from kubebuildx.errors import BuildError, KubebuildxError
from kubebuildx.inputs import Inputs
from kubebuildx.platforms import Platform


@dataclass
class Run:
    """What one run knows as it goes; the post step gets the part it needs via state."""

    inputs: Inputs
    env: Mapping[str, str]
    workdir: Path
    store: Path
    kubeconfig_path: Path | None = None
    config: kubeconfig.Kubeconfig | None = None
    namespace: str = ""
    spec: BuilderSpec | None = None
    api: Any = None
    connection: kube.Connection | None = None
    docker_config: Path | None = None  # our private DOCKER_CONFIG when the inputs log in
    marks: dict[str, float] = field(default_factory=dict)

    @property
    def tool_env(self) -> dict[str, str]:
        """For buildx commands that talk to a registry."""
        return registry.tool_env(self.docker_config, self.store)

    def mark(self, name: str) -> None:
        """Wall-clock marks, so that a benchmark can measure from the moment it spawned us."""
        self.marks[name] = time.time()


def temp_root(env: Mapping[str, str]) -> Path:
    """RUNNER_TEMP (mounted into container actions as /github/runner_temp, and
    kept for the post step), else the container's /github/home, else the
    system temp dir for the CLI."""
    for key in ("RUNNER_TEMP", "KUBEBUILDX_TEMP"):
        value = env.get(key)
        if value and Path(value).is_dir() and os.access(value, os.W_OK):
            return Path(value)
    if env.get("GITHUB_ACTIONS") == "true" and env.get("HOME") and Path(env["HOME"]).is_dir():
        return Path(env["HOME"])
    return Path(tempfile.gettempdir())


def start(inputs: Inputs, env: Mapping[str, str] | None = None) -> Run:
    env = dict(os.environ) if env is None else dict(env)
    root = temp_root(env) / "kubebuildx"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=root))
    # Saved at once: the kubeconfig lands here next, and the post step must delete it
    # even when this run fails before the builder exists.
    runner.save_state("workdir", str(workdir))
    return Run(inputs, env, workdir, instance.buildx_dir(env))


# ---- stages ---------------------------------------------------------------------------------


def connect(run: Run) -> None:
    with runner.group("Connecting to the cluster"):
        run.connection = kube.connect(run.inputs, run.env, run.workdir)
        run.config = run.connection.config
        run.kubeconfig_path = run.connection.kubeconfig_path
        run.namespace = run.connection.namespace
        run.api = run.connection.api
    run.mark("connected")


def login(run: Run, refs: tuple[str, ...]) -> None:
    """Registry credentials to a private 0600 config.json, checked before any build."""
    creds = registry.from_inputs(run.inputs.registry, run.inputs.username, run.inputs.password)
    auths = registry.parse_docker_config(run.inputs.docker_config)
    if creds is None:
        if auths:
            with runner.group("Registry credentials from docker-config"):
                run.docker_config = registry.write_config(None, run.workdir, auths)
                runner.info("registries: " + ", ".join(sorted(auths)))
        return
    with runner.group(f"Logging in to {creds.host}"):
        run.docker_config = registry.write_config(creds, run.workdir, auths)
        warning = registry.check_refs(creds, refs)
        if warning:
            runner.warning(warning)
        runner.info(registry.check_login(creds))
    run.mark("login")


def check(run: Run) -> tuple[tuple[Platform, ...], dict[Platform, Platform]]:
    assert run.connection is not None
    with runner.group("Preflight"):
        plan = preflight.check(run.connection, run.inputs)
    run.mark("preflight")
    return plan.native, dict(plan.emulated)


def _buildkit_config(inputs: Inputs) -> bytes | None:
    if inputs.buildkitd_config_inline:
        return inputs.buildkitd_config_inline.encode()
    if inputs.buildkitd_config:
        return Path(inputs.buildkitd_config).read_bytes()
    return None


def materialize(run: Run, native: tuple[Platform, ...], emulated: dict[Platform, Platform]) -> BuilderSpec:
    assert run.kubeconfig_path is not None
    with runner.group("Writing the builder instance"):
        platforms = (*native, *emulated)
        name = run.inputs.builder or builder.default_builder_name(
            run.env, platforms, keep=not run.inputs.cleanup
        )
        config = _buildkit_config(run.inputs)
        spec = builder.plan(
            run.inputs,
            name=name,
            namespace=run.namespace,
            native=native,
            emulated=emulated,
            config=config,
            files=builder.config_files(config, lambda path: Path(path).read_bytes()) if config else (),
        )
        ref = run.kubeconfig_path
        if not run.inputs.cleanup:  # a warm builder outlives this run's workdir: keep a private copy
            ref = instance.keep_kubeconfig(run.store, spec.name, run.kubeconfig_path.read_text())
        run.kubeconfig_path = ref
        path = instance.write(spec, str(ref), run.store)
        runner.info(f"builder {spec.name}: " + ", ".join(f"{n.name} → {n.platform}" for n in spec.nodes))
        runner.info(f"instance file {path}")
        run.spec = spec
        runner.save_state("builder", spec.name)
        runner.save_state("store", str(run.store))
        runner.save_state("cleanup", "true" if run.inputs.cleanup else "false")
        runner.save_state("namespace", run.namespace)
    run.mark("instance")
    return spec


def boot(run: Run) -> dict[str, str]:
    """Boot every node; return buildx node → Kubernetes node its pod runs on."""
    spec = run.spec
    assert spec is not None and run.connection is not None
    run.mark("boot-start")
    with runner.group(f"Booting builder {spec.name}"):
        boot_stage.start(run.connection, spec, builder.buildx_command())
    run.mark("boot-end")
    with runner.group("Checking each node builds natively"):
        booted = boot_stage.verify(run.connection, spec)
    run.mark("verified")
    return dict(booted.pod_nodes)


def _write_secrets(run: Run) -> tuple[tuple[str, Path], ...]:
    out = []
    folder = run.workdir / "secrets"
    for item in run.inputs.secrets:
        key, _, value = item.partition("=")
        runner.mask(value)
        path = folder / key.replace("/", "_")
        files.atomic_write(path, value)
        out.append((key, path))
    return tuple(out)


def output_dir(run: Run) -> Path:
    assert run.spec is not None
    return run.workdir.parent / run.spec.name / "out"


def builder_id(env: Mapping[str, str]) -> str:
    server, repo, run_id = (
        env.get("GITHUB_SERVER_URL"),
        env.get("GITHUB_REPOSITORY"),
        env.get("GITHUB_RUN_ID"),
    )
    if server and repo and run_id:
        attempt = env.get("GITHUB_RUN_ATTEMPT", "1")
        return f"{server}/{repo}/actions/runs/{run_id}/attempts/{attempt}"
    return ""


def run_build(run: Run, pod_nodes: Mapping[str, str]) -> summary.BuildResult:
    spec = run.spec
    assert spec is not None
    out = output_dir(run)
    if not run.inputs.outputs and not run.inputs.push:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
    paths = build.BuildPaths(run.workdir / "metadata.json", out, _write_secrets(run))
    argv = build.argv(
        run.inputs,
        builder=spec.name,
        platforms=spec.platforms,
        paths=paths,
        builder_id=builder_id(run.env),
        buildx=builder.buildx_command(),
    )
    prog = progress.Progress()

    def show(line: str) -> None:
        for text in prog.feed(line):
            runner.info(text)

    started = time.monotonic()
    run.mark("build-start")
    with runner.group(f"Building {', '.join(str(p) for p in spec.platforms)}"):
        code = cmd.stream(argv, on_stdout=show, on_stderr=show, env=run.tool_env)
    seconds = time.monotonic() - started
    run.mark("build-end")
    metadata: dict[str, Any] = {}
    if paths.metadata_file.is_file():
        try:
            metadata = json.loads(paths.metadata_file.read_text() or "{}")
        except ValueError:
            metadata = {}
    single = str(spec.platforms[0]) if len(spec.platforms) == 1 else ""
    error = ""
    if code != 0:
        error = "\n".join(prog.errors()[-3:] + prog.other[-5:]) or f"buildx build exited {code}"
    local = "" if (run.inputs.outputs or run.inputs.push) else str(out)
    return summary.BuildResult(
        spec, prog.timings(single), dict(pod_nodes), metadata, local, seconds, runner.redact(error)
    )


def record_digest(run: Run, result: summary.BuildResult) -> str:
    """Push by digest: a file named by the digest's hex, uploaded as ``digests-<platform>``
    for the merge job (docker's matrix recipe); the table row for the summary."""
    digest = summary.digest(result.metadata)
    if result.error or not digest or not build.push_by_digest(run.inputs):
        return ""
    with runner.group("Recording the digest for the merge"):
        folder = run.workdir.parent / result.spec.name / "digests"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        file = folder / merge.digest_file_name(digest)
        file.touch()
        name = merge.digest_artifact_name(run.inputs.artifact_name, result.spec.platforms)
        runner.info(f"pushed {run.inputs.image}@{digest}")
        runner.info(f"digest file: {file}")
        if not (run.inputs.upload_artifacts and run.env.get("ACTIONS_RUNTIME_TOKEN")):
            return ""
        from kubebuildx.artifacts import UploadOptions, upload_artifact

        options = UploadOptions(
            name=name,
            retention_days=run.inputs.retention_days or 1,
            compression_level=run.inputs.compression_level,
            if_no_files_found="error",
            overwrite=run.inputs.overwrite,
        )
        uploaded = upload_artifact(folder, options, [file])
        if uploaded is None:
            return ""
        return f"Digest artifact for the merge job: [`{uploaded.name}`]({uploaded.url})"


def artifact_base_name(inputs: Inputs) -> str:
    """Predictable, unlike the default builder name: a later job downloads ``<name>-*``."""
    return inputs.artifact_name or inputs.builder or "kubebuildx"


def publish(run: Run, result: summary.BuildResult) -> None:
    """Outputs, artifacts and the summary. The build's outputs and summary are
    written even when the build or an upload failed; the upload's error is
    raised after them, so it is never the reason the rest goes missing."""
    extra: list[str] = []
    failure: KubebuildxError | None = None
    try:
        digest_row = record_digest(run, result)
        extra += [digest_row] if digest_row else []
        if (
            result.output_dir
            and not result.error
            and run.inputs.upload_artifacts
            and run.env.get("ACTIONS_RUNTIME_TOKEN")
        ):
            extra.insert(0, upload_outputs(run, Path(result.output_dir)))
    except KubebuildxError as exc:
        failure = exc
    with runner.group("Outputs and summary"):
        for key, value in summary.step_outputs(result).items():
            runner.set_output(key, value)
        runner.append_summary(summary.markdown(result, "\n\n".join(extra)))
        if result.timings.platforms:
            runner.info(summary.console_table(result))
        if result.output_dir:
            runner.info(f"files: {result.output_dir}/<os>_<arch>/")
    if failure:
        raise failure


def upload_outputs(run: Run, output_dir: Path) -> str:
    """Upload each platform's folder; set the artifact outputs; return the summary table."""
    with runner.group("Uploading artifacts"):
        from kubebuildx.artifacts import (
            SUMMARY_HEADER,
            UploadOptions,
            artifact_outputs,
            summary_rows,
            upload_platform_artifacts,
        )

        options = UploadOptions(
            name=artifact_base_name(run.inputs),
            retention_days=run.inputs.retention_days,
            compression_level=run.inputs.compression_level,
            if_no_files_found=run.inputs.if_no_files_found,
            overwrite=run.inputs.overwrite,
        )
        uploaded = upload_platform_artifacts(
            output_dir, options.name, options, per_platform=run.inputs.artifact_per_platform
        )
        for key, value in artifact_outputs(uploaded).items():
            runner.set_output(key, value)
        return f"{SUMMARY_HEADER}\n{summary_rows(uploaded)}" if uploaded else ""


def cleanup(
    store: Path, name: str, workdir: Path | None, remove_builder: bool, *, forget_warm: bool = False
) -> None:
    """Remove the builder when asked; always delete the run's kubeconfig and secrets.

    A warm builder (``remove_builder`` false) keeps its Deployments. The CLI
    keeps its instance file and private kubeconfig copy too, as ``buildx
    create`` would, so ``kubebuildx cleanup NAME`` and plain buildx still
    reach it; the action (``forget_warm``) deletes both, since a kubeconfig
    must not outlive the job: the next run writes its own and finds the
    Deployments by name. Only warns: a failed cleanup never hides the real error.
    """
    with runner.group("Cleanup"):
        if name and remove_builder:
            try:
                cmd.run(
                    [*builder.buildx_command(), "rm", "--force", name],
                    env={"BUILDX_CONFIG": str(store)},
                    timeout=120,
                    what=f"buildx rm {name}",
                )
                instance.remove(name, store)
            except KubebuildxError as exc:  # keep the instance, so that a retry can still reach it
                runner.warning(f"could not remove builder {name}: {exc}")
        elif name:
            runner.info(f"keeping builder {name} warm (cleanup: false): its Deployments stay")
            if forget_warm:
                instance.remove(name, store)
        if workdir and workdir.is_dir():
            shutil.rmtree(workdir, ignore_errors=True)
            runner.info("deleted the kubeconfig and secrets")


def write_marks(run: Run) -> None:
    """For benchmarks: what kubebuildx itself spent before buildx started building."""
    target = run.env.get("KUBEBUILDX_TRACE")
    if not target:
        return
    Path(target).write_text(json.dumps(run.marks, sort_keys=True))


def build_all(inputs: Inputs, env: Mapping[str, str] | None = None, *, post_cleanup: bool = False) -> int:
    """The whole job. With ``post_cleanup`` (the action) cleanup is left to the post step."""
    run = start(inputs, env)
    failure: KubebuildxError | None = None
    try:
        login(run, (*inputs.tags, inputs.image) if inputs.image else inputs.tags)
        connect(run)
        native, emulated = check(run)
        materialize(run, native, emulated)
        pod_nodes = boot(run)
        result = run_build(run, pod_nodes)
        publish(run, result)
        if result.error:
            failure = BuildError(
                result.error,
                hint=registry.push_hint(result.error, logged_in=run.docker_config is not None)
                or "the failing step's log is in the 'Building' group above",
            )
    finally:
        write_marks(run)
        if not post_cleanup:
            cleanup(run.store, run.spec.name if run.spec else "", run.workdir, run.inputs.cleanup)
    if failure:
        raise failure
    return 0


def merge_all(inputs: Inputs, env: Mapping[str, str] | None = None) -> int:
    """mode: merge. No cluster: log in, verify the digests, create the index, read it back."""
    run = start(inputs, env)
    try:
        image = inputs.image or merge.repository_of(inputs.tags[0])
        login(run, (*inputs.tags, image))
        env, name = run.tool_env, inputs.builder
        config = _buildkit_config(inputs)
        if config and not name:  # registry settings for imagetools, in a store of our own
            spec = merge.registry_builder(config, inputs.platforms[0])
            instance.write(spec, "", run.workdir / "buildx", make_current=False)
            env, name = {**env, "BUILDX_CONFIG": str(run.workdir / "buildx")}, spec.name
        merged = merge.run(
            image=image,
            tags=inputs.tags,
            platforms=inputs.platforms,
            items=inputs.digests,
            buildx=builder.buildx_command(),
            env=env,
            workdir=run.workdir,
            annotations=inputs.annotations,
            builder=name,
        )
        with runner.group("Outputs and summary"):
            runner.set_output("digest", merged.index_digest)
            runner.set_output(
                "metadata", json.dumps(dict(merged.metadata), separators=(",", ":"), sort_keys=True)
            )
            runner.append_summary(merge.summary_markdown(merged.tags, merged.index_digest, merged.sources))
            runner.info(f"index digest: {merged.index_digest}")
    finally:
        cleanup(run.store, "", run.workdir, False)
    return 0
