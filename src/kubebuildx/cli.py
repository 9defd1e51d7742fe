"""The ``kubebuildx`` command: one entry point for the CLI and the action.

Every build input is also a flag of the same name (``--build-args``,
``--driver-opts``...; list flags may repeat), so the CLI and the action share
one parser of inputs. ``main`` is the only place that catches our errors: it
prints them as an annotation, adds them to the step summary and exits with the
error's code. Anything else that escapes is a bug: ``main`` names its type and
where it happened, never its message (which may quote a document) nor a traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from kubebuildx import __version__, cache, cancel, kubeconfig, runner
from kubebuildx.action_spec import INPUTS
from kubebuildx.errors import InputError, KubebuildxError
from kubebuildx.inputs import parse_inputs

_COMMON = {
    "kubeconfig",
    "kube-context",
    "namespace",
    "auth",
    "audience",
    "token",
    "server",
    "certificate-authority-data",
    "builder",
    "platforms",
    "driver-opts",
    "buildkitd-flags",
    "buildkitd-config",
    "buildkitd-config-inline",
    "cleanup",
    "qemu-fallback",
}

# `kubebuildx merge` needs no cluster: the registry inputs and what names the image.
_MERGE = {
    "builder",
    "platforms",
    "tags",
    "annotations",
    "image",
    "digests",
    "registry",
    "username",
    "password",
    "docker-config",
    "buildkitd-config",  # its [registry."host"] settings (http, insecure, mirrors) reach imagetools
    "buildkitd-config-inline",
}


_BOOL_WORDS = frozenset({"true", "True", "TRUE", "false", "False", "FALSE"})


def normalize_bool_flags(argv: Sequence[str], flags: frozenset[str]) -> list[str]:
    """``--push ./app`` means push=true and context ./app: a bare boolean
    input flag takes the next word only when that word is true or false."""
    out = []
    for i, word in enumerate(argv):
        following = argv[i + 1] if i + 1 < len(argv) else None
        out.append(f"{word}=true" if word in flags and following not in _BOOL_WORDS else word)
    return out


class _Parser(argparse.ArgumentParser):
    """Normalises its own boolean input flags (``nargs='?'``, ``const='true'``) before parsing."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        words = list(sys.argv[1:] if args is None else args)
        flags = frozenset(
            opt
            for action in self._actions
            if action.nargs == "?" and action.const == "true"
            for opt in action.option_strings
        )
        return super().parse_known_args(normalize_bool_flags(words, flags), namespace)


def _add_input_flags(parser: argparse.ArgumentParser, names: set[str] | None = None) -> None:
    for spec in INPUTS:
        if names is not None and spec.name not in names:
            continue
        if spec.name == "context":
            continue
        if spec.name == "kubeconfig":
            parser.add_argument(
                "--kubeconfig",
                metavar="PATH",
                help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)",
            )
            continue
        kwargs: dict[str, object] = {"dest": "input_" + spec.name, "help": spec.description}
        if spec.name == "token":  # a file, so that the token is never on a command line
            kwargs.update(metavar="PATH", help="file holding a bearer token for the cluster")
        elif spec.name == "docker-config":
            kwargs.update(
                metavar="PATH", help="docker config.json file whose auths are used to push and merge"
            )
        elif spec.kind == "list":
            kwargs.update(action="append", metavar="VALUE")
        elif spec.kind == "bool":
            kwargs.update(nargs="?", const="true", metavar="true|false")
        else:
            kwargs.update(metavar="VALUE")
        parser.add_argument(f"--{spec.name}", **kwargs)  # type: ignore[arg-type]


def _kubeconfig_text(path: str | None) -> str:
    """The CLI's kubeconfig: a file path, $KUBECONFIG, ~/.kube/config; empty means in-cluster."""
    candidates = (
        [path]
        if path
        else [*os.environ.get("KUBECONFIG", "").split(os.pathsep), str(Path.home() / ".kube" / "config")]
    )
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            text = read_text_file(Path(candidate), "kubeconfig")
            runner.mask(text.strip())
            # kubectl resolves relative certificate paths against the kubeconfig's folder
            return kubeconfig.absolutize(text, Path(candidate).resolve().parent)
        if path:
            raise InputError(f"kubeconfig file {path!r} does not exist")
    return ""


