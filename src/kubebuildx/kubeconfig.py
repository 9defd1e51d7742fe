"""Kubeconfig: read it, check it, mask every credential in it, and write the
one context we use to a 0600 file that buildx's kubernetes driver reads.

Nothing here ever formats a value of the document into a message: a
document value is named by its position and key ("user #1's tokenFile"),
never quoted, and YAML errors are reported by line and column only. A token
pasted into the wrong field must not reach an annotation or the summary.
Every string under ``users[]`` is masked before any check.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubebuildx import runner
from kubebuildx.errors import KubeconfigError
from kubebuildx.files import atomic_write

IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# kubectl's kubeconfigs are a few levels deep; deeper is not a kubeconfig, and would
# exhaust the recursion of the YAML dumper and of kubernetes' own loader.
MAX_DEPTH = 32
_FILE_KEYS = {
    "cluster": ("certificate-authority",),
    "user": ("client-certificate", "client-key", "tokenFile"),
}


@dataclass(frozen=True)
class Kubeconfig:
    """The one context we use, ready to be written."""

    context: str
    cluster: str
    server: str
    namespace: str
    document: Mapping[str, Any] = field(repr=False)
    in_cluster: bool = False

    def to_yaml(self) -> str:
        return yaml.safe_dump(dict(self.document), sort_keys=False)


def _decode(text: str) -> str:
    """Accept YAML, or base64 of YAML (how many users store the secret)."""
    stripped = text.strip()
    if not stripped:
        raise KubeconfigError("the kubeconfig is empty")
    if ":" in stripped.splitlines()[0] or stripped.startswith(("{", "---", "#")):
        return text
    try:
        decoded = base64.b64decode("".join(stripped.split()), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):  # binascii.Error, and non-ASCII text
        raise KubeconfigError(
            "the kubeconfig is neither YAML nor base64-encoded YAML",
            hint="store the file's content as the secret (or `base64 -w0 ~/.kube/config`)",
        ) from None
    runner.mask(stripped)
    return decoded


def _dict(value: Any) -> dict[str, Any]:
    """A mapping the document should hold there, or an empty one: a malformed
    kubeconfig must end in a KubeconfigError, not in an AttributeError."""
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _strings(value: Any) -> list[str]:
    """Every string value in ``value`` (not the keys: those are the schema's field names),
    walked iteratively, each shared node once."""
    found: list[str] = []
    stack, seen = [value], set()
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, (dict, list)) and id(item) not in seen:
            seen.add(id(item))
            stack.extend(item.values() if isinstance(item, dict) else item)
    return found


def flow_depth(text: str) -> int:
    """How deeply ``[`` and ``{`` nest in ``text``, quotes ignored: an over-estimate at worst.
    Checked before PyYAML, which takes seconds to recurse into a RecursionError."""
    level = deepest = 0
    for char in text:
        if char in "[{":
            level += 1
            deepest = max(deepest, level)
        elif char in "]}":
            level = max(0, level - 1)
    return deepest


def depth(value: Any) -> int:
    """How deeply mappings and lists nest in ``value``, walked iteratively (YAML aliases
    share nodes: each is walked once)."""
    deepest, stack, seen = 0, [(value, 1)], set()
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)) and id(item) not in seen:
            seen.add(id(item))
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def _mask_document(doc: Mapping[str, Any]) -> None:
    """Mask every string of every user (tokens, keys, exec env, auth-provider config, fields
    we do not know), and whatever a context holds where a user's name belongs."""
    for entry in _list(doc.get("users")):
        for key, value in _dict(entry).items():
            if key != "name":  # the name is how contexts refer to the user: an identifier
                for text in _strings(value):
                    runner.mask(text)
    for entry in _list(doc.get("contexts")):
        body = _dict(_dict(entry).get("context"))
        for key in ("user", "cluster"):
            if not isinstance(body.get(key), str):
                for text in _strings(body.get(key)):
                    runner.mask(text)


def _named(doc: Mapping[str, Any], kind: str, name: Any) -> tuple[int, dict[str, Any]] | None:
    """``(position, body)`` of the ``kind`` entry called ``name``; None when there is none."""
    if not isinstance(name, str) or not name:
        return None
    for index, entry in enumerate(_list(doc.get(kind + "s"))):
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(kind)
            return index, body if isinstance(body, dict) else {}
    return None


def _nth(kind: str, index: int) -> str:
    """How a message names a document entry: by position, never by a value."""
    return f"{kind} #{index + 1}"


def absolutize(text: str, base_dir: Path) -> str:
    """Make the file paths a kubeconfig file names absolute against its own
    folder, as kubectl reads them. Text that is not a YAML mapping is returned
    as it is, for ``parse`` to explain."""
    if flow_depth(text) > MAX_DEPTH:
        return text
    try:
        doc = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):
        return text
    if not isinstance(doc, dict) or depth(doc) > MAX_DEPTH:
        return text
    changed = False
    for kind in _FILE_KEYS:
        for entry in _list(doc.get(kind + "s")):
            body = entry.get(kind) if isinstance(entry, dict) else None
            if isinstance(body, dict):
                changed = _make_absolute(body, kind, base_dir) or changed
    return yaml.safe_dump(doc, sort_keys=False) if changed else text


def _make_absolute(body: dict[str, Any], kind: str, base_dir: Path) -> bool:
    """Rewrite ``body``'s relative file paths against ``base_dir``; True if any was."""
    changed = False
    for key in _FILE_KEYS[kind]:
        value = body.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            body[key] = str(base_dir / value)
            changed = True
    return changed


def merge_files(paths: Sequence[str], locate: Callable[[str], str] = str) -> str:
    """A ``KUBECONFIG`` list as kubectl merges it (client-go's ClientConfigLoadingRules): files
    that do not exist are skipped, the first file to set current-context wins, and of clusters,
    users and contexts of one name the first wins. A file's relative paths resolve against its
    folder, then every path goes through ``locate`` (to the container's view of it)."""
    merged: dict[str, Any] = {"apiVersion": "v1", "kind": "Config"}
    found = [p for p in paths if Path(p).is_file()]
    if not found:
        raise KubeconfigError(
            "$KUBECONFIG names no file that exists: " + ", ".join(paths),
            hint="write the kubeconfig under ${{ runner.temp }} in the earlier step, or set the "
            "kubeconfig input",
        )
    for path in found:
        try:
            doc = yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise KubeconfigError(f"$KUBECONFIG file {path} is not valid YAML{where}") from None
        if not isinstance(doc, dict):
            continue
        if doc.get("current-context") and not merged.get("current-context"):
            merged["current-context"] = doc["current-context"]
        for kind in ("cluster", "user", "context"):
            entries = merged.setdefault(kind + "s", [])
            names = {e.get("name") for e in entries}
            for entry in _list(doc.get(kind + "s")):
                if not isinstance(entry, dict) or entry.get("name") in names:
                    continue
                body = _dict(entry.get(kind))
                if kind in _FILE_KEYS:
                    _make_absolute(body, kind, Path(path).parent)
                    for key in _FILE_KEYS[kind]:
                        if isinstance(body.get(key), str):
                            body[key] = locate(body[key])
                entries.append({"name": entry.get("name"), kind: body})
                names.add(entry.get("name"))
    return yaml.safe_dump(merged, sort_keys=False)


def parse(
    text: str,
    *,
    context: str = "",
    base_dir: Path | None = None,
    own_user: bool = False,
    exec_runs: Callable[[str], bool] = lambda command: False,
) -> Kubeconfig:
    """Parse kubeconfig text and keep only ``context`` (default: current-context).

    With ``own_user`` (auth: github-oidc, a token input) the kubeconfig gives only the
    cluster: its user may be missing, and ``with_user`` replaces it; a document with no
    context and one cluster is that cluster. Otherwise a user with an exec plugin (or an
    auth-provider with a ``cmd-path``) is refused unless ``exec_runs`` says its command can run
    here: the cloud CLIs those name are not in the action's container."""
    source = _decode(text)
    try:
        doc = yaml.safe_load(source) if flow_depth(source) <= MAX_DEPTH else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise KubeconfigError(
            f"the kubeconfig is not valid YAML{where}",
            hint="check the secret holds a whole kubeconfig file (`kubectl config view --raw --minify`)",
        ) from None
    except RecursionError:
        doc = None
        deep = True
    else:
        deep = flow_depth(source) > MAX_DEPTH or depth(doc) > MAX_DEPTH
    if deep:
        raise KubeconfigError(
            f"the kubeconfig nests more than {MAX_DEPTH} levels deep, so it is not a kubeconfig",
            hint="store the output of `kubectl config view --raw --minify --flatten` in the secret",
        )
    if not isinstance(doc, dict):
        raise KubeconfigError(
            "the kubeconfig is not a YAML mapping", hint="store a whole kubeconfig file in the secret"
        )
    _mask_document(doc)
    if doc.get("kind") not in (None, "Config"):
        raise KubeconfigError(
            "the kubeconfig's kind is not Config", hint="store a kubeconfig, not another Kubernetes object"
        )

    clusters = [c for c in _list(doc.get("clusters")) if isinstance(c, dict)]
    if own_user and not _list(doc.get("contexts")) and len(clusters) == 1 and not context:
        # only the cluster, as a repository variable may hold it: its server and CA
        doc["contexts"] = [{"name": "kubebuildx", "context": {"cluster": clusters[0].get("name")}}]
        doc["current-context"] = "kubebuildx"
    contexts = [c for c in _list(doc.get("contexts")) if isinstance(c, dict)]
    pick = (
        f"set the kube-context input to one of its {len(contexts)} context(s) (`kubectl config get-contexts`)"
    )
    source_of_choice = "the kube-context input" if context else "the kubeconfig's current-context"
    chosen = context or doc.get("current-context") or ""
    if not isinstance(chosen, str):
        raise KubeconfigError("the kubeconfig's current-context is not a name", hint=pick)
    if not chosen:
        names = [c.get("name") for c in contexts]
        if len(names) == 1 and isinstance(names[0], str) and names[0]:
            chosen = names[0]
            source_of_choice = "the kubeconfig's only context"
        else:
            raise KubeconfigError("the kubeconfig has no current-context", hint=pick)
    found = _named(doc, "context", chosen)
    if found is None:
        raise KubeconfigError(f"{source_of_choice} names a context that is not in the kubeconfig", hint=pick)
    ctx_index, ctx = found
    here = _nth("context", ctx_index)
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    found = _named(doc, "cluster", cluster_name)
    if found is None:
        raise KubeconfigError(
            f"{here} ({source_of_choice}) names a cluster that is not in the kubeconfig's clusters",
            hint="export the kubeconfig with `kubectl config view --raw --minify` so the cluster is kept",
        )
    cluster_index, cluster = found
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise KubeconfigError(
            f"{_nth('cluster', cluster_index)} has no https:// server address",
            hint="set its server to the API server's URL, e.g. https://203.0.113.10:6443",
        )
    if not (
        cluster.get("certificate-authority-data")
        or cluster.get("certificate-authority")
        or cluster.get("insecure-skip-tls-verify")
        or server.startswith("http://")
    ):
        runner.warning(
            f"{_nth('cluster', cluster_index)} has no certificate-authority: the system CAs are used"
        )
    _check_files("cluster", cluster_index, cluster, base_dir)
    if own_user and (server.startswith("http://") or cluster.get("insecure-skip-tls-verify")):
        # The bearer token (a GitHub ID token accepted by every cluster with the same audience,
        # or the token input) would go in clear text, or to whoever answers TLS.
        raise KubeconfigError(
            f"{_nth('cluster', cluster_index)} has "
            + ("an http:// server" if server.startswith("http://") else "insecure-skip-tls-verify")
            + ": kubebuildx sends the auth or token input's bearer token only over verified TLS",
            hint="use the API server's https:// address and its CA in certificate-authority-data "
            "(kubectl config view --raw --minify --flatten)",
        )
    if own_user:
        return _finish(chosen, ctx, cluster_name, cluster)
    found = _named(doc, "user", user_name)
    if found is None:
        raise KubeconfigError(
            f"{here} ({source_of_choice}) names a user that is not in the kubeconfig's users",
            hint="export the kubeconfig with `kubectl config view --raw --minify` so the user is kept",
        )
    user_index, user = found
    who = _nth("user", user_index)
    if not any(
        user.get(k)
        for k in ("token", "tokenFile", "client-key-data", "client-key", "exec", "auth-provider", "password")
    ):
        raise KubeconfigError(
            f"{who} has no credentials (token, client certificate, or exec plugin)",
            hint="export the kubeconfig with `kubectl config view --raw --minify` so credentials are kept",
        )
    plugin = _dict(user.get("exec"))
    if user.get("exec") and not (isinstance(plugin.get("command"), str) and exec_runs(plugin["command"])):
        raise exec_plugin_error(who)
    # The Python client runs an auth-provider's cmd-path (gcp's, once gcloud's) while it loads.
    cmd_path = _dict(_dict(user.get("auth-provider")).get("config")).get("cmd-path")
    if cmd_path is not None and not (isinstance(cmd_path, str) and exec_runs(cmd_path)):
        raise exec_plugin_error(who)
    _check_files("user", user_index, user, base_dir)
    return _finish(chosen, ctx, cluster_name, cluster, (user_name, user))


def exec_plugin_error(who: str) -> KubeconfigError:
    """Before any network call: the plugin's command (aws, gke-gcloud-auth-plugin, kubelogin) is not
    in the action's container. The command is not named: it is a value of the document."""
    return KubeconfigError(
        f"{who} authenticates with an exec plugin, whose command cannot run where kubebuildx runs "
        "(the action's container has no cloud CLIs)",
        hint="either let the cluster trust GitHub's OIDC tokens and set `auth: github-oidc` "
        "(deploy/github-oidc/, no stored secret at all), or run the plugin's command in an earlier "
        "step (aws eks get-token, gcloud auth print-access-token, az account get-access-token) and "
        "pass its token as the `token` input; the kubeconfig then gives only the cluster",
    )


def _check_files(kind: str, index: int, body: dict[str, Any], base_dir: Path | None) -> None:
    _make_absolute(body, kind, base_dir or Path.cwd())
    for key in _FILE_KEYS[kind]:
        if key in body and (not isinstance(body[key], str) or not Path(body[key]).exists()):
            raise KubeconfigError(
                f"{_nth(kind, index)}'s {key} names a file that does not exist",
                hint="embed it with `kubectl config view --raw --minify --flatten`",
            )


def _finish(
    chosen: str,
    ctx: dict[str, Any],
    cluster_name: Any,
    cluster: dict[str, Any],
    user: tuple[Any, dict[str, Any]] | None = None,
) -> Kubeconfig:
    """The one context, its cluster and (unless the caller brings its own) its user."""
    namespace = str(ctx["namespace"]) if isinstance(ctx.get("namespace"), str) else ""
    minimal = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": chosen,
        "contexts": [{"name": chosen, "context": dict(ctx)}],
        "clusters": [{"name": cluster_name, "cluster": cluster}],
        "users": [{"name": user[0], "user": user[1]}] if user else [],
    }
    return Kubeconfig(chosen, str(cluster_name), str(cluster["server"]), namespace, minimal)


OWN_USER = "kubebuildx"


def with_user(config: Kubeconfig, user: Mapping[str, Any]) -> Kubeconfig:
    """``config`` with its user replaced by ``user`` (a tokenFile, a token): whatever the
    kubeconfig's user was (none, an exec plugin), it is neither written nor run."""
    doc = dict(config.document)
    contexts = [dict(entry) for entry in _list(doc.get("contexts"))]
    for entry in contexts:
        entry["context"] = {**_dict(entry.get("context")), "user": OWN_USER}
    doc["contexts"] = contexts
    doc["users"] = [{"name": OWN_USER, "user": dict(user)}]
    return Kubeconfig(
        config.context, config.cluster, config.server, config.namespace, doc, in_cluster=config.in_cluster
    )


def cluster_only(server: str, certificate_authority_data: str = "") -> Kubeconfig:
    """The ``server`` and ``certificate-authority-data`` inputs as a kubeconfig without a user."""
    cluster: dict[str, Any] = {"server": server}
    if certificate_authority_data:
        cluster["certificate-authority-data"] = certificate_authority_data.strip()
    else:
        runner.warning("server is given without certificate-authority-data: the system CAs are used")
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": OWN_USER,
        "contexts": [{"name": OWN_USER, "context": {"cluster": OWN_USER}}],
        "clusters": [{"name": OWN_USER, "cluster": cluster}],
        "users": [],
    }
    return Kubeconfig(OWN_USER, OWN_USER, server, "", doc)


