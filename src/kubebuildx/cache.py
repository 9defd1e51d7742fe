"""The ``cache-from`` and ``cache-to`` entries as buildx gets them.

The inputs keep build-push-action's meaning; kubebuildx adds two things a
container action cannot get otherwise, and only where the entry does not say:

- **GitHub's cache service v2 for ``type=gha``.** buildx speaks v2 only when an
  entry has ``version=2`` or ``ACTIONS_CACHE_SERVICE_V2`` is true, and the
  runner sets that variable for node actions only, never for a container action
  (buildx v0.36.1 build/opt.go, ``addGithubToken``). With ``ACTIONS_RESULTS_URL``
  in the job, an entry that names neither ``version`` nor a ``url``/``url_v2``
  gets ``version=2``. buildx then fills in ``url_v2`` from ``ACTIONS_RESULTS_URL``
  and ``token`` from ``ACTIONS_RUNTIME_TOKEN`` itself: the token goes to buildx
  through its environment (``cmd.needed_env``), never on its command line, which
  we print and any local user can read in ``/proc``.
- **A scope per platform in a single-platform build.** BuildKit's gha cache
  keeps one index per scope (default ``buildkit``, cache/remotecache/gha
  ``getConfig``); two matrix legs writing it overwrite each other's index, so
  each leg would find only the other's layers. A ``type=gha`` entry without
  ``scope=`` gets ``buildkit-<os>-<arch>`` when the build has one platform, in
  ``cache-from`` and ``cache-to`` alike. The same goes for a registry ``ref``
  whose last path component names no architecture: its tag gets ``-<os>-<arch>``
  (``app:cache`` -> ``app:cache-linux-arm64``; no tag: ``app:linux-arm64``), said
  in the log (``notes``). A ref that names the architecture is the user's choice
  and is left alone; a digest ref is never touched.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence

from kubebuildx import runner
from kubebuildx.platforms import Platform

DEFAULT_GHA_SCOPE = "buildkit"  # BuildKit cache/remotecache/gha getConfig
SECRET_ATTRS = ("token", "ghtoken")  # the runtime token, and a GitHub token for the REST API


def attrs(entry: str) -> dict[str, str]:
    """An entry's fields as buildx parses it (util/buildflags/cache.go): keys lowercased, a
    lone value without ``=`` is a registry ref. Unparsable text gives no fields: buildx
    itself reports it."""
    try:
        fields = next(csv.reader(io.StringIO(entry)), [])
    except csv.Error:
        return {}
    if len(fields) == 1 and "=" not in fields[0]:
        return {"type": "registry", "ref": fields[0].strip()}
    out: dict[str, str] = {}
    for field in fields:
        key, sep, value = field.partition("=")
        if sep:
            out[key.strip().lower()] = value
    return out


def speaks_v2(env: Mapping[str, str]) -> bool:
    """The job has GitHub's results service, which serves cache v2 (actions/toolkit's cache
    reads ``ACTIONS_RESULTS_URL`` for v2)."""
    return bool(env.get("ACTIONS_RESULTS_URL"))


def gha_scope(platforms: Sequence[Platform]) -> str:
    """The scope a ``type=gha`` entry without one gets: per platform in a single-platform build."""
    if len(platforms) == 1:
        return f"{DEFAULT_GHA_SCOPE}-{platforms[0].slug}"
    return ""


def platform_ref(ref: str, platforms: Sequence[Platform]) -> str:
    """The registry cache ref a single-platform build uses: its own per platform, unless the
    ref already names the architecture (the user chose) or is a digest."""
    if len(platforms) != 1 or not ref or "@" in ref:
        return ref
    platform = platforms[0]
    head, slash, last = ref.rpartition("/")
    if re.search(rf"(?<![a-z0-9]){re.escape(platform.arch)}(?![a-z0-9])", last):
        return ref
    name, colon, tag = last.partition(":")
    tagged = f"{name}:{tag}-{platform.slug}" if colon else f"{name}:{platform.slug}"
    return f"{head}{slash}{tagged}"


def _registry_for_buildx(entry: str, fields: Mapping[str, str], platforms: Sequence[Platform]) -> str:
    ref = fields.get("ref", "")
    own = platform_ref(ref, platforms)
    if own == ref:
        return entry
    if "=" not in entry:  # a lone ref
        return own
    parts = next(csv.reader(io.StringIO(entry)), [])
    rewritten = [
        f"{key}={own}" if key.strip().lower() == "ref" else part
        for part in parts
        for key in [part.partition("=")[0]]
    ]
    return ",".join(rewritten)


def for_buildx(entry: str, *, platforms: Sequence[Platform], service_v2: bool) -> str:
    """One entry as buildx gets it: the user's text, with fields appended where it is silent."""
    fields = attrs(entry)
    if fields.get("type") == "registry":
        return _registry_for_buildx(entry, fields, platforms)
    if fields.get("type") != "gha":
        return entry
    added = []
    if service_v2 and not {"version", "url", "url_v2"} & set(fields):
        added.append("version=2")
    scope = gha_scope(platforms)
    if scope and "scope" not in fields:
        added.append(f"scope={scope}")
    return ",".join([entry, *added])


def entries(values: Iterable[str], *, platforms: Sequence[Platform], service_v2: bool) -> list[str]:
    return [for_buildx(v, platforms=platforms, service_v2=service_v2) for v in values]


def notes(cache_from: Iterable[str], cache_to: Iterable[str], platforms: Sequence[Platform]) -> list[str]:
    """What the log says about registry refs a single-platform build made its own."""
    out = []
    for what, values in (("cache-from", cache_from), ("cache-to", cache_to)):
        for entry in values:
            fields = attrs(entry)
            ref = fields.get("ref", "")
            own = platform_ref(ref, platforms) if fields.get("type") == "registry" else ref
            if own != ref:
                out.append(
                    f"{what}: {ref} -> {own}: a single-platform job keeps a registry cache of its own, "
                    "so that a matrix job of another platform exporting to the same ref does not "
                    "replace it; name the architecture in the ref to choose it yourself"
                )
    return out


def mask_tokens(values: Iterable[str]) -> None:
    """A ``token=`` or ``ghtoken=`` written into a cache entry is a secret like any other."""
    for value in values:
        for line in value.splitlines():
            # Also the line without its quotes: a quoted whole entry parses as one field here,
            # yet reaches buildx unquoted once the list is split.
            for text in (line, line.strip().strip('"')):
                fields = attrs(text)
                for key in SECRET_ATTRS:
                    runner.mask(fields.get(key, ""))
