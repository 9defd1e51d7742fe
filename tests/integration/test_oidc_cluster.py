"""Keyless builds on the proving ground: `auth: github-oidc` and the `token` input.

The apiserver trusts the SHIPPED deploy/github-oidc/authentication-config.yaml, whose
discovery the harness points at the loopback issuer (hack/cluster/oidc.py), and
deploy/github-oidc/rolebinding.yaml binds acme/widgets' main branch. The runner's ID token
endpoint is the stub of tests/integration/oidc/id_token_stub.py on a free port; each token it
hands out is minted by the loopback issuer with the claims a test chooses.

The action runs as a runner starts it (`kubebuildx action`, INPUT_*, file commands), with no
secret among its inputs: the cluster comes from the admin kubeconfig's cluster entry (server and
CA, public) or from the server and certificate-authority-data inputs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster_helpers import KUBEBUILDX, ROOT, cluster_env, deployments, read_file_commands, runner_env

sys.path.insert(0, str(ROOT / "tests" / "integration" / "oidc"))
sys.path.insert(0, str(ROOT / "hack" / "cluster"))
import oidc as issuer
from id_token_stub import Stub, serve

pytestmark = pytest.mark.cluster

RUNTIME_TOKEN = "FAKE-RUNTIME-TOKEN-kubebuildx-oidc-cluster-0001"
SUBJECT = "github:repo:acme/widgets:ref:refs/heads/main"
MULTISTAGE = ROOT / "tests" / "fixtures" / "contexts" / "multistage"


@pytest.fixture(scope="module")
def cenv() -> dict[str, str]:
    found = cluster_env()
    assert "KUBEBUILDX_OIDC_SIGNING_KEY" in found, "the cluster predates the OIDC issuer: scripts/cluster up"
    return found


def admin_cluster(cenv: dict[str, str]) -> dict[str, Any]:
    """The admin kubeconfig's cluster entry: the server and the CA, neither of them secret."""
    doc = yaml.safe_load(Path(cenv["KUBEBUILDX_KUBECONFIG_ADMIN"]).read_text())
    cluster: dict[str, Any] = doc["clusters"][0]["cluster"]
    return cluster


def cluster_only_kubeconfig(cenv: dict[str, str]) -> str:
    """What a repository variable would hold: a kubeconfig with the cluster and nothing else."""
    return yaml.safe_dump({"clusters": [{"name": "proving-ground", "cluster": admin_cluster(cenv)}]})


def minter(cenv: dict[str, str], minted: list[str], **claims: Any) -> Callable[[str], str]:
    key = Path(cenv["KUBEBUILDX_OIDC_SIGNING_KEY"])

    def mint(audience: str) -> str:
        token: str = issuer.mint(key, issuer.claims(audience=audience, **claims))
        minted.append(token)
        return token

    return mint


def action_env(tmp_path: Path, cenv: dict[str, str], stub: Stub | None, **inputs: str) -> dict[str, str]:
    env = runner_env(tmp_path, cenv)
    if stub is not None:
        env.update(stub.env())
    env.update(
        {
            "INPUT_NAMESPACE": cenv["KUBEBUILDX_NAMESPACE"],
            "INPUT_PLATFORMS": "linux/amd64",
            "INPUT_CONTEXT": str(MULTISTAGE),
            "INPUT_BUILD-CONTEXTS": cenv["KUBEBUILDX_BASE_IMAGE_CONTEXT"],
            "INPUT_UPLOAD-ARTIFACTS": "false",
        }
    )
    env.update({f"INPUT_{name.upper()}": value for name, value in inputs.items()})
    return env


def run(argv: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBEBUILDX), *argv], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def server_inputs(cenv: dict[str, str]) -> dict[str, str]:
    cluster = admin_cluster(cenv)
    return {"SERVER": cluster["server"], "CERTIFICATE-AUTHORITY-DATA": cluster["certificate-authority-data"]}


def shown_and_written(printed: str, tmp_path: Path) -> str:
    """Everything a later step or a log reader could see: the output without the `::add-mask::`
    lines (the runner consumes them), and every file under the job's folders."""
    everything = "\n".join(line for line in printed.splitlines() if not line.startswith("::add-mask::"))
    for path in tmp_path.rglob("*"):
        if path.is_file():
            everything += path.read_bytes().decode("utf-8", "replace")
    return everything


def key_material(cenv: dict[str, str]) -> list[str]:
    lines = Path(cenv["KUBEBUILDX_OIDC_SIGNING_KEY"]).read_text().splitlines()
    return [line for line in lines if line and not line.startswith("-----")]


# ---- auth: github-oidc -----------------------------------------------------------------------


