"""Outputs and the step summary, from a build result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubebuildx import build, progress, runner, summary
from kubebuildx.builder import BuilderSpec, plan
from kubebuildx.inputs import parse_inputs
from kubebuildx.platforms import Platform
from kubebuildx.progress import Timings, Vertex

FIXTURES = Path(__file__).parent.parent / "fixtures" / "progress"
AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")
RISCV = Platform("linux", "riscv64")
ALPINE = "docker.io/library/alpine:3.20@sha256:beefdbd8a1da6d2915566fd"
PODS = {"kbx-demo-linux-amd64": "amd-1", "kbx-demo-linux-arm64": "arm-1"}
DIGEST = "sha256:0d2f1b2c3e4a5b6c7d8e9f00112233445566778899aabbccddeeff0011223344"


def timings(fixture: str = "multi-platform") -> Timings:
    prog = progress.Progress()
    for line in (FIXTURES / f"{fixture}.jsonl").read_text().splitlines():
        prog.feed(line)
    return prog.timings()


def spec(emulated: dict[Platform, Platform] | None = None) -> BuilderSpec:
    native = (AMD64,) if emulated else (AMD64, ARM64)
    return plan(parse_inputs({}), name="kbx-demo", namespace="buildkit", native=native, emulated=emulated)


def result(**kw: object) -> build.BuildResult:
    args: dict[str, object] = {
        "spec": spec(),
        "timings": timings(),
        "pod_nodes": PODS,
        "metadata": {},
        "output_dir": "/runner/_temp/kbx/out",
        "seconds": 23.456,
    }
    args.update(kw)
    return build.BuildResult(**args)  # type: ignore[arg-type]


def test_outputs() -> None:
    metadata = {
        "containerimage.digest": DIGEST,
        "containerimage.config.digest": "sha256:cfg",
        "buildx.build.ref": "b/x",
    }
    out = summary.step_outputs(result(metadata=metadata))
    assert sorted(out) == [
        "builder",
        "cache-hits",
        "digest",
        "durations",
        "imageid",
        "metadata",
        "nodes",
        "output-dir",
        "platforms",
    ]
    assert all(isinstance(v, str) for v in out.values())
    assert out["builder"] == "kbx-demo"
    assert out["platforms"] == "linux/amd64,linux/arm64"
    assert out["digest"] == DIGEST
    assert out["imageid"] == "sha256:cfg"
    assert out["output-dir"] == "/runner/_temp/kbx/out"
    assert json.loads(out["metadata"]) == metadata
    assert json.loads(out["durations"]) == {"linux/amd64": 13.68, "linux/arm64": 20.87}
    assert json.loads(out["cache-hits"]) == {
        "linux/amd64": {"cached": 2, "steps": 4, "ratio": 0.5},
        "linux/arm64": {"cached": 0, "steps": 4, "ratio": 0.0},
    }
    assert json.loads(out["nodes"]) == [
        {
            "name": "kbx-demo-linux-amd64",
            "platform": "linux/amd64",
            "kubernetes-node": "amd-1",
            "namespace": "buildkit",
            "emulated": False,
        },
        {
            "name": "kbx-demo-linux-arm64",
            "platform": "linux/arm64",
            "kubernetes-node": "arm-1",
            "namespace": "buildkit",
            "emulated": False,
        },
    ]
    # compact JSON, one line each: the runner's output file takes them as they are
    assert "\n" not in out["nodes"] + out["metadata"] + out["durations"] + out["cache-hits"]
    assert ": " not in out["durations"]


def test_outputs_without_an_image() -> None:
    out = summary.step_outputs(result(pod_nodes={}))
    assert (out["digest"], out["imageid"], out["metadata"]) == ("", "", "{}")
    assert [n["kubernetes-node"] for n in json.loads(out["nodes"])] == ["", ""]


@pytest.mark.parametrize("value", [None, 42, ["sha256:a"]])
def test_digest_that_is_not_a_string(value: object) -> None:
    assert result(metadata={"containerimage.digest": value}).digest == ""


def test_markdown() -> None:
    md = summary.markdown(result(metadata={"containerimage.digest": DIGEST}))
    assert md.splitlines() == [
        "### kubebuildx: :white_check_mark: built `linux/amd64`, `linux/arm64` natively in 23.5s",
        "",
        "Builder `kbx-demo` in namespace `buildkit`.",
        "",
        "| Step | `linux/amd64` | `linux/arm64` |",
        "|---|---:|---:|",
        "| _Kubernetes node_ | amd-1 | arm-1 |",
        "| \\[internal\\] load metadata for docker.io/library/alpine:3.20 | 1.2s | 1.5s |",
        f"| \\[build 1/3\\] FROM {ALPINE}... | cached | 2.2s |",
        "| \\[build 2/3\\] WORKDIR /src | cached | 0.1s |",
        "| \\[build 3/3\\] RUN uname -m \\> arch.txt \\&\\& make | 12.0s | 16.5s |",
        "| \\[stage-1 1/1\\] COPY --from=build /src/arch.txt / | 0.1s | 0.2s |",
        "| **Total** | **13.7s** | **20.9s** |",
        "| _Cache hits_ | 2/4 steps (50%) | 0/4 steps (0%) |",
        "",
        f"Digest: `{DIGEST}`",
        "",
        "Output: `/runner/_temp/kbx/out` (one folder per platform)",
    ]


def test_table_has_a_row_per_step_and_a_column_per_platform() -> None:
    table = summary.timings_table(result()).splitlines()
    t = timings()
    assert len(table) == 2 + 1 + len(t.steps) + 2  # head, separator, node row, steps, total, cache hits
    assert all(row.count(" | ") == 2 for row in table if row.startswith("| "))


def test_columns_follow_the_requested_order() -> None:
    s = plan(parse_inputs({}), name="kbx-demo", namespace="buildkit", native=(ARM64, AMD64))
    head = summary.timings_table(result(spec=s)).splitlines()[0]
    assert head == "| Step | `linux/arm64` | `linux/amd64` |"


def test_failed_build_summary_keeps_the_error() -> None:
    md = summary.markdown(
        result(error="ERROR: failed to solve: process did not complete successfully", output_dir="")
    )
    assert md.startswith("### kubebuildx: :x: failed")
    assert md.splitlines()[-3:] == [
        "```",
        "ERROR: failed to solve: process did not complete successfully",
        "```",
    ]
    assert "Output:" not in md
    assert "Digest:" not in md


def test_emulated_platform_is_marked() -> None:
    vs = [
        Vertex("a", "[linux/amd64 build 1/1] RUN make", 0.0, 2.0),
        Vertex("b", "[linux/riscv64 build 1/1] RUN make", 0.0, 65.25),
    ]
    s = spec(emulated={RISCV: AMD64})
    r = result(spec=s, timings=progress.timings(vs), pod_nodes={"kbx-demo-linux-riscv64": "amd-2"})
    rows = summary.timings_table(r).splitlines()
    assert rows[2] == "| _Kubernetes node_ | ? | amd-2 (emulated) |"
    assert rows[3] == "| \\[build 1/1\\] RUN make | 2.0s | 1m05.2s |"
    assert json.loads(summary.step_outputs(r)["nodes"])[1]["emulated"] is True
    assert summary.markdown(r).splitlines()[0] == (
        "### kubebuildx: :white_check_mark: built `linux/amd64`, `linux/riscv64` "
        "(`linux/riscv64` emulated with QEMU) in 23.5s"
    )


def test_cells_are_escaped_and_long_labels_cut() -> None:
    label = "[build 1/1] RUN echo a | tr a b && " + "x" * 100
    t = progress.timings([Vertex("a", f"[linux/amd64 {label[1:]}", 0.0, 1.0)])
    s = plan(parse_inputs({}), name="kbx-demo", namespace="buildkit", native=(AMD64,))
    row = summary.timings_table(result(spec=s, timings=t)).splitlines()[3]
    assert row == "| \\[build 1/1\\] RUN echo a \\| tr a b \\&\\& " + "x" * 42 + "... | 1.0s |"


def test_a_platform_without_a_step_has_empty_cells() -> None:
    t = progress.timings([Vertex("a", "[linux/amd64 build 1/1] RUN make", 0.0, 1.0)])
    rows = summary.timings_table(result(timings=t)).splitlines()
    assert rows[3] == "| \\[build 1/1\\] RUN make | 1.0s |  |"
    assert rows[4] == "| **Total** | **1.0s** | **0.0s** |"
    assert rows[5] == "| _Cache hits_ | 0/1 steps (0%) | - |"


def test_console_table() -> None:
    lines = summary.console_table(result()).splitlines()
    start = lines[0].index("linux/amd64")
    assert lines[0].split() == ["STEP", "linux/amd64", "linux/arm64"]
    assert lines[-2].split() == ["TOTAL", "13.7s", "20.9s"]
    assert lines[-1].startswith("CACHE HITS ")
    assert lines[-1][start:].split("  ") == ["2/4 steps (50%)", "0/4 steps (0%)"]
    assert lines[4].split()[-2:] == ["12.0s", "16.5s"]
    start = lines[0].index("linux/amd64")  # the step column is padded alike on every line
    assert all(line[start - 2 : start] == "  " and line[start] != " " for line in lines)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0, "0.0s"), (0.04, "0.0s"), (9.95, "9.9s"), (59.9, "59.9s"), (60.0, "1m00.0s"), (125.5, "2m05.5s")],
)
def test_durations(seconds: float, text: str) -> None:
    assert summary._fmt(seconds) == text


def test_a_partly_cached_build_marks_each_cell_and_counts_hits_per_platform() -> None:
    """Captured: amd64 built before, arm64 never (tests/fixtures/progress/one-platform-warm.jsonl)."""
    r = result(timings=timings("one-platform-warm"))
    rows = summary.timings_table(r).splitlines()
    assert rows[3:] == [
        "| \\[build 1/4\\] RUN uname -m \\> /arch | cached | 0.2s |",
        "| \\[build 2/4\\] COPY app.txt /app.txt | cached | 0.1s |",
        "| \\[build 3/4\\] RUN cat /app.txt /arch \\> /built-on.txt | cached | 0.3s |",
        "| \\[stage-1 1/1\\] COPY --from=build /built-on.txt / | cached | 0.0s |",
        "| **Total** | **0.0s** | **0.6s** |",
        "| _Cache hits_ | 4/4 steps (100%) | 0/4 steps (0%) |",
    ]
    assert json.loads(summary.step_outputs(r)["cache-hits"]) == {
        "linux/amd64": {"cached": 4, "steps": 4, "ratio": 1.0},
        "linux/arm64": {"cached": 0, "steps": 4, "ratio": 0.0},
    }
    console = summary.console_table(r).splitlines()
    assert console[1].split()[-2:] == ["cached", "0.2s"]
    assert console[-1].split() == ["CACHE", "HITS", "4/4", "steps", "(100%)", "0/4", "steps", "(0%)"]


def test_a_failed_build_still_counts_its_hits() -> None:
    r = result(timings=timings("failure"), error="ERROR: failed to solve")
    assert summary.timings_table(r).splitlines()[-1] == "| _Cache hits_ | 0/1 steps (0%) | 0/1 steps (0%) |"
    assert json.loads(summary.step_outputs(r)["cache-hits"])["linux/arm64"] == {
        "cached": 0,
        "steps": 1,
        "ratio": 0.0,
    }


def test_a_step_named_like_a_workflow_command_is_printed_with_commands_off(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``[linux/amd64] ::error title=x::pwned`` makes a row whose first cell starts with ``::``:
    the console table is a tool's text, printed between stop-commands and its token."""
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    t = progress.timings([Vertex("a", "[linux/amd64] ::error title=x::pwned", 0.0, 1.0)])
    s = plan(parse_inputs({}), name="kbx-demo", namespace="buildkit", native=(AMD64,))
    summary.write(result(spec=s, timings=t, output_dir=""))
    lines = capsys.readouterr().out.splitlines()
    row = next(i for i, line in enumerate(lines) if "pwned" in line)
    assert lines[row].startswith("::error title=x::pwned")  # the threat is real...
    stop = next(i for i, line in enumerate(lines) if line.startswith("::stop-commands::"))
    token = lines[stop].removeprefix("::stop-commands::")
    assert stop < row < lines.index(f"::{token}::")  # ...and inert


