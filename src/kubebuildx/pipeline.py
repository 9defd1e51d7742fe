"""The only place that knows the order. It reads like the log of a build:

Logging in to <registry> (or Registry credentials from docker-config) →
Connecting to the cluster → Preflight → Writing the builder instance → Booting
builder <name> → Checking each node builds natively → Building <platforms> →
Recording the digest for the merge → Uploading artifacts → Outputs and summary
→ Cleanup (in the action: its post step)

Each stage is a function of its own module that takes and returns frozen
values (``kube.Connection``, ``preflight.Plan``, ``BuilderSpec``,
``boot.Booted``, ``build.BuildResult``). This module opens the log groups,
hands the values on, and keeps a build error until the outputs and the summary
are written. Where a run keeps its files is ``run_folders``' job.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from kubebuildx import (
    boot,
    build,
    builder,
    buildx_store,
    cache,
    cleanup,
    files,
    hostpaths,
    kube,
    merge,
    pod_faults,
    preflight,
    registry,
    run_folders,
    runner,
    summary,
)
from kubebuildx.builder import BuilderSpec
from kubebuildx.errors import KubebuildxError
from kubebuildx.inputs import Inputs
from kubebuildx.run_folders import Run, start

# ---- the stages, in the order of the log ----------------------------------------------------


def login(run: Run, refs: tuple[str, ...]) -> Path | None:
    """Registry credentials to a private config.json, checked before any build; its
    folder (our DOCKER_CONFIG), or None when the inputs give no credentials."""
    creds = registry.from_inputs(run.inputs.registry, run.inputs.username, run.inputs.password)
    auths = registry.parse_docker_config(run.inputs.docker_config)
    if creds is None and not auths:
        return None
    with runner.group(f"Logging in to {creds.host}" if creds else "Registry credentials from docker-config"):
        docker_config = registry.login(creds, auths, run.workdir, refs)
    if creds:
        run.mark("login")
    return docker_config


def connect(run: Run) -> kube.Connection:
    with runner.group("Connecting to the cluster"):
        connection = kube.connect(run.inputs, run.env, run.workdir)
    run.mark("connected")
    return connection


def check(run: Run, connection: kube.Connection) -> preflight.Plan:
    with runner.group("Preflight"):
        plan = preflight.check(connection, run.inputs)
    run.mark("preflight")
    return plan


def write_instance(
    run: Run,
    connection: kube.Connection,
    plan: preflight.Plan,
    *,
    keep_kubeconfig: bool = False,
    kubeconfig_ref: str | None = None,
    forgets_warm: bool = False,  # the action deletes a warm builder's kubeconfig copy at the end
) -> BuilderSpec:
    with runner.group("Writing the builder instance"):
        spec = builder.spec_for(run.inputs, run.env, connection.namespace, plan)
        path = buildx_store.materialize(
            spec,
            connection.kubeconfig_path,
            run.store,
            keep_kubeconfig=keep_kubeconfig or not run.inputs.cleanup,  # a warm builder outlives the run
            kubeconfig_ref=kubeconfig_ref,
        )
        runner.info(f"builder {spec.name}: " + ", ".join(f"{n.name} → {n.platform}" for n in spec.nodes))
        runner.info(f"instance file {path}")
        kept = (keep_kubeconfig or not run.inputs.cleanup) and not forgets_warm
        if kept and connection.credential != "kubeconfig":
            runner.warning(
                "the kept copy of the kubeconfig carries a short-lived credential "
                f"({connection.credential}): once it expires, plain buildx cannot reach builder "
                f"{spec.name}; remove it with `kubebuildx cleanup` given a fresh auth or token"
                + (", and delete the copy, which holds the token, when done" if run.inputs.token else "")
            )
        cleanup.PostState(
            str(run.workdir),
            spec.name,
            str(run.store),
            run.inputs.cleanup,
            connection.namespace,
            tuple(node.name for node in spec.nodes),
            run.inputs.persistent_storage,
        ).save()
    run.mark("instance")
    return spec


def boot_builder(run: Run, connection: kube.Connection, spec: BuilderSpec) -> boot.Booted:
    run.mark("boot-start")
    with runner.group(f"Booting builder {spec.name}"):
        boot.start(connection, spec, builder.buildx_command())
    run.mark("boot-end")
    with runner.group("Checking each node builds natively"):
        booted = boot.verify(connection, spec)
    run.mark("verified")
    return booted


def run_build(
    run: Run, connection: kube.Connection, booted: boot.Booted, docker_config: Path | None
) -> build.BuildResult:
    paths = build.prepare(run.inputs, run.workdir, run.output_dir(booted.spec))
    run.mark("build-start")
    with runner.group(f"Building {', '.join(str(p) for p in booted.spec.platforms)}"):
        result = build.run(
            run.inputs,
            booted,
            paths,
            builder_id=build.builder_id(run.env),
            env=registry.tool_env(docker_config, run.store),
            cache_v2=cache.speaks_v2(run.env),
        )
        if result.error:  # was a builder pod lost under the build? buildx only saw its stream break
            result = build.with_fault(result, pod_faults.check(connection, booted.pods))
    run.mark("build-end")
    return result


def publish(run: Run, result: build.BuildResult) -> None:
    """Artifacts, outputs and the summary. The build's outputs and summary are
    written even when the build or an upload failed; the upload's error is
    raised after them, so it is never the reason the rest goes missing."""
    from kubebuildx.artifacts import build_artifacts  # the artifact client: not loaded before a build

    extra: list[str] = []
    failure: KubebuildxError | None = None
    try:
        if build_artifacts.records_digest(run.inputs, result):
            with runner.group("Recording the digest for the merge"):
                row = build_artifacts.record_digest(run.inputs, result, run.digest_dir(result.spec), run.env)
            extra += [row] if row else []
        if build_artifacts.uploads_output(run.inputs, result, run.env):
            with runner.group("Uploading artifacts"):
                extra.insert(0, build_artifacts.upload_output(run.inputs, Path(result.output_dir), run.env))
    except KubebuildxError as exc:
        failure = exc
    # the output-dir output, the summary and the log name the host's folder: a later step uses it as it is
    result = replace(result, output_dir=hostpaths.to_host(result.output_dir, hostpaths.mount_table(run.env)))
    with runner.group("Outputs and summary"):
        summary.write(result, "\n\n".join(extra))
    if failure:
        raise failure


def clean_up(
    store: Path, name: str, workdir: Path | None, remove_builder: bool, *, forget_warm: bool = False
) -> None:
    """The end of every command, in its ``finally``: a cancel runs it too."""
    with runner.group("Cleanup"):
        if cleanup.run(store, name, workdir, remove_builder, forget_warm=forget_warm):
            cleanup.PostState.save_done()


def post_clean_up(state: cleanup.PostState, inputs: Inputs | None, env: Mapping[str, str]) -> None:
    """The action's post step: what the main step could not finish, with the credential
    rebuilt from the inputs in a private folder of its own."""
    with runner.group("Cleanup"):
        cleanup.post(state, inputs, env, run_folders.new_folder(env, "kubebuildx-post-", files.PRIVATE))


def write_marks(run: Run) -> None:
    """For benchmarks: what kubebuildx itself spent before buildx started building."""
    target = run.env.get("KUBEBUILDX_TRACE")
    if target:
        Path(target).write_text(json.dumps(run.marks, sort_keys=True))


# ---- the commands ---------------------------------------------------------------------------


def build_all(inputs: Inputs, env: Mapping[str, str] | None = None, *, in_action: bool = False) -> int:
    """The whole job, cleanup last, in a ``finally`` that a cancel runs too: the builder is
    removed and the secrets deleted before the step ends. In the action a warm builder is
    forgotten as well, and what cleanup could not finish is left to the post step."""
    run = start(inputs, env, outputs=True)
    spec: BuilderSpec | None = None
    failure: KubebuildxError | None = None
    try:
        docker_config = login(run, (*inputs.tags, inputs.image) if inputs.image else inputs.tags)
        connection = connect(run)
        plan = check(run, connection)
        spec = write_instance(run, connection, plan, forgets_warm=in_action)
        booted = boot_builder(run, connection, spec)
        result = run_build(run, connection, booted, docker_config)
        publish(run, result)
        failure = build.failure(result, logged_in=docker_config is not None)
    finally:
        write_marks(run)
        # The public folder and what buildx wrote into the workspace or runner temp go to that
        # folder's owner (uid 1001 on hosted runners), so that later steps read and delete them.
        # Secrets first: a dest= that covers runner temp must never hand over the run's folder.
        try:
            public = [str(run.public_dir)] if run.public_dir else []
            written = hostpaths.local_destinations((*inputs.outputs, *inputs.cache_to))
        finally:
            clean_up(run.store, spec.name if spec else "", run.workdir, inputs.cleanup, forget_warm=in_action)
        hostpaths.hand_over([*public, *written], run.env)
    if failure:
        raise failure
    return 0


def preflight_only(inputs: Inputs, env: Mapping[str, str] | None = None) -> preflight.Plan:
    """``kubebuildx preflight``: connect and check, nothing written that outlives the run."""
    run = start(inputs, env)
    try:
        return check(run, connect(run))
    finally:
        clean_up(run.store, "", run.workdir, False)


def instance_only(
    inputs: Inputs,
    env: Mapping[str, str] | None = None,
    *,
    kubeconfig_ref: str | None = None,
    configmap: str = "",
    show: Callable[[str], object] = lambda text: None,
) -> str:
    """``kubebuildx instance``: the builder's instance file, pointing at a
    kubeconfig that outlives the run (a private copy, or ``kubeconfig_ref``);
    ``show`` gets the instance JSON, which is optionally stored in a ConfigMap too."""
    run = start(inputs, env)
    try:
        connection = connect(run)
        plan = check(run, connection)
        spec = write_instance(
            run, connection, plan, keep_kubeconfig=kubeconfig_ref is None, kubeconfig_ref=kubeconfig_ref
        )
        text = buildx_store.instance_file(run.store, spec.name).read_text()
        show(text)
        if configmap:
            from kubebuildx import configmap as configmaps

            configmaps.store(connection, configmap, spec.name, text)
        return text
    finally:
        clean_up(run.store, "", run.workdir, False)


def merge_all(inputs: Inputs, env: Mapping[str, str] | None = None) -> int:
    """mode: merge. No cluster: log in, verify the digests, create the index, read it back."""
    run = start(inputs, env)
    try:
        image = inputs.image or merge.repository_of(inputs.tags[0])
        tool_env, name = registry.tool_env(login(run, (*inputs.tags, image)), run.store), inputs.builder
        config = builder.buildkit_config(inputs)
        if config and not name:  # registry settings for imagetools, in a store of our own
            spec = merge.registry_builder(config, inputs.platforms[0])
            buildx_store.write(spec, "", run.workdir / "buildx")
            tool_env, name = {**tool_env, "BUILDX_CONFIG": str(run.workdir / "buildx")}, spec.name
        merged = merge.run(
            image=image,
            tags=inputs.tags,
            platforms=inputs.platforms,
            items=inputs.digests,
            buildx=builder.buildx_command(),
            env=tool_env,
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
        clean_up(run.store, "", run.workdir, False)
    return 0
