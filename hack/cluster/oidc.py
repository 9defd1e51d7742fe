"""A loopback stand-in for GitHub Actions' OIDC issuer, for `auth: github-oidc` on the proving ground.

GitHub's issuer is https://token.actions.githubusercontent.com. The apiserver is given the
SHIPPED deploy/github-oidc/authentication-config.yaml with two fields added
(`render_authentication_config`): `issuer.discoveryURL`, where it fetches the discovery
document instead of `<url>/.well-known/openid-configuration` (here, this server on
127.0.0.1:OIDC_ISSUER_PORT), and `issuer.certificateAuthority`, the PEM of this server's own
CA. `issuer.url` stays GitHub's: the discovery document served here says
`"issuer": "https://token.actions.githubusercontent.com"` (the apiserver requires it to equal
`url`), and every minted token carries that `iss`. So the configuration under test is the one
users apply, and a token from here is shaped as GitHub's are.

  oidc.py serve --pki DIR [--port N]       the discovery document and the JWKS, over TLS
  oidc.py mint --pki DIR [--repository acme/other] [--ref refs/heads/dev] [--expired]
  oidc.py render --pki DIR                 the apiserver's --authentication-config file

Keys and certificates are made with the openssl CLI (argv lists), as pki.py makes the
cluster's; signing is `openssl dgst -sha256 -sign` (RS256). Nothing here is a dependency of
the product.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.server
import json
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import layout as L
import pki

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
AUDIENCE = "kubebuildx"  # kubebuildx's default audience input, and the shipped config's
REPOSITORY = "acme/widgets"  # the repository deploy/github-oidc/rolebinding.yaml binds
REF = "refs/heads/main"
LIFETIME = 300  # GitHub's ID tokens live 5 minutes
SHIPPED = L.REPO / "deploy" / "github-oidc" / "authentication-config.yaml"
CA, SERVING, SIGNING_KEY = "oidc-ca", "oidc-serving", "oidc-signing.key"


def base_url(port: int = L.OIDC_ISSUER_PORT) -> str:
    return f"https://127.0.0.1:{port}"


def discovery_url(port: int = L.OIDC_ISSUER_PORT) -> str:
    return f"{base_url(port)}/.well-known/openid-configuration"


# ---------------------------------------------------------------- keys


def ensure(directory: Path) -> None:
    """The issuer's own CA, its serving certificate (127.0.0.1) and its RS256 signing key."""
    directory.mkdir(parents=True, exist_ok=True)
    pki.make_ca(directory, CA, "kubebuildx-oidc-issuer-ca")
    pki.make_leaf(
        directory, CA, pki.Leaf(SERVING, "kubebuildx-oidc-issuer", server=True, server_names=pki.LOOPBACK)
    )
    key = directory / SIGNING_KEY
    if not key.exists():
        _openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key)])
        key.chmod(0o600)


def _openssl(args: list[str], data: bytes | None = None) -> bytes:
    result = subprocess.run(["openssl", *args], input=data, capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"openssl {args[0]} failed: {result.stderr.decode(errors='replace').strip()[-500:]}"
        )
    return result.stdout


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def public_numbers(key: Path) -> tuple[bytes, bytes]:
    """(n, e) of the RSA key, big-endian."""
    text = _openssl(["rsa", "-in", str(key), "-noout", "-modulus"]).decode().strip()
    modulus = bytes.fromhex(text.removeprefix("Modulus="))
    details = _openssl(["rsa", "-in", str(key), "-noout", "-text"]).decode()
    exponent = int(next(line for line in details.splitlines() if "publicExponent" in line).split()[1])
    return modulus, exponent.to_bytes((exponent.bit_length() + 7) // 8, "big")


def key_id(key: Path) -> str:
    modulus, _ = public_numbers(key)
    return hashlib.sha256(modulus).hexdigest()[:32]


def jwks(key: Path) -> dict[str, Any]:
    modulus, exponent = public_numbers(key)
    return {
        "keys": [
            {
                "kty": "RSA",
                "alg": "RS256",
                "use": "sig",
                "kid": hashlib.sha256(modulus).hexdigest()[:32],
                "n": _b64url(modulus),
                "e": _b64url(exponent),
            }
        ]
    }


def discovery(port: int = L.OIDC_ISSUER_PORT) -> dict[str, Any]:
    """GitHub's discovery document, but with the JWKS on loopback."""
    return {
        "issuer": GITHUB_ISSUER,
        "jwks_uri": f"{base_url(port)}/.well-known/jwks",
        "subject_types_supported": ["public", "pairwise"],
        "response_types_supported": ["id_token"],
        "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "repository",
                             "repository_owner", "job_workflow_ref", "event_name", "ref_type"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid"],
    }  # fmt: skip


# ---------------------------------------------------------------- tokens


def claims(
    *,
    repository: str = REPOSITORY,
    ref: str = REF,
    audience: str = AUDIENCE,
    now: float | None = None,
    lifetime: int = LIFETIME,
    expired: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """Claims shaped as GitHub's for a push to ``ref`` of ``repository``
    (https://docs.github.com/en/actions/reference/security/oidc#oidc-token-claims)."""
    issued = int(time.time() if now is None else now)
    if expired:
        issued -= lifetime + 600  # expired ten minutes ago, beyond any clock-skew leeway
    owner = repository.split("/", 1)[0]
    workflow = f"{repository}/.github/workflows/build.yml@{ref}"
    found = {
        "iss": GITHUB_ISSUER,
        "aud": audience,
        "sub": f"repo:{repository}:ref:{ref}",
        "repository": repository,
        "repository_owner": owner,
        "ref": ref,
        "ref_type": "branch" if ref.startswith("refs/heads/") else "tag",
        "job_workflow_ref": workflow,
        "workflow_ref": workflow,
        "event_name": "push",
        "actor": "octocat",
        "run_id": "4242",
        "run_attempt": "1",
        "runner_environment": "github-hosted",
        "jti": str(uuid.uuid4()),
        "iat": issued,
        "nbf": issued - 5,
        "exp": issued + lifetime,
    }
    found.update(extra)
    return found


def mint(key: Path, body: dict[str, Any]) -> str:
    """An RS256 JWT of ``body``, signed with ``key``."""
    header = {"alg": "RS256", "typ": "JWT", "kid": key_id(key)}
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(body).encode())}"
    signature = _openssl(["dgst", "-sha256", "-sign", str(key)], signing_input.encode())
    return f"{signing_input}.{_b64url(signature)}"


