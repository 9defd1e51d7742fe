"""Cleanup: remove the builder when asked, and delete the run's private files
(the kubeconfig, secrets, registry config) as soon as nothing needs them.

The main step does both at its end (``run``), in a ``finally`` that a cancel
(SIGTERM, SIGINT) runs too: ``buildx rm`` first, since it reads the kubeconfig
that the builder's endpoint names, then the files, whatever ``buildx rm`` did.
The action's post step (``post``) is for what the main step could not finish:
it was killed, or ``buildx rm`` failed. It rebuilds the credential from the
inputs (the runner gives the post step the same ``INPUT_*``), deletes the
builder's Deployments through the Kubernetes API, and fails when it cannot,
since they run privileged BuildKit pods.

The main step's cleanup only warns: it never hides the real error.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kubebuildx import buildx_store, cmd, kube, oidc, runner
from kubebuildx.builder import buildx_command
from kubebuildx.errors import CleanupError, KubebuildxError
from kubebuildx.inputs import Inputs


@dataclass(frozen=True)
class PostState:
    """What the post step needs, saved as ``STATE_<key>`` by the main step.

    ``workdir`` is saved first, alone, as soon as it exists: the kubeconfig lands
    there next, and the post step must delete it even when the run fails before
    the builder exists. The rest is saved once the builder is written, and
    ``done`` once the main step's own cleanup left nothing for the post step.
    """

    workdir: str = ""
    builder: str = ""
    store: str = ""
    remove_builder: bool = True  # the cleanup input
    namespace: str = ""
    nodes: tuple[str, ...] = ()  # the builder's Deployments (StatefulSets when persistent)
    persistent: bool = False
    done: bool = False

    def save(self) -> None:
        runner.save_state("workdir", self.workdir)
        if self.builder:
            runner.save_state("builder", self.builder)
            runner.save_state("store", self.store)
            runner.save_state("cleanup", "true" if self.remove_builder else "false")
            runner.save_state("namespace", self.namespace)
            runner.save_state("nodes", ",".join(self.nodes))
            runner.save_state("persistent", "true" if self.persistent else "false")
        runner.save_state("done", "true" if self.done else "false")

    @staticmethod
    def save_done() -> None:
        """The main step removed (or forgot) the builder and deleted the files."""
        runner.save_state("done", "true")

    @classmethod
    def load(cls, env: Mapping[str, str]) -> PostState:
        """The state as the runner hands it to the post step: ``STATE_<key>`` variables."""
        return cls(
            workdir=env.get("STATE_workdir", ""),
            builder=env.get("STATE_builder", ""),
            store=env.get("STATE_store", ""),
            remove_builder=env.get("STATE_cleanup", "") != "false",
            namespace=env.get("STATE_namespace", ""),
            nodes=tuple(n for n in env.get("STATE_nodes", "").split(",") if n),
            persistent=env.get("STATE_persistent", "") == "true",
            done=env.get("STATE_done", "") == "true",
        )

    @property
    def left_over(self) -> bool:
        """Whether the post step has anything to do beyond deleting files."""
        return bool(self.builder) and not self.done


def delete_files(folder: Path | None) -> None:
    """The run's private folder and everything in it. Unlinked, not overwritten: on the
    journaling and copy-on-write filesystems of runners an overwrite promises nothing, and
    what matters is that no later step (every container action mounts RUNNER_TEMP) finds them."""
    oidc.stop_all()  # a refresher must not write a token into the folder as it goes
    if folder and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
        runner.info("deleted the kubeconfig and secrets")


def run(
    store: Path, name: str, workdir: Path | None, remove_builder: bool, *, forget_warm: bool = False
) -> bool:
    """Remove the builder when asked; then, in any case, delete the run's kubeconfig and
    secrets. True when nothing is left for a post step.

    A warm builder (``remove_builder`` false) keeps its Deployments. The CLI
    keeps its instance file and private kubeconfig copy too, as ``buildx
    create`` would, so ``kubebuildx cleanup NAME`` and plain buildx still
    reach it; the action (``forget_warm``) deletes both, since a kubeconfig
    must not outlive the step: the next run writes its own and finds the
    Deployments by name.
    """
    done = True
    try:
        if name and remove_builder:
            try:
                cmd.run(
                    [*buildx_command(), "rm", "--force", name],
                    env={"BUILDX_CONFIG": str(store)},
                    timeout=120,
                    what=f"buildx rm {name}",
                )
                buildx_store.remove(name, store)
            except (KubebuildxError, OSError) as exc:  # keep the instance, so that a retry can still reach it
                runner.warning(f"could not remove builder {name}: {exc}")
                done = False
        elif name:
            runner.info(f"keeping builder {name} warm (cleanup: false): its Deployments stay")
            if forget_warm:
                try:
                    buildx_store.remove(name, store)
                except OSError as exc:
                    runner.warning(f"could not forget builder {name}: {exc}")
    finally:  # also when a cancel interrupts buildx rm: the files go, the post step retries the rest
        delete_files(workdir)
    return done


def post(state: PostState, inputs: Inputs | None, env: Mapping[str, str], folder: Path) -> None:
    """The action's post step, for what the main step left: its files, and a builder it
    did not remove. The credential is rebuilt from the inputs into ``folder`` (private,
    new), which is deleted at the end. Raises CleanupError when the builder's
    Deployments may still be running."""
    try:
        delete_files(Path(state.workdir) if state.workdir else None)
        if not state.left_over:
            runner.info("nothing left to clean up")
            return
        store = Path(state.store) if state.store else None
        if not state.remove_builder:
            runner.info(f"keeping builder {state.builder} warm (cleanup: false): its Deployments stay")
            if store:
                buildx_store.remove(state.builder, store)
            return
        kind = "statefulset" if state.persistent else "deployment"
        try:
            if inputs is None:
                raise CleanupError("the action's inputs cannot be read again in the post step")
            if not state.nodes:
                raise CleanupError("the main step saved no names of its Deployments")
            connection = kube.connect(inputs, env, folder)
            namespace = state.namespace or connection.namespace
            left = kube.delete_builder(connection, namespace, state.nodes, kind)
        except KubebuildxError as exc:
            reason, namespace = exc.message, state.namespace
        else:
            if not left:
                if store:
                    buildx_store.remove(state.builder, store)
                message = (
                    f"the main step did not remove builder {state.builder}; the post step deleted its "
                    f"{kind}s through the Kubernetes API: {', '.join(state.nodes)}"
                )
                runner.warning(message)
                runner.append_summary(f"### :broom: kubebuildx cleanup\n\n{message}")
                return
            reason = "the API did not delete " + "; ".join(left)
        names = " ".join(state.nodes) or f"<the {kind}s of {state.builder}>"
        raise CleanupError(
            f"could not remove builder {state.builder}: {reason}. Its {kind}s in namespace "
            f"{namespace or '?'} ({', '.join(state.nodes) or '?'}) may still be running privileged "
            "BuildKit pods",
            hint=f"delete them: kubectl -n {namespace or '<namespace>'} delete {kind} {names}; and give the "
            "post step a kubeconfig that is still valid (the kubeconfig input, or the pod's service account)",
        )
    finally:
        delete_files(folder)
