"""An exec-plugin kubeconfig fails before any network call, naming both ways out.

No cluster is needed: the kubeconfig's server is a loopback listener that counts the
connections it gets, and must get none. The action runs as a runner starts it; the CLI as a
user on a machine without the plugin's command.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cluster_helpers import KUBEBUILDX, ROOT, runner_env


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


def connections(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def exec_kubeconfig(port: int, command: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "eks",
            "clusters": [{"name": "eks", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
            "contexts": [{"name": "eks", "context": {"cluster": "eks", "user": "eks"}}],
            "users": [
                {
                    "name": "eks",
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": command,
                            "args": ["eks", "get-token", "--cluster-name", "lab"],
                        }
                    },
                }
            ],
        }
    )


def assert_both_ways_out(text: str) -> None:
    assert "authenticates with an exec plugin" in text
    assert "auth: github-oidc" in text
    assert "`token` input" in text


def test_the_action_refuses_an_exec_plugin_before_any_network_call(
    listener: socket.socket, tmp_path: Path
) -> None:
    env = runner_env(tmp_path, {"KUBEBUILDX_BIN": str(ROOT / ".venv" / "bin")})
    env.update(
        {
            "INPUT_KUBECONFIG": exec_kubeconfig(listener.getsockname()[1], "aws"),
            "INPUT_PLATFORMS": "linux/amd64",
            "INPUT_CONTEXT": str(ROOT / "tests" / "fixtures" / "contexts" / "multistage"),
            # as in the action's container: no aws (this machine may have one, e.g. a pyenv shim)
            "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin",
        }
    )
    run = subprocess.run([str(KUBEBUILDX), "action"], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 3, run.stdout + run.stderr
    assert "::error title=Invalid kubeconfig::" in run.stdout
    assert_both_ways_out(run.stdout)
    assert "'aws'" not in run.stdout, "a value of the kubeconfig is never quoted"
    assert connections(listener) == 0


def test_the_cli_refuses_an_exec_plugin_whose_command_is_not_installed(
    listener: socket.socket, tmp_path: Path
) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(exec_kubeconfig(listener.getsockname()[1], "kubebuildx-test-no-such-plugin"))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBEBUILDX_TEMP": str(tmp_path)}
    run = subprocess.run(
        [str(KUBEBUILDX), "preflight", "--kubeconfig", str(path), "--platforms", "linux/amd64"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 3, run.stdout + run.stderr
    assert_both_ways_out(run.stderr)
    assert connections(listener) == 0
