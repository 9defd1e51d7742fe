"""BuildKit's rawjson progress stream to a plain log and to per-platform step timings.

The fixtures in tests/fixtures/progress/ are client.SolveStatus lines as buildx
--progress rawjson prints them (Go encoding/json, omitempty fields, RFC 3339
timestamps with up to nanoseconds, log data base64), for a two-stage
Dockerfile built on two native nodes, on one node, failing, and emulated.

The *-warm and partly-cached fixtures were captured from buildx v0.36.1 and
BuildKit v0.32.2 (a private buildkitd through buildx's remote driver, the
busybox OCI layout as the build context ``busybox``), building a four-step
Dockerfile: again after changing the file its COPY copies (partly-cached), for
both platforms after a build of amd64 alone (one-platform-warm), and arm64
alone after that (single-platform-warm).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from kubebuildx import progress
from kubebuildx.progress import Progress, Vertex

FIXTURES = Path(__file__).parent.parent / "fixtures" / "progress"
ALPINE = (
    "docker.io/library/alpine:3.20@sha256:beefdbd8a1da6d2915566fde36db9db0b524eb737fc57cd1367effd16dc0d06d"
)


def feed(name: str) -> tuple[Progress, list[str]]:
    prog = Progress()
    out: list[str] = []
    for line in (FIXTURES / f"{name}.jsonl").read_text().splitlines():
        out += prog.feed(line)
    return prog, out


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2026-11-29T04:41:00Z", 0.0),
        ("2026-11-29T04:41:00.5Z", 0.5),
        ("2026-11-29T04:41:00.310123456Z", 0.310123),
        ("2026-11-29T05:41:00.25+01:00", 0.25),
        ("2026-11-29T03:41:01-00:59", -59.0),
    ],
)
def test_parse_time(text: str, seconds: float) -> None:
    base = progress.parse_time("2026-11-29T04:41:00Z")
    got = progress.parse_time(text)
    assert base is not None
    assert got is not None
    assert got - base == pytest.approx(seconds, abs=1e-6)


@pytest.mark.parametrize("text", [None, "", "yesterday", "2026-11-29 04:41:00Z", "2026-11-29T04:41:00"])
def test_parse_time_rejects(text: str | None) -> None:
    assert progress.parse_time(text) is None


@pytest.mark.parametrize(
    ("name", "platform", "step"),
    [
        ("[linux/arm64 build 2/3] RUN make", "linux/arm64", "[build 2/3] RUN make"),
        ("[linux/arm/v7 stage-1 1/1] COPY . /", "linux/arm/v7", "[stage-1 1/1] COPY . /"),
        ("[linux/amd64 2/3] RUN make", "linux/amd64", "[2/3] RUN make"),
        (
            "[linux/amd64 internal] load metadata for docker.io/library/alpine:3.20",
            "linux/amd64",
            "[internal] load metadata for docker.io/library/alpine:3.20",
        ),
        ("[linux/amd64->arm64 build 1/2] RUN go build", "linux/arm64", "[build 1/2] RUN go build"),
        ("[linux/amd64->arm/v7 build 1/2] RUN go build", "linux/arm/v7", "[build 1/2] RUN go build"),
        ("[linux/amd64->windows/amd64 b 1/1] RUN x", "windows/amd64", "[b 1/1] RUN x"),
        # no platform: shared, unchanged
        (
            "[internal] load build definition from Dockerfile",
            "",
            "[internal] load build definition from Dockerfile",
        ),
        ("[build 2/3] RUN make", "", "[build 2/3] RUN make"),
        ("exporting to client directory", "", "exporting to client directory"),
        (
            "[auth] library/alpine:pull token for registry-1.docker.io",
            "",
            "[auth] library/alpine:pull token for registry-1.docker.io",
        ),
        ("[a/b/c/d x] y", "", "[a/b/c/d x] y"),
    ],
)
def test_split_name(name: str, platform: str, step: str) -> None:
    assert progress.split_name(name) == (platform, step)


def test_multi_platform_log() -> None:
    prog, out = feed("multi-platform")
    assert out == [
        "#1 [internal] load build definition from Dockerfile",
        "#1 DONE 0.2s",
        "#2 [linux/amd64 internal] load metadata for docker.io/library/alpine:3.20",
        "#3 [linux/arm64 internal] load metadata for docker.io/library/alpine:3.20",
        "#2 DONE 1.2s",
        "#4 [internal] load .dockerignore",
        "#4 DONE 0.1s",
        f"#5 CACHED [linux/amd64 build 1/3] FROM {ALPINE}",
        "#6 CACHED [linux/amd64 build 2/3] WORKDIR /src",
        "#7 [linux/amd64 build 3/3] RUN uname -m > arch.txt && make",
        "#3 DONE 1.5s",
        f"#8 [linux/arm64 build 1/3] FROM {ALPINE}",
        "#7 x86_64",
        "#8 DONE 2.2s",
        "#9 [linux/arm64 build 2/3] WORKDIR /src",
        "#9 DONE 0.1s",
        "#10 [linux/arm64 build 3/3] RUN uname -m > arch.txt && make",
        "#10 aarch64",
        "#10 cc -O2 -o hello hello.c",
        "#10 hello.c: In function 'main':",
        "#7 cc -O2 -o hello hello.c",
        "#7 DONE 12.0s",
        "#11 [linux/amd64 stage-1 1/1] COPY --from=build /src/arch.txt /",
        "#11 DONE 0.1s",
        "#12 exporting to client directory",
        "#10 DONE 16.5s",
        "#13 [linux/arm64 stage-1 1/1] COPY --from=build /src/arch.txt /",
        "#13 DONE 0.2s",
        "WARNING: FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)",
        "#12 DONE 7.4s",
    ]
    assert prog.errors() == []
    assert prog.other == []


def test_multi_platform_timings() -> None:
    prog, _ = feed("multi-platform")
    t = prog.timings()
    assert t.platforms == ("linux/amd64", "linux/arm64")
    assert [s.label for s in t.steps] == [
        "[internal] load metadata for docker.io/library/alpine:3.20",
        f"[build 1/3] FROM {ALPINE}",
        "[build 2/3] WORKDIR /src",
        "[build 3/3] RUN uname -m > arch.txt && make",
        "[stage-1 1/1] COPY --from=build /src/arch.txt /",
    ]
    seconds = {s.label.split("] ")[0] + "]": s.seconds for s in t.steps}
    assert seconds["[build 3/3]"] == pytest.approx({"linux/amd64": 12.0, "linux/arm64": 16.5})
    assert seconds["[build 1/3]"] == pytest.approx({"linux/amd64": 0.0, "linux/arm64": 2.2})
    assert seconds["[internal]"] == pytest.approx({"linux/amd64": 1.2, "linux/arm64": 1.5})
    cached = {s.label.split("] ")[0] + "]": s.cached for s in t.steps}
    assert cached["[build 1/3]"] == {"linux/amd64": True, "linux/arm64": False}
    assert cached["[build 2/3]"] == {"linux/amd64": True, "linux/arm64": False}
    assert cached["[build 3/3]"] == {"linux/amd64": False, "linux/arm64": False}
    # wall time from each platform's first step start to its last step end
    assert t.totals == pytest.approx({"linux/amd64": 14.0 - 0.32, "linux/arm64": 21.2 - 0.33})
    # definition, .dockerignore and export belong to no platform
    assert t.shared == pytest.approx(21.5 - 0.1)
    assert t.as_json() == {"linux/amd64": 13.68, "linux/arm64": 20.87}


def test_single_platform_timings_name_the_platform() -> None:
    prog, out = feed("single-platform")
    assert out[:5] == [
        "#1 [internal] load build definition from Dockerfile",
        "#1 DONE 0.1s",
        "#2 [internal] load metadata for docker.io/library/alpine:3.20",
        "#2 DONE 0.8s",
        f"#3 CACHED [build 1/3] FROM {ALPINE}",
    ]
    t = prog.timings(single="linux/arm64")
    assert t.platforms == ("linux/arm64",)
    assert [s.label for s in t.steps] == [
        f"[build 1/3] FROM {ALPINE}",
        "[build 2/3] WORKDIR /src",
        "[build 3/3] RUN uname -m > arch.txt && make",
        "[stage-1 1/1] COPY --from=build /src/arch.txt /",
    ]
    assert t.steps[2].seconds == pytest.approx({"linux/arm64": 5.0})
    assert t.totals == pytest.approx({"linux/arm64": 6.4 - 1.1})
    assert t.shared == pytest.approx(6.9 - 0.1)


def test_single_platform_without_the_hint_has_no_platform() -> None:
    prog, _ = feed("single-platform")
    t = prog.timings()
    assert t.platforms == ()
    assert t.steps == ()


def test_failure() -> None:
    prog, out = feed("failure")
    assert out == [
        "#1 [internal] load build definition from Dockerfile",
        "#1 DONE 0.1s",
        "#2 [linux/amd64 build 2/2] RUN make test",
        "#3 [linux/arm64 build 2/2] RUN make test",
        "#3 make: *** [Makefile:3: test] Error 2",
        '#3 ERROR: process "/bin/sh -c make test" did not complete successfully: exit code: 2',
        "#2 ERROR: context canceled",
    ]
    assert prog.errors() == [
        "context canceled",
        'process "/bin/sh -c make test" did not complete successfully: exit code: 2',
    ]


def test_emulated_steps_belong_to_the_target_platform() -> None:
    prog, _ = feed("emulated")
    t = prog.timings()
    assert t.platforms == ("linux/amd64", "linux/arm64")
    run = next(s for s in t.steps if "go build" in s.label)
    assert run.label == "[build 2/2] RUN go build -o /out/app ."
    assert run.seconds == pytest.approx({"linux/amd64": 4.0, "linux/arm64": 6.0})
    assert t.totals == pytest.approx({"linux/amd64": 5.2 - 0.5, "linux/arm64": 8.0 - 0.6})


def test_non_json_lines_are_kept_and_printed() -> None:
    prog = Progress()
    assert prog.feed("ERROR: failed to solve: no such file\n") == ["ERROR: failed to solve: no such file"]
    assert prog.feed("   \n") == []
    assert prog.feed("[1, 2]") == []
    assert prog.other == ["ERROR: failed to solve: no such file"]


def test_a_vertex_repeated_with_the_same_times_prints_once() -> None:
    v = {"digest": "sha256:aa", "name": "[linux/amd64 build 1/1] RUN true", "started": "2026-11-29T04:41:00Z"}
    done = {**v, "completed": "2026-11-29T04:41:02Z"}
    prog = Progress()
    assert prog.feed(json.dumps({"vertexes": [v]})) == ["#1 [linux/amd64 build 1/1] RUN true"]
    assert prog.feed(json.dumps({"vertexes": [v]})) == []
    assert prog.feed(json.dumps({"vertexes": [done]})) == ["#1 DONE 2.0s"]
    assert prog.feed(json.dumps({"vertexes": [done]})) == []


def test_log_of_an_unknown_vertex_and_multi_line_data() -> None:
    data = base64.b64encode(b"one\ntwo\n").decode()
    prog = Progress()
    assert prog.feed(json.dumps({"logs": [{"vertex": "sha256:zz", "data": data}]})) == ["#0 one", "#0 two"]


@pytest.mark.parametrize(
    ("started", "completed", "seconds"),
    [(None, None, 0.0), (10.0, None, 0.0), (10.0, 12.5, 2.5), (10.0, 9.0, 0.0)],
)
def test_vertex_seconds(started: float | None, completed: float | None, seconds: float) -> None:
    assert Vertex("d", "n", started, completed).seconds == seconds


def test_timings_of_a_step_run_twice_on_one_platform_add_up() -> None:
    vs = [
        Vertex("a", "[linux/amd64 build 1/1] RUN x", 0.0, 1.0),
        Vertex("b", "[linux/amd64 build 1/1] RUN x", 2.0, 4.0),
    ]
    t = progress.timings(vs)
    assert t.steps[0].seconds == {"linux/amd64": 3.0}
    assert t.totals == {"linux/amd64": 4.0}


# ---- hostile streams: one log line per name, no crash on malformed statuses --------------------

FORGED = "\n::error::forged"


def _status(**fields: object) -> str:
    return json.dumps(fields)


@pytest.mark.parametrize(
    ("line", "printed"),
    [
        (  # a target, a tag or a base image ENV that lands in a RUN's name
            _status(
                vertexes=[{"digest": "d", "name": f"RUN echo{FORGED}", "started": "2026-11-29T04:41:00Z"}]
            ),
            ["#1 RUN echo\\n::error::forged"],
        ),
        (
            _status(
                vertexes=[
                    {
                        "digest": "d",
                        "name": "x",
                        "started": "2026-11-29T04:41:00Z",
                        "completed": "2026-11-29T04:41:01Z",
                        "error": f"failed\u2028::warning::w{FORGED}",
                    }
                ]
            ),
            ["#1 x", "#1 ERROR: failed\\u2028::warning::w\\n::error::forged"],
        ),
        (
            _status(warnings=[{"short": base64.b64encode(f"deprecated{FORGED}".encode()).decode()}]),
            ["WARNING: deprecated\\n::error::forged"],
        ),
        (_status(warnings=[{"short": "not base64!"}]), ["WARNING: (a warning buildx could not encode)"]),
        (_status(warnings=[{"short": 5}, "x", None]), ["WARNING: (a warning buildx could not encode)"]),
        (_status(logs=[{"vertex": 1, "data": "%%%"}]), []),
        (_status(vertexes="x", logs={"a": 1}, warnings=3), []),
        (_status(vertexes=[{"digest": ["x"], "name": 3, "inputs": "abc", "started": 7}]), []),
        ("not json \u2028::error::x", ["not json \\u2028::error::x"]),
        ("[" * 100_000 + "]" * 100_000, ["[" * 100_000 + "]" * 100_000]),  # RecursionError in json
    ],
    ids=[
        "vertex name",
        "vertex error",
        "warning",
        "warning not base64",
        "warning not a string",
        "log not base64",
        "fields of the wrong type",
        "vertex fields of the wrong type",
        "non-JSON line",
        "deeply nested JSON",
    ],
)
def test_hostile_statuses_print_one_line_each_and_never_raise(line: str, printed: list[str]) -> None:
    out = Progress().feed(line)
    assert out == printed
    assert all(len(text.splitlines()) == 1 for text in out)


def test_a_deep_graph_does_not_recurse() -> None:
    """Step depths are computed without recursion: 5,000 steps in a chain."""
    vertexes = [
        Vertex(f"d{i}", f"[linux/amd64 s {i}] RUN", 0.0, 1.0, inputs=(f"d{i - 1}",)) for i in range(5000)
    ]
    vertexes.append(Vertex("loop", "[linux/amd64 loop] RUN", 0.0, 1.0, inputs=("loop", "d4999")))
    t = progress.timings(vertexes)
    assert t.steps[0].label.startswith("[s 0]") and t.steps[-1].label.startswith("[loop]")


# ---- cache hits: which steps count, and how many of them the cache served --------------------

BUSYBOX_STEPS = [
    "[build 1/4] RUN uname -m > /arch",
    "[build 2/4] COPY app.txt /app.txt",
    "[build 3/4] RUN cat /app.txt /arch > /built-on.txt",
    "[stage-1 1/1] COPY --from=build /built-on.txt /",
]


@pytest.mark.parametrize(
    ("fixture", "single", "hits"),
    [
        # the COPY'd file changed: the RUN before it is cached, it and everything after not
        ("partly-cached", "", {"linux/amd64": (1, 4), "linux/arm64": (1, 4)}),
        # amd64 was built before, arm64 never
        ("one-platform-warm", "", {"linux/amd64": (4, 4), "linux/arm64": (0, 4)}),
        ("single-platform-warm", "linux/arm64", {"linux/arm64": (4, 4)}),
        # [internal] load metadata is a step of each platform here, but no build step
        ("multi-platform", "", {"linux/amd64": (2, 4), "linux/arm64": (0, 4)}),
        ("single-platform", "linux/arm64", {"linux/arm64": (2, 4)}),
        ("failure", "", {"linux/amd64": (0, 1), "linux/arm64": (0, 1)}),
        ("emulated", "", {"linux/amd64": (1, 3), "linux/arm64": (1, 3)}),
    ],
)
def test_cache_hits(fixture: str, single: str, hits: dict[str, tuple[int, int]]) -> None:
    prog, _ = feed(fixture)
    got = prog.timings(single).cache_hits()
    assert {p: (h.cached, h.steps) for p, h in got.items()} == hits


def test_partly_cached_steps_are_marked_per_platform() -> None:
    prog, out = feed("partly-cached")
    t = prog.timings()
    assert [s.label for s in t.steps] == BUSYBOX_STEPS
    assert [s.cached for s in t.steps] == [
        {"linux/amd64": True, "linux/arm64": True},
        {"linux/amd64": False, "linux/arm64": False},
        {"linux/amd64": False, "linux/arm64": False},
        {"linux/amd64": False, "linux/arm64": False},
    ]
    assert "#8 CACHED [linux/amd64 build 1/4] RUN uname -m > /arch" in out
    assert t.cache_hits_json() == {
        "linux/amd64": {"cached": 1, "steps": 4, "ratio": 0.25},
        "linux/arm64": {"cached": 1, "steps": 4, "ratio": 0.25},
    }


def test_one_platform_warm_hits_differ_per_platform() -> None:
    prog, _ = feed("one-platform-warm")
    t = prog.timings()
    assert [s.label for s in t.steps] == BUSYBOX_STEPS
    assert all(s.cached == {"linux/amd64": True, "linux/arm64": False} for s in t.steps)
    assert {p: h.text() for p, h in t.cache_hits().items()} == {
        "linux/amd64": "4/4 steps (100%)",
        "linux/arm64": "0/4 steps (0%)",
    }


def test_a_named_build_context_is_shared_in_a_single_platform_build_too() -> None:
    """``[context busybox] ...`` carries no platform in a multi-platform build; a
    single-platform build must not make it a step of its platform (nor a cache miss)."""
    for fixture, single in (("single-platform-warm", "linux/arm64"), ("partly-cached", "")):
        prog, _ = feed(fixture)
        assert [s.label for s in prog.timings(single).steps] == BUSYBOX_STEPS


@pytest.mark.parametrize(
    ("label", "counted"),
    [
        ("[build 1/3] FROM docker.io/library/alpine:3.20", True),
        ("[stage-1 1/1] COPY --from=build /src/arch.txt /", True),
        ("[2/3] RUN make", True),
        ("RUN make", True),
        ("[internal] load metadata for docker.io/library/alpine:3.20", False),
        ("[internal] load build context", False),
        ("[context busybox] OCI load from client", False),
    ],
)
def test_is_build_step(label: str, counted: bool) -> None:
    assert progress.is_build_step(label) is counted


@pytest.mark.parametrize(
    ("cached", "steps", "text", "ratio"),
    [
        (7, 9, "7/9 steps (78%)", 0.7777777777777778),
        (0, 4, "0/4 steps (0%)", 0.0),
        (4, 4, "4/4 steps (100%)", 1.0),
        (199, 200, "199/200 steps (99%)", 0.995),  # never 100% while a step ran
        (1, 1000, "1/1000 steps (1%)", 0.001),  # never 0% once a step was cached
        (0, 0, "no steps", None),
    ],
)
def test_cache_hits_text(cached: int, steps: int, text: str, ratio: float | None) -> None:
    hits = progress.CacheHits(cached, steps)
    assert hits.text() == text
    assert hits.ratio == ratio


def test_a_platform_with_only_internal_steps_has_no_ratio() -> None:
    t = progress.timings([Vertex("a", "[linux/amd64 internal] load metadata for x", 0.0, 1.0)])
    assert t.cache_hits_json() == {"linux/amd64": {"cached": 0, "steps": 0, "ratio": None}}


def test_a_step_run_twice_is_cached_only_when_both_were() -> None:
    vs = [
        Vertex("a", "[linux/amd64 build 1/1] RUN x", 0.0, 0.0, cached=True),
        Vertex("b", "[linux/amd64 build 1/1] RUN x", 1.0, 2.0),
    ]
    hits = progress.timings(vs).cache_hits()["linux/amd64"]
    assert (hits.cached, hits.steps) == (0, 1)
