"""BuildKit's progress stream (``buildx build --progress rawjson``) to a
readable log and to per-platform step timings.

Each stdout/stderr line of rawjson is one ``client.SolveStatus`` as JSON:
vertexes (digest, name, started, completed, cached, error) and logs. Vertex
names carry the platform for multi-platform builds: ``[linux/arm64 build 2/3] RUN make``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubebuildx.runner import one_line

# A stage built for another platform (FROM --platform=$BUILDPLATFORM) is named
# ``[linux/amd64->arm64 build 1/2]``: build platform, then the target's arch (or
# whole platform when the OS differs); dockerfile2llb's formatTargetPlatform.
_PLATFORM_PREFIX = re.compile(
    r"^\[(?P<platform>[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?)"
    r"(?:->(?P<target>[a-z0-9_]+(?:/[a-z0-9_]+){0,2}))?"
    r"(?: (?P<rest>[^\]]*))?\] ?(?P<tail>.*)$"
)
_OS_PREFIXES = ("linux/", "windows/", "darwin/", "freebsd/")
# Vertexes that carry no platform in a multi-platform build, so none in a single-platform one
# either: the definition, .dockerignore and context transfers, and a named build context
# (``[context base] OCI load from client`` for --build-context base=oci-layout://...).
_SHARED_PREFIXES = ("[internal]", "[context ")


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    # RFC 3339 with up to nanoseconds; Python keeps microseconds.
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not m:
        return None
    frac = (m.group(2) or ".0")[:7]
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(m.group(1) + frac + tz).timestamp()


def split_name(name: str) -> tuple[str, str]:
    """``[linux/arm64 build 2/3] RUN make`` → (``linux/arm64``, ``[build 2/3] RUN make``)."""
    m = _PLATFORM_PREFIX.match(name)
    if (
        not m
        or "/" not in m["platform"]
        or m["platform"].count("/") > 2
        or not m["platform"].startswith(_OS_PREFIXES)
    ):
        return "", name
    rest = m["rest"]
    step = f"[{rest}] {m['tail']}" if rest else m["tail"]
    platform, target = m["platform"], m["target"]
    if target:  # the step belongs to the platform it builds for
        platform = target if target.startswith(_OS_PREFIXES) else platform.split("/")[0] + "/" + target
    return platform, step


@dataclass
class Vertex:
    digest: str
    name: str
    started: float | None = None
    completed: float | None = None
    cached: bool = False
    error: str = ""
    inputs: tuple[str, ...] = ()

    @property
    def seconds(self) -> float:
        if self.started is None or self.completed is None:
            return 0.0
        return max(0.0, self.completed - self.started)


@dataclass
class Progress:
    """Folds SolveStatus lines; ``feed`` returns the plain log lines for each as it arrives."""

    vertexes: dict[str, Vertex] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)  # lines that were not JSON (buildx's own messages)

    def feed(self, line: str) -> list[str]:
        """Consume one line; return the log lines to print for it."""
        line = line.strip()
        if not line:
            return []
        try:
            status = json.loads(line)
        except (ValueError, RecursionError):
            self.other.append(one_line(line))
            return [one_line(line)]
        if not isinstance(status, dict):
            return []
        out: list[str] = []
        for v in _dicts(status.get("vertexes")):
            digest = _text(v.get("digest"))
            known = self.vertexes.get(digest)
            if known is None:
                # Names and errors come from the Dockerfile and the base image (an ENV lands in a
                # RUN's name): one log line each, never a line of their own.
                known = self.vertexes[digest] = Vertex(digest, one_line(_text(v.get("name"))))
                self.order.append(digest)
            was_started, was_done = known.started is not None, known.completed is not None
            known.started = parse_time(_text(v.get("started"))) or known.started
            known.completed = parse_time(_text(v.get("completed"))) or known.completed
            known.cached = bool(v.get("cached")) or known.cached
            inputs = v.get("inputs")
            listed = tuple(i for i in inputs if isinstance(i, str)) if isinstance(inputs, list) else ()
            known.inputs = listed or known.inputs
            known.error = one_line(_text(v.get("error"))) or known.error
            n = self.order.index(digest) + 1
            if known.started is not None and not was_started and not known.cached:
                out.append(f"#{n} {known.name}")
            if known.completed is not None and not was_done:
                if known.error:
                    out.append(f"#{n} ERROR: {known.error}")
                elif known.cached:
                    out.append(f"#{n} CACHED {known.name}")
                else:
                    out.append(f"#{n} DONE {known.seconds:.1f}s")
        for log in _dicts(status.get("logs")):
            digest = _text(log.get("vertex"))
            n = self.order.index(digest) + 1 if digest in self.vertexes else 0
            data = _b64(log.get("data"))
            out.extend(f"#{n} {text}" for text in data.rstrip("\n").splitlines())
        for warning in _dicts(status.get("warnings")):
            short = _b64(warning.get("short"))
            out.append("WARNING: " + (one_line(short) if short else "(a warning buildx could not encode)"))
        return out

    def timings(self, single: str = "") -> Timings:
        return timings((self.vertexes[d] for d in self.order), single=single)

    def errors(self) -> list[str]:
        return [v.error for v in (self.vertexes[d] for d in self.order) if v.error]


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a list in a SolveStatus; anything else there is ignored, never a crash."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _b64(value: Any) -> str:
    """Base64 text as UTF-8 (bad bytes replaced); empty when it is not base64 at all."""
    if not isinstance(value, str):
        return ""
    try:
        return base64.b64decode(value, validate=True).decode("utf-8", "replace")
    except ValueError:
        return ""


@dataclass(frozen=True)
class Step:
    label: str
    seconds: dict[str, float]  # platform → seconds
    cached: dict[str, bool]


def is_build_step(label: str) -> bool:
    """A step of the Dockerfile (FROM, RUN, COPY...), the ones the cache can serve.

    ``[internal] load metadata for IMAGE`` is a step of each platform in a
    multi-platform build, timed like the others, but it is a registry lookup
    that BuildKit never marks cached: counted, a fully cached build would stay
    below 100%, and the same build for one platform (where it is shared) would
    count one step fewer.
    """
    return not label.startswith(_SHARED_PREFIXES)


@dataclass(frozen=True)
class CacheHits:
    """How many of one platform's build steps the cache served."""

    cached: int
    steps: int

    @property
    def ratio(self) -> float | None:
        return self.cached / self.steps if self.steps else None

    def percent(self) -> str:
        """Whole percent; 100% only when every step was cached, 0% only when none was."""
        if not self.steps:
            return "-"
        value = round(100 * self.cached / self.steps)
        if self.cached < self.steps:
            value = min(value, 99)
        if self.cached:
            value = max(value, 1)
        return f"{value}%"

    def text(self) -> str:
        return f"{self.cached}/{self.steps} steps ({self.percent()})" if self.steps else "no steps"


