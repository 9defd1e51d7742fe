"""Kubeconfig: parse, choose the context, check it, mask every credential, never quote one.

Every credential in tests/fixtures/kubeconfig/ is fake and says so.
"""

from __future__ import annotations

import base64
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kubebuildx import kubeconfig, runner
from kubebuildx.errors import KubeconfigError

FIXTURES = Path(__file__).parent.parent / "fixtures" / "kubeconfig"
TOKEN = "FAKE-TOKEN-ci-bot-kubebuildx-unit-test-0001"
AWS_SECRET = "FAKE-AWS-SECRET-kubebuildx-unit-test-0003"
ID_TOKEN = "FAKE-ID-TOKEN-kubebuildx-unit-test-0004"
REFRESH = "FAKE-REFRESH-kubebuildx-unit-test-0005"
SECRET_WORDS = ("FAKE-TOKEN", "FAKE-AWS", "FAKE-ID", "FAKE-REFRESH", "not-a-key", "FAKE-PASSWORD")


@pytest.fixture(autouse=True)
def _fresh_masks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.setattr(runner, "_masked", set())
    yield


def text(name: str) -> str:
    return (FIXTURES / name).read_text()


def doc(name: str) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(text(name))


def dump(d: dict) -> str:  # type: ignore[type-arg]
    return yaml.safe_dump(d)


def assert_no_secret(exc: BaseException) -> None:
    shown = f"{exc}\n{exc!r}\n{getattr(exc, 'hint', '')}"
    for word in SECRET_WORDS:
        assert word not in shown


# ---- parsing and choosing ------------------------------------------------------------------


def test_current_context() -> None:
    config = kubeconfig.parse(text("token.yaml"))
    assert (config.context, config.cluster, config.server, config.namespace) == (
        "ci",
        "lab",
        "https://10.0.0.1:6443",
        "builds",
    )
    assert config.in_cluster is False
    minimal = yaml.safe_load(config.to_yaml())
    assert minimal["current-context"] == "ci"
    assert [c["name"] for c in minimal["contexts"]] == ["ci"]
    assert [c["name"] for c in minimal["clusters"]] == ["lab"]
    assert [u["name"] for u in minimal["users"]] == ["ci-bot"]  # the admin's key is not carried along
    assert minimal["users"][0]["user"]["token"] == TOKEN
    assert "admin" not in config.to_yaml()


def test_kube_context_chooses() -> None:
    config = kubeconfig.parse(text("token.yaml"), context="admin")
    assert (config.context, config.namespace) == ("admin", "")
    assert [u["name"] for u in yaml.safe_load(config.to_yaml())["users"]] == ["admin"]


def test_base64_kubeconfig() -> None:
    encoded = base64.b64encode(text("token.yaml").encode()).decode()
    assert kubeconfig.parse(encoded).server == "https://10.0.0.1:6443"
    wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)) + "\n"
    assert kubeconfig.parse(wrapped).context == "ci"
    assert encoded in runner._masked  # the encoded form is a credential too


def test_single_context_without_current_context() -> None:
    d = doc("token.yaml")
    del d["current-context"]
    d["contexts"] = d["contexts"][1:]
    assert kubeconfig.parse(dump(d)).context == "admin"


def test_no_current_context_and_several_lists_them() -> None:
    d = doc("token.yaml")
    del d["current-context"]
    with pytest.raises(KubeconfigError) as exc:
        kubeconfig.parse(dump(d))
    assert "current-context" in str(exc.value)
    assert "kube-context input to one of its 2 context(s)" in str(exc.value)
    assert "admin" not in str(exc.value)  # names come from the document: never quoted


def test_unknown_context_says_which_input() -> None:
    with pytest.raises(KubeconfigError) as exc:
        kubeconfig.parse(text("token.yaml"), context="prod")
    assert "the kube-context input names a context that is not in the kubeconfig" in str(exc.value)
    assert "one of its 2 context(s)" in str(exc.value)


