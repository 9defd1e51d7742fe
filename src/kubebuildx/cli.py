"""The ``kubebuildx`` command: one entry point for the CLI and the action.

``main`` is the only place that catches our errors: it prints them as an
annotation, adds them to the step summary and exits with the error's code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kubebuildx import __version__, runner
from kubebuildx.errors import KubebuildxError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubebuildx",
        description="Native multi-platform builds on your own Kubernetes cluster.",
    )
    parser.add_argument("--version", action="version", version=f"kubebuildx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from kubebuildx.artifacts import cli as artifacts_cli

    artifacts_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except KubebuildxError as exc:
        runner.error(str(exc), title=exc.title)
        runner.append_summary(f"### :x: {exc.title}\n\n```\n{exc}\n```")
        return exc.exit_code
    except KeyboardInterrupt:
        runner.error("interrupted")
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
