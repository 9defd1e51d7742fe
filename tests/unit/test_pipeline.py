"""The pipeline end to end through ``kubebuildx``'s own entry points, with the
two edges it drives faked where they leave the process: ``cmd`` (buildx) and
``kube`` (the API server and exec). Everything between, from parsing the
inputs to the summary file, is the real code.

The fake cluster has a Ready amd64 node and a Ready arm64 node; its buildx
boots every node and its BuildKits report their own CPU, unless a test says
otherwise.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kubebuildx import action, buildx_store, cleanup, cli, cmd, kube, runner
from kubebuildx.artifacts import build_artifacts
from kubebuildx.errors import ArtifactError, ToolError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from cluster_helpers import read_file_commands as file_commands  # the runner's parser, shared

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
CONTEXT = FIXTURES / "contexts" / "scratch"
TOKEN = "FAKE-TOKEN-ci-bot-kubebuildx-unit-test-0001"  # in tests/fixtures/kubeconfig/token.yaml
BUILDER = "kbx-unit"
NODES = {"linux/amd64": "amd-1", "linux/arm64": "arm-1"}


def node_json(name: str, arch: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/arch": arch, "kubernetes.io/os": "linux"}},
        "spec": {},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


@dataclass
class FakeCluster:
    """The API server and the buildx commands, as the pipeline sees them through kube and cmd."""

    namespace_exists: bool = True
    boot_error: str = ""  # the Error buildx inspect prints for the arm64 node, with exit 1
    pending_reason: str = ""  # the arm64 pod's PodScheduled=False message
    build_fails: bool = False
    rm_fails: bool = False
    delete_status: int = 200  # what the API answers a DELETE of a Deployment
    on_build: Callable[[], None] | None = None  # e.g. a SIGTERM arriving mid-build
    on_rm: Callable[[], None] | None = None
    replaced: set[str] = field(default_factory=set)  # builder nodes whose pod was replaced
    pods_status: int = 200  # what the API answers a list of pods (403: RBAC forbids it)
    commands: list[list[str]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    # ---- kube -------------------------------------------------------------------------------
    def request(
        self,
        api: Any,
        method: str,
        path: str,
        server: str,
        what: str,
        body: Any = None,
        query: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        if path == "/version":
            return 200, {"gitVersion": "v1.36.3"}
        if path.endswith("/selfsubjectaccessreviews"):
            return 201, {"status": {"allowed": True}}
        if path.endswith("/selfsubjectreviews"):
            return 201, {"status": {"userInfo": {"username": "system:serviceaccount:buildkit:kubebuildx"}}}
        if path == "/api/v1/nodes":
            return 200, {"items": [node_json("amd-1", "amd64"), node_json("arm-1", "arm64")]}
        if re.fullmatch(r"/api/v1/namespaces/[^/]+", path):
            return (200, {}) if self.namespace_exists else (404, {})
        if path.endswith("/pods"):
            app = (query or {})["labelSelector"].removeprefix("app=")
            if self.pods_status != 200:
                return self.pods_status, {"kind": "Status", "reason": "Forbidden"}
            return 200, {"items": [self.pod(app)]}
        if path.endswith("/events"):
            return 200, {"items": []}
        if method == "DELETE":
            if "/configmaps/" in path:
                return 404, {}
            if self.delete_status in (200, 404):
                self.deleted.append(path)
            return self.delete_status, {}
        raise AssertionError(f"unexpected API call {method} {path}")

    def pod(self, app: str) -> dict[str, Any]:
        name = f"{app}-5d9c7b8f6d-x2x7q"
        if self.pending_reason and app.endswith("arm64"):
            return {
                "metadata": {"name": name},
                "spec": {},
                "status": {
                    "phase": "Pending",
                    "conditions": [
                        {
                            "type": "PodScheduled",
                            "status": "False",
                            "reason": "Unschedulable",
                            "message": self.pending_reason,
                        }
                    ],
                },
            }
        arch = "arm64" if app.endswith("arm64") else "amd64"
        if app in self.replaced:
            name = f"{app}-5d9c7b8f6d-h8k2m"
        return {
            "metadata": {"name": name, "uid": f"uid-{name}"},
            "spec": {"nodeName": NODES[f"linux/{arch}"]},
            "status": {"phase": "Running"},
        }

    def exec_in_pod(self, api: Any, namespace: str, pod: str, argv: list[str]) -> str:
        arch = "arm64" if "-linux-arm64-" in pod else "amd64"
        return (FIXTURES / "inspect" / f"workers-{arch}.json").read_text()

    # ---- cmd --------------------------------------------------------------------------------
    def run(self, argv: Sequence[str], **kwargs: Any) -> cmd.Result:
        argv = [str(a) for a in argv]
        self.commands.append(argv)
        if "inspect" in argv:
            name = argv[-1]
            text = f"Name:   {name}\nDriver: kubernetes\n\nNodes:\n"
            for platform in NODES:
                node = f"{name}-{platform.replace('/', '-')}"
                text += f"Name:     {node}\n"
                if self.boot_error and platform == "linux/arm64":
                    text += f"Error:    {self.boot_error}\n\n"
                else:
                    text += "Status:   running\n\n"
            return cmd.Result(tuple(argv), 1 if self.boot_error else 0, text, "", 0.1)
        if "rm" in argv:
            if self.on_rm:
                self.on_rm()
            if self.rm_fails:
                raise ToolError(f"buildx rm {argv[-1]} failed (exit 1):\nERROR: the API is gone")
            return cmd.Result(tuple(argv), 0, "", "", 0.1)
        raise AssertionError(f"unexpected command {argv}")

    def stream(
        self,
        argv: Sequence[str],
        *,
        on_stdout: Callable[[str], None],
        on_stderr: Callable[[str], None],
        env: Any = None,
        cwd: Any = None,
    ) -> int:
        argv = [str(a) for a in argv]
        self.commands.append(argv)
        assert "build" in argv
        if self.on_build:
            self.on_build()
        fixture = "failure" if self.build_fails else "multi-platform"
        for line in (FIXTURES / "progress" / f"{fixture}.jsonl").read_text().splitlines():
            on_stderr(line)
        if self.build_fails:
            return 1
        metadata = Path(argv[argv.index("--metadata-file") + 1])
        metadata.write_text(json.dumps({"buildx.build.ref": f"{BUILDER}/{BUILDER}0/abc"}))
        return 0

    def removed(self) -> bool:
        return any(c[-3:] == ["rm", "--force", BUILDER] for c in self.commands)


@dataclass(frozen=True)
class Job:
    tmp: Path
    cluster: FakeCluster

    @property
    def output_file(self) -> Path:
        return self.tmp / "github_output"

    @property
    def summary_file(self) -> Path:
        return self.tmp / "github_step_summary"

    @property
    def state_file(self) -> Path:
        return self.tmp / "github_state"


@pytest.fixture
def job(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Job]:
    cluster = FakeCluster()
    monkeypatch.setattr(kube, "api_client", lambda path, token_file=None: object())
    monkeypatch.setattr(kube, "request", cluster.request)
    monkeypatch.setattr(kube, "exec_in_pod", cluster.exec_in_pod)
    monkeypatch.setattr(cmd, "run", cluster.run)
    monkeypatch.setattr(cmd, "stream", cluster.stream)
    monkeypatch.setattr(runner, "_masked", set())
    for key in (
        "GITHUB_ACTIONS",
        "RUNNER_TEMP",
        "ACTIONS_RUNTIME_TOKEN",
        "KUBECONFIG",
        "DOCKER_CONFIG",
        "DOCKER_HOST",
    ):
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "temp").mkdir()
    monkeypatch.setenv("KUBEBUILDX_TEMP", str(tmp_path / "temp"))
    monkeypatch.setenv("BUILDX_CONFIG", str(tmp_path / "buildx"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("output", "step_summary", "state"):
        (tmp_path / f"github_{name}").touch()
        monkeypatch.setenv(f"GITHUB_{name.upper()}", str(tmp_path / f"github_{name}"))
    yield Job(tmp_path, cluster)


DEPLOYMENTS = "/apis/apps/v1/namespaces/builds/deployments"
KUBECONFIG_TEXT = (FIXTURES / "kubeconfig" / "token.yaml").read_text()


def post_env(job: Job, **state: str) -> dict[str, str]:
    """The post step's environment after a main step that saved its builder and then was
    killed: the same inputs, the saved state, no ``done``."""
    saved = {
        "builder": BUILDER,
        "store": str(job.tmp / "buildx"),
        "cleanup": "true",
        "namespace": "builds",
        "nodes": f"{BUILDER}-linux-amd64,{BUILDER}-linux-arm64",
        "persistent": "false",
        **state,
    }
    return {
        "INPUT_KUBECONFIG": KUBECONFIG_TEXT,
        "KUBEBUILDX_TEMP": str(job.tmp / "temp"),
        "GITHUB_STEP_SUMMARY": str(job.summary_file),
        **{f"STATE_{k}": v for k, v in saved.items()},
    }


def every_file_under(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def build_argv(*extra: str) -> list[str]:
    return [
        "build",
        str(CONTEXT),
        "--kubeconfig",
        str(FIXTURES / "kubeconfig" / "token.yaml"),
        "--builder",
        BUILDER,
        "--platforms",
        "linux/amd64,linux/arm64",
        *extra,
    ]


def groups(out: str) -> list[str]:
    """The log groups, as the CLI prints them outside GitHub Actions."""
    return [line.removeprefix("==> ") for line in out.splitlines() if line.startswith("==> ")]


BUILD_GROUPS = [
    "Connecting to the cluster",
    "Preflight",
    "Writing the builder instance",
    f"Booting builder {BUILDER}",
    "Checking each node builds natively",
    "Building linux/amd64, linux/arm64",
    "Outputs and summary",
    "Cleanup",
]


def test_the_log_groups_come_in_the_order_of_the_stages(job: Job, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(build_argv()) == 0
    out, err = capsys.readouterr()
    assert groups(out) == BUILD_GROUPS, out
    assert err == ""
    # each stage did its part, in that order: boot, build, remove
    kinds = ["inspect" if "inspect" in c else "build" if "build" in c else "rm" for c in job.cluster.commands]
    assert kinds == ["inspect", "build", "rm"]
    assert TOKEN not in out + err


def test_registry_credentials_come_first(
    job: Job, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"auths": {"ghcr.io": {"auth": "RkFLRTpGQUtF"}}}')
    assert cli.main(build_argv("--docker-config", str(config))) == 0
    assert groups(capsys.readouterr().out) == ["Registry credentials from docker-config", *BUILD_GROUPS]


def test_a_build_writes_its_outputs_summary_and_post_state(job: Job) -> None:
    assert cli.main(build_argv()) == 0
    outputs = file_commands(job.output_file)
    assert outputs["builder"] == BUILDER
    assert outputs["platforms"] == "linux/amd64,linux/arm64"
    assert {n["platform"]: n["kubernetes-node"] for n in json.loads(outputs["nodes"])} == NODES
    out = Path(outputs["output-dir"])
    assert out.parent.parent.parent == job.tmp / "temp" and out.is_dir()
    assert out.parent.parent.name.startswith("kubebuildx-out-") and out.parts[-2:] == (BUILDER, "out")
    assert oct(out.parent.parent.stat().st_mode & 0o777) == "0o755", "later steps (any uid) read it"
    assert ":white_check_mark: built `linux/amd64`, `linux/arm64` natively" in job.summary_file.read_text()
    # the post step's state: every key saved is one the post step reads
    state = file_commands(job.state_file)
    assert set(state) == {
        "workdir",
        "builder",
        "store",
        "cleanup",
        "namespace",
        "nodes",
        "persistent",
        "done",
    }
    loaded = cleanup.PostState.load({f"STATE_{k}": v for k, v in state.items()})
    assert loaded == cleanup.PostState(
        state["workdir"],
        BUILDER,
        str(job.tmp / "buildx"),
        True,
        "builds",
        (f"{BUILDER}-linux-amd64", f"{BUILDER}-linux-arm64"),
        False,
        done=True,
    )
    assert not Path(state["workdir"]).exists(), "the CLI cleans up at once: the kubeconfig is gone"


def test_a_failed_build_still_writes_outputs_and_summary_then_exits_6(
    job: Job, capsys: pytest.CaptureFixture[str]
) -> None:
    job.cluster.build_fails = True
    assert cli.main(build_argv()) == 6
    out, err = capsys.readouterr()
    assert groups(out)[-2:] == ["Outputs and summary", "Cleanup"]
    outputs = file_commands(job.output_file)
    assert outputs["builder"] == BUILDER and outputs["platforms"] == "linux/amd64,linux/arm64"
    summary = job.summary_file.read_text()
    build_part, _, error_part = summary.partition("### :x: Build failed")
    assert "### kubebuildx: :x: failed `linux/amd64`, `linux/arm64`" in build_part
    assert "did not complete successfully" in build_part  # buildx's own last words
    assert "did not complete successfully" in error_part
    assert err.startswith("error: context canceled\n")  # the build's own errors, as BuildKit reported them
    assert 'process "/bin/sh -c make test" did not complete successfully: exit code: 2' in err
    assert job.cluster.removed(), "cleanup still removes the builder"


def test_a_builder_pod_lost_mid_build_is_named_and_outputs_and_summary_are_still_written(
    job: Job, capsys: pytest.CaptureFixture[str]
) -> None:
    arm = f"{BUILDER}-linux-arm64"
    job.cluster.build_fails = True
    job.cluster.on_build = lambda: job.cluster.replaced.add(arm)
    assert cli.main(build_argv()) == 6
    out, err = capsys.readouterr()
    assert groups(out)[-2:] == ["Outputs and summary", "Cleanup"]
    lost = (
        f"builder pod builds/{arm}-5d9c7b8f6d-x2x7q on node arm-1 was deleted during the build "
        f"(the Deployment replaced it with {arm}-5d9c7b8f6d-h8k2m)"
    )
    assert err.startswith(f"error: {lost}")
    assert "context canceled" in err, "buildx's own words are kept"
    assert "Fix: re-run the job" in err and "kubectl describe node arm-1" in err
    assert file_commands(job.output_file)["builder"] == BUILDER
    assert lost in job.summary_file.read_text()
    assert job.cluster.removed()


def test_pods_that_cannot_be_listed_after_a_failed_build_leave_its_error_as_it_was(
    job: Job, capsys: pytest.CaptureFixture[str]
) -> None:
    def forbid() -> None:
        job.cluster.replaced.add(f"{BUILDER}-linux-arm64")
        job.cluster.pods_status = 403

    job.cluster.build_fails = True
    job.cluster.on_build = forbid
    assert cli.main(build_argv()) == 6
    _, err = capsys.readouterr()
    assert err.startswith("error: context canceled\n")
    assert "builder pod" not in err and "builder pod" not in job.summary_file.read_text()
    assert "the failing step's log is in the 'Building' group above" in err


def test_an_upload_failure_comes_after_the_summary(
    job: Job, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ACTIONS_RUNTIME_TOKEN", "FAKE-RUNTIME-TOKEN-kubebuildx-unit")
    uploads: list[Path] = []

    def refuse(output_dir: Path, *args: Any, **kwargs: Any) -> dict[str, Any]:
        uploads.append(output_dir)
        raise ArtifactError("Failed to CreateArtifact: the artifact storage quota has been hit")

    monkeypatch.setattr(build_artifacts, "upload_platform_artifacts", refuse)
    assert cli.main(build_argv()) == 7
    out, err = capsys.readouterr()
    assert groups(out)[-4:] == [
        "Building linux/amd64, linux/arm64",
        "Uploading artifacts",
        "Outputs and summary",
        "Cleanup",
    ]
    assert uploads == [Path(file_commands(job.output_file)["output-dir"])]
    assert file_commands(job.output_file)["builder"] == BUILDER
    summary = job.summary_file.read_text()
    assert summary.index(":white_check_mark: built") < summary.index("### :x: Artifact upload failed")
    assert "quota has been hit" in err


def test_cleanup_only_warns_on_oserror_and_keeps_the_build_error(
    job: Job, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    job.cluster.build_fails = True

    def locked(name: str, store: Path) -> None:
        raise PermissionError(13, "Permission denied", str(store / "instances" / name))

    monkeypatch.setattr(buildx_store, "remove", locked)
    assert cli.main(build_argv()) == 6
    out, err = capsys.readouterr()
    assert f"warning: could not remove builder {BUILDER}: [Errno 13] Permission denied" in err
    # the warning comes first, and the build's error is still the one that ends the run
    assert err.index("warning: could not remove") < err.index("error: context canceled")
    assert "### :x: Build failed" in job.summary_file.read_text()
    assert groups(out)[-1] == "Cleanup"


def test_cleanup_only_warns_when_buildx_rm_fails(job: Job, capsys: pytest.CaptureFixture[str]) -> None:
    job.cluster.rm_fails = True
    assert cli.main(build_argv()) == 0
    err = capsys.readouterr().err
    assert f"warning: could not remove builder {BUILDER}: buildx rm {BUILDER} failed" in err
    # the instance stays, so that `kubebuildx cleanup` can still reach the builder
    assert (job.tmp / "buildx" / "instances" / BUILDER).is_file()


def test_a_builder_that_does_not_boot_is_explained_and_still_removed(
    job: Job, capsys: pytest.CaptureFixture[str]
) -> None:
    job.cluster.boot_error = "expected 1 replicas to be ready, got 0"
    job.cluster.pending_reason = "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match"
    assert cli.main(build_argv()) == 5
    out, err = capsys.readouterr()
    assert groups(out) == [*BUILD_GROUPS[:4], "Cleanup"]
    assert err.splitlines()[:4] == [
        f"error: builder {BUILDER} could not start:",
        "  buildx: expected 1 replicas to be ready, got 0",
        f"  {BUILDER}-linux-arm64-5d9c7b8f6d-x2x7q: Unschedulable: 0/2 nodes are available: "
        "1 Insufficient cpu, 1 node(s) didn't match",
        "  Fix: lower driver-opts requests.cpu / requests.memory, or add capacity",
    ]
    assert job.cluster.removed()


def test_a_missing_namespace_fails_preflight_with_exit_4(
    job: Job, capsys: pytest.CaptureFixture[str]
) -> None:
    job.cluster.namespace_exists = False
    argv = ["preflight", "--kubeconfig", str(FIXTURES / "kubeconfig" / "token.yaml")]
    assert cli.main(argv) == 4
    out, err = capsys.readouterr()
    assert groups(out) == ["Connecting to the cluster", "Preflight", "Cleanup"]
    assert err.startswith("error: namespace 'builds' does not exist")
    assert job.cluster.commands == []
    assert list((job.tmp / "temp").iterdir()) == [], "the kubeconfig copy is deleted"


def test_instance_points_at_a_kept_kubeconfig_copy(job: Job, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["instance", "--kubeconfig", str(FIXTURES / "kubeconfig" / "token.yaml"), "--builder", BUILDER]
    assert cli.main([*argv, "--print"]) == 0
    out = capsys.readouterr().out
    printed = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    kept = buildx_store.kept_kubeconfig(job.tmp / "buildx", BUILDER)
    assert kept.is_file() and oct(kept.stat().st_mode & 0o777) == "0o600"
    assert all(
        n["Endpoint"].endswith("&kubeconfig=" + str(kept).replace("/", "%2F")) for n in printed["Nodes"]
    )
    assert json.loads((job.tmp / "buildx" / "instances" / BUILDER).read_text()) == printed
    assert groups(out)[-1] == "Cleanup" and job.cluster.commands == []


def test_the_post_step_cleans_up_what_the_main_step_saved(
    job: Job, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = job.tmp / "temp" / "kubebuildx-run-1"
    workdir.mkdir(parents=True)
    (workdir / "kubeconfig").write_text("secret")
    env = {**post_env(job), "STATE_workdir": str(workdir)}
    assert action.post(env) == 0
    assert job.cluster.deleted == [
        f"{DEPLOYMENTS}/{BUILDER}-linux-amd64",
        f"{DEPLOYMENTS}/{BUILDER}-linux-arm64",
    ]
    assert not workdir.exists()
    assert list((job.tmp / "temp").iterdir()) == [], "the rebuilt kubeconfig is deleted too"
    assert groups(capsys.readouterr().out) == ["Cleanup"]


# ---- issue 10, 9: the user's current builder is the user's ------------------------------------

CURRENT = {
    "none": None,
    "another builder": '{"Key":"unix:///var/run/docker.sock","Name":"mine","Global":true}',
    "our builder's name": '{"Key":"tcp://docker:2376","Name":"' + BUILDER + '","Global":false}',
    "reset by buildx": '{"Key":"unix:///var/run/docker.sock","Name":"","Global":false}',
    "not JSON": "garbage\n",
}
INSTANCE = ["instance", "--kubeconfig", str(FIXTURES / "kubeconfig" / "token.yaml"), "--builder", BUILDER]


@pytest.mark.parametrize("before", CURRENT)
@pytest.mark.parametrize(
    ("argv", "rm_fails"),
    [
        (build_argv(), False),
        (build_argv(), True),
        (build_argv("--cleanup", "false"), False),
        (INSTANCE, False),
    ],
    ids=["build", "build, rm fails", "build, warm", "instance"],
)
def test_the_cli_never_changes_the_users_current_builder(
    job: Job, before: str, argv: list[str], rm_fails: bool
) -> None:
    """The reproduction: the CLI made its builder current and left current naming it once it
    was removed; on a shared HOME another job's plain ``docker buildx build`` went to it."""
    store = job.tmp / "buildx"
    store.mkdir()
    if CURRENT[before] is not None:
        (store / "current").write_text(CURRENT[before])
    job.cluster.rm_fails = rm_fails
    assert cli.main(argv) == 0
    if CURRENT[before] is None:
        assert not (store / "current").exists()
    else:
        assert (store / "current").read_text() == CURRENT[before]
    assert all(
        "--builder" in c or c[-2:] == ["--force", BUILDER] or "inspect" in c for c in job.cluster.commands
    )


