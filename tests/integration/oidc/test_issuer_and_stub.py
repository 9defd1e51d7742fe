"""The proving ground's OIDC pieces against each other and against kubebuildx.oidc, without the
cluster: the issuer serves what the apiserver fetches, its tokens are GitHub-shaped and verify
with its JWKS, the rendered --authentication-config differs from the shipped one in two fields
only, and kubebuildx gets, masks and refreshes tokens from the endpoint stub."""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import time
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from id_token_stub import Stub, serve

from kubebuildx import oidc as kbx_oidc
from kubebuildx import runner
from kubebuildx.errors import CredentialError

RUNTIME_TOKEN = "FAKE-RUNTIME-TOKEN-kubebuildx-oidc-stub-0001"


def get_json(url: str, ca: Path) -> Any:
    context = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(url, timeout=5, context=context) as response:
        return json.loads(response.read())


def _int(b64: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)), "big")


def verifies_with_jwks(token: str, key: dict[str, str]) -> bool:
    """RS256 (PKCS#1 v1.5, SHA-256) checked with the JWKS's n and e, as the apiserver checks it."""
    head, body, signature = token.split(".")
    n, e = _int(key["n"]), _int(key["e"])
    em = pow(_int(signature), e, n).to_bytes((n.bit_length() + 7) // 8, "big")
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420")
    digest = hashlib.sha256(f"{head}.{body}".encode()).digest()
    return em.startswith(b"\x00\x01") and em.endswith(b"\x00" + digest_info + digest)


def payload(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return decoded


# ---- the issuer ------------------------------------------------------------------------------


def test_discovery_names_githubs_issuer_and_a_loopback_jwks(
    issuer: ModuleType, issuer_pki: Path, served: str
) -> None:
    found = get_json(f"{served}/.well-known/openid-configuration", issuer_pki / "oidc-ca.crt")
    assert found["issuer"] == "https://token.actions.githubusercontent.com"
    assert found["jwks_uri"] == f"{served}/.well-known/jwks"
    assert "RS256" in found["id_token_signing_alg_values_supported"]
    keys = get_json(found["jwks_uri"], issuer_pki / "oidc-ca.crt")["keys"]
    assert [k["kty"] for k in keys] == ["RSA"] and keys[0]["kid"] == issuer.key_id(
        issuer_pki / "oidc-signing.key"
    )


def test_the_issuer_is_trusted_only_through_its_own_ca(served: str) -> None:
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{served}/.well-known/jwks", timeout=5)


def test_a_minted_token_is_github_shaped_and_verifies(
    issuer: ModuleType, issuer_pki: Path, served: str, tmp_path: Path
) -> None:
    key = issuer_pki / "oidc-signing.key"
    token = issuer.mint(key, issuer.claims())
    jwks = get_json(f"{served}/.well-known/jwks", issuer_pki / "oidc-ca.crt")
    assert verifies_with_jwks(token, jwks["keys"][0])
    assert issuer.verify(key, token, tmp_path)
    assert not verifies_with_jwks(
        token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"), jwks["keys"][0]
    )
    found = payload(token)
    assert found["iss"] == "https://token.actions.githubusercontent.com"
    assert found["aud"] == "kubebuildx"
    assert found["sub"] == "repo:acme/widgets:ref:refs/heads/main"
    assert (found["repository"], found["repository_owner"], found["ref"]) == (
        "acme/widgets",
        "acme",
        "refs/heads/main",
    )
    assert found["job_workflow_ref"] == "acme/widgets/.github/workflows/build.yml@refs/heads/main"
    assert found["nbf"] <= found["iat"] < found["exp"] == found["iat"] + 300
    assert found["jti"] != payload(issuer.mint(key, issuer.claims()))["jti"]
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==")) == {
        "alg": "RS256", "typ": "JWT", "kid": issuer.key_id(key),
    }  # fmt: skip


def test_tokens_for_another_repository_branch_or_an_expired_one(issuer: ModuleType) -> None:
    now = time.time()
    other = issuer.claims(repository="acme/other", now=now)
    assert other["sub"] == "repo:acme/other:ref:refs/heads/main" and other["repository_owner"] == "acme"
    branch = issuer.claims(ref="refs/heads/dev", now=now)
    assert branch["sub"] == "repo:acme/widgets:ref:refs/heads/dev"
    expired = issuer.claims(expired=True, now=now)
    assert expired["exp"] < now - 300, "beyond any leeway a verifier allows"
    foreign = issuer.claims(repository="evil/widgets", now=now)
    assert foreign["repository_owner"] == "evil"


def test_the_cli_mints_a_token(
    issuer: ModuleType, issuer_pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert issuer.main(["mint", "--pki", str(issuer_pki), "--repository", "acme/other", "--expired"]) == 0
    found = payload(capsys.readouterr().out.strip())
    assert found["sub"] == "repo:acme/other:ref:refs/heads/main" and found["exp"] < time.time()


# ---- the apiserver's --authentication-config --------------------------------------------------


def test_the_rendered_config_is_the_shipped_one_with_discovery_on_loopback(
    issuer: ModuleType, issuer_pki: Path
) -> None:
    shipped = yaml.safe_load(issuer.SHIPPED.read_text())
    rendered = yaml.safe_load(issuer.rendered(issuer_pki, 16480))
    jwt = rendered["jwt"][0]
    assert jwt["issuer"].pop("discoveryURL") == "https://127.0.0.1:16480/.well-known/openid-configuration"
    assert jwt["issuer"].pop("certificateAuthority") == (issuer_pki / "oidc-ca.crt").read_text()
    assert rendered == shipped, "nothing else may differ from what users apply"
    assert shipped["jwt"][0]["issuer"]["url"] == "https://token.actions.githubusercontent.com"
    assert shipped["apiVersion"] == "apiserver.config.k8s.io/v1"


def test_render_refuses_a_config_without_githubs_issuer(issuer: ModuleType) -> None:
    with pytest.raises(ValueError, match="expected one jwt authenticator"):
        issuer.render_authentication_config("jwt: [{issuer: {url: 'https://x.example'}}]\n", "u", "ca")


# ---- the ID token endpoint stub, and kubebuildx against it -------------------------------------


@pytest.fixture
def stub(issuer: ModuleType, issuer_pki: Path) -> Any:
    key = issuer_pki / "oidc-signing.key"
    with serve(Stub(RUNTIME_TOKEN, lambda audience: issuer.mint(key, issuer.claims(audience=audience)))) as s:
        yield s


def test_kubebuildx_gets_a_token_for_its_audience_from_the_stub(stub: Stub) -> None:
    env = {**stub.env(), "GITHUB_ACTIONS": "true"}
    token = kbx_oidc.IdTokenSource(env, "kubebuildx").fetch()
    assert payload(token)["aud"] == "kubebuildx"
    assert token in runner._masked
    (request,) = stub.requests
    assert request["query"] == {"api-version": ["2.0"], "audience": ["kubebuildx"]}
    assert request["authorization"] == f"Bearer {RUNTIME_TOKEN}"


def test_the_stub_gives_githubs_default_audience_without_one(stub: Stub) -> None:
    token = kbx_oidc.IdTokenSource({**stub.env(), "GITHUB_ACTIONS": "true"}, "").fetch()
    assert payload(token)["aud"] == "https://github.com/acme"


@pytest.mark.parametrize(("change", "status"), [("wrong bearer", 401), ("forbidden", 403)])
def test_a_refusal_from_the_endpoint_has_its_message_and_no_secret(
    stub: Stub, change: str, status: int
) -> None:
    env = {**stub.env(), "GITHUB_ACTIONS": "true"}
    if change == "wrong bearer":
        env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = "FAKE-OTHER-TOKEN-kubebuildx-0002"
    else:
        stub.forbidden = True
    with pytest.raises(CredentialError) as exc:
        kbx_oidc.IdTokenSource(env, "kubebuildx").fetch()
    text = str(exc.value)
    assert f"refused the runner's request token (HTTP {status})" in text
    assert "127.0.0.1" in text
    for secret in (RUNTIME_TOKEN, "FAKE-OTHER-TOKEN", "idtoken", "api-version", "TF400813"):
        assert secret not in text
    assert len(stub.requests) == 1, "a 4xx is not retried"


def test_the_refresher_rewrites_the_token_file_before_expiry(
    issuer: ModuleType, issuer_pki: Path, tmp_path: Path
) -> None:
    """With 6-second tokens the next one is fetched after MIN_WAIT (5 s), well before expiry."""
    key = issuer_pki / "oidc-signing.key"
    stub = Stub(
        RUNTIME_TOKEN, lambda audience: issuer.mint(key, issuer.claims(audience=audience, lifetime=6))
    )
    with serve(stub):
        path = tmp_path / "token"
        kbx_oidc.start_token_file(path, {**stub.env(), "GITHUB_ACTIONS": "true"}, "kubebuildx")
        try:
            first = path.read_text()
            assert path.stat().st_mode & 0o777 == 0o600
            deadline = time.monotonic() + 15
            while path.read_text() == first and time.monotonic() < deadline:
                time.sleep(0.2)
            second = path.read_text()
            assert second != first, "not refreshed"
            assert payload(second.strip())["exp"] - time.time() > 0, "refreshed before it expired"
        finally:
            kbx_oidc.stop_all()
        count = len(stub.requests)
        time.sleep(6)
        assert len(stub.requests) == count, "stop_all stopped the refresher"