@pytest.mark.parametrize(
    ("text", "cell"),
    [
        ("node-1", "node-1"),
        ("<img src=x onerror=alert(1)>", "\\<img src=x onerror=alert\\(1\\)\\>"),
        ("[click](https://evil.example)", "\\[click\\]\\(https://evil.example\\)"),
        ("![x](https://evil.example/t.png)", "\\!\\[x\\]\\(https://evil.example/t.png\\)"),
        ("**bold** _it_ ~~s~~ `code`", "\\*\\*bold\\*\\* \\_it\\_ \\~\\~s\\~\\~ \\`code\\`"),
        ("a | b \\| c", "a \\| b \\\\\\| c"),
        ("a\n| x | y |\nb", "a\\\\n\\| x \\| y \\|\\\\nb"),
        ("&lt;b&gt;", "\\&lt;b\\&gt;"),
    ],
)
def test_md_cell_escapes_every_markdown_special(text: str, cell: str) -> None:
    assert runner.md_cell(text) == cell


def test_cluster_and_dockerfile_text_cannot_format_the_table() -> None:
    """A node name and a step label are the cluster's and the Dockerfile's: escaped, one cell each."""
    label = "[linux/amd64 build 1/1] RUN <img src=x> [a](http://e) | x"
    t = progress.timings([Vertex("a", label, 0.0, 1.0)])
    s = plan(parse_inputs({}), name="kbx-demo", namespace="buildkit", native=(AMD64,))
    pods = {"kbx-demo-linux-amd64": "evil_node\n| injected | row |"}
    rows = summary.timings_table(result(spec=s, timings=t, pod_nodes=pods)).splitlines()
    assert rows[2] == "| _Kubernetes node_ | evil\\_node\\\\n\\| injected \\| row \\| |"
    assert rows[3] == "| \\[build 1/1\\] RUN \\<img src=x\\> \\[a\\]\\(http://e\\) \\| x | 1.0s |"
    assert len(rows) == 6


@pytest.mark.parametrize("error", ["fails\n```\n![x](https://evil.example/t.png)", "a ```` b", "`x`"])
def test_an_error_cannot_close_its_code_block(error: str) -> None:
    lines = summary.markdown(result(error=error, output_dir="")).splitlines()
    fence = lines[-1]
    assert set(fence) == {"`"} and len(fence) >= 3
    assert lines[-2 - error.count("\n") : -1] == error.splitlines()
    assert lines[-3 - error.count("\n")] == fence
    assert fence not in error  # the text holds no run of backticks as long: it cannot end the block


def test_md_code_is_longer_than_the_backticks_inside() -> None:
    assert runner.md_code("linux/amd64") == "`linux/amd64`"
    assert runner.md_code("a``b") == "``` a``b ```"
    assert runner.md_code("a|b\nc") == "`a\\|b\\nc`"
