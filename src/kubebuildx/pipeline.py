"""The only place that knows the order. It reads like the log:

Reading inputs → Connecting to the cluster → Preflight → Writing the
builder instance → Booting the builder → Building → Uploading artifacts
→ Outputs and summary → (post) Cleanup
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubebuildx import (
    bootstrap,
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
from kubebuildx.errors import BootstrapError, BuildError, InputError, KubebuildxError
from kubebuildx.inputs import Inputs, secret_file_name
from kubebuildx.platforms import Platform

DEFAULT_BOOT_TIMEOUT = 120.0


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
        if run.inputs.kubeconfig.strip():
            config = kubeconfig.parse(run.inputs.kubeconfig, context=run.inputs.kube_context)
        else:
            if run.inputs.kube_context:
                raise InputError(
                    "kube-context is set but no kubeconfig was given",
                    hint="set the kubeconfig input, or leave kube-context empty in-cluster",
                )
            config = kubeconfig.in_cluster(run.env)
        run.config = config
        run.kubeconfig_path = kubeconfig.write(config, run.workdir)
        run.namespace = run.inputs.namespace or config.namespace or builder.DEFAULT_NAMESPACE
        runner.info(
            f"context {config.context}, cluster {config.cluster} at {config.server}, "
            f"namespace {run.namespace}"
        )
        run.api = kube.api_client(str(run.kubeconfig_path))
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
    assert run.config is not None
    with runner.group("Preflight"):
        persistent = run.inputs.persistent_storage
        state = preflight.read_cluster(run.api, run.config.server, run.namespace, persistent)
        runner.info(f"Kubernetes {state.version}; {preflight.describe_cluster(state.nodes)}")
        preflight.raise_for_rbac(
            preflight.missing_permissions(state.allowed, preflight.needed(persistent)),
            run.namespace,
            f"user {run.config.context!r}",
        )
        if state.namespace_exists is False:
            raise KubebuildxError(
                f"namespace {run.namespace!r} does not exist",
                hint=f"create it (kubectl create namespace {run.namespace}) or set the namespace input",
            )
        requested = run.inputs.platforms or preflight.serveable(state.nodes)
        if not requested:
            raise KubebuildxError(
                f"no Ready node with a {builder.ARCH_LABEL} label; {preflight.describe_cluster(state.nodes)}",
                hint="label your nodes, or set platforms",
            )
        tolerations = {
            p: preflight.parse_tolerations(run.inputs.driver_opts_for(p).get("tolerations", ""))
            for p in requested
        }
        checks = preflight.check_platforms(state.nodes, requested, tolerations)
        runner.info(preflight.table(checks))
        native, emulated = preflight.decide(checks, state.nodes, qemu_fallback=run.inputs.qemu_fallback)
        for platform, host in emulated.items():
            runner.warning(
                f"no node serves {platform} natively: it is EMULATED on {host} nodes with QEMU, "
                "typically 3 to 6 times slower. Add a native node to build it at full speed.",
                title="Emulated platform",
            )
        if not state.allowed.get(preflight.OPTIONAL[0]):
            runner.debug("cannot list events: diagnostics of pods that do not start will be shorter")
    run.mark("preflight")
    return native, emulated


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


def _boot_timeout(spec: BuilderSpec) -> float:
    for node in spec.nodes:
        value = dict(node.driver_opts).get("timeout")
        if value:
            return _duration(value)
    return DEFAULT_BOOT_TIMEOUT


def _duration(text: str) -> float:
    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", text))


def pods_of(run: Run, node: str) -> list[dict[str, Any]]:
    assert run.config is not None
    return kube.get_items(
        run.api,
        f"/api/v1/namespaces/{run.namespace}/pods",
        run.config.server,
        "listing builder pods",
        query={"labelSelector": f"app={node}"},
    )


def _events(run: Run) -> list[dict[str, Any]]:
    assert run.config is not None
    return kube.get_items(
        run.api, f"/api/v1/namespaces/{run.namespace}/events", run.config.server, "listing events"
    )


def boot(run: Run) -> dict[str, str]:
    """Boot every node; return buildx node → Kubernetes node its pod runs on."""
    spec = run.spec
    assert spec is not None
    buildx = build.buildx_command()
    run.mark("boot-start")
    with runner.group(f"Booting builder {spec.name}"):
        timeout = _boot_timeout(spec)
        result = cmd.run(
            [*buildx, "inspect", "--bootstrap", "--timeout", f"{int(timeout)}s", spec.name],
            check=False,
            timeout=timeout + 30,
            error=BootstrapError,
            what="buildx inspect --bootstrap",
        )
        inspected = bootstrap.parse_inspect(result.stdout)
        failed = [n for n in inspected.nodes if n.error or n.status not in ("running", "")]
        if result.returncode != 0 or inspected.error or failed:
            waited = time.time() - run.marks["boot-start"]
            reasons = []
            try:
                events = _events(run)
                for node in spec.nodes:
                    reasons += bootstrap.diagnose(pods_of(run, node.name), events, node.name)
            except Exception as exc:  # noqa: BLE001 - the API may be the problem; keep buildx's words
                runner.debug(f"cannot read the builder's pods: {type(exc).__name__}")
            # buildx's own words first: it knows when the driver refused the spec itself
            words = [n.error for n in inspected.nodes if n.error] or [inspected.error] * bool(inspected.error)
            words = words or [cmd.last_words(result.stderr or result.stdout, 8) or "buildx gave no reason"]
            gave_up = (
                f"did not become ready within {timeout:.0f}s" if waited >= timeout else "could not start"
            )
            raise BootstrapError(
                f"builder {spec.name} {gave_up}:\n  buildx: " + "\n  ".join(words + reasons),
                hint=bootstrap.hint_for([*words, *reasons]),
            )
        runner.tool_output(result.stdout.strip())  # buildx inspect: with workflow commands off
    run.mark("boot-end")
    with runner.group("Checking each node builds natively"):
        # One exec per node, side by side: each is a round trip through the API server.
        with ThreadPoolExecutor(max_workers=len(spec.nodes)) as pool:
            probes = list(pool.map(lambda node: _probe_node(run, node.name), spec.nodes))
        pod_nodes = {
            node.name: where for node, (_, where, _) in zip(spec.nodes, probes, strict=True) if where
        }
        reported = {node.name: found for node, (_, _, found) in zip(spec.nodes, probes, strict=True)}
        for node, (pod, where, found) in zip(spec.nodes, probes, strict=True):
            runner.info(
                f"{node.name}: pod {pod or '?'} on {where or '?'}, BuildKit runs on "
                + (str(found[0]) if found else "?")
                + (f" (emulating {node.platform})" if node.emulated_on else "")
            )
        bootstrap.check_native(spec, reported, pod_nodes)
    run.mark("verified")
    return pod_nodes


def _probe_node(run: Run, node: str) -> tuple[str, str, tuple[Platform, ...]]:
    """(pod, Kubernetes node, platforms its BuildKit lists) for one builder node."""
    running = [p for p in pods_of(run, node) if p.get("status", {}).get("phase") == "Running"]
    if not running:
        return "", "", ()
    pod = running[0].get("metadata", {}).get("name", "")
    where = running[0].get("spec", {}).get("nodeName", "")
    try:
        text = kube.exec_in_pod(run.api, run.namespace, pod, list(bootstrap.WORKERS_ARGV))
    except Exception as exc:  # noqa: BLE001 - the client raises many kinds; all mean "cannot tell"
        raise BootstrapError(
            f"cannot ask BuildKit in pod {pod} which platforms it runs: {type(exc).__name__}",
            hint="the builder image must contain buildctl (moby/buildkit images do), and the user "
            "needs get and create on pods/exec (deploy/rbac.yaml)",
        ) from None
    return pod, where, bootstrap.worker_platforms(text)


def _write_secrets(run: Run) -> tuple[tuple[str, Path], ...]:
    out = []
    folder = run.workdir / "secrets"
    for item in run.inputs.secrets:
        key, _, value = item.partition("=")
        runner.mask(value)
        path = folder / secret_file_name(key)
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
        buildx=build.buildx_command(),
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
        for key, value in summary.outputs(result).items():
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
                    [*build.buildx_command(), "rm", "--force", name],
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
            buildx=build.buildx_command(),
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
