"""Registry credentials: the config.json we write, the login check's decisions, no leaks."""

from __future__ import annotations

import base64
import json
import secrets
import stat
from pathlib import Path

import pytest

from kubebuildx import registry, runner
from kubebuildx.errors import InputError, RegistryError
from kubebuildx.registry import Credentials, Reply


def fake_password() -> str:
    return "test-only-" + secrets.token_hex(8)


@pytest.mark.parametrize(
    ("given", "host", "key"),
    [
        ("", "docker.io", "https://index.docker.io/v1/"),
        ("docker.io", "docker.io", "https://index.docker.io/v1/"),
        ("index.docker.io", "docker.io", "https://index.docker.io/v1/"),
        ("registry-1.docker.io", "docker.io", "https://index.docker.io/v1/"),
        ("ghcr.io", "ghcr.io", "ghcr.io"),
        ("https://ghcr.io/", "ghcr.io", "ghcr.io"),
        ("127.0.0.1:5000", "127.0.0.1:5000", "127.0.0.1:5000"),
        ("Registry.Example.com/path", "registry.example.com", "registry.example.com"),
    ],
)
def test_registry_host_and_auth_key(given: str, host: str, key: str) -> None:
    assert registry.registry_host(given) == host
    assert registry.auth_key(given) == key


@pytest.mark.parametrize(
    ("ref", "host"),
    [
        ("ghcr.io/owner/app", "ghcr.io"),
        ("127.0.0.1:5000/app:1", "127.0.0.1:5000"),
        ("localhost/app", "localhost"),
        ("owner/app", "docker.io"),
        ("app", "docker.io"),
    ],
)
def test_reference_host(ref: str, host: str) -> None:
    assert registry.reference_host(ref) == host


def test_config_json_is_what_docker_login_writes() -> None:
    password = fake_password()
    creds = Credentials("ghcr.io", "octocat", password)
    doc = json.loads(registry.config_json(creds))
    assert doc == {"auths": {"ghcr.io": {"auth": base64.b64encode(f"octocat:{password}".encode()).decode()}}}


def test_write_config_is_private_and_tool_env_keeps_the_store(tmp_path: Path) -> None:
    creds = Credentials("", "user", fake_password())
    folder = registry.write_config(creds, tmp_path / "run")
    config = folder / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert "https://index.docker.io/v1/" in json.loads(config.read_text())["auths"]
    store = tmp_path / "home" / ".docker" / "buildx"
    assert registry.tool_env(folder, store) == {"DOCKER_CONFIG": str(folder), "BUILDX_CONFIG": str(store)}
    assert registry.tool_env(None, store) == {}


def test_from_inputs_masks_the_password_and_its_auth_value() -> None:
    password = fake_password()
    creds = registry.from_inputs("ghcr.io", "octocat", password)
    assert creds is not None and password not in repr(creds)
    auth = base64.b64encode(f"octocat:{password}".encode()).decode()
    assert runner.redact(f"x {password} y {auth}") == "x *** y ***"


@pytest.mark.parametrize(("user", "missing"), [("octocat", "password"), ("", "username")])
def test_half_a_pair_is_refused(user: str, missing: str) -> None:
    password = "" if user else fake_password()
    with pytest.raises(InputError) as err:
        registry.from_inputs("", user, password)
    assert f"{missing} is empty" in str(err.value)
    assert not password or password not in str(err.value)


def test_no_credentials_means_no_login() -> None:
    assert registry.from_inputs("ghcr.io", "", "") is None


def test_check_refs_warns_when_no_image_is_on_the_logged_in_registry() -> None:
    creds = Credentials("ghcr.io", "u", fake_password())
    assert registry.check_refs(creds, ["ghcr.io/o/app:1"]) == ""
    assert "ghcr.io" in registry.check_refs(creds, ["quay.io/o/app"])
    assert registry.check_refs(None, ["quay.io/o/app"]) == ""


def test_parse_challenge() -> None:
    scheme, params = registry.parse_challenge(
        'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:o/a:pull"'
    )
    assert scheme == "bearer"
    assert params == {"realm": "https://ghcr.io/token", "service": "ghcr.io", "scope": "repository:o/a:pull"}
    assert registry.parse_challenge('Basic realm="r"') == ("basic", {"realm": "r"})


