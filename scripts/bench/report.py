"""Report: the results as rows (medians of the rounds, ratios between
targets of one scenario), markdown tables, the chart and reports/bench.md."""

from __future__ import annotations

import dataclasses
import os
import statistics
from pathlib import Path

from scripts.bench.measure import Run

# The references each row is divided by, when the scenario ran on them.
REFERENCES = ("bare", "ceiling", "ours")


def fmt(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def ratio_text(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


@dataclasses.dataclass
class Row:
    scenario: str
    title: str
    target: str
    rps: float
    p50: float
    p99: float
    errors: int
    cpu_us: float | None  # median of the rounds' CPU per request (measure.run_wrk)
    idle: float | None  # median of the rounds' idle share of the machine
    switches: float | None  # median of the rounds' context switches per request (measure.run_wrk)
    ratios: dict[str, float | None]  # reference target -> median req/s ÷ its median
    ranges: dict[str, tuple[float, float] | None]  # reference -> min, max of the per-round ratios


def summarize(scenarios, target_names: list[str], runs: dict[tuple[str, str], list[Run]]) -> list[Row]:
    """One row per (scenario, target) that ran, in scenario then target order."""
    rows = []
    for scenario in scenarios:
        medians = {
            name: statistics.median(r.rps for r in runs[(scenario.name, name)])
            for name in target_names
            if runs.get((scenario.name, name))
        }
        for name in target_names:
            mine = runs.get((scenario.name, name))
            if not mine:
                continue
            ratios, ranges = {}, {}
            for ref in REFERENCES:
                theirs = runs.get((scenario.name, ref))
                ratios[ref] = medians[name] / medians[ref] if ref in medians and medians[ref] else None
                paired = [a.rps / b.rps for a, b in zip(mine, theirs or [], strict=False) if b.rps]
                ranges[ref] = (min(paired), max(paired)) if paired else None
            rows.append(
                Row(
                    scenario=scenario.name,
                    title=scenario.title,
                    target=name,
                    rps=medians[name],
                    p50=statistics.median(r.p50_ms for r in mine),
                    p99=statistics.median(r.p99_ms for r in mine),
                    errors=sum(r.status_errors + r.socket_errors for r in mine),
                    cpu_us=_median(r.cpu_us for r in mine),
                    idle=_median(r.idle for r in mine),
                    switches=_median(r.switches for r in mine),
                    ratios=ratios,
                    ranges=ranges,
                )
            )
    return rows


def _median(values) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


COST_HEADERS = "CPU µs/req | switches/req | idle %"


def cost_cells(row: Row) -> str:
    """The CPU µs/req, switches/req and idle % cells, a dash where they were not measured."""
    cpu = "—" if row.cpu_us is None else f"{row.cpu_us:,.0f}"
    switches = "—" if row.switches is None else f"{row.switches:.1f}"
    return f"{cpu} | {switches} | " + ("—" if row.idle is None else f"{100 * row.idle:.0f}")


def results_table(rows: list[Row]) -> str:
    """Every throughput with its p50 and p99, what each request cost the
    server in CPU and how idle the machine was, and its ratios to the references."""
    lines = [
        f"| scenario | target | req/s | p50 ms | p99 ms | {COST_HEADERS} "
        "| ÷ bare | ÷ ceiling | ÷ ours | ratio range | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        # The range of the first reference that ran: how much the rounds agree.
        span = next((row.ranges[ref] for ref in REFERENCES if row.ranges[ref] and row.target != ref), None)
        span_text = "—" if span is None else f"{span[0]:.3f}–{span[1]:.3f}"
        lines.append(
            f"| {row.scenario} | {row.target} | {fmt(row.rps)} | {fmt(row.p50)} | {fmt(row.p99)} | "
            f"{cost_cells(row)} | "
            + " | ".join(ratio_text(row.ratios[ref]) for ref in REFERENCES)
            + f" | {span_text} | {row.errors} |"
        )
    return "\n".join(lines)


def memory_table(samples: list[dict[int, int]]) -> str:
    lines = [
        "| worker pid | RSS after warm-up MiB | after round 1 MiB | after last round MiB | growth round 1 → last KiB |",
        "|---|---:|---:|---:|---:|",
    ]
    base, first, last = samples[0], samples[1], samples[-1]
    for pid in sorted(set(first) | set(last)):
        cells = [f"{d[pid] / 1024:.1f}" if pid in d else "gone" for d in (base, first, last)]
        growth = f"{last[pid] - first[pid]:+d}" if pid in first and pid in last else "n/a"
        lines.append(f"| {pid} | {' | '.join(cells)} | {growth} |")
    return "\n".join(lines)


def login_text(n: int, r: int, p: int, ms: float, login_row: Row | None) -> str:
    cores = os.cpu_count() or 1
    lines = [
        f"scrypt N={n}, r={r}, p={p} ({128 * n * r // 2**20} MiB per hash): "
        f"{ms:.1f} ms per hash in the bench process, so at most ~{cores * 1000 / ms:.0f} logins/s "
        f"on {cores} cores.",
    ]
    if login_row:
        ref = next((row for row in ("bare", "ceiling") if login_row.ratios.get(row)), None)
        against = (
            f"; its ratio to the {ref} ({login_row.ratios[ref]:.4f}) only measures scrypt, by design"
            if ref
            else ""
        )
        lines.append(
            f"Measured: {fmt(login_row.rps)} logins/s (p50 {fmt(login_row.p50)} ms, "
            f"p99 {fmt(login_row.p99)} ms) = {login_row.rps * ms / 1000 / cores:.0%} "
            f"of the hash-bound limit{against}."
        )
    return "\n\n".join(lines)


def profile_lines(profiles: dict[str, tuple[list[tuple[str, float]], float]]) -> list[str]:
    md = []
    for name, (top, in_app) in profiles.items():
        md += [
            f"## Profile: {name} (py-spy on every worker, wall clock, request threads only)",
            "",
            f"{in_app:.0f}% of request-thread samples are inside the Falcon app (App.__call__); "
            "the rest is gunicorn (parsing, writing, access log).",
            "",
            "| self % | function |",
            "|---:|---|",
        ]
        md += [f"| {pct:.1f} | `{fn}` |" for fn, pct in top]
        md.append("")
    return md


def chart(rows: list[Row], path: Path) -> None:
    """Left: each target's req/s ÷ the first reference its scenario ran on;
    right: req/s, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(r.scenario for r in rows))
    targets = list(dict.fromkeys(r.target for r in rows))
    by = {(r.scenario, r.target): r for r in rows}
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5))
    width = 0.8 / max(1, len(targets))
    for i, target in enumerate(targets):
        xs = [j + (i - (len(targets) - 1) / 2) * width for j in range(len(scenarios))]
        ratios, rps = [], []
        for s in scenarios:
            row = by.get((s, target))
            ratio = (
                next((row.ratios[ref] for ref in REFERENCES if row and row.ratios[ref]), None)
                if row
                else None
            )
            ratios.append(ratio or 0)
            rps.append(row.rps if row else 0)
        left.bar(xs, ratios, width=width, label=target)
        right.bar(xs, rps, width=width, label=target)
    for ax in (left, right):
        ax.set_xticks(list(range(len(scenarios))), scenarios)
        ax.tick_params(axis="x", rotation=30)
    left.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    left.set_title("req/s ÷ " + " or ".join(REFERENCES[:2]) + " (median)")
    right.set_yscale("log")
    right.set_title("requests/s (log scale)")
    if targets:
        right.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(sections: list[tuple[str, str]], config: str, legend: str) -> str:
    """reports/bench.md: the config line, the legend, then (title, body) sections."""
    md = ["# Fleet API benchmark", "", config, "", legend, ""]
    for title, body in sections:
        if title:
            md += [f"## {title}", ""]
        md += [body, ""]
    return "\n".join(md)


def steal_text(runs: dict[tuple[str, str], list[Run]]) -> str:
    """How much CPU the hypervisor took for other guests during the runs:
    what makes two runs of one target disagree, and the reason ratios are
    measured side by side."""
    stolen = sorted(r.steal for side in runs.values() for r in side if r.steal is not None)
    if not stolen:
        return "CPU stolen by the host: not measured"
    return (
        f"CPU stolen by the host during the runs: median {100 * statistics.median(stolen):.1f}%, "
        f"max {100 * stolen[-1]:.1f}%"
    )


def pair_text(runs: dict[tuple[str, str], list[Run]], scenario: str, after: str, before: str) -> str:
    """A before/after pair, interleaved round by round: each side's medians
    with p50 and p99, and the ratio after ÷ before with its per-round range."""
    a, b = runs.get((scenario, after)), runs.get((scenario, before))
    if not a or not b:
        return "(not measured)"
    paired = [x.rps / y.rps for x, y in zip(a, b, strict=False) if y.rps]
    a_rps, b_rps = (statistics.median(r.rps for r in side) for side in (a, b))
    lines = [
        "| target | req/s | p50 ms | p99 ms | p99 per round ms |",
        "|---|---:|---:|---:|---|",
    ]
    for name, side, rps in ((after, a, a_rps), (before, b, b_rps)):
        per_round = ", ".join(fmt(r.p99_ms) for r in side)
        p50 = statistics.median(r.p50_ms for r in side)
        p99 = statistics.median(r.p99_ms for r in side)
        lines.append(f"| {name} | {fmt(rps)} | {fmt(p50)} | {fmt(p99)} | {per_round} |")
    ratio = a_rps / b_rps if b_rps else 0.0
    per_round = ", ".join(f"{x:.3f}" for x in paired)
    lines += [
        "",
        f"**{after} ÷ {before} = {ratio:.3f}** (median req/s; per round: {per_round}; "
        f"range {min(paired, default=0):.3f}–{max(paired, default=0):.3f})",
    ]
    return "\n".join(lines)


def layout_table(rows: list[Row], layouts: tuple[str, ...], shipped: str) -> str:
    """Ours and the ceiling under each BENCH_LAYOUTS layout next to the
    shipped one, scenario by scenario: what the layout buys ours, and what
    it does to the ceiling, whose ratio alone could hide that it fell. The
    ratios to the shipped targets are the rows' own ÷ ours and ÷ ceiling."""
    by = {(r.scenario, r.target): r for r in rows}
    lines = [
        f"| scenario | layout | ours req/s | p99 ms | {COST_HEADERS} | ceiling req/s "
        "| ours ÷ ceiling | ours ÷ shipped ours | ceiling ÷ shipped ceiling |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario in dict.fromkeys(r.scenario for r in rows):
        if not any((scenario, f"ours/{layout}") in by for layout in layouts):
            continue
        for layout in ("", *layouts):
            suffix = f"/{layout}" if layout else ""
            ours, ceiling = by.get((scenario, "ours" + suffix)), by.get((scenario, "ceiling" + suffix))
            if ours is None:
                continue
            own = ours.rps / ceiling.rps if ceiling and ceiling.rps else None
            lines.append(
                f"| {scenario} | {layout or shipped + ' (shipped)'} | {fmt(ours.rps)} | {fmt(ours.p99)} "
                f"| {cost_cells(ours)} | {fmt(ceiling.rps) if ceiling else '—'} | {ratio_text(own)} "
                f"| {ratio_text(ours.ratios['ours'])} | {ratio_text(ceiling.ratios['ceiling'] if ceiling else None)} |"
            )
    return "\n".join(lines)


def scale_table(rows: list[Row]) -> str:
    """Each scaled twin (`ours@N`) next to its 15-ship target, scenario by scenario."""
    by = {(r.scenario, r.target): r for r in rows}
    lines = [
        "| scenario | target | req/s at 15 | p99 ms at 15 | target at scale | req/s | p99 ms | scale ÷ 15 |",
        "|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        base_name, at, _ = row.target.partition("@")
        base = by.get((row.scenario, base_name))
        if not at or base is None:
            continue
        lines.append(
            f"| {row.scenario} | {base_name} | {fmt(base.rps)} | {fmt(base.p99)} | {row.target} | "
            f"{fmt(row.rps)} | {fmt(row.p99)} | {row.rps / base.rps if base.rps else 0:.3f} |"
        )
    return "\n".join(lines)


def write_path_table(runs: dict[tuple[str, str], list[Run]]) -> str:
    """Each (scenario, target) that wrote: medians over the rounds of what
    its store's write path did (from its /metrics, see measure.WritePath)."""
    lines = [
        "| scenario | target | writes / commit | write lock busy % | wait µs / hold | held µs / hold |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for (scenario, target), side in runs.items():
        paths = [r.write_path for r in side if r.write_path is not None]
        if not paths:
            continue
        cells = (
            statistics.median(p.per_commit for p in paths),
            100 * statistics.median(p.busy for p in paths),
            statistics.median(p.wait_us for p in paths),
            statistics.median(p.held_us for p in paths),
        )
        lines.append(
            f"| {scenario} | {target} | {cells[0]:.2f} | {cells[1]:.0f} | {fmt(cells[2])} | {fmt(cells[3])} |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""
