"""Everything the GitHub runner reads from us: log groups, masks, annotations,
outputs, state for the post step and the step summary.

Outside GitHub Actions (``GITHUB_ACTIONS`` unset) the same calls print plain
text, so the CLI reads well in Jenkins or GitLab logs. The workflow-command
encoding and the file-command format come from ``actions_toolkit``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from actions_toolkit import core
from actions_toolkit.command import issue_command

_masked: set[str] = set()


def on_github() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def mask(secret: str) -> None:
    """Register a secret with the runner and with our own redaction.

    A multi-line value is masked line by line too, because the runner matches
    masks within a single log line.
    """
    if not secret:
        return
    values = {secret}
    if "\n" in secret:
        values |= {line.strip() for line in secret.splitlines() if _looks_secret(line.strip())}
    for value in sorted(values):
        if value in _masked:
            continue
        _masked.add(value)
        if on_github():
            core.set_secret(value)


def _looks_secret(line: str) -> bool:
    """A line of a multi-line secret (a PEM block, say) is masked on its own
    only when it could be secret material, not YAML keys such as `apiVersion: v1`."""
    return " " not in line and ":" not in line and len(line) >= 16


def redact(text: str) -> str:
    """Replace every masked value in ``text``: for our own messages and for
    the output of tools we run, which may echo a token back."""
    for value in sorted(_masked, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def info(message: str) -> None:
    sys.stdout.write(redact(message) + "\n")
    sys.stdout.flush()


def debug(message: str) -> None:
    if on_github():
        core.debug(redact(message))
    elif os.environ.get("KUBEBUILDX_DEBUG"):
        info(f"debug: {message}")


def _annotate(kind: str, message: str, title: str | None) -> None:
    # actions_toolkit's core.warning/error add empty file=,line=... properties; send only what we have.
    issue_command(kind, {"title": title} if title else {}, redact(message))


def warning(message: str, title: str | None = None) -> None:
    if on_github():
        _annotate("warning", message, title)
    else:
        sys.stderr.write(f"warning: {redact(message)}\n")
    sys.stderr.flush()
    sys.stdout.flush()


def error(message: str, title: str | None = None) -> None:
    if on_github():
        _annotate("error", message, title)
    else:
        sys.stderr.write(f"error: {redact(message)}\n")
    sys.stdout.flush()
    sys.stderr.flush()


@contextlib.contextmanager
def group(name: str) -> Iterator[None]:
    """A collapsible log group; outside GitHub, a header line and the time it took."""
    start = time.monotonic()
    if on_github():
        core.start_group(name)
    else:
        info(f"==> {name}")
    sys.stdout.flush()
    try:
        yield
    finally:
        if on_github():
            sys.stdout.flush()
            core.end_group()
        else:
            info(f"    ({time.monotonic() - start:.1f}s)")
        sys.stdout.flush()


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def set_output(name: str, value: Any) -> None:
    """Write a step output. Without ``GITHUB_OUTPUT`` (the CLI), nothing is written."""
    text = redact(_to_text(value))
    if os.environ.get("GITHUB_OUTPUT"):
        core.set_output(name, text)


def save_state(name: str, value: Any) -> None:
    """State for the post step (``STATE_<name>`` there)."""
    if os.environ.get("GITHUB_STATE"):
        core.save_state(name, _to_text(value))


def append_summary(markdown: str) -> None:
    """Append to the job summary; without ``GITHUB_STEP_SUMMARY`` nothing is written."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    with Path(path).open("a", encoding="utf-8") as fh:
        fh.write(redact(markdown).rstrip("\n") + "\n\n")