def read_text_file(path: Path, what: str) -> str:
    """A file the user named, as UTF-8 text; a file that is not is an InputError naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{what} file {runner.one_line(str(path))!r} is not UTF-8 text (byte {exc.start})",
            hint=f"give the {what} file itself, as written by kubectl or docker",
        ) from None
    except OSError as exc:
        raise InputError(f"cannot read {what} file {runner.one_line(str(path))!r}: {exc.strerror}") from None


def raw_from_args(args: argparse.Namespace) -> dict[str, str]:
    raw: dict[str, str] = {}
    for spec in INPUTS:
        value = getattr(args, "input_" + spec.name, None)
        if value is None:
            continue
        raw[spec.name] = "\n".join(value) if isinstance(value, list) else str(value)
    if getattr(args, "password_stdin", False):
        raw["password"] = sys.stdin.read().strip()
    runner.mask(raw.get("password", ""))
    runner.mask(os.environ.get("ACTIONS_RUNTIME_TOKEN", ""))  # buildx gets it for the gha cache
    cache.mask_tokens([raw.get("cache-from", ""), raw.get("cache-to", "")])
    if raw.get("docker-config"):  # the CLI takes the file, the action its content
        path = Path(raw["docker-config"])
        if not path.is_file():
            raise InputError(f"docker-config file {str(path)!r} does not exist")
        raw["docker-config"] = read_text_file(path, "docker-config")
    if raw.get("token"):  # the CLI takes the file, the action the token
        runner.mask(raw["token"])  # a token given where its file belongs must not be printed
        path = Path(raw["token"])
        if not path.is_file():
            raise InputError(
                "the --token value is not a file that exists (the value is not shown: it may be "
                "the token itself)",
                hint="write the token to a file and give its path: --token /path/to/token",
            )
        raw["token"] = read_text_file(path, "token").strip()
        runner.mask(raw["token"])
    if "kubeconfig" in vars(args):  # with server, no kubeconfig is looked for
        raw["kubeconfig"] = (
            "" if raw.get("server") and not args.kubeconfig else _kubeconfig_text(args.kubeconfig)
        )
    if getattr(args, "context", None):
        raw["context"] = args.context
    return raw


def _cmd_preflight(args: argparse.Namespace) -> int:
    from kubebuildx import pipeline

    pipeline.preflight_only(parse_inputs(raw_from_args(args)))
    return 0


def _cmd_instance(args: argparse.Namespace) -> int:
    from kubebuildx import pipeline

    pipeline.instance_only(
        parse_inputs(raw_from_args(args)),
        kubeconfig_ref=args.kubeconfig_ref,
        configmap=args.configmap or "",
        show=(lambda text: sys.stdout.write(text + "\n")) if args.print else (lambda text: None),
    )
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from kubebuildx import pipeline

    return pipeline.build_all(parse_inputs(raw_from_args(args)))


def _cmd_merge(args: argparse.Namespace) -> int:
    from kubebuildx import pipeline

    raw = raw_from_args(args)
    raw["mode"] = "merge"
    raw["digests"] = "\n".join([*([raw["digests"]] if raw.get("digests") else []), *args.digest_items])
    return pipeline.merge_all(parse_inputs(raw))


def _cmd_cleanup(args: argparse.Namespace) -> int:
    from kubebuildx import buildx_store, pipeline

    pipeline.clean_up(buildx_store.buildx_dir(os.environ), args.name, None, True)
    return 0


def _cmd_action(args: argparse.Namespace) -> int:
    from kubebuildx import action

    return action.post() if args.post else action.main()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kubebuildx",
        description="Native multi-platform builds on your own Kubernetes cluster, with buildx and BuildKit.",
    )
    parser.add_argument("--version", action="version", version=f"kubebuildx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("preflight", help="check the cluster can build every platform natively")
    _add_input_flags(p, _COMMON)
    p.set_defaults(func=_cmd_preflight)

    p = sub.add_parser(
        "instance", help="write buildx's instance file for the builder (and optionally a ConfigMap)"
    )
    _add_input_flags(p, _COMMON)
    p.add_argument("--print", action="store_true", help="also print the instance JSON")
    p.add_argument("--configmap", metavar="NAME", help="also store it in this ConfigMap (key: data)")
    p.add_argument(
        "--kubeconfig-ref",
        metavar="PATH",
        help="kubeconfig path the instance points to (empty string: in-cluster, for CI pods)",
    )
    p.set_defaults(func=_cmd_instance)

    p = sub.add_parser("build", help="preflight, boot, build every platform natively, outputs and summary")
    p.add_argument("context", nargs="?", default=".", help="build context (default: .)")
    _add_input_flags(p)
    p.add_argument("--password-stdin", action="store_true", help="read the registry password from stdin")
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser(
        "merge",
        help="join per-platform digests into one multi-platform image: verify, imagetools create, read back",
    )
    p.add_argument(
        "digest_items",
        nargs="*",
        metavar="DIGESTS",
        help="folders of digest files (named by the sha256 hex) or sha256:... digests",
    )
    _add_input_flags(p, _MERGE)
    p.add_argument("--password-stdin", action="store_true", help="read the registry password from stdin")
    p.set_defaults(func=_cmd_merge)

    p = sub.add_parser("cleanup", help="remove a builder and its Deployments")
    p.add_argument("name", help="builder name")
    p.set_defaults(func=_cmd_cleanup)

    p = sub.add_parser("action", help="the container action's entrypoint (reads INPUT_* variables)")
    p.add_argument("--post", action="store_true", help="the post step: cleanup")
    p.set_defaults(func=_cmd_action)

    from kubebuildx.artifacts import cli as artifacts_cli

    artifacts_cli.add_parser(sub)
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    # A cancelled job: the flag stops worker threads and children; the main thread unwinds,
    # so that cleanup and outputs still run. Only the first signal unwinds: the runner sends
    # SIGINT then SIGTERM, and a second one must not cut short the cleanup the first one
    # started (buildx rm, then deleting the kubeconfig), which cmd bounds with a timeout.
    if cancel.requested():
        return
    cancel.request()
    raise KeyboardInterrupt


INTERNAL_ERROR = 1


def _where(exc: BaseException) -> str:
    """``module.py:123 in function``: the innermost frame of ours that the exception passed."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "kubebuildx" in f.filename]
    if not frames:
        return "?"
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno} in {last.name}"


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except KubebuildxError as exc:
        runner.error(str(exc), title=exc.title)
        runner.append_summary(f"### :x: {runner.md_cell(exc.title)}\n\n{runner.md_block(str(exc))}")
        return exc.exit_code
    except KeyboardInterrupt:
        runner.error("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - the last resort: a bug, reported without its message
        if os.environ.get("KUBEBUILDX_DEBUG"):
            import traceback

            traceback.print_exc()
        message = (
            f"unexpected {type(exc).__name__} at {_where(exc)}. This is a bug in kubebuildx; its "
            "message is not shown, since it may quote a secret. Set KUBEBUILDX_DEBUG=1 to see it."
        )
        runner.error(message, title="kubebuildx failed")
        runner.append_summary(f"### :x: kubebuildx failed\n\n{runner.md_block(message)}")
        return INTERNAL_ERROR
    return code


def entry() -> None:
    """The ``kubebuildx`` executable. After a cancel, exit at once: the main thread has
    cleaned up, and a worker thread stuck in a request (a stalled upload) must not hold
    the exit for its timeout, as the interpreter's join of pool threads would."""
    code = main()
    if cancel.requested():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
