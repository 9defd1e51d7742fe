"""Artifact names and the paths inside an artifact: the official client's rules.

The character tables are those of actions/toolkit
``packages/artifact/src/internal/upload/path-and-artifact-name-validation.ts``;
the service rejects the same characters, so we refuse them before any request.
Per-platform names (``<name>-<os>-<arch>[-<variant>]``) are ours: a matrix job
that builds one platform and a single job that builds them all upload the same
names.
"""

from __future__ import annotations

from kubebuildx import platforms as plat
from kubebuildx.errors import InputError

# Characters that NTFS and friends cannot hold: refused in names and in paths.
INVALID_PATH_CHARACTERS: dict[str, str] = {
    '"': 'Double quote "',
    ":": "Colon :",
    "<": "Less than <",
    ">": "Greater than >",
    "|": "Vertical bar |",
    "*": "Asterisk *",
    "?": "Question mark ?",
    "\r": "Carriage return \\r",
    "\n": "Line feed \\n",
}

# A name also may not hold a path separator.
INVALID_NAME_CHARACTERS: dict[str, str] = {
    **INVALID_PATH_CHARACTERS,
    "\\": "Backslash \\",
    "/": "Forward slash /",
}


def _not_utf8(text: str) -> bool:
    """A name Python decoded from bytes that are not UTF-8 (as surrogate escapes): the zip's
    UTF-8 name field and the service's JSON cannot carry it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def validate_artifact_name(name: str) -> None:
    """Raise InputError naming the offending character, as the official client does."""
    if not name:
        raise InputError(
            "The artifact name is empty.",
            hint="set artifact-name (or --name) to a non-empty value",
        )
    if _not_utf8(name):
        raise InputError(f"The artifact name {name!a} is not UTF-8 text.", hint="choose a UTF-8 name")
    for char, label in INVALID_NAME_CHARACTERS.items():
        if char in name:
            allowed = ", ".join(INVALID_NAME_CHARACTERS.values())
            raise InputError(
                f"The artifact name is not valid: {name!r} contains {label}. "
                f"These characters are not allowed in artifact names: {allowed} "
                "(some file systems, such as NTFS, cannot hold them).",
                hint="choose a name without these characters",
            )


def validate_file_path(path: str) -> None:
    """A path inside the artifact: the same table without the separators; and what a zip
    cannot store safely: a name that is not UTF-8, or one with a backslash, which extractors
    on Windows read as a folder separator (``..\\..\\x`` would land outside the target)."""
    if _not_utf8(path):
        raise InputError(
            f"The path of a file to upload is not UTF-8: {path!a}. A zip stores names as UTF-8.",
            hint="rename the file, or leave it out of the uploaded folder",
        )
    if "\\" in path:
        raise InputError(
            f"The path of a file to upload is not valid: {path!r} contains Backslash \\, which zip "
            "extractors on Windows read as a folder separator.",
            hint="rename the file, or leave it out of the uploaded folder",
        )
    for char, label in INVALID_PATH_CHARACTERS.items():
        if char in path:
            raise InputError(
                f"The path of a file to upload is not valid: {path!r} contains {label}. "
                "Artifacts cannot hold such paths because some file systems, such as NTFS, cannot.",
                hint="rename the file, or leave it out of the uploaded folder",
            )


def platform_from_dirname(dirname: str) -> str | None:
    """``linux_arm_v7`` -> ``linux/arm/v7``: a folder buildx's local exporter
    writes with platform-split (``Platform.folder``); None for any other folder."""
    try:
        platform = plat.parse(dirname.replace("_", "/"))
    except InputError:
        return None
    return str(platform) if platform.folder == dirname else None


def platform_artifact_name(base: str, platform: str) -> str:
    """``("app", "linux/arm/v7")`` -> ``app-linux-arm-v7`` (``Platform.slug``)."""
    return f"{base}-{plat.parse(platform).slug}"