def token_file(config: Kubeconfig) -> str | None:
    """The file the user's token is read from, if it is read from one."""
    for entry in _list(config.document.get("users")):
        value = _dict(_dict(entry).get("user")).get("tokenFile")
        if isinstance(value, str) and value:
            return value
    return None


def in_cluster(env: Mapping[str, str] | None = None, sa_dir: Path = IN_CLUSTER_DIR) -> Kubeconfig:
    """The service account of the pod we run in (a self-hosted runner).

    The token is referenced by file, not copied, so kubelet's rotation keeps working.
    """
    env = os.environ if env is None else env
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
    token = sa_dir / "token"
    if not host or not token.is_file():
        raise KubeconfigError(
            "no kubeconfig was given and this is not a Kubernetes pod with a service account",
            hint="set the kubeconfig input from a secret (`kubeconfig: ${{ secrets.KUBECONFIG }}`), or run "
            "on a self-hosted runner pod whose service account has the RBAC in deploy/rbac.yaml",
        )
    runner.mask(token.read_text().strip())
    namespace_file = sa_dir / "namespace"
    namespace = namespace_file.read_text().strip() if namespace_file.is_file() else ""
    server = f"https://{host}:{port}" if ":" not in host else f"https://[{host}]:{port}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "in-cluster",
        "contexts": [
            {
                "name": "in-cluster",
                "context": {
                    "cluster": "in-cluster",
                    "user": "in-cluster",
                    **({"namespace": namespace} if namespace else {}),
                },
            }
        ],
        "clusters": [
            {
                "name": "in-cluster",
                "cluster": {"server": server, "certificate-authority": str(sa_dir / "ca.crt")},
            }
        ],
        "users": [{"name": "in-cluster", "user": {"tokenFile": str(token)}}],
    }
    return Kubeconfig("in-cluster", "in-cluster", server, namespace, doc, in_cluster=True)


def write(config: Kubeconfig, directory: Path) -> Path:
    """Write atomically with mode 0600 (created so, never widened)."""
    path = directory / "kubeconfig"
    atomic_write(path, config.to_yaml())
    return path