def _broken(change: str) -> str:
    d = doc("token.yaml")
    ci_user = d["users"][0]["user"]
    lab = d["clusters"][0]["cluster"]
    if change == "no cluster":
        d["clusters"] = []
    elif change == "no user":
        d["users"] = d["users"][1:]
    elif change == "context without cluster":
        del d["contexts"][0]["context"]["cluster"]
    elif change == "no credentials":
        del ci_user["token"]
        ci_user["username"] = "someone"
    elif change == "no server":
        del lab["server"]
    elif change == "server without scheme":
        lab["server"] = "10.0.0.1:6443"
    elif change == "kind":
        d["kind"] = "Secret"
    return dump(d)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("no cluster", "context #1 (the kubeconfig's current-context) names a cluster that is not in"),
        ("context without cluster", "context #1 (the kubeconfig's current-context) names a cluster"),
        ("no user", "context #1 (the kubeconfig's current-context) names a user that is not in"),
        ("no credentials", "user #1 has no credentials"),
        ("no server", "cluster #1 has no https:// server"),
        ("server without scheme", "cluster #1 has no https:// server"),
        ("kind", "the kubeconfig's kind is not Config"),
    ],
)
def test_incomplete_kubeconfigs(change: str, words: str) -> None:
    with pytest.raises(KubeconfigError) as exc:
        kubeconfig.parse(_broken(change))
    assert words in str(exc.value)
    assert_no_secret(exc.value)


@pytest.mark.parametrize(
    "source",
    [
        "",
        "   \n",
        "not-base64-and-not-yaml!",
        base64.b64encode(b"\xff\xfe\x00binary").decode(),
        "just a sentence without colons",
        "- a\n- list",
        "apiVersion: v1\nkind: Config\nusers: [unclosed",
    ],
)
def test_not_a_kubeconfig(source: str) -> None:
    with pytest.raises(KubeconfigError):
        kubeconfig.parse(source)


# ---- never a secret in a message -----------------------------------------------------------


def _invalid_around_token() -> list[str]:
    good = text("token.yaml")
    return [
        # a tab where YAML wants spaces, on the token's own line
        good.replace(f"    token: {TOKEN}", f"\ttoken: {TOKEN}"),
        # an unclosed quote that swallows the token
        good.replace(f"token: {TOKEN}", f'token: "{TOKEN}'),
        # a mapping where a scalar should be
        good.replace(f"token: {TOKEN}", f"token: {TOKEN}: x"),
        # a sequence where the token's mapping goes on
        good.replace(f"token: {TOKEN}", f"token: {TOKEN}\n    - x"),
        # a pasted token instead of a kubeconfig, raw and as base64
        TOKEN,
        base64.b64encode(TOKEN.encode()).decode(),
        # a kubeconfig whose lists hold odd things
        f"apiVersion: v1\nkind: Config\ncurrent-context: a\nusers:\n- {TOKEN}\n",
        f"apiVersion: v1\nkind: Config\ncurrent-context: a\nusers:\n- name: u\n  user: {TOKEN}\n",
        f"apiVersion: v1\nkind: Config\ncurrent-context: a\nusers:\n- name: u\n  user:\n"
        f"    auth-provider: {TOKEN}\n    exec: {TOKEN}\n",
        f"apiVersion: v1\nkind: Config\ncurrent-context: {{token: {TOKEN}}}\n",
        f"apiVersion: v1\nkind: Config\nclusters: {TOKEN}\ncontexts: {TOKEN}\nusers: {TOKEN}\n",
        f"{TOKEN}: {TOKEN}\n",
        f"kind: {TOKEN}\n",
    ]


@pytest.mark.parametrize("source", _invalid_around_token())
def test_no_secret_in_any_error(source: str) -> None:
    """Whatever is wrong, the error is a KubeconfigError (never a traceback) and quotes no credential."""
    with pytest.raises(KubeconfigError) as exc:
        kubeconfig.parse(source)
    assert_no_secret(exc.value)


def test_yaml_error_gives_the_position() -> None:
    source = text("token.yaml").replace(f"    token: {TOKEN}", f"\ttoken: {TOKEN}")
    with pytest.raises(KubeconfigError) as exc:
        kubeconfig.parse(source)
    assert "not valid YAML at line" in str(exc.value)
    assert exc.value.__cause__ is None
    assert exc.value.__suppress_context__


# ---- masking -------------------------------------------------------------------------------


def test_every_credential_is_masked_even_of_other_users() -> None:
    kubeconfig.parse(text("token.yaml"))
    admin = doc("token.yaml")["users"][1]["user"]
    assert TOKEN in runner._masked
    assert admin["client-key-data"] in runner._masked
    assert admin["client-certificate-data"] in runner._masked
    assert runner.redact(f"Authorization: Bearer {TOKEN}") == "Authorization: Bearer ***"


def test_exec_env_and_auth_provider_secrets_are_masked() -> None:
    with pytest.raises(KubeconfigError) as exc:
        kubeconfig.parse(text("exec.yaml"))
    assert {AWS_SECRET, ID_TOKEN, REFRESH} <= runner._masked
    message = str(exc.value)
    assert "user #1 authenticates with an exec plugin" in message
    assert "FAKE" not in message and "'aws'" not in message


