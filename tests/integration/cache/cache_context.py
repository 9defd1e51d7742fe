"""The build context the cache tests share: nobody has built it before, and its one RUN step
tells a cached build from a fresh one."""

from __future__ import annotations

import secrets
from pathlib import Path

RUN_STEP = "RUN cp /nonce /copied"


def make_context(folder: Path) -> Path:
    """A context no daemon has built: its nonce file is new, so every step is the test's."""
    folder.mkdir(parents=True)
    (folder / "nonce").write_text(secrets.token_hex(16) + "\n")
    (folder / "Dockerfile").write_text(
        "FROM busybox AS build\n"
        "COPY nonce /nonce\n"
        f"{RUN_STEP} && uname -m > /arch\n"
        "FROM scratch\n"
        "COPY --from=build /copied /arch /\n"
    )
    return folder
