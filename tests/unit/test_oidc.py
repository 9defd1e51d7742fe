"""auth: github-oidc: the request, the token's lifetime, when to refresh, the messages, the token file.

No socket: the endpoint is a fake session; the refresher is driven by hand with a fake clock.
"""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from kubebuildx import kube, oidc, preflight, runner
from kubebuildx.errors import CredentialError, InputError
from kubebuildx.inputs import parse_inputs

REQUEST_TOKEN = "FAKE-REQUEST-TOKEN-kubebuildx-oidc-0001"
URL = "https://pipelines.actions.example/abc/idtoken/def?api-version=2.0"
ENV = {oidc.URL_VAR: URL, oidc.TOKEN_VAR: REQUEST_TOKEN, "GITHUB_ACTIONS": "true"}


def jwt(**claims: Any) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    body = {"iss": oidc.GITHUB_ISSUER, "sub": "repo:acme/widgets:ref:refs/heads/main", **claims}
    return f"{part({'alg': 'RS256', 'kid': 'k'})}.{part(body)}.c2lnbmF0dXJl"


# ---- pure decisions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("issued", "expires", "delay"),
    [
        (1000, 1300, 200.0),  # GitHub's 5 minutes: a third (100 s) before expiry
        (1000, 1600, 400.0),  # 10 minutes: 200 s before
        (1000, 4600, 3300.0),  # an hour: capped at 5 minutes before
        (1000, 1150, 60.0),  # 150 s: at least 90 s before, for client-go's minute-old copy
        (1000, 1090, oidc.MIN_WAIT),  # shorter than the lead: as soon as allowed, never a busy loop
        (1000, 900, oidc.MIN_WAIT),  # already expired when issued
    ],
    ids=["5 min", "10 min", "1 h", "150 s", "90 s", "expired"],
)
def test_when_to_refresh(issued: float, expires: float, delay: float) -> None:
    assert oidc.refresh_delay(oidc.TokenTimes(issued, expires)) == pytest.approx(delay)


def test_refresh_depends_on_the_lifetime_not_on_our_clock() -> None:
    """A runner whose clock is off by an hour refreshes exactly as one that is right."""
    assert oidc.refresh_delay(oidc.TokenTimes(1000, 1300)) == oidc.refresh_delay(oidc.TokenTimes(4600, 4900))


@pytest.mark.parametrize(
    ("token", "times"),
    [
        (jwt(iat=1000, exp=1300), oidc.TokenTimes(1000, 1300)),
        (jwt(exp=1300), oidc.TokenTimes(1000, 1300)),  # no iat: GitHub's usual 5 minutes
        (jwt(iat=1000.5, exp=1300.5), oidc.TokenTimes(1000.5, 1300.5)),
        # bounded: an iat after exp is a lifetime of 0, not below; a lifetime past a day is cut
        (jwt(iat=2000, exp=1300), oidc.TokenTimes(1300, 1300)),
        (jwt(iat=0, exp=1e12), oidc.TokenTimes(1e12 - 86400, 1e12)),
    ],
)
def test_token_times(token: str, times: oidc.TokenTimes) -> None:
    assert oidc.token_times(token) == times


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("FAKE-not-a-jwt-kubebuildx-0002", "is not a JWT"),
        ("a..c", "is not a JWT"),
        ("a.!!!!.c", "not base64url-encoded JSON"),
        ("a." + base64.urlsafe_b64encode(b"[1]").decode() + ".c", "not a JSON object"),
        (jwt(iat=1), "no exp"),
        (jwt(exp=True), "no exp"),
        (jwt(exp="1300"), "no exp"),
        # json.loads reads NaN and Infinity: a refresher waiting on them would spin or never wake
        ("a." + base64.urlsafe_b64encode(b'{"exp": NaN}').decode() + ".c", "no exp"),
        ("a." + base64.urlsafe_b64encode(b'{"exp": Infinity}').decode() + ".c", "no exp"),
        ("a." + base64.urlsafe_b64encode(b"[" * 100000 + b"]" * 100000).decode() + ".c", "not base64url"),
    ],
)
def test_a_token_we_cannot_read_is_refused_without_quoting_it(token: str, message: str) -> None:
    with pytest.raises(CredentialError, match=message) as exc:
        oidc.token_times(token)
    assert token not in str(exc.value)