def test_a_build_with_github_oidc_and_no_stored_secret(cenv: dict[str, str], tmp_path: Path) -> None:
    minted: list[str] = []
    with serve(Stub(RUNTIME_TOKEN, minter(cenv, minted))) as stub:
        env = action_env(
            tmp_path,
            cenv,
            stub,
            AUTH="github-oidc",
            KUBECONFIG=cluster_only_kubeconfig(cenv),
            PLATFORMS="linux/amd64\nlinux/arm64",
        )
        main = run(["action"], env)
    printed = main.stdout + main.stderr
    assert main.returncode == 0, printed[-4000:]
    assert "credentials: GitHub's OIDC ID token for audience kubebuildx" in printed
    assert f"authenticated as {SUBJECT}" in printed
    assert stub.requests and all(r["query"]["audience"] == ["kubebuildx"] for r in stub.requests)
    outputs = read_file_commands(Path(env["GITHUB_OUTPUT"]))
    out = Path(outputs["output-dir"])
    assert (out / "linux_amd64" / "arch").read_text().strip() == "x86_64"
    assert (out / "linux_arm64" / "arch").read_text().strip() == "aarch64"
    state = read_file_commands(Path(env["GITHUB_STATE"]))
    assert state["done"] == "true" and not Path(state["workdir"]).exists()
    assert deployments(cenv, outputs["builder"]) == [], "buildx rm ran with the OIDC token"

    everything = shown_and_written(printed, tmp_path)
    for secret in [RUNTIME_TOKEN, *minted, *(t.rsplit(".", 1)[1] for t in minted), *key_material(cenv)]:
        assert secret not in everything


def test_the_token_file_keeps_a_long_build_and_its_cleanup_authenticated(
    cenv: dict[str, str], tmp_path: Path
) -> None:
    """100-second tokens and a 110-second RUN: the builder's removal at the end (a new buildx
    process, a new connection) needs a token minted after the first one expired."""
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM busybox\nRUN sleep 110 && echo done > /done\n")
    minted: list[str] = []
    with serve(Stub(RUNTIME_TOKEN, minter(cenv, minted, lifetime=100))) as stub:
        env = action_env(
            tmp_path, cenv, stub, AUTH="github-oidc", CONTEXT=str(context), **server_inputs(cenv)
        )
        main = run(["action"], env, timeout=900)
    printed = main.stdout + main.stderr
    assert main.returncode == 0, printed[-4000:]
    assert "could not refresh" not in printed and "could not remove builder" not in printed
    assert len(stub.requests) >= 5, "a token every 10 s (100 s lifetime, 90 s lead)"
    outputs = read_file_commands(Path(env["GITHUB_OUTPUT"]))
    assert deployments(cenv, outputs["builder"]) == []


def test_the_post_step_gets_a_fresh_token_for_what_the_main_step_left(
    cenv: dict[str, str], tmp_path: Path
) -> None:
    """As if the main step was killed before its cleanup: a builder Deployment is left, and
    the post step, a new process, asks the endpoint for a token of its own to delete it."""
    from kubernetes import client

    builder = f"kbx-oidc-post-{os.getpid()}"
    node = f"{builder}-linux-amd64"
    apps = client.AppsV1Api(client.ApiClient(_admin_configuration(cenv)))
    labels = {"app": node}
    apps.create_namespaced_deployment(
        cenv["KUBEBUILDX_NAMESPACE"],
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": node, "labels": labels},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "buildkitd", "image": "moby/buildkit:left-over"}]},
                },
            },
        },
    )
    assert deployments(cenv, builder) == [node]
    state = {
        "workdir": str(tmp_path / "kubebuildx-run-gone"),
        "builder": builder,
        "store": "",
        "cleanup": "true",
        "namespace": cenv["KUBEBUILDX_NAMESPACE"],
        "nodes": node,
        "persistent": "false",
        "done": "false",
    }
    with serve(Stub(RUNTIME_TOKEN, minter(cenv, []))) as stub:
        env = action_env(tmp_path, cenv, stub, AUTH="github-oidc", **server_inputs(cenv))
        post = run(["action", "--post"], {**env, **{f"STATE_{k}": v for k, v in state.items()}}, timeout=300)
    assert post.returncode == 0, post.stdout + post.stderr
    assert "the post step deleted its deployments through the Kubernetes API" in post.stdout
    assert len(stub.requests) == 1, "the post step fetched its own token"
    assert deployments(cenv, builder) == []


def _admin_configuration(cenv: dict[str, str]) -> Any:
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(
        config_file=cenv["KUBEBUILDX_KUBECONFIG_ADMIN"], client_configuration=configuration
    )
    return configuration


