"""Step outputs and the step summary: pure functions from a build result to
text, and ``write``, the edge that hands them to the runner."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from kubebuildx import runner
from kubebuildx.build import BuildResult
from kubebuildx.runner import md_block, md_cell, md_code


def _fmt(seconds: float) -> str:
    if seconds >= 60:
        return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"
    return f"{seconds:.1f}s"


def nodes_json(result: BuildResult) -> list[dict[str, Any]]:
    return [
        {
            "name": n.name,
            "platform": str(n.platform),
            "kubernetes-node": result.pod_nodes.get(n.name, ""),
            "namespace": result.spec.namespace,
            "emulated": n.emulated_on is not None,
        }
        for n in result.spec.nodes
    ]


def step_outputs(result: BuildResult) -> dict[str, str]:
    """The step outputs other steps consume."""
    return {
        "builder": result.spec.name,
        "platforms": ",".join(str(p) for p in result.spec.platforms),
        "nodes": json.dumps(nodes_json(result), separators=(",", ":")),
        "metadata": json.dumps(dict(result.metadata), separators=(",", ":"), sort_keys=True),
        "digest": result.digest,
        "imageid": str(result.metadata.get("containerimage.config.digest", "")),
        "output-dir": result.output_dir,
        "durations": json.dumps(result.timings.as_json(), separators=(",", ":"), sort_keys=True),
        "cache-hits": json.dumps(result.timings.cache_hits_json(), separators=(",", ":"), sort_keys=True),
    }


def timings_table(result: BuildResult) -> str:
    """A row per step, a column per platform."""
    t = result.timings
    cols = [str(p) for p in result.spec.platforms]  # the order the user asked for
    head = "| Step | " + " | ".join(md_code(c) for c in cols) + " |"
    sep = "|---|" + "---:|" * len(cols)
    node_by_platform = {str(n.platform): n for n in result.spec.nodes}

    def where(c: str) -> str:
        n = node_by_platform.get(c)
        if not n:
            return "-"
        k8s = result.pod_nodes.get(n.name, "?")
        return md_cell(k8s) + (" (emulated)" if n.emulated_on else "")

    rows = [head, sep, "| _Kubernetes node_ | " + " | ".join(where(c) for c in cols) + " |"]
    for step in t.steps:
        label = step.label if len(step.label) <= 80 else step.label[:77] + "..."
        cells = []
        for c in cols:
            if c not in step.seconds:
                cells.append("")
            elif step.cached.get(c):
                cells.append("cached")
            else:
                cells.append(_fmt(step.seconds[c]))
        rows.append(f"| {md_cell(label)} | " + " | ".join(cells) + " |")
    rows.append("| **Total** | " + " | ".join(f"**{_fmt(t.totals.get(c, 0.0))}**" for c in cols) + " |")
    hits = t.cache_hits()
    rows.append("| _Cache hits_ | " + " | ".join(hits[c].text() if c in hits else "-" for c in cols) + " |")
    return "\n".join(rows)


def markdown(result: BuildResult, extra: str = "") -> str:
    status = ":x: failed" if result.error else ":white_check_mark: built"
    plats = ", ".join(md_code(str(p)) for p in result.spec.platforms)
    emulated = ", ".join(md_code(str(n.platform)) for n in result.spec.nodes if n.emulated_on)
    how = f"({emulated} emulated with QEMU)" if emulated else "natively"
    lines = [
        f"### kubebuildx: {status} {plats} {how} in {_fmt(result.seconds)}",
        "",
        f"Builder {md_code(result.spec.name)} in namespace {md_code(result.spec.namespace)}.",
        "",
        timings_table(result),
    ]
    if result.digest:
        lines += ["", f"Digest: {md_code(result.digest)}"]
    if result.output_dir:
        lines += ["", f"Output: {md_code(result.output_dir)} (one folder per platform)"]
    if result.error:
        lines += ["", md_block(result.error)]
    if extra:
        lines += ["", extra]
    return "\n".join(lines)


def console_table(result: BuildResult) -> str:
    """The same table for a terminal."""
    t = result.timings
    cols = [str(p) for p in result.spec.platforms]
    rows: list[Sequence[str]] = [["STEP", *cols]]
    for step in t.steps:
        rows.append(
            [step.label[:60]]
            + [
                "cached" if step.cached.get(c) else (_fmt(step.seconds[c]) if c in step.seconds else "")
                for c in cols
            ]
        )
    rows.append(["TOTAL", *(_fmt(t.totals.get(c, 0.0)) for c in cols)])
    hits = t.cache_hits()
    rows.append(["CACHE HITS", *(hits[c].text() if c in hits else "-" for c in cols)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in rows)


def write(result: BuildResult, extra: str = "") -> None:
    """The step outputs, the step summary (with ``extra``: the artifacts' table) and the console table."""
    for key, value in step_outputs(result).items():
        runner.set_output(key, value)
    runner.append_summary(markdown(result, extra))
    if result.timings.platforms:
        # Step labels are the Dockerfile's and BuildKit's text: a vertex named
        # ``[linux/amd64] ::error::x`` makes a row that starts with ``::``. Commands off.
        runner.tool_output(console_table(result))
    if result.output_dir:
        runner.info(f"files: {result.output_dir}/<os>_<arch>/")
