"""Everything the GitHub runner reads from us: log groups, masks, annotations,
outputs, state for the post step and the step summary.

Text from outside (buildx's output, names, errors) can hold a line that the
runner would read as a workflow command (``::error::``, ``::stop-commands::``).
Two rules keep it inert: ``one_line`` makes every line separator in a name, an
error or a command line visible instead of a break, and ``verbatim`` prints a
tool's own output with workflow commands off.

Outside GitHub Actions (``GITHUB_ACTIONS`` unset) the same calls print plain
text, so the CLI reads well in Jenkins or GitLab logs. The workflow-command
encoding and the file-command format come from ``actions_toolkit``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from actions_toolkit import core
from actions_toolkit.command import issue_command

_masked: set[str] = set()
# Values shorter than this are neither masked nor redacted: no credential is that short, and
# replacing a one-letter "token" everywhere turns every message into `clus***er`.
MIN_SECRET_LENGTH = 4
# Every separator str.splitlines() knows: a log viewer may break a line at any of them.
_LINE_BREAKS = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
# ...except the two that the annotation encoding escapes itself (%0A, %0D).
_OTHER_BREAKS = re.compile("[\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_lock = threading.RLock()


class _Commands:
    """Whether workflow commands are off (``verbatim``), and the token that turns them on."""

    stop_token: str | None = None


_commands = _Commands()


def on_github() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def mask(secret: str) -> None:
    """Register a secret with the runner and with our own redaction.

    A multi-line value is masked line by line too, because the runner matches
    masks within a single log line.
    """
    if len(secret) < MIN_SECRET_LENGTH:
        return
    values = {secret}
    if "\n" in secret:
        values |= {line.strip() for line in secret.splitlines() if _looks_secret(line.strip())}
    for value in sorted(values):
        if value in _masked:
            continue
        _masked.add(value)
        if on_github():
            with _commands_on():  # the runner ignores ::add-mask:: while commands are stopped
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


def one_line(text: str) -> str:
    """``text`` with every line separator shown as an escape (``\\n``, ``\\u2028``): for a
    name, an error or a command line from outside, which must not start a log line of its own."""
    return _LINE_BREAKS.sub(lambda m: repr(m.group())[1:-1], text)


def _write_line(text: str) -> None:
    with _lock:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


@contextlib.contextmanager
def verbatim() -> Iterator[None]:
    """Print a tool's output with workflow commands off, between ``::stop-commands::<token>``
    and ``::<token>::``. The token is random, so the text cannot end the block itself
    (https://docs.github.com/en/actions/reference/workflow-commands-for-github-actions#stopping-and-starting-workflow-commands).
    Our own masks, annotations and groups issued meanwhile pause the block around them."""
    with _lock:
        nested = not on_github() or _commands.stop_token is not None
        if not nested:
            _commands.stop_token = secrets.token_hex(16)
            _write_line(f"::stop-commands::{_commands.stop_token}")
    try:
        yield
    finally:
        with _lock:
            if not nested and _commands.stop_token is not None:
                _write_line(f"::{_commands.stop_token}::")
                _commands.stop_token = None


@contextlib.contextmanager
def _commands_on() -> Iterator[None]:
    """Workflow commands on for one command of ours, inside ``verbatim`` or not."""
    with _lock:
        token = _commands.stop_token
        if token is not None:
            _write_line(f"::{token}::")
            _commands.stop_token = None
        try:
            sys.stdout.flush()
            yield
            sys.stdout.flush()
        finally:
            if token is not None:
                _commands.stop_token = secrets.token_hex(16)
                _write_line(f"::stop-commands::{_commands.stop_token}")


def tool_output(text: str) -> None:
    """A tool's own output (``buildx inspect``), printed with workflow commands off."""
    with verbatim():
        info(text)


def info(message: str) -> None:
    _write_line(redact(message))


def debug(message: str) -> None:
    if on_github():
        with _commands_on():
            core.debug(redact(message))
    elif os.environ.get("KUBEBUILDX_DEBUG"):
        info(f"debug: {message}")


def _annotate(kind: str, message: str, title: str | None) -> None:
    # actions_toolkit's core.warning/error add empty file=,line=... properties; send only what we have.
    # It escapes CR and LF (%0D, %0A); the other separators are shown as escapes.
    properties = {"title": one_line(redact(title))} if title else {}
    with _commands_on():
        issue_command(kind, properties, _OTHER_BREAKS.sub(lambda m: repr(m.group())[1:-1], redact(message)))


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
        with _commands_on():
            core.start_group(one_line(redact(name)))
    else:
        info(f"==> {one_line(name)}")
    sys.stdout.flush()
    try:
        yield
    finally:
        if on_github():
            with _commands_on():
                core.end_group()
        else:
            info(f"    ({time.monotonic() - start:.1f}s)")
        sys.stdout.flush()


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# Outputs made of digests, numbers and platforms only: a masked value found inside one is a
# coincidence (a short secret that happens to be hex), never the secret, so they are not redacted.
_DIGEST = r"sha256:[a-f0-9]{64}"
_PLATFORM = r"[a-z0-9]+(?:/[a-z0-9_.]+){1,2}"
_STRUCTURED = re.compile(
    rf"(?:{_DIGEST})?|{_PLATFORM}(?:,{_PLATFORM})*"
    rf'|\{{(?:"(?:{_PLATFORM}|all|-)":(?:"{_DIGEST}"|-?[0-9]+(?:\.[0-9]+)?)'
    rf'(?:,"(?:{_PLATFORM}|all|-)":(?:"{_DIGEST}"|-?[0-9]+(?:\.[0-9]+)?))*)?\}}'
)


def is_structured(text: str) -> bool:
    """A digest, a platform list, or a JSON object of platform to digest or number."""
    return _STRUCTURED.fullmatch(text) is not None


def set_output(name: str, value: Any) -> None:
    """Write a step output. Without ``GITHUB_OUTPUT`` (the CLI), nothing is written.
    Free text is redacted; structured values (``is_structured``) are kept exact."""
    text = _to_text(value)
    text = text if is_structured(text) else redact(text)
    if os.environ.get("GITHUB_OUTPUT"):
        core.set_output(name, text)


def save_state(name: str, value: Any) -> None:
    """State for the post step (``STATE_<name>`` there)."""
    if os.environ.get("GITHUB_STATE"):
        core.save_state(name, _to_text(value))


# What CommonMark and GFM give a meaning inside a line: emphasis, links, images, raw HTML and
# entities, code spans, strikethrough, a table's cell separator, and the escape itself.
_MD_SPECIAL = re.compile(r"[\\|*_\[\]()<>!`~&]")
_BACKTICKS = re.compile("`+")


def md_cell(text: str) -> str:
    """Text from outside (a node name, a step label, a platform) as plain text in one line of
    markdown, a table cell say: every special character backslash-escaped, every line separator
    shown as an escape (``one_line``), so it can neither format, link, embed HTML nor end the cell."""
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(), one_line(text))


def _fence(text: str, shortest: int) -> str:
    longest = max((len(m.group()) for m in _BACKTICKS.finditer(text)), default=0)
    return "`" * max(shortest, longest + 1)


def md_code(text: str) -> str:
    """Text from outside as an inline code span on one line: its fence is longer than any run of
    backticks in it, and ``|`` is escaped so that it cannot end a table cell."""
    text = one_line(text).replace("|", "\\|")
    fence = _fence(text, 1)
    return f"{fence} {text} {fence}" if "`" in text else f"{fence}{text}{fence}"


def md_block(text: str) -> str:
    """Text from outside (an error) as a fenced code block that it cannot close: the fence is
    longer than the longest run of backticks in it."""
    fence = _fence(text, 3)
    return f"{fence}\n{text}\n{fence}"


def append_summary(markdown: str) -> None:
    """Append to the job summary; without ``GITHUB_STEP_SUMMARY`` nothing is written."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    with Path(path).open("a", encoding="utf-8") as fh:
        fh.write(redact(markdown).rstrip("\n") + "\n\n")
