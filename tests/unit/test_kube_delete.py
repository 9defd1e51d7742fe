"""kube.delete_builder: what ``buildx rm`` deletes, through the API, for the post step."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from kubebuildx import kube

NS = "/apis/apps/v1/namespaces/ci"
CM = "/api/v1/namespaces/ci/configmaps"


class Api:
    def __init__(self, answers: dict[str, int]) -> None:
        self.answers = answers
        self.deleted: list[str] = []

    def request(self, api: Any, method: str, path: str, server: str, what: str, **kw: Any) -> tuple[int, Any]:
        assert method == "DELETE"
        self.deleted.append(path)
        return self.answers.get(path, 404), {}


@pytest.mark.parametrize(
    ("kind", "answers", "deleted", "left"),
    [
        (
            "deployment",
            {f"{NS}/deployments/b-linux-amd64": 200},
            [f"{NS}/deployments/b-linux-amd64", f"{CM}/b-linux-amd64-config", f"{CM}/b-linux-amd64-config-1"],
            [],
        ),
        (
            "deployment",
            {
                f"{NS}/deployments/b-linux-amd64": 200,
                f"{CM}/b-linux-amd64-config": 200,
                f"{CM}/b-linux-amd64-config-1": 200,
            },
            [
                f"{NS}/deployments/b-linux-amd64",
                f"{CM}/b-linux-amd64-config",
                f"{CM}/b-linux-amd64-config-1",
                f"{CM}/b-linux-amd64-config-2",
            ],
            [],
        ),
        (
            "statefulset",
            {f"{NS}/statefulsets/b-linux-amd64": 202},
            [
                f"{NS}/statefulsets/b-linux-amd64",
                f"{CM}/b-linux-amd64-config",
                f"{CM}/b-linux-amd64-config-1",
            ],
            [],
        ),
        (
            "deployment",
            {},
            [f"{NS}/deployments/b-linux-amd64", f"{CM}/b-linux-amd64-config", f"{CM}/b-linux-amd64-config-1"],
            [],
        ),
        (
            "deployment",
            {f"{NS}/deployments/b-linux-amd64": 403, f"{CM}/b-linux-amd64-config": 403},
            [f"{NS}/deployments/b-linux-amd64", f"{CM}/b-linux-amd64-config"],
            ["deployment b-linux-amd64 (HTTP 403)", "configmap b-linux-amd64-config (HTTP 403)"],
        ),
    ],
    ids=["deployment", "with configmaps", "persistent", "already gone", "refused"],
)
def test_delete_builder_deletes_what_buildx_rm_does(
    monkeypatch: pytest.MonkeyPatch, kind: str, answers: dict[str, int], deleted: list[str], left: list[str]
) -> None:
    api = Api(answers)
    monkeypatch.setattr(kube, "request", api.request)
    connection: Any = SimpleNamespace(api=object(), server="https://10.0.0.1:6443")
    assert kube.delete_builder(connection, "ci", ("b-linux-amd64",), kind) == left
    assert api.deleted == deleted


def test_an_exec_never_swaps_the_shared_clients_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """kubernetes.stream swaps call_api on the client it is given and restores what it found;
    two execs side by side on the shared client could leave the websocket transport there."""
    from kubernetes import client
    from kubernetes import stream as stream_module

    shared = client.ApiClient(client.Configuration())
    original = shared.call_api
    seen = []

    def fake_stream(api_method: Any, *args: Any, **kwargs: Any) -> str:
        seen.append(api_method.__self__.api_client)
        api_method.__self__.api_client.call_api = "websocket"  # what a lost race leaves behind
        return "out"

    monkeypatch.setattr(stream_module, "stream", fake_stream)
    assert kube.exec_in_pod(shared, "ns", "pod", ["buildctl", "debug", "workers"]) == "out"
    assert seen and seen[0] is not shared
    assert shared.call_api == original