def test_an_exec_plugin_is_refused_naming_both_ways_out() -> None:
    """Before any network call: the action's container has no aws, gcloud or kubelogin."""
    with pytest.raises(KubeconfigError) as exc:
        kubeconfig.parse(text("exec.yaml"))
    message = str(exc.value)
    assert "auth: github-oidc" in message
    assert "`token` input" in message
    assert "aws eks get-token" in message  # the host step, as the README shows it
    assert exc.value.exit_code == 3


def test_an_exec_plugin_whose_command_runs_here_is_kept() -> None:
    """The CLI on a machine with the plugin installed (kube.exec_runs decides)."""
    seen: list[str] = []
    config = kubeconfig.parse(text("exec.yaml"), exec_runs=lambda command: seen.append(command) or True)
    assert seen == ["aws"]
    assert config.document["users"][0]["user"]["exec"]["command"] == "aws"


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ({"tokenFile": "/run/kbx/token"}, {"tokenFile": "/run/kbx/token"}),
        ({"token": "FAKE-TOKEN-input-kubebuildx-0010"}, {"token": "FAKE-TOKEN-input-kubebuildx-0010"}),
    ],
    ids=["github-oidc", "token input"],
)
def test_an_exec_plugin_is_no_problem_when_auth_or_token_replace_the_user(
    user: dict[str, str], expected: dict[str, str]
) -> None:
    config = kubeconfig.with_user(kubeconfig.parse(text("exec.yaml"), own_user=True), user)
    doc = config.document
    assert doc["users"] == [{"name": "kubebuildx", "user": expected}]
    assert doc["contexts"][0]["context"]["user"] == "kubebuildx"
    assert doc["clusters"][0]["cluster"]["server"] == "https://ABCDEF.gr7.eu-west-1.eks.amazonaws.com"
    assert "exec" not in config.to_yaml() and AWS_SECRET not in config.to_yaml()
    assert kubeconfig.token_file(config) == expected.get("tokenFile")


def test_a_kubeconfig_with_only_the_cluster_will_do_with_auth() -> None:
    """What a repository variable holds: the server and the CA, no user, no context."""
    cluster_only = (
        "clusters:\n- name: prod\n  cluster:\n    server: https://203.0.113.10:6443\n"
        "    certificate-authority-data: LS0tLS1CRUdJTi0tLS0t\n"
    )
    config = kubeconfig.parse(cluster_only, own_user=True)
    assert (config.cluster, config.server, config.namespace) == ("prod", "https://203.0.113.10:6443", "")
    with pytest.raises(KubeconfigError, match="no current-context"):
        kubeconfig.parse(cluster_only)


def test_a_context_whose_user_is_missing_will_do_with_auth() -> None:
    d = doc("token.yaml")
    d["users"] = []
    config = kubeconfig.with_user(kubeconfig.parse(dump(d), own_user=True), {"tokenFile": "/t"})
    assert config.document["users"] == [{"name": "kubebuildx", "user": {"tokenFile": "/t"}}]
    with pytest.raises(KubeconfigError, match="names a user that is not in"):
        kubeconfig.parse(dump(d))


def test_server_and_ca_inputs_make_a_kubeconfig_without_a_user() -> None:
    config = kubeconfig.cluster_only("https://203.0.113.10:6443", "LS0tLS1CRUdJTi0tLS0t\n")
    assert config.document["clusters"] == [
        {
            "name": "kubebuildx",
            "cluster": {
                "server": "https://203.0.113.10:6443",
                "certificate-authority-data": "LS0tLS1CRUdJTi0tLS0t",
            },
        }
    ]
    assert config.document["users"] == []


def test_password_is_masked() -> None:
    d = doc("token.yaml")
    d["users"][0]["user"] = {"username": "ci", "password": "FAKE-PASSWORD-kubebuildx-0006"}
    kubeconfig.parse(dump(d))
    assert "FAKE-PASSWORD-kubebuildx-0006" in runner._masked


