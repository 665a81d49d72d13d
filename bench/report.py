"""Turns repeated benchmark runs into medians and spreads, tables, plots and the README section.

Every figure is reported as the median of the runs and their range (min–max): on a shared
machine one run says little, and ratios measured within a run are what to compare.
"""

import statistics
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from streamrec.evaluation import plot_bars, plot_series
from streamrec.output import replace_section

README_START = "<!-- bench:start (written by bench/run.py; edits here are overwritten) -->"
README_END = "<!-- bench:end -->"
INGEST_PATHS = {
    "plain_aiokafka_consumer": "plain aiokafka consumer (read + JSON decode)",
    "faust_empty_agent": "Faust, empty agent (Faust's own cost)",
    "worker": "the worker (validate + Lua batch apply)",
    "redis_writes_alone": "the same Redis writes, no Kafka/Faust",
}


def summarise(values: list[Any]) -> Any:
    """Runs of the same shape -> one of that shape, each number as {median, min, max, runs}."""
    first = values[0]
    if isinstance(first, dict):
        return {key: summarise([v[key] for v in values]) for key in first}
    if isinstance(first, list):
        return [summarise(list(group)) for group in zip(*values, strict=True)]
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if numbers:  # a figure some runs did not have (None: nothing refused, say) is left out
        return {"median": statistics.median(numbers), "min": min(numbers),
                "max": max(numbers), "runs": values}
    return first


def spread(figure: dict, digits: int = 0, scale: float = 1.0) -> str:
    """'median (min–max)' of a summarised figure."""
    def fmt(x: float) -> str:
        return f"{x * scale:,.{digits}f}"

    if figure["min"] == figure["max"]:
        return fmt(figure["median"])
    return f"{fmt(figure['median'])} ({fmt(figure['min'])}–{fmt(figure['max'])})"


