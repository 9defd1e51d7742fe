"""The pure parts of scripts/act (hack/act): the argv it gives act, the secret file
it writes, and what the artifact shim changes on its way to act's server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack" / "act"))
import artifact_shim  # hack/act is a folder of scripts, not a package
import run as act


def test_act_runs_offline_on_loopback_without_a_docker_socket() -> None:
    argv = act.act_argv("act", "job:img", Path("/a"), 4242, ["-W", "w.yml"])
    assert argv == [
        "act",
        "--pull=false",
        "--action-offline-mode",
        "--rebuild=false",
        "-P",
        "ubuntu-latest=job:img",
        "--network",
        "host",
        "--container-daemon-socket",
        "-",
        "--artifact-server-path",
        "/a",
        "--artifact-server-addr",
        "127.0.0.1",
        "--artifact-server-port",
        "4242",
        "--no-cache-server",
        "--rm",
        "-W",
        "w.yml",
    ]


def test_the_secret_file_has_one_line_a_secret() -> None:
    assert act.secret_file_lines({"KUBECONFIG": "YWJj", "TOKEN": "t"}) == "KUBECONFIG=YWJj\nTOKEN=t\n"


@pytest.mark.parametrize("name, value", [("KUBECONFIG", "a: 1\nb: 2"), ("MY-SECRET", "x")])
def test_a_secret_act_could_not_read_back_is_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name) as raised:
        act.secret_file_lines({name: value})
    assert value not in str(raised.value)


def test_the_shim_drops_mime_type_from_create_artifact_only() -> None:
    create = artifact_shim.CREATE_ARTIFACT
    body = {"name": "a", "version": 7, "mime_type": "application/zip"}
    assert json.loads(artifact_shim.adapt(create, json.dumps(body).encode())) == {"name": "a", "version": 7}
    finalize = create.replace("CreateArtifact", "FinalizeArtifact")
    assert artifact_shim.adapt(finalize, json.dumps(body).encode()) == json.dumps(body).encode()
    assert artifact_shim.adapt(create, b"") == b""