def test_the_trace_marks_each_stage_in_order(job: Job, monkeypatch: pytest.MonkeyPatch) -> None:
    """benchmarks/overhead.py reads these marks: their names, and that they follow the stages."""
    trace = job.tmp / "trace.json"
    monkeypatch.setenv("KUBEBUILDX_TRACE", str(trace))
    assert cli.main(build_argv()) == 0
    marks = json.loads(trace.read_text())
    order = [
        "connected",
        "preflight",
        "instance",
        "boot-start",
        "boot-end",
        "verified",
        "build-start",
        "build-end",
    ]
    assert sorted(marks, key=marks.__getitem__) == order


# ---- issue 10, 3: a private run root ---------------------------------------------------------


def test_a_shared_tmp_kubebuildx_made_by_another_user_is_not_used(
    job: Job, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reproduction: another user pre-creates /tmp/kubebuildx, 0777, with a symlink
    named after the next builder. Nothing of the run goes through it."""
    import os
    import tempfile

    shared = job.tmp / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    trap = shared / "kubebuildx"
    trap.mkdir()
    trap.chmod(0o777)
    victim = job.tmp / "victim"
    victim.mkdir()
    (victim / "keep").write_text("the attacker's choice of folder")
    (trap / BUILDER).symlink_to(victim)
    if os.geteuid() == 0:  # another user's, as in the attack (CI's fast job is not root)
        os.chown(trap, 4242, 4242)
        os.lchown(trap / BUILDER, 4242, 4242)
    monkeypatch.delenv("KUBEBUILDX_TEMP")
    monkeypatch.setattr(tempfile, "tempdir", str(shared))

    assert cli.main(build_argv()) == 0
    assert sorted(p.name for p in victim.iterdir()) == ["keep"], "nothing written through the link"
    assert sorted(p.name for p in trap.iterdir()) == [BUILDER], "nothing made in their folder"
    out = Path(file_commands(job.output_file)["output-dir"])
    assert out.is_dir() and out.parent.parent.parent == shared
    assert out.parent.parent.name.startswith("kubebuildx-out-")
    workdir = Path(file_commands(job.state_file)["workdir"])
    assert workdir.parent == shared and workdir.name.startswith("kubebuildx-run-")


def test_a_temp_folder_others_can_change_fails_before_anything_runs(
    job: Job, capsys: pytest.CaptureFixture[str]
) -> None:
    (job.tmp / "temp").chmod(0o777)
    assert cli.main(build_argv()) == 2
    err = capsys.readouterr().err
    assert "the temporary folder KUBEBUILDX_TEMP is not safe for secrets" in err
    assert "is writable by others (mode 777)" in err
    assert job.cluster.commands == [] and list((job.tmp / "temp").iterdir()) == []


# ---- issue 10, 4: secrets gone as soon as nothing needs them ----------------------------------


def action_inputs(**inputs: str) -> dict[str, str]:
    given = {
        "kubeconfig": KUBECONFIG_TEXT,
        "builder": BUILDER,
        "platforms": "linux/amd64,linux/arm64",
        "context": str(CONTEXT),
        **inputs,
    }
    return {f"INPUT_{name.upper()}": value for name, value in given.items()}


def run_action(monkeypatch: pytest.MonkeyPatch, inputs: dict[str, str]) -> int:
    """``kubebuildx action`` as the runner starts it: INPUT_* in the environment."""
    for key, value in inputs.items():
        monkeypatch.setenv(key, value)
    return cli.main(["action"])


def run_post(job: Job, monkeypatch: pytest.MonkeyPatch, inputs: dict[str, str]) -> int:
    """``kubebuildx action --post``, a process of its own: the same inputs again, and the
    state the main step saved (the main step withheld INPUT_* from this process's environ)."""
    for key, value in inputs.items():
        monkeypatch.setenv(key, value)
    for name, value in file_commands(job.state_file).items():
        monkeypatch.setenv(f"STATE_{name}", value)
    return cli.main(["action", "--post"])


def sigterm() -> None:
    """What cli's handler does when the runner's SIGTERM arrives in the main thread."""
    cli._terminate(15, None)


@pytest.fixture
def cancel_reset() -> Iterator[None]:
    from kubebuildx import cancel

    yield
    cancel.reset()


@pytest.mark.parametrize(
    ("case", "inputs", "on_build", "on_rm", "code", "removed_by"),
    [
        ("success", {}, None, None, 0, "main"),
        ("failed build", {}, "fail", None, 6, "main"),
        ("SIGTERM mid-build", {}, "sigterm", None, 130, "main"),
        ("SIGTERM mid-build, again in buildx rm", {}, "sigterm", "sigterm", 130, "main"),
        ("SIGTERM in buildx rm", {}, None, "sigterm", 130, "post"),
        ("buildx rm fails", {}, None, "fail", 0, "post"),
        ("warm builder", {"cleanup": "false"}, None, None, 0, "nobody"),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else None,
)
def test_secrets_are_gone_when_the_main_step_ends(
    job: Job,
    monkeypatch: pytest.MonkeyPatch,
    cancel_reset: None,
    case: str,
    inputs: dict[str, str],
    on_build: str | None,
    on_rm: str | None,
    code: int,
    removed_by: str,
) -> None:
    """The reproduction: after a failed or cancelled main step the kubeconfig and the
    registry config stayed in RUNNER_TEMP until the post step, readable by every later
    container action; a SIGTERM during buildx rm left the kubeconfig behind."""
    config = job.tmp / "config.json"
    config.write_text('{"auths": {"ghcr.io": {"auth": "RkFLRS1SRUdJU1RSWTpGQUtFLVBBU1NXT1JE"}}}')
    job.cluster.build_fails = on_build == "fail"
    job.cluster.on_build = sigterm if on_build == "sigterm" else None
    job.cluster.on_rm = sigterm if on_rm == "sigterm" else None
    job.cluster.rm_fails = on_rm == "fail"
    given = {**action_inputs(**inputs), "INPUT_DOCKER-CONFIG": config.read_text()}

    assert run_action(monkeypatch, given) == code
    # the main step has ended: no secret file is left under the temp root, nor in buildx's store
    left = {**every_file_under(job.tmp / "temp"), **every_file_under(job.tmp / "buildx")}
    assert not [
        p for p, data in left.items() if TOKEN.encode() in data or b"RkFLRS1SRUdJU1RSWTpGQUtF" in data
    ]
    assert not [p for p in left if p.endswith(("kubeconfig", "config.json"))]
    assert job.cluster.removed() == (removed_by != "nobody")
    state = cleanup.PostState.load({f"STATE_{k}": v for k, v in file_commands(job.state_file).items()})
    assert state.done == (removed_by != "post")

    commands = len(job.cluster.commands)
    assert run_post(job, monkeypatch, given) == 0
    assert len(job.cluster.commands) == commands, "the post step runs no buildx"
    if removed_by == "post":
        assert job.cluster.deleted == [
            f"{DEPLOYMENTS}/{BUILDER}-linux-amd64",
            f"{DEPLOYMENTS}/{BUILDER}-linux-arm64",
        ]
        assert (
            "the post step deleted its deployments through the Kubernetes API" in job.summary_file.read_text()
        )
    else:
        assert job.cluster.deleted == []
    assert not (job.tmp / "buildx" / "instances" / BUILDER).exists()
    assert [p.name.split("-")[1] for p in (job.tmp / "temp").iterdir()] == ["out"], "only the build's output"


# ---- issue 10, 10: a post step that cannot remove the builder says so, and fails ----------------


def _unreachable(*args: Any, **kwargs: Any) -> tuple[int, Any]:
    from kubebuildx.errors import ClusterError

    raise ClusterError("the API server at https://10.0.0.1:6443 is unreachable (ConnectTimeoutError)")


@pytest.mark.parametrize(
    ("case", "env", "status", "code", "words"),
    [
        (
            "removed through the API",
            {},
            200,
            0,
            "the post step deleted its deployments through the Kubernetes API",
        ),
        ("already gone", {}, 404, 0, "the post step deleted its deployments through the Kubernetes API"),
        (
            "the kubeconfig is gone",
            {"INPUT_KUBECONFIG": ""},
            200,
            10,
            "could not remove builder kbx-unit: no kubeconfig was given and this is not a Kubernetes pod",
        ),
        ("the API refuses", {}, 403, 10, "the API did not delete deployment kbx-unit-linux-amd64 (HTTP 403)"),
        ("the API is unreachable", {}, 0, 10, "is unreachable (ConnectTimeoutError)"),
        ("the main step finished", {"STATE_done": "true"}, 200, 0, ""),
        ("warm", {"STATE_cleanup": "false"}, 200, 0, ""),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else None,
)
def test_the_post_step_removes_what_is_left_or_says_so_and_fails(
    job: Job,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: str,
    env: dict[str, str],
    status: int,
    code: int,
    words: str,
) -> None:
    """The reproduction: with the kubeconfig gone, the post step exited 0 with a warning
    while the builder's privileged Deployments kept running."""
    job.cluster.delete_status = status
    if status == 0:
        monkeypatch.setattr(kube, "request", _unreachable)
    for key in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(key, raising=False)
    buildx_store.write(cleanup_spec(), "/gone/kubeconfig", job.tmp / "buildx")
    for key, value in {**post_env(job), **env}.items():
        monkeypatch.setenv(key, value)

    assert cli.main(["action", "--post"]) == code
    summary = job.summary_file.read_text()
    err = capsys.readouterr().err
    if code:
        assert words in err and words in summary
        assert "### :x: Cleanup failed" in summary
        assert f"kubectl -n builds delete deployment {BUILDER}-linux-amd64 {BUILDER}-linux-arm64" in summary
        assert (job.tmp / "buildx" / "instances" / BUILDER).exists(), "kept: a retry can still find it"
    else:
        assert words in summary
        assert job.cluster.commands == []
    assert TOKEN not in err + summary
    assert list((job.tmp / "temp").iterdir()) == [], "the rebuilt kubeconfig is deleted, success or not"


def cleanup_spec() -> Any:
    from kubebuildx import builder, inputs, platforms, preflight

    plan = preflight.Plan((platforms.parse("linux/amd64"), platforms.parse("linux/arm64")), ())
    raw = {"builder": BUILDER, "platforms": "linux/amd64,linux/arm64"}
    return builder.spec_for(inputs.parse_inputs(raw), {}, "builds", plan)


@pytest.mark.parametrize(("cleanup", "warned"), [("false", True), ("true", False)])
def test_a_warm_builder_kept_with_a_short_lived_token_says_it_will_expire(
    job: Job, capsys: pytest.CaptureFixture[str], cleanup: str, warned: bool
) -> None:
    token = job.tmp / "token"
    token.write_text("FAKE-short-lived-token-kubebuildx-0012\n")
    assert cli.main(build_argv("--token", str(token), "--cleanup", cleanup)) == 0
    err = capsys.readouterr().err
    assert ("carries a short-lived credential (token)" in err) is warned
    assert "FAKE-short-lived-token-kubebuildx-0012" not in err
