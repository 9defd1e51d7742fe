"""A workspace for act: the repository's files that git tracks or would track (not
ignored), as they are in the working tree, in a fresh git repository, plus what
a build needs inside it. A container action sees the workspace and nothing else."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def make(dest: Path, layouts: dict[str, Path] | None = None) -> Path:
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    for name in filter(None, tracked):
        source = ROOT / name
        if source.is_file():  # a file deleted in the working tree is not part of it
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    git = ["git", "-C", str(dest), "-c", "user.name=act", "-c", "user.email=act@localhost"]
    # A repository of its own, so that act finds a sha and a ref (it reads them with go-git).
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "workspace for act"], check=True)
    for name, layout in (layouts or {}).items():
        shutil.copytree(layout, dest / ".layouts" / name)
    return dest
