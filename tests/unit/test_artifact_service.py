"""The artifact service client: environment, token, request shapes (golden files), replies, Twirp retries."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from kubebuildx import runner
from kubebuildx.artifacts import service
from kubebuildx.artifacts.retry import Backoff
from kubebuildx.artifacts.service import BackendIds, TwirpClient
from kubebuildx.errors import ArtifactError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "artifacts"
IDS = BackendIds("ce7f54c7-61c7-4aae-887f-30da475f5f1a", "ca395085-040a-526b-2ce8-bdc85f692774")


def golden(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


# --- the token -------------------------------------------------------------------------------


def test_backend_ids_from_the_scp_claim() -> None:
    run, job = IDS.workflow_run_backend_id, IDS.workflow_job_run_backend_id
    token = jwt({"scp": f"Actions.ExampleScope Actions.Results:{run}:{job}"})
    assert service.backend_ids(token) == IDS


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b",
        "a.!!!.c",
        jwt({"sub": "x"}),
        jwt({"scp": ""}),
        jwt({"scp": "Actions.ExampleScope"}),
        jwt({"scp": "Actions.Results:only-run"}),
        jwt({"scp": "Actions.Results:a:b:c"}),
    ],
)
def test_invalid_tokens_are_refused_without_quoting_them(token: str) -> None:
    with pytest.raises(ArtifactError, match=r"Actions\.Results") as failure:
        service.backend_ids(token)
    assert token not in str(failure.value)


# --- the environment -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("getter", "variable"),
    [
        (service.runtime_token, "ACTIONS_RUNTIME_TOKEN"),
        (service.results_origin, "ACTIONS_RESULTS_URL"),
        (service.repository, "GITHUB_REPOSITORY"),
        (service.run_id, "GITHUB_RUN_ID"),
    ],
)
def test_each_getter_names_its_variable(getter: Any, variable: str) -> None:
    with pytest.raises(ArtifactError, match=variable):
        getter({"OTHER": "x"})


def test_the_getters_read_the_environment_they_are_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_REPOSITORY", "process/env")
    assert service.repository({"GITHUB_REPOSITORY": "given/env"}) == "given/env"
    with pytest.raises(ArtifactError, match="GITHUB_REPOSITORY"):
        service.repository({})


def test_the_token_is_masked_as_soon_as_it_is_read() -> None:
    assert service.runtime_token({"ACTIONS_RUNTIME_TOKEN": "tok-3f9a8b7c6d5e"}) == "tok-3f9a8b7c6d5e"
    assert runner.redact("Bearer tok-3f9a8b7c6d5e") == "Bearer ***"


def test_results_url_keeps_the_origin_only() -> None:
    env = {"ACTIONS_RESULTS_URL": "https://results-receiver.actions.githubusercontent.com/path/"}
    assert service.results_origin(env) == "https://results-receiver.actions.githubusercontent.com"


@pytest.mark.parametrize(
    ("url", "ghes"),
    [
        ("https://github.com", False),
        ("https://octo.ghe.com", False),
        ("http://github.localhost", False),
        ("https://github.example.com", True),
    ],
)
def test_is_ghes(url: str, ghes: bool) -> None:
    assert service.is_ghes(url) is ghes


@pytest.mark.parametrize(("value", "days"), [("90", 90), ("", None), ("x", None)])
def test_max_retention_days(value: str, days: int | None) -> None:
    assert service.max_retention_days({"GITHUB_RETENTION_DAYS": value}) == days


# --- request bodies: golden files, checked against protobuf-ts's toJson of @actions/artifact 6.2.1


def test_create_request_matches_the_official_client() -> None:
    expires = datetime(2026, 12, 4, 5, 6, 7, 89_123, tzinfo=UTC)
    body = service.create_request(IDS, "app-linux-arm-v7", expires)
    assert body == golden("create_artifact_request.json")
    assert list(body) == list(golden("create_artifact_request.json"))


def test_create_request_without_retention() -> None:
    assert service.create_request(IDS, "app-linux-amd64", None) == golden(
        "create_artifact_request_no_retention.json"
    )


def test_finalize_request_sends_int64_as_a_string() -> None:
    digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    body = service.finalize_request(IDS, "app-linux-arm-v7", 5 << 30, digest)
    assert body == golden("finalize_artifact_request.json")


def test_list_and_delete_requests() -> None:
    assert service.list_request(IDS, name_filter="app-linux-arm-v7") == golden("list_artifacts_request.json")
    assert service.list_request(IDS, id_filter=1001)["id_filter"] == "1001"
    assert service.delete_request(IDS, "app-linux-arm-v7") == golden("delete_artifact_request.json")


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 12, 4, 5, 6, 7, tzinfo=UTC), "2026-12-04T05:06:07Z"),
        (datetime(2026, 12, 4, 5, 6, 7, 89_999, tzinfo=UTC), "2026-12-04T05:06:07.089Z"),
    ],
)
def test_timestamp_json(moment: datetime, text: str) -> None:
    assert service.timestamp_json(moment) == text


NOW = datetime(2026, 11, 29, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("days", "limit", "kept_days", "warned"),
    [
        (None, 90, None, False),
        (0, 90, None, False),
        (5, 90, 5, False),
        (400, 90, 90, True),
        (400, None, 400, False),
        (30, 0, 30, False),
    ],
)
def test_expiration_is_clamped_with_a_warning(
    days: int | None, limit: int | None, kept_days: int | None, warned: bool
) -> None:
    expires, warning = service.expiration(days, limit, NOW)
    assert (None if expires is None else (expires - NOW).days) == kept_days
    assert (warning is not None) is warned


# --- replies -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fixture", ["list_artifacts_response_snake.json", "list_artifacts_response_camel.json"]
)
def test_list_replies_in_either_case(fixture: str) -> None:
    listed = service.parse_list(golden(fixture))
    assert [a.database_id for a in listed] == [1001, 9007199254740993]
    assert listed[0].ids == IDS
    assert listed[0].digest == "sha256:aa"
    assert listed[1].size == 5 << 30


def test_redact_url_drops_the_sas() -> None:
    url = "https://acct.blob.core.windows.net/c/b.zip?sv=2021&sig=SECRET%2Fsig&se=x"
    assert service.redact_url(url) == "https://acct.blob.core.windows.net/c/b.zip?<redacted>"
    service.mask_signed_url(url)
    assert "SECRET" not in runner.redact("saw SECRET/sig and SECRET%2Fsig")


# --- the Twirp client, on a scripted session (no sockets) ---------------------------------------


class Scripted(requests.Session):
    """A session whose POSTs return scripted replies (or raise), recording what was sent."""

    def __init__(self, script: list[Any]) -> None:
        super().__init__()
        self.script = script
        self.sent: list[tuple[str, str]] = []

    def post(self, url: str | bytes, data: Any = None, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append((str(url), str(data)))
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        status, body = item
        response = requests.Response()
        response.status_code = status
        response.reason = "scripted"
        response._content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        return response


QUICK = Backoff(attempts=5, base=0.01, multiplier=1.5, cap=0.1)


@pytest.fixture
def sleeps() -> Iterator[list[float]]:
    yield []


def client(script: list[Any], sleeps: list[float]) -> tuple[TwirpClient, Scripted]:
    session = Scripted(script)
    return TwirpClient(
        "https://results.example", "tok-abcdef", session=session, backoff=QUICK, sleep=sleeps.append
    ), session


def test_twirp_url_headers_and_body(sleeps: list[float]) -> None:
    twirp, session = client([(200, {"ok": True})], sleeps)
    assert twirp.call("DeleteArtifact", {"name": "x"}) == {"ok": True}
    url, data = session.sent[0]
    assert url == "https://results.example/twirp/github.actions.results.api.v1.ArtifactService/DeleteArtifact"
    assert json.loads(data) == {"name": "x"}
    assert session.headers["Authorization"] == "Bearer tok-abcdef"
    assert session.headers["Content-Type"] == "application/json"


def test_twirp_retries_5xx_429_and_non_json(sleeps: list[float]) -> None:
    twirp, _ = client(
        [(503, {"msg": "busy"}), (429, {}), (200, "<html>"), (502, "bad gateway"), (200, {"ok": True})],
        sleeps,
    )
    assert twirp.call("CreateArtifact", {}) == {"ok": True}
    assert len(sleeps) == 4


def test_twirp_gives_up_after_the_last_attempt(sleeps: list[float]) -> None:
    twirp, session = client([(500, {})] * 5, sleeps)
    with pytest.raises(ArtifactError, match="after 5 attempts"):
        twirp.call("CreateArtifact", {})
    assert len(session.sent) == 5 and len(sleeps) == 4


def test_twirp_does_not_retry_a_client_error(sleeps: list[float]) -> None:
    twirp, _ = client([(409, {"code": "already_exists", "msg": "exists"})], sleeps)
    with pytest.raises(service.TwirpFailure, match="409") as failure:
        twirp.call("CreateArtifact", {})
    assert failure.value.status == 409 and sleeps == []


def test_twirp_quota_is_explained_and_not_retried(sleeps: list[float]) -> None:
    twirp, session = client([(429, {"code": "resource_exhausted", "msg": "insufficient usage"})], sleeps)
    with pytest.raises(ArtifactError, match="quota") as failure:
        twirp.call("CreateArtifact", {})
    assert failure.value.hint is not None and "retention-days" in failure.value.hint
    assert len(session.sent) == 1


def test_twirp_network_error_names_the_fix(sleeps: list[float]) -> None:
    twirp, _ = client([requests.ConnectionError("refused")], sleeps)
    with pytest.raises(ArtifactError, match="unable to reach") as failure:
        twirp.call("CreateArtifact", {})
    assert "self-hosted" in str(failure.value)


def test_twirp_masks_signed_urls_in_replies(sleeps: list[float]) -> None:
    url = "https://a.blob.core.windows.net/c/b?sig=REPLYSIG123&se=1"
    twirp, _ = client([(200, {"ok": True, "signedUploadUrl": url})], sleeps)
    twirp.call("CreateArtifact", {})
    assert "REPLYSIG123" not in runner.redact(url)