def verify(key: Path, token: str, scratch: Path) -> bool:
    """Whether ``token``'s signature checks with ``key``'s public half (for the harness's tests)."""
    head, body, signature = token.split(".")
    pub, sig = scratch / "oidc-verify.pub", scratch / "oidc-verify.sig"
    pub.write_bytes(_openssl(["pkey", "-in", str(key), "-pubout"]))
    sig.write_bytes(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    result = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", str(pub), "-signature", str(sig)],
        input=f"{head}.{body}".encode(),
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


# ---------------------------------------------------------------- the apiserver's config


def render_authentication_config(shipped: str, discovery_at: str, ca_pem: str) -> str:
    """The shipped AuthenticationConfiguration with only ``issuer.discoveryURL`` and
    ``issuer.certificateAuthority`` added to GitHub's issuer; everything else as users get it."""
    import yaml  # only `up` renders it, from the venv

    doc = yaml.safe_load(shipped)
    matched = 0
    for authenticator in doc.get("jwt") or []:
        issuer = authenticator.get("issuer") or {}
        if issuer.get("url") == GITHUB_ISSUER:
            issuer["discoveryURL"] = discovery_at
            issuer["certificateAuthority"] = ca_pem
            matched += 1
    if matched != 1:
        raise ValueError(
            f"expected one jwt authenticator for {GITHUB_ISSUER} in the shipped config, found {matched}"
        )
    header = (
        "# Written by scripts/cluster from deploy/github-oidc/authentication-config.yaml: discovery and\n"
        "# its CA point at the loopback issuer (hack/cluster/oidc.py); nothing else differs.\n"
    )
    return header + yaml.safe_dump(doc, sort_keys=False)


def rendered(directory: Path, port: int = L.OIDC_ISSUER_PORT) -> str:
    return render_authentication_config(
        SHIPPED.read_text(), discovery_url(port), (directory / f"{CA}.crt").read_text()
    )


# ---------------------------------------------------------------- the server


def server(directory: Path, port: int) -> http.server.ThreadingHTTPServer:
    """Bound to 127.0.0.1:port (0: a free one), TLS with the issuer's serving certificate."""
    documents = {
        "/.well-known/openid-configuration": json.dumps(discovery(port)).encode(),
        "/.well-known/jwks": json.dumps(jwks(directory / SIGNING_KEY)).encode(),
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = documents.get(self.path.split("?", 1)[0])
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/json")
            payload = body or b'{"error":"not found"}'
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"oidc-issuer: {self.address_string()} {format % args}\n")

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(directory / f"{SERVING}.crt"), str(directory / f"{SERVING}.key"))
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    if port == 0:  # the documents name the port: make them again for the one we got
        port = httpd.server_address[1]
        documents["/.well-known/openid-configuration"] = json.dumps(discovery(port)).encode()
    return httpd


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve discovery and JWKS on 127.0.0.1")
    serve.add_argument("--pki", type=Path, required=True)
    serve.add_argument("--port", type=int, default=L.OIDC_ISSUER_PORT)
    mint_p = sub.add_parser("mint", help="print a token with GitHub-shaped claims")
    mint_p.add_argument("--pki", type=Path, required=True)
    mint_p.add_argument("--repository", default=REPOSITORY)
    mint_p.add_argument("--ref", default=REF)
    mint_p.add_argument("--audience", default=AUDIENCE)
    mint_p.add_argument("--lifetime", type=int, default=LIFETIME)
    mint_p.add_argument("--expired", action="store_true")
    render = sub.add_parser("render", help="print the apiserver's --authentication-config file")
    render.add_argument("--pki", type=Path, required=True)
    render.add_argument("--port", type=int, default=L.OIDC_ISSUER_PORT)
    args = parser.parse_args(argv)
    if args.command == "serve":
        ensure(args.pki)
        httpd = server(args.pki, args.port)
        sys.stderr.write(f"oidc-issuer: serving {base_url(httpd.server_address[1])} as {GITHUB_ISSUER}\n")
        httpd.serve_forever()
    elif args.command == "mint":
        body = claims(
            repository=args.repository,
            ref=args.ref,
            audience=args.audience,
            lifetime=args.lifetime,
            expired=args.expired,
        )
        print(mint(args.pki / SIGNING_KEY, body))
    else:
        print(rendered(args.pki, args.port), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
