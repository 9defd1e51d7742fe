"""The Kubernetes API edge: one connection per run, one request helper that maps
transport and auth failures to errors the user can act on, and the few
queries the stages make (pods, events, exec). Responses are plain JSON
(dicts), so the decisions elsewhere stay pure and testable."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubebuildx import kubeconfig, oidc, runner
from kubebuildx.errors import ClusterError, InputError, KubeconfigError
from kubebuildx.inputs import Inputs

API_TIMEOUT = 10.0
ARCH_LABEL = "kubernetes.io/arch"
OS_LABEL = "kubernetes.io/os"
DEFAULT_NAMESPACE = "buildkit"
MAX_CONFIG_MAPS = 16  # buildx makes one per folder of the buildkitd config's files


@dataclass(frozen=True)
class Connection:
    """The cluster as this run reaches it: the kubeconfig (and the private copy
    buildx reads), the namespace of the builder, and one API client."""

    config: kubeconfig.Kubeconfig
    kubeconfig_path: Path
    namespace: str
    api: Any = field(repr=False, compare=False)
    credential: str = "kubeconfig"  # or github-oidc, or token (the input)

    @property
    def server(self) -> str:
        return self.config.server

    @property
    def context(self) -> str:
        return self.config.context


TOKEN_FILE = "token"  # noqa: S105 - a file name; in the run's private folder, next to the kubeconfig that names it


def exec_runs(command: str) -> bool:
    """Whether a kubeconfig's exec plugin can run here: its command is on PATH. The action's
    container has no cloud CLIs (aws, gke-gcloud-auth-plugin, kubelogin); the CLI's host may."""
    return shutil.which(command) is not None


def cluster_config(inputs: Inputs, env: Mapping[str, str]) -> kubeconfig.Kubeconfig:
    """The cluster and, unless auth or token bring their own, the user; nothing is fetched."""
    own_user = bool(inputs.auth or inputs.token)
    if inputs.server:
        return kubeconfig.cluster_only(inputs.server, inputs.certificate_authority_data)
    if inputs.kubeconfig.strip():
        return kubeconfig.parse(
            inputs.kubeconfig, context=inputs.kube_context, own_user=own_user, exec_runs=exec_runs
        )
    if inputs.kube_context:
        raise InputError(
            "kube-context is set but no kubeconfig was given",
            hint="set the kubeconfig input, or leave kube-context empty in-cluster",
        )
    return kubeconfig.in_cluster(env)


def connect(inputs: Inputs, env: Mapping[str, str], workdir: Path) -> Connection:
    """The kubeconfig input (or the in-cluster service account), written to a
    private file in ``workdir`` for buildx, and a client for it. With auth:
    github-oidc the user is a token file that a refresher keeps fresh; with a
    token input, that token."""
    config = cluster_config(inputs, env)
    if inputs.auth == oidc.AUTH_GITHUB_OIDC:
        path = workdir / TOKEN_FILE
        oidc.start_token_file(path, env, inputs.audience)
        config = kubeconfig.with_user(config, {"tokenFile": str(path)})
        runner.info(f"credentials: GitHub's OIDC ID token for audience {inputs.audience}, kept fresh")
    elif inputs.token:
        config = kubeconfig.with_user(config, {"token": inputs.token})
        runner.info("credentials: the token input")
    path = kubeconfig.write(config, workdir)
    namespace = inputs.namespace or config.namespace or DEFAULT_NAMESPACE
    runner.info(  # names from the kubeconfig: one line, never a workflow command of their own
        runner.one_line(
            f"context {config.context}, cluster {config.cluster} at {config.server}, namespace {namespace}"
        )
    )
    credential = inputs.auth or ("token" if inputs.token else "kubeconfig")
    api = api_client(str(path), kubeconfig.token_file(config))
    return Connection(config, path, namespace, api, credential)