@pytest.mark.parametrize(
    ("host", "base"),
    [
        ("127.0.0.1:5000", "http://127.0.0.1:5000/v2/"),
        ("localhost:5000", "http://localhost:5000/v2/"),
        ("[::1]:5000", "http://[::1]:5000/v2/"),
        ("ghcr.io", "https://ghcr.io/v2/"),
        ("docker.io", "https://registry-1.docker.io/v2/"),
    ],
)
def test_api_base_speaks_http_only_on_loopback(host: str, base: str) -> None:
    assert registry.api_base(host) == base


class FakeRegistry:
    """Answers like a registry's /v2/ and token endpoints; records what was asked."""

    def __init__(self, challenge: str, good: tuple[str, str]) -> None:
        self.challenge, self.good, self.asked = challenge, good, []

    def __call__(self, url: str, auth: tuple[str, str] | None) -> Reply:
        self.asked.append((url, auth is not None))
        if auth is None:
            return Reply(401, {"WWW-Authenticate": self.challenge})
        return Reply(200 if auth == self.good else 401, {})


@pytest.mark.parametrize(
    "challenge", ['Basic realm="r"', 'Bearer realm="https://auth.example.com/token",service="reg"']
)
def test_check_login_accepts_good_and_refuses_wrong_credentials(challenge: str) -> None:
    password = fake_password()
    good = Credentials("reg.example.com", "user", password)
    fake = FakeRegistry(challenge, ("user", password))
    assert "logged in to reg.example.com" in registry.check_login(good, fake)
    if challenge.startswith("Bearer"):
        assert fake.asked[-1][0] == "https://auth.example.com/token?account=user&service=reg"
    wrong_password = fake_password()
    with pytest.raises(RegistryError) as err:
        registry.check_login(Credentials("reg.example.com", "user", wrong_password), fake)
    assert "refused the username 'user'" in str(err.value)
    assert wrong_password not in str(err.value) and password not in str(err.value)


def test_check_login_only_notes_what_it_cannot_check() -> None:
    creds = Credentials("reg.example.com", "user", fake_password())
    assert "anonymous" in registry.check_login(creds, lambda url, auth: Reply(200, {}))

    def unreachable(url: str, auth: tuple[str, str] | None) -> Reply:
        raise ConnectionError("no route")

    assert "could not reach" in registry.check_login(creds, unreachable)


@pytest.mark.parametrize(
    ("error", "logged_in", "words"),
    [
        ("failed to push: 401 Unauthorized", False, "set registry, username and password"),
        ("denied: permission_denied: write_package", True, "packages: write"),
        ("unexpected status from POST request: 403 Forbidden", True, "may write"),
        ('process "/bin/sh -c make" did not complete successfully: exit code: 2', True, ""),
    ],
)
def test_push_hint_names_the_fix_for_a_refused_push(error: str, logged_in: bool, words: str) -> None:
    hint = registry.push_hint(error, logged_in=logged_in)
    assert (words in hint) if words else hint == ""


def test_docker_config_auths_are_masked_and_merged_under_the_login() -> None:
    hub, ghcr = fake_password(), fake_password()
    text = json.dumps(
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": base64.b64encode(f"me:{hub}".encode()).decode()},
                "ghcr.io": {"identitytoken": ghcr},
            },
            "psFormat": "table",
        }
    )
    auths = registry.parse_docker_config(text)
    assert ghcr in runner._masked
    assert base64.b64encode(f"me:{hub}".encode()).decode() in runner._masked
    password = fake_password()
    written = json.loads(registry.config_json(Credentials("ghcr.io", "bot", password), auths))
    assert written["auths"]["https://index.docker.io/v1/"] == auths["https://index.docker.io/v1/"]
    # username/password win for their registry
    assert written["auths"]["ghcr.io"] == {"auth": base64.b64encode(f"bot:{password}".encode()).decode()}
    assert set(written) == {"auths"}  # nothing else of the user's config is carried


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"auths": {"ghcr.io": {"auth": "SECRET-VALUE-123"}', "line 1"),
        ('{"credsStore": "desktop"}', "no `auths`"),
        ('{"auths": {"ghcr.io": {}}, "credsStore": "desktop"}', "credential helper"),
    ],
)
def test_docker_config_errors_name_the_fix_and_quote_nothing(text: str, words: str) -> None:
    with pytest.raises(InputError) as exc:
        registry.parse_docker_config(text)
    assert words in str(exc.value)
    assert "SECRET-VALUE-123" not in str(exc.value)


