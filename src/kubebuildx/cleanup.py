"""Cleanup: remove the builder when asked, and always delete the run's private
files (the kubeconfig, secrets, registry config). The action runs it in its
post step, from the state the main step saved (``PostState``).

Only warns: a failed cleanup never hides the real error.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kubebuildx import buildx_store, cmd, runner
from kubebuildx.builder import buildx_command
from kubebuildx.errors import KubebuildxError


@dataclass(frozen=True)
class PostState:
    """What the post step needs, saved as ``STATE_<key>`` by the main step.

    ``workdir`` is saved first, alone, as soon as it exists: the kubeconfig lands
    there next, and the post step must delete it even when the run fails before
    the builder exists. The rest is saved once the builder is written.
    """

    workdir: str = ""
    builder: str = ""
    store: str = ""
    remove_builder: bool = True  # the cleanup input

    def save(self) -> None:
        runner.save_state("workdir", self.workdir)
        if self.builder:
            runner.save_state("builder", self.builder)
            runner.save_state("store", self.store)
            runner.save_state("cleanup", "true" if self.remove_builder else "false")

    @classmethod
    def load(cls, env: Mapping[str, str]) -> PostState:
        """The state as the runner hands it to the post step: ``STATE_<key>`` variables."""
        return cls(
            workdir=env.get("STATE_workdir", ""),
            builder=env.get("STATE_builder", ""),
            store=env.get("STATE_store", ""),
            remove_builder=env.get("STATE_cleanup", "") != "false",
        )


def run(
    store: Path, name: str, workdir: Path | None, remove_builder: bool, *, forget_warm: bool = False
) -> None:
    """Remove the builder when asked; always delete the run's kubeconfig and secrets.

    A warm builder (``remove_builder`` false) keeps its Deployments. The CLI
    keeps its instance file and private kubeconfig copy too, as ``buildx
    create`` would, so ``kubebuildx cleanup NAME`` and plain buildx still
    reach it; the action (``forget_warm``) deletes both, since a kubeconfig
    must not outlive the job: the next run writes its own and finds the
    Deployments by name.
    """
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
    elif name:
        runner.info(f"keeping builder {name} warm (cleanup: false): its Deployments stay")
        if forget_warm:
            try:
                buildx_store.remove(name, store)
            except OSError as exc:
                runner.warning(f"could not forget builder {name}: {exc}")
    if workdir and workdir.is_dir():
        shutil.rmtree(workdir, ignore_errors=True)
        runner.info("deleted the kubeconfig and secrets")