def explain_connection_error(exc: BaseException, server: str) -> ClusterError:
    """Turn client errors into what the user can do; never quote credentials."""
    text = f"{type(exc).__name__}: {exc}"
    reason = getattr(exc, "reason", None)
    full = f"{text} {reason!r}"
    if "CERTIFICATE_VERIFY_FAILED" in full or "SSLCertVerificationError" in full or "SSLError" in full:
        return ClusterError(
            f"the API server at {server} presented a certificate that the kubeconfig's CA does not trust",
            hint="use the cluster's own CA in certificate-authority-data (kubectl config view --raw "
            "--minify --flatten), and check that the server address is the cluster's",
        )
    if (
        "Connection refused" in full
        or "Name or service not known" in full
        or "timed out" in full.lower()
        or "Max retries" in full
    ):
        return ClusterError(
            f"the API server at {server} is unreachable ({type(reason or exc).__name__})",
            hint="check the server address in the kubeconfig and that the runner can reach it "
            "(firewall, VPN, private endpoint)",
        )
    status = getattr(exc, "status", None)  # an ApiException's HTTP status: 0 for a transport error
    detail = f" (HTTP {status})" if isinstance(status, int) and status else ""
    return ClusterError(f"cannot talk to the API server at {server}: {type(exc).__name__}{detail}")


class Unauthorized(ClusterError):
    """The API server refused the credentials (401): ``unauthorized`` says why for each kind."""


def unauthorized(server: str, credential: str, audience: str = "") -> ClusterError:
    """A 401 explained for where the credential came from."""
    if credential == oidc.AUTH_GITHUB_OIDC:
        return ClusterError(
            f"the API server at {server} rejected the job's GitHub OIDC ID token (401 Unauthorized)",
            hint=f"the cluster must trust GitHub's issuer: an AuthenticationConfiguration "
            f"(deploy/github-oidc/authentication-config.yaml) with issuer url {oidc.GITHUB_ISSUER}, "
            f"audiences that list {audience or oidc.DEFAULT_AUDIENCE!r}, and claimValidationRules "
            "this repository passes; the API server's log names the check that failed",
        )
    if credential == "token":
        return ClusterError(
            f"the API server at {server} rejected the token input (401 Unauthorized)",
            hint="the token is expired or for another cluster: get it in the step just before this "
            "one (aws eks get-token, gcloud auth print-access-token, az account get-access-token)",
        )
    return explain_status(401, server, "")


def explain_status(status: int, server: str, what: str) -> ClusterError:
    if status == 401:
        return Unauthorized(
            f"the API server at {server} rejected the kubeconfig's credentials (401 Unauthorized)",
            hint="the token or client certificate is invalid or expired: create a new one "
            "(kubectl create token SERVICEACCOUNT -n NAMESPACE --duration=...) and update the secret",
        )
    return ClusterError(f"{what} failed with HTTP {status} from {server}")


def api_client(kubeconfig_path: str, token_file: str | None = None) -> Any:
    """A kubernetes ApiClient for the written kubeconfig, failing fast (no retries). The
    client reads a ``tokenFile`` once; with ``token_file`` every request reads it again, so
    a refreshed OIDC token (or a rotated service-account token) is used as soon as it is written."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig_path, client_configuration=configuration
        )
    except Exception as exc:  # noqa: BLE001 - bad base64, bad PEM, a missing file: all a broken kubeconfig
        # The exception's text may quote the data it choked on, so only its kind is shown.
        kind = f"{type(exc).__module__}.{type(exc).__name__}"
        raise KubeconfigError(
            f"the kubeconfig's certificates or keys cannot be loaded ({kind})",
            hint="certificate-authority-data, client-certificate-data and client-key-data must be base64 of "
            "PEM; export the kubeconfig again with `kubectl config view --raw --minify --flatten`",
        ) from None
    configuration.retries = 0
    if token_file:
        configuration.refresh_api_key_hook = lambda conf: _read_token(conf, token_file)  # type: ignore[assignment]
    return client.ApiClient(configuration)


def _read_token(configuration: Any, token_file: str) -> None:
    try:
        token = Path(token_file).read_text().strip()
    except OSError:  # deleted by cleanup: the last token stays, and the cluster judges it
        return
    if token:
        configuration.api_key["BearerToken"] = f"Bearer {token}"


def request(
    api: Any,
    method: str,
    path: str,
    server: str,
    what: str,
    body: Any = None,
    query: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One API call: (HTTP status, decoded JSON). 401 and transport failures
    raise with the fix; other statuses are the caller's to judge."""
    try:
        method_, url, headers, body_, post = api.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = api.call_api(
            method_, url, header_params=headers, body=body_, post_params=post, _request_timeout=API_TIMEOUT
        )
        data = resp.read()
    except Exception as exc:  # noqa: BLE001 - urllib3 raises many kinds; all mean "cannot connect"
        raise explain_connection_error(exc, server) from None
    if resp.status == 401:
        raise explain_status(resp.status, server, what)
    try:
        return resp.status, json.loads(data or b"null")
    except ValueError:
        return resp.status, None


