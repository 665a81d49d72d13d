"""`streamrec evaluate`: a replay with a progress bar, a summary table, metrics.json and plots."""

import asyncio
import json
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

from redis.asyncio import Redis
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from streamrec import output
from streamrec.contract import Settings, Variant, with_overrides
from streamrec.servers import RedisServer

from .plots import Series, plot_series
from .reference import REFERENCE_METHODS, largest_catalogue, reference_bytes
from .replay import WEIGHTING_RECOMMENDER, Dataset, InvalidDataset, Replay, delete_prefix

console = output.console()
#: Largest dense counts the reference may take; above, it is skipped.
MAX_REFERENCE_BYTES = 4 << 30
#: Issue 13's goal: the default at least this many times the best reference on every dataset.
REFERENCE_GOAL = 1.15


def run_evaluation(dataset: Dataset, settings: Settings, batch_size: int, every: int,
                   out: Path | None, redis_url: str | None,
                   variants: Sequence[Variant] = (), reference: bool = True
                   ) -> dict[str, object]:
    """`variants`: overrides of the recommendation settings (as an experiment's), each
    scored as the service's default list on the same replay (one `variant NAME` row each);
    `reference`: score the streaming reference beside them, when its counts fit in memory."""
    interactions = dataset.interactions()
    catalogue = dataset.catalogue()
    unknown = sorted({i.event_type for i in interactions} - set(settings.event_weights))
    if unknown:
        raise InvalidDataset(f"{dataset.events}: event types {unknown} are not weighted in "
                             f"STREAMREC_EVENT_WEIGHTS ({', '.join(settings.event_weights)})")
    items = len({i.item_id for i in interactions})
    console.print(f"{dataset.events}: {len(interactions):,} events, "
                  f"{len({i.user_id for i in interactions}):,} users, "
                  f"{items:,} items"
                  + (f"; catalogue of {len(catalogue):,} items" if dataset.items else ""))
    needed = reference_bytes(items)
    if reference and needed > MAX_REFERENCE_BYTES:
        console.print(f"the reference's dense counts would take {needed / 2**30:.1f} GiB "
                      f"(at most {MAX_REFERENCE_BYTES / 2**30:.0f} GiB, "
                      f"{largest_catalogue(MAX_REFERENCE_BYTES):,} items): not scored")
        reference = False
    with tempfile.TemporaryDirectory(prefix="streamrec-eval-") as workdir:
        server = None
        if redis_url is None:
            server = RedisServer(Path(workdir))
            server.start()
            redis_url = server.url
        try:
            settings = settings.model_copy(update={"redis_url": redis_url,
                                                   "key_prefix": f"eval-{uuid.uuid4().hex[:8]}"})
            changed = {variant.name: with_overrides(settings, variant) for variant in variants}
            result = asyncio.run(_replay(interactions, catalogue, settings, batch_size, every,
                                         changed, reference))
        finally:
            if server is not None:
                server.stop()
    result |= {
        "dataset": dataset.describe(len(interactions)),
        "protocol": {"every": every, "batch_size": batch_size, "train_fraction": 0.1, "k": 10},
        "settings": settings.model_dump(mode="json", exclude={"redis_url", "key_prefix"}),
        "variants": {variant.name: variant.settings.model_dump(mode="json")
                     for variant in variants},
    }
    if reference:
        result["reference"] = against_reference(result)
    show(result)
    if out is not None:
        write(result, out)
    return result


async def _replay(interactions: list, catalogue: list, settings: Settings, batch_size: int,
                  every: int, variants: dict[str, Settings], reference: bool
                  ) -> dict[str, object]:
    redis = Redis.from_url(settings.redis_url)
    try:
        replay = Replay(settings, redis, batch_size=batch_size, every=every, variants=variants,
                        reference=reference)
        columns = (TextColumn("replay"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]:>7,.0f} events/s"), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn())
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("replay", total=len(interactions), rate=0.0)

            def advance(done: int) -> None:
                if done % 500 == 0 or done == len(interactions):
                    elapsed = progress.tasks[task].elapsed or 1e-9
                    progress.update(task, completed=done, rate=done / elapsed)

            return await replay.run(interactions, advance, catalogue)
    finally:
        await delete_prefix(redis, settings.key_prefix)
        await redis.aclose()


def against_reference(result: dict) -> dict[str, object]:
    """The best reference method on this dataset and the default's HR@10 over it."""
    boards = result["recommenders"]
    best = max((method.name for method in REFERENCE_METHODS),
               key=lambda name: boards[name]["hr_at_10"])
    hit_rate = boards[best]["hr_at_10"]
    return {"best": best, "hr_at_10": hit_rate, "goal": REFERENCE_GOAL,
            "default_over_best": boards[result["default"]]["hr_at_10"] / hit_rate
            if hit_rate else None}


