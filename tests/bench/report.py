"""Markdown table and PNG chart from target/bench/results.json.

Used by bench.py at the end of a run; also runs alone to redraw from an existing file:
    python tests/bench/report.py target/bench/results.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# (key, label, higher_is_better) in table order; a metric shows only where a side has it.
METRICS = [
    ("records_per_s", "records/s", True),
    ("mb_per_s", "MB/s (MiB)", True),
    ("p50_ms", "p50 ms", False),
    ("p99_ms", "p99 ms", False),
    ("p999_ms", "p99.9 ms", False),
    ("e2e_p50_ms", "end-to-end p50 ms at 10,000 records/s (as 4)", False),
    ("e2e_p99_ms", "end-to-end p99 ms", False),
    ("e2e_p999_ms", "end-to-end p99.9 ms", False),
    ("serial_p50_ms", "serial round trip p50 ms (EndToEndLatency)", False),
    ("serial_p99_ms", "serial round trip p99 ms", False),
    ("serial_p999_ms", "serial round trip p99.9 ms", False),
    ("relative_to_scenario_2", "throughput / scenario 2", True),
    ("baseline_8p_mb_per_s", "same tool, one 8-partition topic: MB/s", True),
    ("relative_to_8p_same_tool", "throughput / same tool on 8 partitions", True),
    ("baseline_8p_cpu_seconds", "broker CPU s, same tool on 8 partitions", False),
    ("franz_mb_per_s", "franz-go, same load: MB/s", True),
    ("franz_p99_ms", "franz-go p99 ms", False),
    ("franz_baseline_8p_mb_per_s", "franz-go, one 8-partition topic: MB/s", True),
    ("franz_relative_to_8p", "franz-go: throughput / 8 partitions", True),
    ("franz_cpu_seconds", "broker CPU s, franz-go run", False),
    ("franz_baseline_8p_cpu_seconds", "broker CPU s, franz-go on 8 partitions", False),
    ("share_of_loopback", "share of loopback ceiling", True),
    ("share_of_disk_write", "share of disk-write ceiling", True),
    ("idle_rss_mb", "idle RSS MB", False),
    ("startup_s", "start-up s (to Metadata with leaders)", False),
    ("log_load_s", "of which log loading s (Kafka's log line)", False),
    ("log_gib", "log GiB at kill -9", None),
    ("rss_peak_mb", "broker peak RSS MB", False),
    ("cpu_seconds", "broker CPU s", False),
    ("tool_cpu_seconds", "load tool CPU s", False),
    ("e2e_cpu_seconds", "broker CPU s during the end-to-end run", False),
]

# Labels that change when a side is a cluster (scenario 5: summed over its `brokers`).
CLUSTER_LABELS = {
    "rss_peak_mb": "brokers' peak RSS MB, sum of {n}",
    "cpu_seconds": "brokers' CPU s (producer run), sum of {n}",
    "e2e_cpu_seconds": "brokers' CPU s (end-to-end run), sum of {n}",
    "p50_ms": "producer p50 ms",
    "p99_ms": "producer p99 ms",
    "p999_ms": "producer p99.9 ms",
}


def _label(key: str, label: str, t: dict, k: dict) -> str:
    n = max(int(t.get("brokers", 1)), int(k.get("brokers", 1)))
    return CLUSTER_LABELS[key].format(n=n) if n > 1 and key in CLUSTER_LABELS else label


def _fmt(v: float) -> str:
    if v is None:
        return ""
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}" if a >= 0.01 else f"{v:.2g}"


def _cell(side: dict, key: str) -> str:
    if key not in side:
        return "–"
    if key.startswith("share_of_"):
        return f"{side[key] * 100:.2g} %"
    lo, hi = side.get(f"{key}_min"), side.get(f"{key}_max")
    if lo is None or hi is None or lo == hi:
        return _fmt(side[key])
    return f"{_fmt(side[key])} ({_fmt(lo)}–{_fmt(hi)})"


def markdown(results: dict) -> str:
    m = results.get("machine", {})
    c = results.get("ceilings", {})
    s = results.get("settings", {})
    lines = [
        f"# Tideway vs Apache Kafka {m.get('kafka_version', '')}: {s.get('mode', '?')} run, "
        f"{s.get('repeats', '?')} repeat(s)",
        "",
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB, kernel {m.get('kernel')}, "
        f"{m.get('filesystem')}; {m.get('java')}; Tideway {m.get('tideway_revision')}; {m.get('date')}; "
        f"load average at start {_loads(m.get('load_avg_at_start'))}, at end {_loads(m.get('load_avg_at_end'))}.",
        "",
    ]
    if c:
        lines += [
            f"Ceilings: loopback TCP {_fmt(c.get('loopback_mb_per_s'))} MB/s; sequential write "
            f"{_fmt(c.get('disk_write_mb_per_s'))} MB/s into the page cache (fsync never), "
            f"{_fmt(c.get('disk_write_fdatasync_mb_per_s'))} MB/s with fdatasync.",
            "",
        ]
    lines += [
        "Cells: median of the repeats (min–max). Tideway/Kafka > 1 means Tideway has more of it "
        "(better for throughput, worse for latency, memory and CPU).",
        "",
        "| scenario | metric | Tideway | Kafka | Tideway/Kafka |",
        "|---|---|---|---|---|",
    ]
    for sc in results.get("scenarios", []):
        name = sc["name"]
        if sc.get("skipped"):
            lines.append(f"| {name} | skipped | {sc['skipped']} | | |")
            continue
        t, k = sc.get("tideway", {}), sc.get("kafka", {})
        for side_name, side in (("Tideway", t), ("Kafka", k)):
            if "failed" in side:
                lines.append(f"| {name} | {side_name} failed | {_oneline(side['failed'][0])} | | |")
        first = True
        for key, label, _ in METRICS:
            if key not in t and key not in k:
                continue
            ratio = ""
            if (isinstance(t.get(key), (int, float)) and isinstance(k.get(key), (int, float)) and k[key]
                    and not key.startswith("share_of_")):
                ratio = f"{t[key] / k[key]:.2f}"
            lines.append(f"| {name if first else ''} | {_label(key, label, t, k)} | {_cell(t, key)} | {_cell(k, key)} "
                         f"| {ratio} |")
            first = False
    lines.append("")
    return "\n".join(lines)


def _loads(v) -> str:
    return "/".join(f"{x:.2f}" for x in v) if v else "?"


def _oneline(s: str) -> str:
    return " ".join(str(s).split())[:200].replace("|", "/")


def chart(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scen = [s for s in results.get("scenarios", []) if not s.get("skipped")]
    colors = {"tideway": "#1f77b4", "kafka": "#7f7f7f"}

    def bars(ax, items, key, title, ylabel, log=False):
        """items: [(label, scenario)]; grouped bars with min–max whiskers."""
        xs = range(len(items))
        width = 0.38
        for i, kind in enumerate(("tideway", "kafka")):
            vals, lo, hi = [], [], []
            for _, sc in items:
                side = sc.get(kind, {})
                v = side.get(key)
                vals.append(v or 0)
                lo.append((v or 0) - side.get(f"{key}_min", v or 0))
                hi.append(side.get(f"{key}_max", v or 0) - (v or 0))
            ax.bar([x + (i - 0.5) * width for x in xs], vals, width, yerr=[lo, hi], capsize=3,
                   label="Tideway" if kind == "tideway" else "Kafka", color=colors[kind])
        ax.set_xticks(list(xs))
        ax.set_xticklabels([lbl for lbl, _ in items], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel, fontsize=8)
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize=8)

    def pick(prefixes, key):
        out = []
        for sc in scen:
            num = sc["name"].split()[0]
            if num in prefixes and (key in sc.get("tideway", {}) or key in sc.get("kafka", {})):
                out.append((f"#{num}", sc))
        return out

    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    panels = [
        (axes[0][0], ("1", "2", "3", "5", "6"), "mb_per_s", "Throughput (higher is better)", "MB/s", False),
        (axes[0][1], ("1", "2", "3", "4", "5", "6", "7a", "7b"), "rss_peak_mb",
         "Broker peak RSS (lower is better; #5: sum of 3)", "MB", False),
        (axes[0][2], ("1", "2", "3", "4", "5", "6"), "cpu_seconds",
         "Broker CPU during the run (lower is better; #5: sum of 3)", "s", False),
        (axes[1][1], ("7a", "7b"), "startup_s", "Start-up to ready (lower is better)", "s", False),
        (axes[1][2], ("7a",), "idle_rss_mb", "Idle RSS after start-up (lower is better)", "MB", False),
    ]
    for ax, prefixes, key, title, ylabel, log in panels:
        items = pick(prefixes, key)
        if items:
            bars(ax, items, key, title, ylabel, log)
        else:
            ax.set_axis_off()
    # End-to-end latency at 10,000 records/s: one group per percentile; scenario 4 (one broker)
    # and, hatched, scenario 5 (three brokers, RF 3) where they ran.
    ax = axes[1][0]
    series = []  # (scenario number, key prefix, scenario)
    for num, prefix in (("4", ""), ("5", "e2e_")):
        for sc in scen:
            if sc["name"].split()[0] == num and any(f"{prefix}p50_ms" in sc.get(k, {}) for k in colors):
                series.append((num, prefix, sc))
    if series:
        pcts = [("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")]
        bars_per_group = 2 * len(series)
        width = 0.8 / bars_per_group
        i = 0
        for num, prefix, sc in series:
            for kind in ("tideway", "kafka"):
                side = sc.get(kind, {})
                ax.bar([x + (i - (bars_per_group - 1) / 2) * width for x in range(len(pcts))],
                       [side.get(prefix + k, 0) for k, _ in pcts], width, color=colors[kind],
                       hatch="//" if num == "5" else None, edgecolor="white" if num == "5" else None,
                       label=f"{'Tideway' if kind == 'tideway' else 'Kafka'} #{num}")
                i += 1
        ax.set_xticks(range(len(pcts)))
        ax.set_xticklabels([lbl for _, lbl in pcts], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("ms (log)", fontsize=8)
        ax.set_title("End-to-end latency at 10k rec/s (#5: 3 brokers, RF 3; lower is better)", fontsize=10)
        ax.legend(fontsize=8)
    else:
        ax.set_axis_off()
    m = results.get("machine", {})
    s = results.get("settings", {})
    fig.suptitle(f"Tideway vs Kafka {m.get('kafka_version', '')} on {m.get('cores')} cores "
                 f"({s.get('mode', '?')} run, {s.get('repeats', '?')} repeat(s), whiskers min–max; "
                 f"load avg at start {_loads(m.get('load_avg_at_start'))}, at end {_loads(m.get('load_avg_at_end'))})",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "target/bench/results.json")
    data = json.loads(src.read_text())
    (src.parent / "results.md").write_text(markdown(data))
    chart(data, src.parent / "results.png")
    print(f"wrote {src.parent / 'results.md'} and {src.parent / 'results.png'}")