@pytest.mark.parametrize(
    ("base", "audience", "url"),
    [
        (URL, "kubebuildx", URL + "&audience=kubebuildx"),
        ("https://x.example/token", "kubebuildx", "https://x.example/token?audience=kubebuildx"),
        (URL, "https://203.0.113.10:6443", URL + "&audience=https%3A%2F%2F203.0.113.10%3A6443"),
        (URL, "a b&c=d", URL + "&audience=a%20b%26c%3Dd"),
        (URL, "", URL),
    ],
)
def test_request_url(base: str, audience: str, url: str) -> None:
    assert oidc.request_url(base, audience) == url


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"GITHUB_ACTIONS": "true"}, [oidc.URL_VAR, oidc.TOKEN_VAR]),
        ({"GITHUB_ACTIONS": "true", oidc.URL_VAR: URL}, [oidc.TOKEN_VAR]),
        ({"GITHUB_ACTIONS": "true", oidc.TOKEN_VAR: REQUEST_TOKEN}, [oidc.URL_VAR]),
    ],
)
def test_without_id_token_write_the_error_shows_the_permissions_block(
    env: dict[str, str], missing: list[str]
) -> None:
    with pytest.raises(CredentialError) as exc:
        oidc.IdTokenSource(env, "kubebuildx")
    message = str(exc.value)
    assert "id-token: write permission" in message
    assert "permissions:\n  id-token: write\n  contents: read" in message
    for name in missing:
        assert name in message
    assert REQUEST_TOKEN not in message and URL not in message
    assert exc.value.exit_code == 11


def test_outside_github_actions_the_error_says_so() -> None:
    with pytest.raises(CredentialError, match="not a GitHub Actions job"):
        oidc.IdTokenSource({}, "kubebuildx")


# ---- the endpoint, through a fake session ----------------------------------------------------


class Response:
    def __init__(self, status: int, body: Any) -> None:
        self.status_code = status
        self.content = body if isinstance(body, bytes) else json.dumps(body).encode()


class Session:
    def __init__(self, *answers: Response | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, dict[str, str], dict[str, Any]]] = []

    def get(self, url: str, headers: dict[str, str], **kwargs: Any) -> Response:
        self.calls.append((url, headers, kwargs))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def source(*answers: Response | Exception) -> tuple[oidc.IdTokenSource, Session]:
    session = Session(*answers)
    return oidc.IdTokenSource(ENV, "kubebuildx", session=session), session


def test_a_token_is_fetched_as_the_toolkit_does_and_masked() -> None:
    token = jwt(iat=1000, exp=1300)
    got, session = source(Response(200, {"count": 1, "value": token}))
    assert got.fetch(sleep=lambda s: None) == token
    (url, headers, kwargs) = session.calls[0]
    assert url == URL + "&audience=kubebuildx"
    assert headers["Authorization"] == f"Bearer {REQUEST_TOKEN}"
    assert kwargs["allow_redirects"] is False and kwargs["timeout"] == oidc.REQUEST_TIMEOUT
    assert token in runner._masked and REQUEST_TOKEN in runner._masked


@pytest.mark.parametrize(
    ("answers", "message", "attempts"),
    [
        ([Response(401, {"message": REQUEST_TOKEN})], "refused the runner's request token (HTTP 401)", 1),
        ([Response(403, b"<html>" + REQUEST_TOKEN.encode())], "(HTTP 403)", 1),
        ([Response(400, {})], "answered HTTP 400", 1),
        ([Response(500, {}), Response(502, {}), Response(503, {})], "HTTP 503 after 3 attempts", 3),
        ([Response(429, {})] * 3, "HTTP 429 after 3 attempts", 3),
        ([ConnectionError(REQUEST_TOKEN)] * 3, "cannot reach GitHub's token endpoint", 3),
        ([Response(200, {"value": ""})], "answered without a token", 1),
        ([Response(200, b"not json " + REQUEST_TOKEN.encode())], "answered without a token", 1),
        ([Response(200, {"value": "FAKE-not-a-jwt-kubebuildx-0003"})], "is not a JWT", 1),
    ],
    ids=["401", "403", "400", "5xx", "429", "unreachable", "empty", "not JSON", "not a JWT"],
)
def test_endpoint_failures_have_their_own_message_with_no_secret(
    answers: list[Response | Exception], message: str, attempts: int
) -> None:
    got, session = source(*answers)
    slept: list[float] = []
    with pytest.raises(CredentialError) as exc:
        got.fetch(sleep=slept.append)
    text = str(exc.value)
    assert message in text
    assert len(session.calls) == attempts and len(slept) == attempts - 1
    assert REQUEST_TOKEN not in text and "api-version" not in text and "idtoken" not in text
    assert "pipelines.actions.example" in text or "JWT" in text or "token" in text


def test_a_passing_failure_is_retried() -> None:
    token = jwt(iat=1, exp=301)
    got, session = source(Response(503, {}), ConnectionError("reset"), Response(200, {"value": token}))
    assert got.fetch(sleep=lambda s: None) == token
    assert len(session.calls) == 3