def test_masks_are_sent_to_the_runner(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    kubeconfig.parse(text("token.yaml"))
    assert f"::add-mask::{TOKEN}" in capsys.readouterr().out


# ---- files ---------------------------------------------------------------------------------


def test_relative_certificate_files_resolve_against_base_dir(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    for name in ("ca.crt", "client.crt", "client.key"):
        (certs / name).write_text("fake")
    config = kubeconfig.parse(text("files.yaml"), base_dir=tmp_path)
    minimal = yaml.safe_load(config.to_yaml())
    assert minimal["clusters"][0]["cluster"]["certificate-authority"] == str(certs / "ca.crt")
    assert minimal["users"][0]["user"]["client-certificate"] == str(certs / "client.crt")
    assert minimal["users"][0]["user"]["client-key"] == str(certs / "client.key")


def test_missing_certificate_file(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError) as exc:
        kubeconfig.parse(text("files.yaml"), base_dir=tmp_path)
    assert "cluster #1's certificate-authority names a file that does not exist" in str(exc.value)
    assert str(tmp_path) not in str(exc.value)  # a path is a document value: never quoted
    assert "--flatten" in str(exc.value)


def test_no_certificate_authority_warns(capsys: pytest.CaptureFixture[str]) -> None:
    d = doc("token.yaml")
    del d["clusters"][0]["cluster"]["certificate-authority-data"]
    kubeconfig.parse(dump(d))
    assert "no certificate-authority" in capsys.readouterr().err


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_is_0600_and_holds_only_the_context(tmp_path: Path) -> None:
    config = kubeconfig.parse(text("token.yaml"))
    path = kubeconfig.write(config, tmp_path / "work")
    assert path == tmp_path / "work" / "kubeconfig"
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert yaml.safe_load(path.read_text()) == yaml.safe_load(config.to_yaml())
    assert sorted(p.name for p in path.parent.iterdir()) == ["kubeconfig"]


def test_write_replaces_a_wider_file(tmp_path: Path) -> None:
    (tmp_path / "kubeconfig").write_text("old")
    (tmp_path / "kubeconfig").chmod(0o644)
    path = kubeconfig.write(kubeconfig.parse(text("token.yaml")), tmp_path)
    assert _mode(path) == 0o600


def test_repr_holds_no_credential() -> None:
    assert TOKEN not in repr(kubeconfig.parse(text("token.yaml")))


# ---- in-cluster ----------------------------------------------------------------------------


@pytest.fixture
def sa_dir(tmp_path: Path) -> Path:
    d = tmp_path / "serviceaccount"
    d.mkdir()
    (d / "token").write_text("FAKE-TOKEN-service-account-kubebuildx-0007\n")
    (d / "ca.crt").write_text("fake ca")
    (d / "namespace").write_text("runners\n")
    return d


def test_in_cluster(sa_dir: Path) -> None:
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    config = kubeconfig.in_cluster(env, sa_dir=sa_dir)
    assert (config.context, config.server, config.namespace, config.in_cluster) == (
        "in-cluster",
        "https://10.96.0.1:443",
        "runners",
        True,
    )
    written = config.to_yaml()
    assert "FAKE-TOKEN-service-account" not in written  # referenced by file, so rotation keeps working
    user = yaml.safe_load(written)["users"][0]["user"]
    assert user == {"tokenFile": str(sa_dir / "token")}
    cluster = yaml.safe_load(written)["clusters"][0]["cluster"]
    assert cluster["certificate-authority"] == str(sa_dir / "ca.crt")
    assert "FAKE-TOKEN-service-account-kubebuildx-0007" in runner._masked


def test_in_cluster_ipv6_and_no_namespace(sa_dir: Path) -> None:
    (sa_dir / "namespace").unlink()
    config = kubeconfig.in_cluster({"KUBERNETES_SERVICE_HOST": "fd00::1"}, sa_dir=sa_dir)
    assert config.server == "https://[fd00::1]:443"
    assert config.namespace == ""
    assert "namespace" not in yaml.safe_load(config.to_yaml())["contexts"][0]["context"]


@pytest.mark.parametrize("env", [{}, {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}])
def test_not_in_a_pod(env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError) as exc:
        kubeconfig.in_cluster(env, sa_dir=tmp_path / "missing")
    assert "kubeconfig" in str(exc.value)
    assert "deploy/rbac.yaml" in str(exc.value)


def test_undecodable_certificate_data_is_a_kubeconfig_error_not_a_traceback(tmp_path: Path) -> None:
    from kubebuildx import kube
    from kubebuildx.errors import KubeconfigError

    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://h:6443',"
        " certificate-authority-data: 'not!base64'}}]\n"
        "users: [{name: u, user: {client-certificate-data: AAAA, client-key-data: FAKEKEYDATA0123456789}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    with pytest.raises(KubeconfigError) as exc:
        kube.api_client(str(path))
    assert "base64 of PEM" in str(exc.value)
    assert "FAKEKEYDATA" not in str(exc.value) and "not!base64" not in str(exc.value)


# ---- $KUBECONFIG from an earlier step ----------------------------------------------------


def kubeconfig_file(tmp_path: Path, name: str, context: str, server: str, **user: str) -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": context,
                "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
                "clusters": [
                    {"name": context, "cluster": {"server": server, "certificate-authority": "ca.crt"}}
                ],
                "users": [{"name": context, "user": user or {"token": TOKEN}}],
            }
        )
    )
    (path.parent / "ca.crt").write_text("ca")
    return str(path)