def show(result: dict) -> None:
    table = Table(title=f"prequential evaluation ({result['seconds']:.0f}s)")
    for column in ("recommender", "HR@10", "NDCG@10", "MRR@10", "coverage", "novelty",
                   "exposure Gini", "evaluated", "HR@10 apart"):
        table.add_column(column, justify="right" if column != "recommender" else "left")
    for name, m in result["recommenders"].items():
        label = f"{name} (service default)" if name == result["default"] else name
        table.add_row(label, f"{m['hr_at_10']:.4f}", f"{m['ndcg_at_10']:.4f}",
                      f"{m['mrr_at_10']:.4f}", f"{m['coverage']:.3f}", f"{m['novelty']:.2f}",
                      f"{m['exposure_gini']:.3f}", f"{m['evaluated']:,}",
                      f"{m['hr_at_10_apart']:.4f}")
    described = result["dataset"]
    apart = result["recommenders"][result["default"]]["evaluated_apart"]
    seed = f" (seed {described['seed']})" if described["ties"] == "shuffle" else ""
    console.print(table)
    console.print(f"same-time events ordered: {described['ties']}{seed}; HR@10 apart: on the "
                  f"{apart:,} evaluated events whose time differs from their user's previous")
    if "reference" in result:
        against = result["reference"]
        ratio = against["default_over_best"]
        console.print(f"best streaming reference: {against['best']}, HR@10 "
                      f"{against['hr_at_10']:.4f}; the default is "
                      + (f"{ratio:.3f}x it" if ratio is not None else "not comparable (0)")
                      + f" (goal: {against['goal']}x)")
    blend = result["blend"]
    if blend["hit_rates"]:
        rates = ", ".join(f"{label} {rate:.4f}" for label, rate in blend["hit_rates"].items())
        console.print(f"self-tuning blend (co-occurrence:sequence[:neighbours]): serves "
                      f"{blend['served_at_end']} at the end; hit rates over "
                      f"{blend['trials']:,.0f} decayed trials: {rates}")


#: How every shadow list of the self-tuning blend's weightings is named in the results.
SHADOW_PREFIX = WEIGHTING_RECOMMENDER.format("")


def plotted(result: dict) -> list[str]:
    """The lines worth drawing: all but the blend's shadow lists and the references other than
    the best (metrics.json has every row)."""
    others = {method.name for method in REFERENCE_METHODS} - {
        result.get("reference", {}).get("best")}
    return [name for name in result["recommenders"]
            if not name.startswith(SHADOW_PREFIX) and name not in others]


def windowed(result: dict, names: Sequence[str]) -> Series:
    """Each named recommender's HR@10 per window, as (window ends, hit rates)."""
    windows = {name: result["recommenders"][name]["windows"] for name in names}
    return {name: ([w["evaluated_up_to"] for w in ws], [w["hr_at_10"] for w in ws])
            for name, ws in windows.items()}


def blend_over_time(result: dict) -> tuple[Series, list[tuple[float, float]]]:
    """The self-tuning blend's choices over the replay: each judged weighting's HR@10 per
    window (its shadow list's), by weighting label, and per window a point on the line of
    the weighting served most in it. Empty when the blend had nothing to choose from."""
    series = {name.removeprefix(SHADOW_PREFIX): line for name, line in windowed(
        result, [name for name in result["recommenders"]
                 if name.startswith(SHADOW_PREFIX)]).items()}
    if not series:
        return {}, []
    marked = []
    for window in result["blend"]["served_by_window"]:
        ends, rates = series[window["served"]]
        marked.append((window["evaluated_up_to"], rates[ends.index(window["evaluated_up_to"])]))
    return series, marked


def write(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    metrics, hit_rates, blend = out / "metrics.json", out / "hr_at_10.png", out / "blend.png"
    metrics.write_text(json.dumps(result, indent=2))
    plot_series(hit_rates, "HR@10 over the replay (per window of 1000 evaluations)",
                "evaluated events", "HR@10", windowed(result, plotted(result)))
    written = [metrics, hit_rates]
    weightings, served = blend_over_time(result)
    if weightings:
        plot_series(blend, "Self-tuning blend: each weighting's own list "
                    "(co-occurrence:sequence[:neighbours])", "evaluated events (windows of 1000)",
                    "HR@10", weightings, marked=served,
                    marked_label="served most in the window")
        written.append(blend)
    console.print(f"wrote {', '.join(map(str, written))}")