def markdown(results: dict) -> str:
    s, m = results["summary"], results["machine"]
    ingest, fresh = s["ingest"], s["freshness"]
    lines = [
        f"`make bench` on {m['cores']} cores, {m['cpu']}, Python {m['python']}, "
        f"{results['date']}, {results['minutes']:.0f} minutes: **median of "
        f"{results['repeats']} runs (min–max)**. Results in `bench/results/results.json`, "
        "plots in `bench/results/`.",
        "",
        f"**Ingest** ({ingest['events']['median']:,} synthetic events, 10k users, 50k "
        "Zipf-skewed items, 8 partitions, one worker):",
        "",
        "| path | events/s |",
        "|---|---|",
        *(f"| {label} | {spread(ingest[key])} |" for key, label in INGEST_PATHS.items()),
        "",
        f"worker / empty Faust = **{spread(ingest['worker_over_empty_faust'], 2)}** "
        f"(target ≥ 0.9); Redis executes {spread(ingest['redis_commands_per_event'], 1)} "
        "commands per event inside one script call per batch, using "
        f"{spread(ingest['redis_cpu_seconds_per_1000_events'], 3)} CPU seconds per 1,000 events.",
        "",
        "**Serving** (load generator in its own process, aiohttp, one service process, "
        "loopback; warm users u0–u999 / items i0–i999 in turn; a request slower than 2 s "
        "counts as an error). *Sparse*: the ingest run's state (50k items, thin rows). "
        "*Dense*: 40,000 Zipf events over 2,000 users and 4,000 items, so the head's rows are "
        "full (500), as in a real shop; the trending list is the floor (one stored ranking "
        "read, nothing scored):",
        "",
        "| data | endpoint | load | achieved req/s | p50 ms | p95 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for data, serving in s["serving"].items():
        for label, levels in serving["endpoints"].items():
            for level in levels:
                load = (f"{level['offered']['median']:.0f} req/s"
                        if isinstance(level["offered"], dict)
                        else f"saturation ({level['concurrency']['median']:.0f} in flight)")
                lines.append(
                    f"| {data} | {label} | {load} | {spread(level['achieved'])} | "
                    f"{spread(level['p50_ms'], 1)} | {spread(level['p95_ms'], 1)} | "
                    f"{spread(level['p99_ms'], 1)} | {spread(level['errors'])} |")
    dense = s["serving"]["dense"]
    lines += [
        "",
        "Personalised n=10 saturation over the floor's: sparse "
        f"**{spread(s['serving']['sparse']['personalised_over_floor'], 2)}**, dense "
        f"**{spread(dense['personalised_over_floor'], 2)}** (target ≥ 0.5 on dense data). "
        "Without the neighbours source (every judged weighting without it, so that it is "
        "never read; same run, same state): dense personalised n=10 saturation "
        f"{spread(dense['without_neighbours']['achieved'])} req/s, "
        f"{spread(dense['without_neighbours']['over_floor'], 2)} of the floor.",
        "",
        "**Overload** (dense, personalised n=10 offered past its saturation; goodput is "
        "answers within 2 s; the excess should be refused at once with 503 and Retry-After):",
        "",
        "| offered | goodput / saturation | refused | refusal p99 ms | answered p99 ms |",
        "|---|---|---|---|---|",
        *(f"| {level['times_saturation']['median']:g}× saturation | "
          f"{spread(level['goodput_over_saturation'], 2)} | {spread(level['refused'])} | "
          f"{spread(level['refused_p99_ms'], 0) if level['refused_p99_ms'] else '–'} | "
          f"{spread(level['answered_p99_ms'], 1) if level['answered_p99_ms'] else '–'} |"
          for level in dense["overload"]),
    ]
    cost = s["metrics_cost"]
    lines += [
        "",
        f"**What the metrics cost** (dense, {cost['endpoint']} at {cost['rate']['median']:.0f} "
        "req/s on two service processes over the same state, one with "
        "`STREAMREC_METRICS=disabled`, in alternating turns, median of the turns): p99 "
        f"{spread(cost['p99_ms_enabled'], 2)} ms with the metrics, "
        f"{spread(cost['p99_ms_disabled'], 2)} ms without, a ratio of "
        f"**{spread(cost['p99_with_over_without'], 3)}** (target ≤ 1.05); mean latency ratio "
        f"{spread(cost['mean_with_over_without'], 3)}. Timed alone, the instrumentation (the "
        "duration observed, the list counted) takes "
        f"{spread(cost['instrumentation_us_per_request'], 1)} µs per request.",
    ]
    lines += [
        "",
        "**Freshness** (event produced to Kafka → visible in that user's list, 1,000 "
        "events/s of background traffic, everything on the same cores; target p99 ≤ 100 ms):",
        "",
        "| producer | events per run | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|---|",
        *(f"| {name} | {f['samples']['median']:.0f} | {spread(f['p50_ms'])} | "
          f"{spread(f['p95_ms'])} | {spread(f['p99_ms'])} |" for name, f in fresh.items()),
        "",
        "**Memory** (Redis `used_memory`, synthetic stream applied by the worker's writer, "
        "one run):",
        "",
        "| events | used memory | bytes/event | of which the erasure log | items | bytes/item |",
        "|---|---|---|---|---|---|",
        *(f"| {row['events']:,} | {row['used_memory_bytes'] / 2**20:,.0f} MiB | "
          f"{row['bytes_per_event']:,.0f} | {row['erasure_log_bytes_per_event']:,.0f} | "
          f"{row['items']:,} | {row['bytes_per_item']:,.0f} |"
          for row in results["memory"]),
    ]
    return "\n".join(lines)


def update_readme(readme: Path, section: str) -> None:
    replace_section(readme, README_START, README_END, section)


def plot(results: dict, directory: Path) -> None:
    ingest = results["summary"]["ingest"]
    plot_bars(directory / "ingest.png",
              f"ingest rate (events/s), median and range of {results['repeats']} runs",
              {label: ingest[key]["median"] for key, label in INGEST_PATHS.items()},
              {label: (ingest[key]["min"], ingest[key]["max"])
               for key, label in INGEST_PATHS.items()})
    series = {}
    for data, serving in results["summary"]["serving"].items():
        for label, levels in serving["endpoints"].items():
            open_loop = [level for level in levels if isinstance(level["offered"], dict)]
            series[f"{data}: {label} p99"] = (
                [level["offered"]["median"] for level in open_loop],
                [level["p99_ms"]["median"] for level in open_loop])
    plot_series(directory / "serving.png", "serving p99 latency vs offered load (median of runs)",
                "offered req/s", "p99 ms (log)", series, references={"target 10 ms": 10},
                log_y=True)


def show(results: dict, console: Console) -> None:
    console.print(Markdown(markdown(results)))
    table = Table(title="targets")
    for column in ("figure", "measured (median, range)", "target"):
        table.add_column(column)
    s = results["summary"]
    table.add_row("worker / empty Faust", spread(s["ingest"]["worker_over_empty_faust"], 2),
                  "≥ 0.9")
    dense = s["serving"]["dense"]
    table.add_row("dense personalised n=10 saturation / floor",
                  spread(dense["personalised_over_floor"], 2), "≥ 0.5")
    for label, target in (("personalised n=10", "≤ 10 ms @ 200 req/s"),
                          ("personalised n=100", "≤ 20 ms @ 100 req/s"),
                          ("similar n=10", "≤ 3 ms @ 200 req/s")):
        for level in dense["endpoints"][label]:
            if isinstance(level["offered"], dict):
                table.add_row(f"dense {label} p99 @ {level['offered']['median']:.0f} req/s",
                              spread(level["p99_ms"], 1), target)
    for level in dense["overload"]:
        table.add_row(f"goodput offered {level['times_saturation']['median']:g}x saturation",
                      spread(level["goodput_over_saturation"], 2), "≥ 0.9")
    table.add_row("p99 with metrics / without",
                  spread(s["metrics_cost"]["p99_with_over_without"], 3), "≤ 1.05")
    for name, figure in s["freshness"].items():
        table.add_row(f"freshness p99 ms ({name})", spread(figure["p99_ms"]), "≤ 100 ms")
    console.print(table)