@dataclass(frozen=True)
class Timings:
    platforms: tuple[str, ...]
    steps: tuple[Step, ...]
    totals: dict[str, float]  # platform → wall seconds from its first step's start to its last step's end
    shared: float  # seconds of steps that belong to no platform (context transfer, export)

    def as_json(self) -> dict[str, float]:
        return {p: round(self.totals[p], 3) for p in self.platforms}

    def cache_hits(self) -> dict[str, CacheHits]:
        """Per platform: its build steps (``is_build_step``) and how many were cached."""
        out = {}
        for p in self.platforms:
            mine = [s for s in self.steps if p in s.seconds and is_build_step(s.label)]
            out[p] = CacheHits(sum(1 for s in mine if s.cached.get(p)), len(mine))
        return out

    def cache_hits_json(self) -> dict[str, dict[str, int | float | None]]:
        return {
            p: {"cached": h.cached, "steps": h.steps, "ratio": None if h.ratio is None else round(h.ratio, 3)}
            for p, h in self.cache_hits().items()
        }


def _depths(vertexes: list[Vertex]) -> dict[str, int]:
    """Each vertex's distance from the graph's roots, through its inputs (the longest path).

    Iterative: a graph thousands of steps deep must not hit Python's recursion limit.
    An input that leads back to a vertex being visited (a cycle) is ignored.
    """
    by_digest = {v.digest: v for v in vertexes}
    depth: dict[str, int] = {}
    for root, vertex in by_digest.items():
        if root in depth:
            continue
        on_path = {root}
        stack: list[tuple[str, list[str]]] = [(root, list(vertex.inputs))]
        while stack:
            digest, pending = stack[-1]
            while pending and (
                pending[-1] not in by_digest or pending[-1] in depth or pending[-1] in on_path
            ):
                pending.pop()
            if pending:
                child = pending.pop()
                on_path.add(child)
                stack.append((child, list(by_digest[child].inputs)))
                continue
            stack.pop()
            on_path.discard(digest)
            depth[digest] = 1 + max((depth[i] for i in by_digest[digest].inputs if i in depth), default=-1)
    return depth


def timings(vertexes: Iterable[Vertex], single: str = "") -> Timings:
    """Per-platform step times. A single-platform build has no platform in its
    vertex names: ``single`` names the platform its steps belong to."""
    vertexes = list(vertexes)
    depths = _depths(vertexes)
    level: dict[str, int] = {}
    steps: dict[str, Step] = {}
    spans: dict[str, list[float]] = {}
    shared_spans: list[float] = []
    seen_platforms: list[str] = []
    first: dict[str, float] = {}
    for v in vertexes:
        platform, label = split_name(v.name)
        if not platform and single and label.startswith("[") and not label.startswith(_SHARED_PREFIXES):
            platform = single
        if not platform:
            if v.started is not None and v.completed is not None:
                shared_spans += [v.started, v.completed]
            continue
        if platform not in seen_platforms:
            seen_platforms.append(platform)
        step = steps.setdefault(label, Step(label, {}, {}))
        step.seconds[platform] = step.seconds.get(platform, 0.0) + v.seconds
        step.cached[platform] = v.cached and step.cached.get(platform, True)
        if v.started is not None and v.completed is not None:
            spans.setdefault(platform, []).extend([v.started, v.completed])
        if v.started is not None:
            first[label] = min(first.get(label, v.started), v.started)
        level[label] = min(level.get(label, depths.get(v.digest, 0)), depths.get(v.digest, 0))
    totals = {p: (max(spans[p]) - min(spans[p])) if spans.get(p) else 0.0 for p in seen_platforms}
    # Steps in graph order, then by start (BuildKit reports vertexes in no useful order,
    # and cached steps all "start" at the same instant).
    ordered = sorted(steps.values(), key=lambda s: (level.get(s.label, 0), first.get(s.label, float("inf"))))
    shared = (max(shared_spans) - min(shared_spans)) if shared_spans else 0.0
    return Timings(tuple(seen_platforms), tuple(ordered), totals, shared)