# ---- the token file --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_token_file_is_private_and_rewritten_on_schedule(tmp_path: Path) -> None:
    tokens = iter([jwt(iat=0, exp=300, n=1), jwt(iat=200, exp=500, n=2)])
    clock = Clock()
    token_file = oidc.TokenFile(tmp_path / "token", lambda: next(tokens), clock)
    token_file.refresh()
    first = (tmp_path / "token").read_text()
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600
    assert token_file.next_refresh == 300.0  # fetched at 100, refreshed 200 s later
    clock.now = 300.0
    token_file.refresh()
    assert (tmp_path / "token").read_text() != first
    assert token_file.next_refresh == 500.0
    assert [p.name for p in tmp_path.iterdir()] == ["token"]  # atomic: no temporary left


def test_after_stop_the_token_file_is_never_written_and_its_folder_never_made_again(tmp_path: Path) -> None:
    folder = tmp_path / "kubebuildx-run-x"
    folder.mkdir()
    token_file = oidc.TokenFile(folder / "token", lambda: jwt(iat=0, exp=300))
    token_file.refresh()
    (folder / "token").unlink()
    folder.rmdir()
    token_file.stop()
    token_file.refresh()
    assert not folder.exists()


def test_a_refresh_into_a_deleted_folder_does_not_recreate_it(tmp_path: Path) -> None:
    folder = tmp_path / "gone"
    token_file = oidc.TokenFile(folder / "token", lambda: jwt(iat=0, exp=300))
    with pytest.raises(OSError):
        token_file.refresh()
    assert not folder.exists()


def test_stop_all_stops_every_started_refresher(tmp_path: Path) -> None:
    token_file = oidc.TokenFile(tmp_path / "token", lambda: jwt(iat=0, exp=300))
    token_file.start()
    assert token_file in oidc._active
    oidc.stop_all()
    assert oidc._active == []
    (tmp_path / "token").unlink()
    token_file.refresh()
    assert not (tmp_path / "token").exists()


# ---- inputs, the 401 and who the cluster saw ---------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"auth": "oidc"}, "must be github-oidc or empty"),
        ({"auth": "github-oidc", "token": "FAKE-TOKEN-kubebuildx-0004"}, "both set"),
        ({"auth": "github-oidc", "audience": ""}, "needs an audience"),
        ({"server": "https://a:6443", "kubeconfig": "apiVersion: v1", "auth": "github-oidc"}, "both set"),
        ({"certificate-authority-data": "LS0t", "auth": "github-oidc"}, "without server"),
        ({"server": "http://a:6443", "auth": "github-oidc"}, "https:// URL"),
        ({"server": "https://a:6443"}, "gives no credentials"),
    ],
)
def test_credential_inputs_that_do_not_fit_together(raw: dict[str, str], message: str) -> None:
    with pytest.raises(InputError, match=message) as exc:
        parse_inputs(raw)
    assert "FAKE-TOKEN" not in str(exc.value)


def test_credential_inputs_that_fit() -> None:
    got = parse_inputs({"auth": "github-oidc", "server": "https://a:6443", "certificate-authority-data": "x"})
    assert (got.auth, got.audience, got.server) == ("github-oidc", oidc.DEFAULT_AUDIENCE, "https://a:6443")
    assert "FAKE" not in repr(parse_inputs({"token": "FAKE-TOKEN-kubebuildx-0005"}))


@pytest.mark.parametrize(
    ("credential", "says"),
    [
        ("github-oidc", "rejected the job's GitHub OIDC ID token"),
        ("token", "rejected the token input"),
        ("kubeconfig", "rejected the kubeconfig's credentials"),
    ],
)
def test_a_401_is_explained_for_where_the_credential_came_from(credential: str, says: str) -> None:
    error = kube.unauthorized("https://a:6443", credential, "kubebuildx")
    assert says in str(error)
    if credential == "github-oidc":
        assert oidc.GITHUB_ISSUER in str(error) and "'kubebuildx'" in str(error)


@pytest.mark.parametrize(
    ("username", "context", "starts"),
    [
        (
            "github:repo:acme/other:ref:refs/heads/main",
            "kubebuildx",
            "the cluster authenticated you as github:repo:acme/other:ref:refs/heads/main, which lacks",
        ),
        ("", "ci", "user 'ci' lacks"),
    ],
)
def test_rbac_names_the_subject_the_cluster_saw(username: str, context: str, starts: str) -> None:
    with pytest.raises(Exception) as exc:
        preflight.raise_for_rbac(preflight.REQUIRED[:1], "buildkit", preflight.subject(username, context))
    assert str(exc.value).startswith(starts)
    assert (preflight.OIDC_BINDINGS in str(exc.value)) == bool(username)