def test_an_empty_docker_config_is_no_config() -> None:
    assert registry.parse_docker_config("  ") == {}


# ---- $DOCKER_CONFIG from an earlier step ---------------------------------------------------


def test_from_job_reads_what_docker_login_left(tmp_path: Path) -> None:
    token = "FAKE-JOB-AUTH-kubebuildx-unit-test-0011"
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"ghcr.io": {"auth": token}}}))
    text = registry.from_job(tmp_path)
    assert registry.parse_docker_config(text) == {"ghcr.io": {"auth": token}}
    assert token in runner._masked


@pytest.mark.parametrize("content", [None, "{}", '{"auths": {}}', '{"experimental": "enabled"}'])
def test_from_job_without_auths_is_nothing(tmp_path: Path, content: str | None) -> None:
    if content is not None:
        (tmp_path / "config.json").write_text(content)
    assert registry.from_job(tmp_path) == ""


def test_from_job_names_the_variable_in_its_errors(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"auths": {"ghcr.io": {}}, "credsStore": "secretservice"}')
    with pytest.raises(InputError, match=r"^\$DOCKER_CONFIG/config.json keeps its credentials in a"):
        registry.from_job(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(InputError, match=r"^\$DOCKER_CONFIG/config.json is not JSON \(line 1"):
        registry.from_job(tmp_path)


# ---- credentials never go out in cleartext -------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST:5000", True),
        ("127.0.0.1", True),
        ("127.8.9.10:5000", True),
        ("[::1]:5000", True),
        ("::1", True),
        ("127.attacker.example", False),  # a name: its DNS may point anywhere
        ("127.attacker.example:5000", False),
        ("127.0.0.1.nip.io", False),
        ("localhost.attacker.example", False),
        ("[::ffff:10.0.0.1]:5000", False),
        ("10.0.0.1:5000", False),
        ("ghcr.io", False),
        ("", False),
    ],
)
def test_loopback_is_an_address_not_a_prefix(host: str, loopback: bool) -> None:
    assert registry.is_loopback(host) is loopback
    assert registry.api_base(host).startswith("http://" if loopback else "https://")


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://auth.example.com/token", True),
        ("http://auth.example.com/token", False),
        ("http://127.attacker.example/token", False),
        ("http://127.0.0.1:5000/token", True),
        ("http://user@127.0.0.1/token", True),
        ("ftp://auth.example.com/token", False),
        ("/token", False),
        ("https://", False),
    ],
)
def test_credentials_go_to_https_or_loopback_only(url: str, allowed: bool) -> None:
    assert registry.may_send_credentials(url) is allowed


@pytest.mark.parametrize(
    "challenge",
    ['Bearer realm="http://auth.attacker.example/token"', 'Bearer realm="//auth.example.com/token"'],
)
def test_a_token_service_that_is_not_https_never_gets_the_password(challenge: str) -> None:
    creds = Credentials("reg.example.com", "user", fake_password())
    fake = FakeRegistry(challenge, ("user", creds.password))
    assert "credentials not sent" in registry.check_login(creds, fake)
    assert not any(with_auth for _, with_auth in fake.asked)


def test_a_name_like_a_loopback_address_gets_https_and_its_basic_challenge_the_password_over_it() -> None:
    creds = Credentials("127.attacker.example:5000", "user", fake_password())
    fake = FakeRegistry('Basic realm="r"', ("user", creds.password))
    registry.check_login(creds, fake)
    assert all(url.startswith("https://127.attacker.example:5000/") for url, _ in fake.asked)


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000 + "]" * 100_000, '{"auths": ' * 50_000 + "{}" + "}" * 50_000, "[]", "3", '"x"', "null"],
    ids=["deep list", "deep auths", "a list", "a number", "a string", "null"],
)
def test_docker_config_that_is_not_a_config_is_an_input_error(text: str) -> None:
    with pytest.raises(InputError):
        registry.parse_docker_config(text)