@pytest.mark.parametrize(
    ("repository", "ref"),
    [("acme/other", "refs/heads/main"), ("acme/widgets", "refs/heads/dev")],
    ids=["another repository", "another branch"],
)
def test_a_subject_that_is_not_bound_is_refused_by_rbac_and_named(
    cenv: dict[str, str], tmp_path: Path, repository: str, ref: str
) -> None:
    minted: list[str] = []
    with serve(Stub(RUNTIME_TOKEN, minter(cenv, minted, repository=repository, ref=ref))) as stub:
        main = run(
            ["action"], action_env(tmp_path, cenv, stub, AUTH="github-oidc", **server_inputs(cenv)), 120
        )
    printed = main.stdout + main.stderr
    assert main.returncode == 4, printed[-4000:]
    assert "::error title=Cluster preflight failed::" in main.stdout
    assert (
        f"the cluster authenticated you as github:repo:{repository}:ref:{ref}, which lacks permissions "
        "kubebuildx needs:" in main.stdout
    )
    assert "deploy/github-oidc/rolebinding.yaml" in main.stdout
    assert all(token not in shown_and_written(printed, tmp_path) for token in minted)


@pytest.mark.parametrize(
    ("claims", "audience"),
    [
        ({"expired": True}, "kubebuildx"),
        ({"repository": "evil/widgets"}, "kubebuildx"),  # claimValidationRules: repository_owner acme
        ({}, "sts.amazonaws.com"),  # a token for another audience
    ],
    ids=["expired", "another owner", "another audience"],
)
def test_a_token_the_cluster_does_not_accept_is_a_401_with_the_fix(
    cenv: dict[str, str], tmp_path: Path, claims: dict[str, Any], audience: str
) -> None:
    minted: list[str] = []
    with serve(Stub(RUNTIME_TOKEN, minter(cenv, minted, **claims))) as stub:
        env = action_env(tmp_path, cenv, stub, AUTH="github-oidc", AUDIENCE=audience, **server_inputs(cenv))
        main = run(["action"], env, 120)
    printed = main.stdout + main.stderr
    assert main.returncode == 4, printed[-4000:]
    assert "rejected the job's GitHub OIDC ID token (401 Unauthorized)" in main.stdout
    assert "https://token.actions.githubusercontent.com" in main.stdout
    assert all(token not in shown_and_written(printed, tmp_path) for token in minted)


def test_without_id_token_write_the_error_shows_the_permissions_block(
    cenv: dict[str, str], tmp_path: Path
) -> None:
    main = run(["action"], action_env(tmp_path, cenv, None, AUTH="github-oidc", **server_inputs(cenv)), 60)
    assert main.returncode == 11, main.stdout + main.stderr
    assert "::error title=Cluster credential failed::" in main.stdout
    assert "id-token: write" in main.stdout and "permissions:" in main.stdout


# ---- the token input -------------------------------------------------------------------------


def test_a_token_from_an_earlier_step_replaces_the_kubeconfig_user(
    cenv: dict[str, str], tmp_path: Path
) -> None:
    """The two-step pattern: a host step prints a token (here the TokenRequest API, as
    `kubectl create token` does), the action gets it as `token`; the kubeconfig's own user, an
    exec plugin the container could not run, is neither written nor run."""
    from kubernetes import client

    core = client.CoreV1Api(client.ApiClient(_admin_configuration(cenv)))
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 600},
    }
    token = core.create_namespaced_service_account_token(
        "kubebuildx", cenv["KUBEBUILDX_NAMESPACE"], request
    ).status.token
    exec_kubeconfig = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "eks-like",
            "clusters": [{"name": "c", "cluster": admin_cluster(cenv)}],
            "contexts": [{"name": "eks-like", "context": {"cluster": "c", "user": "aws"}}],
            "users": [{"name": "aws", "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1",
                                                        "command": "aws", "args": ["eks", "get-token"]}}}],
        }
    )  # fmt: skip
    env = action_env(tmp_path, cenv, None, KUBECONFIG=exec_kubeconfig, TOKEN=token)
    main = run(["action"], env)
    printed = main.stdout + main.stderr
    assert main.returncode == 0, printed[-4000:]
    assert "credentials: the token input" in printed
    assert "authenticated as system:serviceaccount:buildkit:kubebuildx" in printed
    assert token not in shown_and_written(printed, tmp_path)
    assert f"::add-mask::{token}" in main.stdout, "masked on read"


def test_an_expired_or_foreign_token_input_is_a_401_with_the_fix(
    cenv: dict[str, str], tmp_path: Path
) -> None:
    token = issuer.mint(Path(cenv["KUBEBUILDX_OIDC_SIGNING_KEY"]), issuer.claims(expired=True))
    main = run(["action"], action_env(tmp_path, cenv, None, TOKEN=token, **server_inputs(cenv)), 120)
    assert main.returncode == 4, main.stdout + main.stderr
    assert "rejected the token input (401 Unauthorized)" in main.stdout
    assert token not in shown_and_written(main.stdout + main.stderr, tmp_path)