# ---- deploy/github-oidc agrees with the code and with deploy/rbac.yaml ---------------------------

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_the_shipped_authentication_config_trusts_github_for_our_default_audience() -> None:
    import yaml

    config = yaml.safe_load((DEPLOY / "github-oidc" / "authentication-config.yaml").read_text())
    assert (config["apiVersion"], config["kind"]) == (
        "apiserver.config.k8s.io/v1",
        "AuthenticationConfiguration",
    )
    (jwt_config,) = config["jwt"]
    assert jwt_config["issuer"]["url"] == oidc.GITHUB_ISSUER
    assert oidc.DEFAULT_AUDIENCE in jwt_config["issuer"]["audiences"]
    assert "discoveryURL" not in jwt_config["issuer"], "users fetch GitHub's own discovery document"
    assert jwt_config["claimMappings"]["username"] == {"claim": "sub", "prefix": "github:"}
    assert jwt_config["claimValidationRules"], "not every GitHub repository in the world"


def test_the_shipped_bindings_give_one_subject_the_role_of_rbac_yaml() -> None:
    import yaml

    rbac = {
        (d["kind"], d["metadata"]["name"])
        for d in yaml.safe_load_all((DEPLOY / "rbac.yaml").read_text())
        if d
    }
    bindings = [d for d in yaml.safe_load_all((DEPLOY / "github-oidc" / "rolebinding.yaml").read_text()) if d]
    wanted = {("Role", "kubebuildx"), ("ClusterRole", "kubebuildx-nodes")}
    assert {(b["roleRef"]["kind"], b["roleRef"]["name"]) for b in bindings} == wanted
    assert wanted <= rbac
    for binding in bindings:
        assert binding["subjects"] == [
            {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "User",
                "name": "github:repo:acme/widgets:ref:refs/heads/main",
            }
        ]


# ---- kube.connect writes the user the credential asks for ----------------------------------------


@pytest.fixture
def no_api_client(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None]]:
    made: list[tuple[str, str | None]] = []
    monkeypatch.setattr(kube, "api_client", lambda path, token_file=None: made.append((path, token_file)))
    return made


CLUSTER = {"server": "https://203.0.113.10:6443", "certificate-authority-data": "LS0tLS1CRUdJTi0tLS0t"}


def test_connect_with_github_oidc_writes_a_token_file_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_api_client: list[tuple[str, str | None]]
) -> None:
    import yaml

    token = jwt(iat=0, exp=300)
    monkeypatch.setattr(oidc.IdTokenSource, "_get", lambda self: Response(200, {"value": token}))
    try:
        connection = kube.connect(parse_inputs({"auth": "github-oidc", **CLUSTER}), ENV, tmp_path)
    finally:
        oidc.stop_all()
    written = yaml.safe_load(connection.kubeconfig_path.read_text())
    assert written["users"] == [{"name": "kubebuildx", "user": {"tokenFile": str(tmp_path / "token")}}]
    assert written["clusters"][0]["cluster"] == CLUSTER
    assert (tmp_path / "token").read_text().strip() == token
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600
    assert token not in connection.kubeconfig_path.read_text()
    assert no_api_client == [(str(connection.kubeconfig_path), str(tmp_path / "token"))]
    assert connection.credential == "github-oidc"


def test_connect_with_a_token_input_writes_that_token_as_the_user(
    tmp_path: Path, no_api_client: list[tuple[str, str | None]]
) -> None:
    import yaml

    secret = "FAKE-TOKEN-input-kubebuildx-0006"
    connection = kube.connect(parse_inputs({"token": secret, **CLUSTER}), {}, tmp_path)
    written = yaml.safe_load(connection.kubeconfig_path.read_text())
    assert written["users"] == [{"name": "kubebuildx", "user": {"token": secret}}]
    assert connection.credential == "token" and no_api_client[0][1] is None


def test_without_the_permission_connect_fails_before_writing_anything(
    tmp_path: Path, no_api_client: list[tuple[str, str | None]]
) -> None:
    with pytest.raises(CredentialError, match="id-token: write"):
        kube.connect(parse_inputs({"auth": "github-oidc", **CLUSTER}), {"GITHUB_ACTIONS": "true"}, tmp_path)
    assert list(tmp_path.iterdir()) == [] and no_api_client == []


def test_every_request_reads_the_token_file_again(tmp_path: Path) -> None:
    """The kubernetes client reads a tokenFile once; our hook makes it read the refreshed one."""

    class Configuration:
        def __init__(self) -> None:
            self.api_key: dict[str, str] = {}

    (tmp_path / "token").write_text("first-token\n")
    configuration = Configuration()
    kube._read_token(configuration, str(tmp_path / "token"))
    assert configuration.api_key["BearerToken"] == "Bearer first-token"
    (tmp_path / "token").write_text("second-token\n")
    kube._read_token(configuration, str(tmp_path / "token"))
    assert configuration.api_key["BearerToken"] == "Bearer second-token"
    (tmp_path / "token").unlink()
    kube._read_token(configuration, str(tmp_path / "token"))
    assert configuration.api_key["BearerToken"] == "Bearer second-token", (
        "the last one, for the cluster to judge"
    )