def get_items(
    api: Any,
    path: str,
    server: str,
    what: str,
    query: dict[str, str] | None = None,
    *,
    strict: bool = False,
) -> list[dict[str, Any]]:
    """GET a list; an empty list when it is forbidden or absent, or with ``strict`` a
    ClusterError: where an empty list would mean "none left", not "cannot tell"."""
    status, body = request(api, "GET", path, server, what, query=query)
    if status != 200 or not isinstance(body, dict):
        if strict:
            raise ClusterError(f"{what} failed with HTTP {status} from {server}")
        return []
    items: list[dict[str, Any]] = body.get("items") or []
    return items


def list_pods(connection: Connection, app: str, *, strict: bool = False) -> list[dict[str, Any]]:
    """The pods of one builder node (buildx labels them ``app=<node>``)."""
    return get_items(
        connection.api,
        f"/api/v1/namespaces/{connection.namespace}/pods",
        connection.server,
        "listing builder pods",
        query={"labelSelector": f"app={app}"},
        strict=strict,
    )


def list_events(connection: Connection) -> list[dict[str, Any]]:
    """The namespace's events; empty when listing them is not allowed."""
    return get_items(
        connection.api,
        f"/api/v1/namespaces/{connection.namespace}/events",
        connection.server,
        "listing events",
    )


def exec_in_pod(api: Any, namespace: str, pod: str, argv: list[str]) -> str:
    """Run ``argv`` in a pod through the exec API (as buildx itself reaches
    BuildKit) and return its stdout."""
    from kubernetes import client
    from kubernetes.stream import stream

    # stream() swaps the client's call_api for a websocket one while it runs, and puts back
    # what it found: two execs side by side on a shared client can leave the websocket one in
    # place for good, and any call meanwhile goes through it (seen: a pod list answered
    # "Handshake status 200 OK"). A client of its own per exec shares nothing.
    own = client.ApiClient(api.configuration)
    try:
        out: str = stream(
            client.CoreV1Api(own).connect_get_namespaced_pod_exec,
            pod,
            namespace,
            command=argv,
            stderr=False,
            stdin=False,
            stdout=True,
            tty=False,
            _request_timeout=API_TIMEOUT,
        )
    finally:
        own.close()  # type: ignore[no-untyped-call]
    return out


def delete_builder(connection: Connection, namespace: str, nodes: Sequence[str], kind: str) -> list[str]:
    """Delete a builder's Deployments (``kind`` statefulset: StatefulSets) and the
    ConfigMaps buildx made next to them, as ``buildx rm`` does (buildx v0.36.1
    driver/kubernetes: ``Rm``; ConfigMaps are ``<node>-config``, ``<node>-config-1``...).
    Gone already counts as deleted. Returns what is left, each with the API's status."""
    left = []
    for node in nodes:
        path = f"/apis/apps/v1/namespaces/{namespace}/{kind}s/{node}"
        status, _ = request(connection.api, "DELETE", path, connection.server, f"deleting {kind} {node}")
        if status not in (200, 202, 404):
            left.append(f"{kind} {node} (HTTP {status})")
        for n in range(MAX_CONFIG_MAPS):
            name = f"{node}-config" + (f"-{n}" if n else "")
            path = f"/api/v1/namespaces/{namespace}/configmaps/{name}"
            status, _ = request(
                connection.api, "DELETE", path, connection.server, f"deleting configmap {name}"
            )
            if status == 404 and n:  # "config" holds the top folder's files, "config-N" the others
                break
            if status not in (200, 202, 404):
                left.append(f"configmap {name} (HTTP {status})")
                break
    return left