def test_merge_files_as_kubectl_merges_a_list(tmp_path: Path) -> None:
    """The first file to set current-context wins; so does the first entry of a name."""
    first = kubeconfig_file(tmp_path / "a", "config", "ci", "https://first.example:6443")
    second = kubeconfig_file(tmp_path / "b", "config", "ci", "https://second.example:6443")
    other = kubeconfig_file(tmp_path / "c", "config", "other", "https://other.example:6443")
    merged = yaml.safe_load(kubeconfig.merge_files([str(tmp_path / "missing"), first, second, other]))
    assert merged["current-context"] == "ci"
    assert [c["name"] for c in merged["clusters"]] == ["ci", "other"]
    assert merged["clusters"][0]["cluster"]["server"] == "https://first.example:6443"
    # each file's relative paths against its own folder
    assert merged["clusters"][1]["cluster"]["certificate-authority"] == str(tmp_path / "c" / "ca.crt")
    config = kubeconfig.parse(yaml.safe_dump(merged))
    assert (config.context, config.server) == ("ci", "https://first.example:6443")
    assert TOKEN in runner._masked


def test_merge_files_maps_every_file_path(tmp_path: Path) -> None:
    path = kubeconfig_file(tmp_path, "config", "ci", "https://k.example:6443")
    merged = yaml.safe_load(kubeconfig.merge_files([path], lambda p: "/container" + p))
    assert merged["clusters"][0]["cluster"]["certificate-authority"] == f"/container{tmp_path}/ca.crt"


def test_merge_files_with_no_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError, match=r"\$KUBECONFIG names no file that exists: /nope/a, /nope/b"):
        kubeconfig.merge_files(["/nope/a", "/nope/b"])


def test_merge_files_reports_yaml_by_position_only(tmp_path: Path) -> None:
    bad = tmp_path / "config"
    bad.write_text(f"users:\n- name: x\n  user: {{token: {TOKEN}\n")
    with pytest.raises(KubeconfigError, match="not valid YAML at line") as caught:
        kubeconfig.merge_files([str(bad)])
    assert_no_secret(caught.value)


# ---- hostile documents: named by position, masked, refused without a traceback ----------------

PASTED = "FAKE-TOKEN-pasted-in-the-wrong-field-0008"


def _hostile(change: str) -> str:
    d = doc("token.yaml")
    if change == "token pasted into tokenFile":
        d["users"][0]["user"] = {"tokenFile": PASTED}
    elif change == "context's user is a mapping holding a token":
        d["contexts"][0]["context"]["user"] = {"token": PASTED}
    elif change == "token in a field we do not know":
        d["users"][0]["user"] = {"token-of-the-future": PASTED}
    elif change == "token as the current-context":
        d["current-context"] = PASTED
    elif change == "token as the cluster's server":
        d["users"][0]["user"]["extra"] = [{"deep": PASTED}]
        d["clusters"][0]["cluster"]["server"] = PASTED
    elif change == "token as the exec command":
        d["users"][0]["user"] = {"exec": {"command": PASTED, "args": [PASTED]}}
    return dump(d)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("token pasted into tokenFile", "user #1's tokenFile names a file that does not exist"),
        (
            "context's user is a mapping holding a token",
            "context #1 (the kubeconfig's current-context) names a user",
        ),
        ("token in a field we do not know", "user #1 has no credentials"),
        ("token as the current-context", "the kubeconfig's current-context names a context that is not in"),
        ("token as the cluster's server", "cluster #1 has no https:// server address"),
    ],
)
def test_document_values_are_named_by_position_never_quoted(change: str, words: str) -> None:
    with pytest.raises(KubeconfigError) as exc:
        kubeconfig.parse(_hostile(change))
    assert words in str(exc.value)
    assert PASTED not in f"{exc.value}\n{exc.value!r}\n{exc.value.hint}"


