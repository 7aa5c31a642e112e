"""The run's table and targets: printed, and written as JSON and Markdown."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .rollout import ROLLOUT_HEADERS, Rollout, table_rows
from .targets import LogIngest, Target
from .wrk import WrkResult

HEADERS = ("scenario", "c", "req/s", "rows/s", "p50 ms", "p90 ms", "p99 ms", "requests", "errors")


@dataclass(frozen=True)
class Measurement:
    key: str  # stable id used by the targets, e.g. "secured"
    label: str  # what the table shows
    concurrency: int
    result: WrkResult
    rows_per_request: int = 1
    # CPU seconds each server-side process group spent during the measured run.
    cpu_s: Mapping[str, float] = field(default_factory=dict)
    # Busy seconds of the pinned server CPU by any process (others' work included).
    core_busy_s: float | None = None

    def cpu_ms_per_request(self) -> dict[str, float]:
        if not self.result.requests:
            return {}
        return {name: 1000 * sec / self.result.requests for name, sec in self.cpu_s.items()}

    def server_busy(self) -> float | None:
        """Share of one CPU the servers used (1.0 = the pinned CPU was saturated)."""
        if not self.cpu_s or self.result.duration_s <= 0:
            return None
        return sum(self.cpu_s.values()) / self.result.duration_s

    def core_busy(self) -> float | None:
        if self.core_busy_s is None or self.result.duration_s <= 0:
            return None
        return self.core_busy_s / self.result.duration_s

    def cells(self) -> list[str]:
        r = self.result
        if r.requests == 0:
            return [self.label, str(self.concurrency), "0", "0", "-", "-", "-", "0", str(r.errors)]
        errors = str(r.errors)
        if r.errors:
            codes = ",".join(f"{code}x{n}" for code, n in sorted(r.statuses.items()) if not code.startswith("2"))
            errors += f" ({codes})" if codes else " (socket)"
        return [
            self.label,
            str(self.concurrency),
            f"{r.rps:,.1f}",
            f"{r.rps * self.rows_per_request:,.0f}",
            f"{r.p50_ms:.2f}",
            f"{r.p90_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.requests:,}",
            errors,
        ]

    def to_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "label": self.label,
            "concurrency": self.concurrency,
            "rows_per_request": self.rows_per_request,
            "rows_per_s": round(self.result.rps * self.rows_per_request, 1),
            **self.result.to_dict(),
            "cpu_s": {k: round(v, 3) for k, v in self.cpu_s.items()},
            "cpu_ms_per_request": {k: round(v, 3) for k, v in self.cpu_ms_per_request().items()},
            "server_cpu_busy": None if (busy := self.server_busy()) is None else round(busy, 3),
            "pinned_cpu_busy_all": None if (core := self.core_busy()) is None else round(core, 3),
        }


@dataclass(frozen=True)
class InProcess:
    rows_per_call: int
    calls: int
    seconds: float
    # "batch": the default model's predict_proba, which the batch targets compare with.
    key: str = "batch"
    label: str = ""
    # This process's CPU time over the measured calls, and the pinned CPU's busy time by anyone.
    cpu_s: float | None = None
    core_busy_s: float | None = None

    @property
    def rows_per_s(self) -> float:
        return self.rows_per_call * self.calls / self.seconds

    def cells(self) -> list[str]:
        per_call_ms = 1000 * self.seconds / self.calls
        return [
            self.label or f"in-process predict_proba {self.rows_per_call:,} rows",
            "1",
            f"{self.calls / self.seconds:,.1f}",
            f"{self.rows_per_s:,.0f}",
            f"{per_call_ms:.2f}",
            "",
            "",
            f"{self.calls:,}",
            "0",
        ]

    def to_dict(self) -> dict[str, object]:
        return {"key": self.key, "label": self.cells()[0], "rows_per_call": self.rows_per_call, "calls": self.calls,
                "seconds": self.seconds, "rows_per_s": round(self.rows_per_s, 1),
                "ms_per_call": round(1000 * self.seconds / self.calls, 4),
                "cpu_ms_per_call": None if self.cpu_s is None else round(1000 * self.cpu_s / self.calls, 4),
                "cpu_busy": None if self.cpu_s is None else round(self.cpu_s / self.seconds, 3),
                "pinned_cpu_busy_all": None if self.core_busy_s is None else round(self.core_busy_s / self.seconds, 3),
                }  # fmt: skip


def _rows(measurements: Sequence[Measurement], inprocess: Sequence[InProcess]) -> list[list[str]]:
    return [m.cells() for m in measurements] + [i.cells() for i in inprocess]


def text_table(measurements: Sequence[Measurement], inprocess: Sequence[InProcess]) -> str:
    rows = [list(HEADERS), *_rows(measurements, inprocess)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    lines = []
    for n, row in enumerate(rows):
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(measurements: Sequence[Measurement], inprocess: Sequence[InProcess]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join(["---"] + ["---:"] * (len(HEADERS) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(measurements, inprocess)]
    return "\n".join(lines)


CPU_GROUPS = ("baseline", "gateway", "inference", "auth", "redis", "postgres")
# The bench process itself, for the in-process rows (CPU time per call, not per request).
IN_PROCESS = "in-process"


def _cpu_rows(
    measurements: Sequence[Measurement], inprocess: Sequence[InProcess] = ()
) -> tuple[list[str], list[list[str]]]:
    timed = [i for i in inprocess if i.cpu_s is not None and i.calls]
    groups = [g for g in CPU_GROUPS if any(g in m.cpu_s for m in measurements)]
    groups += [IN_PROCESS] if timed else []
    headers = ["scenario", "c", *groups, "total", "servers busy", "CPU busy (all)"]
    rows = []
    for m in measurements:
        per = m.cpu_ms_per_request()
        if not per:
            continue
        rows.append([m.label, str(m.concurrency)] + [f"{per[g]:.3f}" if g in per else "" for g in groups]
                    + _busy_cells(sum(per.values()), m.server_busy(), m.core_busy()))  # fmt: skip
    for i in timed:
        assert i.cpu_s is not None
        per_call = 1000 * i.cpu_s / i.calls
        core = None if i.core_busy_s is None else i.core_busy_s / i.seconds
        rows.append([i.cells()[0], "1"] + [f"{per_call:.3f}" if g == IN_PROCESS else "" for g in groups]
                    + _busy_cells(per_call, i.cpu_s / i.seconds, core))  # fmt: skip
    return headers, rows


def _busy_cells(total_ms: float, busy: float | None, core: float | None) -> list[str]:
    return [
        f"{total_ms:.3f}",
        f"{100 * busy:.0f}%" if busy is not None else "",
        f"{100 * core:.0f}%" if core is not None else "",
    ]


def cpu_text_table(measurements: Sequence[Measurement], inprocess: Sequence[InProcess] = ()) -> str:
    headers, rows = _cpu_rows(measurements, inprocess)
    if not rows:
        return ""
    table = [headers, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in table]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def cpu_markdown_table(measurements: Sequence[Measurement], inprocess: Sequence[InProcess] = ()) -> str:
    headers, rows = _cpu_rows(measurements, inprocess)
    if not rows:
        return ""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def rollout_text(rollout: Rollout) -> str:
    table = [list(ROLLOUT_HEADERS), *table_rows(rollout)]
    widths = [max(len(r[i]) for r in table) for i in range(len(ROLLOUT_HEADERS))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in table]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([*(line.rstrip() for line in lines), rollout.summary()])


def rollout_markdown(rollout: Rollout) -> str:
    rule = "|" + "|".join(["---"] + ["---:"] * (len(ROLLOUT_HEADERS) - 1)) + "|"
    lines = ["| " + " | ".join(row) + " |" for row in [list(ROLLOUT_HEADERS), *table_rows(rollout)]]
    summary = rollout.summary()
    return "\n".join([lines[0], rule, *lines[1:], "", summary[:1].upper() + summary[1:] + "."])


def targets_text(targets: Sequence[Target]) -> str:
    return "\n".join(t.describe() for t in targets)


def _loadavg(value: object) -> str:
    if not isinstance(value, (list, tuple)):
        return "unknown"
    return " / ".join(f"{v:.2f}" for v in value)


def markdown(
    *,
    measurements: Sequence[Measurement],
    inprocess: Sequence[InProcess],
    targets: Sequence[Target],
    log_ingest: LogIngest | None,
    context: dict[str, object],
    rollout: Rollout | None = None,
) -> str:
    machine = context["machine"]
    assert isinstance(machine, dict)
    versions = context["versions"]
    assert isinstance(versions, dict)
    problems = context.get("problems") or []
    assert isinstance(problems, list)
    out = [
        f"# modelgate bench — {context['finished_at']}",
        "",
        f"Machine: {machine['cpu_model']}, {machine['cores']} cores, Linux {machine['kernel']}.",
        f"Pinning: {context['pinning']}.",
        f"Load average (1/5/15 min) at start {_loadavg(context.get('loadavg_start'))}, "
        f"at end {_loadavg(context.get('loadavg_end'))}: other work on the machine shares the CPUs.",
        "",
        *[f"**Problem:** {p}" for p in problems],
        *([""] if problems else []),
        markdown_table(measurements, inprocess),
        "",
        "Latencies are wrk's (closed loop, one connection per concurrent client). "
        "Errors are non-2xx responses plus socket errors/timeouts.",
        "",
        "## Server CPU per request (ms)",
        "",
        "From the kernel's per-process accounting (/proc) over each measured run; Postgres includes "
        "every backend. 'servers busy' is the share of the pinned server CPU the servers used; "
        "'CPU busy (all)' is how busy that CPU was with anything (/proc/stat): the gap is other work "
        "on the machine. Servers near 100% means CPU-bound; all near 100% with servers well below "
        "means something else took the CPU. In-process rows: the bench's own CPU per call, pinned to "
        "the same CPU; their 'servers busy' is the share of the wall time the bench process ran.",
        "",
        cpu_markdown_table(measurements, inprocess),
        "",
        "## Targets",
        "",
        *[f"- {t.describe()}" for t in targets],
        "",
    ]
    if rollout is not None:
        out += ["## Rollout: upload to first prediction from the new version", "", rollout_markdown(rollout), ""]
    if log_ingest is not None:
        out += [
            "## Log ingest",
            "",
            f"Secured-path requests answered (warm-ups included): {log_ingest.answered}; "
            f"request_log rows written for them: {log_ingest.rows}; missing: {log_ingest.missing}; "
            f"extra (in flight when wrk stopped): {log_ingest.extra}.",
            "",
        ]
    out += ["## Versions", "", ", ".join(f"{k} {v}" for k, v in versions.items()), "", "## Settings", ""]
    settings = context["settings"]
    assert isinstance(settings, dict)
    out += [f"- `{k}`: {v}" for k, v in settings.items()]
    return "\n".join(out) + "\n"


def write(
    results_dir: Path,
    name: str,
    *,
    measurements: Sequence[Measurement],
    inprocess: Sequence[InProcess],
    targets: Sequence[Target],
    log_ingest: LogIngest | None,
    context: dict[str, object],
    rollout: Rollout | None = None,
) -> tuple[Path, Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    data = {
        **context,
        "runs": [m.to_dict() for m in measurements],
        "inprocess": [i.to_dict() for i in inprocess],
        "log_ingest": log_ingest.to_dict() if log_ingest else None,
        "rollout": rollout.to_dict() if rollout else None,
        "targets": [t.to_dict() for t in targets],
    }
    json_path = results_dir / f"{name}.json"
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    md_path = results_dir / f"{name}.md"
    md_path.write_text(
        markdown(
            measurements=measurements,
            inprocess=inprocess,
            targets=targets,
            log_ingest=log_ingest,
            context=context,
            rollout=rollout,
        )
    )
    return json_path, md_path