@pytest.mark.parametrize(
    "change",
    [
        "token pasted into tokenFile",
        "context's user is a mapping holding a token",
        "token in a field we do not know",
        "token as the cluster's server",
        "token as the exec command",
    ],
)
def test_every_string_of_a_user_is_masked_before_any_check(change: str) -> None:
    with pytest.raises(KubeconfigError):
        kubeconfig.parse(_hostile(change))
    assert PASTED in runner._masked


def test_the_exec_error_names_no_value() -> None:
    with pytest.raises(KubeconfigError) as exc:
        kubeconfig.parse(_hostile("token as the exec command"))
    assert "user #1 authenticates with an exec plugin" in str(exc.value)
    assert PASTED not in str(exc.value)


def _nested(levels: int) -> str:
    return "users:\n- user:\n    x: " + "[" * levels + "]" * levels + "\n"


@pytest.mark.parametrize(
    "text",
    [
        _nested(100),  # deeper than any kubeconfig
        _nested(5000),  # deeper than Python's recursion limit: PyYAML's composer recurses
        "a: " + "{b: " * 3000 + "c" + "}" * 3000,
        base64.b64encode(_nested(5000).encode()).decode(),
        "users:\n  - " + "- " * 1100 + "b\n",  # block style: PyYAML's composer recurses
    ],
    ids=["100 levels", "5000 levels", "5000 mappings", "5000 levels in base64", "1100 block sequences"],
)
def test_deeply_nested_documents_are_refused(text: str) -> None:
    with pytest.raises(KubeconfigError, match="nests more than 32 levels"):
        kubeconfig.parse(text)
    assert kubeconfig.absolutize(text, Path("/")) == text


def test_aliases_are_walked_once() -> None:
    """A billion-laughs document: every level refers to the one below nine times."""
    lines = ['a0: &a0 ["FAKE-laugh-kubebuildx"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 12)]
    text = "\n".join(lines) + "\nusers:\n- name: u\n  user:\n    token: *a11\n"
    with pytest.raises(KubeconfigError):
        kubeconfig.parse(text)
    assert "FAKE-laugh-kubebuildx" in runner._masked


@pytest.mark.parametrize(
    "text",
    [
        "users: 3\ncontexts: x\nclusters: {a: b}\ncurrent-context: ci\n",
        "users: [1, [2], null]\ncontexts: [[], {context: 3}, {name: ci, context: []}]\ncurrent-context: ci\n",
        "current-context: [1]\n",
        "kind: [Config]\n",
        "? [a, b]\n: c\n",
        "!!python/object:os.system {}\n",
        "contexts: [{name: ci, context: {cluster: lab, user: u, namespace: [x]}}]\ncurrent-context: ci\n"
        "clusters: [{name: lab, cluster: {server: 'https://x', certificate-authority: 5}}]\n"
        "users: [{name: u, user: {token: FAKE-TOKEN-x}}]\n",
    ],
)
def test_malformed_documents_end_in_a_kubeconfig_error(text: str) -> None:
    with pytest.raises(KubeconfigError):
        kubeconfig.parse(text)


@pytest.mark.parametrize(
    ("cluster", "what"),
    [
        ("    server: http://203.0.113.10:8080\n", "an http:// server"),
        (
            "    server: https://203.0.113.10:6443\n    insecure-skip-tls-verify: true\n",
            "insecure-skip-tls-verify",
        ),
    ],
)
def test_auth_or_token_never_sends_its_bearer_token_without_verified_tls(cluster: str, what: str) -> None:
    """The ID token is accepted by every cluster with the same audience: not in clear text."""
    cluster_only = "clusters:\n- name: prod\n  cluster:\n" + cluster
    with pytest.raises(KubeconfigError, match=what) as exc:
        kubeconfig.parse(cluster_only, own_user=True)
    assert "certificate-authority-data" in exc.value.hint


def test_an_auth_provider_command_is_refused_like_an_exec_plugin() -> None:
    """The Python client runs an auth-provider's cmd-path while it loads the kubeconfig."""
    d = doc("token.yaml")
    d["users"][0]["user"] = {
        "auth-provider": {"name": "gcp", "config": {"cmd-path": "/opt/gcloud/bin/gcloud"}}
    }
    with pytest.raises(KubeconfigError, match="exec plugin") as exc:
        kubeconfig.parse(dump(d))
    assert "auth: github-oidc" in exc.value.hint and "token" in exc.value.hint
    assert kubeconfig.parse(dump(d), exec_runs=lambda command: True).server
