"""The evaluation harness: loading, the protocol's bookkeeping, the metrics, the outputs."""

import json
import math
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from redis.asyncio import Redis

from streamrec.evaluation import (
    ITEM_COLUMNS,
    Interaction,
    InvalidDataset,
    Replay,
    Scoreboard,
    gini,
    load_catalogue,
    load_interactions,
    parse_columns,
    rank_of,
    self_information,
)
from streamrec.evaluation.reference import REFERENCE_METHODS
from streamrec.evaluation.report import blend_over_time, plotted
from tests.support.servers import Servers


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_plain_layout_loads_with_no_flags_sorted_stably_in_ms(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "e.csv", "user_id,item_id,timestamp",
                    ["u1,b,1700000002", "u1,a,1700000001", "u2,c,1700000001"])
    assert load_interactions(csv, ties="file") == [
        Interaction("u1", "a", 1_700_000_001_000, "click"),
        Interaction("u2", "c", 1_700_000_001_000, "click"),  # same time: file order kept
        Interaction("u1", "b", 1_700_000_002_000, "click"),
    ]


def test_same_time_events_are_shuffled_by_the_seed_and_only_they(tmp_path: Path) -> None:
    rows = [f"u,i{k},{1_700_000_000 + k // 10}" for k in range(100)]  # ten to a second
    csv = write_csv(tmp_path / "e.csv", "user_id,item_id,timestamp", rows)
    in_file = load_interactions(csv, ties="file")
    orders = {seed: load_interactions(csv, seed=seed) for seed in (0, 1)}
    assert orders[0] == load_interactions(csv, seed=0)  # reproducible
    assert orders[0] != orders[1] != in_file
    for order in orders.values():
        assert [e.timestamp_ms for e in order] == [e.timestamp_ms for e in in_file]
        assert sorted(order, key=lambda e: e.item_id) == sorted(in_file, key=lambda e: e.item_id)


def test_other_layouts_map_their_columns(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "ml.csv", "userId,movieId,rating,timestamp,kind",
                    ["1,31,2.5,1700000000000,purchase"])
    mapping = parse_columns("user_id=userId,item_id=movieId,event_type=kind")
    assert load_interactions(csv, mapping) == [
        Interaction("1", "31", 1_700_000_000_000, "purchase")]
    with pytest.raises(ValueError, match=r"no column\(s\) \['user_id', 'item_id'\]; its"):
        load_interactions(csv)
    with pytest.raises(ValueError, match="expected NAME=COLUMN"):
        parse_columns("rating=rating")


def test_catalogue_columns_map_like_movielens(tmp_path: Path) -> None:
    movies = write_csv(tmp_path / "movies.csv", "movieId,title,genres",
                       ["1,Toy Story (1995),Adventure|Animation", "2,Heat (1995),"])
    items = load_catalogue(movies, parse_columns("item_id=movieId,categories=genres",
                                                 ITEM_COLUMNS))
    assert [(i.item_id, i.categories, i.title) for i in items] == [
        ("1", ["Adventure", "Animation"], "Toy Story (1995)"), ("2", [], "Heat (1995)")]
    with pytest.raises(ValueError, match="has no column 'item_id'"):
        load_catalogue(movies)
    broken = write_csv(tmp_path / "broken.csv", "item_id,categories", ["x,a\tb"])
    with pytest.raises(ValueError, match=r"broken.csv:2: categories.0: must not contain invisible"):
        load_catalogue(broken)


def test_metrics_are_hit_rate_ndcg_and_reciprocal_rank() -> None:
    assert rank_of(["a", "b", "c"], "c") == 3
    assert rank_of(["a"], "z") is None
    board = Scoreboard()
    board.add(["x", "t"], "t", novelty=1.0, apart=True)       # rank 2
    board.add(["t", "y"], "t", novelty=2.0, apart=False)      # rank 1
    board.add(["x", "y"], "t", novelty=3.0, apart=True)       # miss
    board.add(["x", "y", "z", "w"], "w", novelty=6.0, apart=True)  # rank 4
    catalogue = ["x", "t", "y", "z", "w", *(f"never{k}" for k in range(5))]
    summary = board.summary(catalogue, window=2)
    assert summary["hr_at_10"] == 3 / 4
    assert (summary["hr_at_10_apart"], summary["evaluated_apart"]) == (2 / 3, 3)
    assert summary["mrr_at_10"] == pytest.approx((1 / 2 + 1 + 1 / 4) / 4)
    assert summary["ndcg_at_10"] == pytest.approx(
        (1 / math.log2(3) + 1 + 1 / math.log2(5)) / 4)
    assert summary["coverage"] == 5 / 10  # x t y z w
    assert summary["novelty"] == 3.0
    # Exposure x3 y3 t2 z1 w1 and five zeros: sorted 0,0,0,0,0,1,1,2,3,3 (total 10).
    assert summary["exposure_gini"] == pytest.approx(
        sum((2 * k - 10 + 1) * x for k, x in enumerate([0] * 5 + [1, 1, 2, 3, 3])) / 100)
    assert summary["windows"] == [{"evaluated_up_to": 2, "hr_at_10": 1.0},
                                  {"evaluated_up_to": 4, "hr_at_10": 0.5}]


def test_gini_and_self_information() -> None:
    assert gini([5, 5, 5]) == 0.0
    assert gini([0, 0, 0, 9]) == pytest.approx(3 / 4)  # (n-1)/n when one item takes all
    users_of = Counter({"hit": 8, "niche": 1})
    assert self_information(["hit", "niche"], users_of, users=8) == pytest.approx(
        (0 + 3) / 2)  # -log2(8/8) and -log2(1/8)


async def test_replay_evaluates_exactly_the_protocols_events(redis: Redis, servers: Servers
                                                             ) -> None:
    # 20 events; the first 2 only train; k % 5 == 0 for k = 5, 10, 15.
    # k=5: u1 has history, item new -> evaluated. k=10: u9's first event -> skipped.
    # k=15: u1 again on an item u1 already has -> skipped.
    t = 1_700_000_000_000
    events = [Interaction(f"u{k % 3}", f"i{k}", t + k, "click") for k in range(20)]
    events[10] = Interaction("u9", "i10", t + 10, "click")
    events[15] = Interaction("u1", "i1", t + 15, "click")
    events[3] = Interaction("u0", "i3", t + 3, "purchase")  # the most popular item by k=5
    events[5] = Interaction("u1", "i3", t + 5, "click")
    events[4] = Interaction("u1", "i4", t + 5, "click")  # k=5 shares u1's previous time
    result = await Replay(servers.settings(), redis, window=1, reference=True).run(events)
    boards = result["recommenders"]
    assert {name: m["evaluated"] for name, m in boards.items()} == {
        "default": 1, "co-occurrence": 1, "sequence": 1, "neighbours": 1, "trending": 1,
        "popularity": 1,
        "blend 1:1": 1, "blend 1:0": 1, "blend 1:0.5": 1, "blend 0.5:1": 1, "blend 0:1": 1,
        "blend 1:0.5:0.5": 1, "blend 1:1:0.5": 1, "blend 1:0.5:1": 1, "blend 1:1:1": 1,
        "reference cosine w20": 1, "reference jaccard w20": 1, "reference cosine w50": 1,
        "reference jaccard w50": 1}
    assert boards["default"]["evaluated_apart"] == 0
    # Before k=5, i3 (a purchase, weight 8) leads popularity and trending: a hit at rank 1.
    assert boards["popularity"]["mrr_at_10"] == 1.0
    assert boards["trending"]["mrr_at_10"] == 1.0
    assert result["default"] == "default"


async def test_a_replay_stops_at_an_event_the_worker_would_refuse(redis: Redis,
                                                                servers: Servers) -> None:
    """An event past the decay horizon (2040-06-05 with the defaults) would overflow its
    scores: the replay names it instead of scoring on infinities."""
    settings = servers.settings()
    horizon, _ = settings.decay_horizon
    events = [Interaction("u1", "i1", horizon - 1, "click"),
              Interaction("u1", "i2", horizon + 1, "click")]
    with pytest.raises(InvalidDataset, match=r"i2.*timestamp is past 2040-06-05T00:00:00Z"):
        await Replay(settings, redis, train_fraction=1.0).run(events)


def test_cli_writes_metrics_json_a_plot_and_a_whole_table_into_a_file(
        tmp_path: Path, servers: Servers) -> None:
    rows = [f"u{k % 7},i{(k * 3) % 11},{1_700_000_000 + k}" for k in range(300)]
    csv = write_csv(tmp_path / "e.csv", "user_id,item_id,timestamp", rows)
    out = tmp_path / "out"
    environment = {name: value for name, value in os.environ.items() if name != "COLUMNS"}
    result = subprocess.run([sys.executable, "-m", "streamrec", "evaluate", str(csv), "--out",
                             str(out), "--redis-url", servers.redis_url], capture_output=True,
                            text=True, env=environment, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    # Into a file (a CI log), no column of the table is cut to fit 80 characters.
    [header] = [line for line in result.stdout.splitlines() if "NDCG@10" in line]
    for column in ("recommender", "HR@10", "NDCG@10", "MRR@10", "coverage", "novelty",
                   "exposure Gini", "evaluated", "HR@10 apart"):
        assert column in header, header
    assert "default (service default)" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["default"] == "default"
    assert (metrics["dataset"]["ties"], metrics["dataset"]["seed"]) == ("shuffle", 0)
    for name in ("default", "co-occurrence", "sequence", "trending", "popularity"):
        assert set(metrics["recommenders"][name]) >= {
            "hr_at_10", "ndcg_at_10", "mrr_at_10", "coverage", "novelty", "exposure_gini",
            "evaluated", "windows"}
    assert metrics["reference"]["best"].startswith("reference ")
    best = metrics["recommenders"][metrics["reference"]["best"]]["hr_at_10"]
    assert metrics["reference"]["hr_at_10"] == best == max(
        m["hr_at_10"] for name, m in metrics["recommenders"].items() if "reference" in name)
    assert metrics["reference"]["default_over_best"] == pytest.approx(
        metrics["recommenders"]["default"]["hr_at_10"] / best)
    assert "best streaming reference: reference" in result.stdout
    assert metrics["dataset"]["events"] == 300
    skipped = subprocess.run([sys.executable, "-m", "streamrec", "evaluate", str(csv),
                              "--no-reference", "--out", str(tmp_path / "plain"), "--redis-url",
                              servers.redis_url], capture_output=True, text=True,
                             env=environment, timeout=120)
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    plain = json.loads((tmp_path / "plain" / "metrics.json").read_text())
    assert "reference" not in plain
    assert not [name for name in plain["recommenders"] if name.startswith("reference")]
    assert len(metrics["dataset"]["sha256"]) == 64
    assert (out / "hr_at_10.png").stat().st_size > 10_000
    assert (out / "blend.png").stat().st_size > 10_000


@pytest.mark.parametrize(("batch_size", "reference_hits"), [(1, 1), (4, 0)])
async def test_the_reference_scores_before_learning_on_the_state_the_replay_has(
        redis: Redis, servers: Servers, batch_size: int, reference_hits: int) -> None:
    # Evaluated: k=1 (u0 -> b: a has no partner yet) and k=3 (u1 -> b: a's partner b, learned
    # from u0, a hit at rank 1 unless the batch of 4 has not been applied yet).
    t = 1_700_000_000_000
    events = [Interaction(user, item, t + k, "click")
              for k, (user, item) in enumerate([("u0", "a"), ("u0", "b"), ("u1", "a"),
                                                ("u1", "b")])]
    result = await Replay(servers.settings(), redis, every=1, batch_size=batch_size,
                          reference=True).run(events)
    for method in REFERENCE_METHODS:
        board = result["recommenders"][method.name]
        assert board["evaluated"] == 2
        assert board["hr_at_10"] == board["mrr_at_10"] == reference_hits / 2


def test_the_plot_draws_the_best_reference_and_no_shadow_list() -> None:
    names = ["default", "co-occurrence", "blend 1:1", "variant x", "reference cosine w20",
             "reference jaccard w50"]
    result = {"recommenders": dict.fromkeys(names),
              "reference": {"best": "reference jaccard w50"}}
    assert plotted(result) == ["default", "co-occurrence", "variant x", "reference jaccard w50"]


def test_the_blend_plot_marks_the_weighting_served_in_each_window() -> None:
    def board(*rates: float) -> dict:
        return {"windows": [{"evaluated_up_to": 1000 * (k + 1), "hr_at_10": rate}
                            for k, rate in enumerate(rates)]}
    result = {"recommenders": {"default": board(0.3, 0.3), "blend 1:0": board(0.1, 0.2),
                               "blend 0:1": board(0.4, 0.05)},
              "blend": {"served_by_window": [{"evaluated_up_to": 1000, "served": "0:1"},
                                             {"evaluated_up_to": 2000, "served": "1:0"}]}}
    series, served = blend_over_time(result)
    assert series == {"1:0": ([1000, 2000], [0.1, 0.2]), "0:1": ([1000, 2000], [0.4, 0.05])}
    assert served == [(1000, 0.4), (2000, 0.2)]
    alone = {"recommenders": {"default": board(0.3)}, "blend": {"served_by_window": []}}
    assert blend_over_time(alone) == ({}, [])


async def test_variants_are_scored_on_the_same_replay(redis: Redis, servers: Servers) -> None:
    """A variant that changes nothing scores exactly as the default; one that drops the
    sequence source is scored as the service would serve it then."""
    t = 1_700_000_000_000
    events = [Interaction(f"u{k % 7}", f"i{(k * 3) % 11}", t + k, "click") for k in range(300)]
    settings = servers.settings()
    result = await Replay(settings, redis, variants={
        "same": settings,
        "no-sequence": settings.model_copy(update={"sequence_weight": 0.0}),
    }).run(events)
    boards = result["recommenders"]
    for figure in ("hr_at_10", "mrr_at_10", "coverage", "evaluated"):
        assert boards["variant same"][figure] == boards["default"][figure]
    assert boards["variant no-sequence"]["evaluated"] == boards["default"]["evaluated"]
    assert boards["variant no-sequence"]["mrr_at_10"] != boards["default"]["mrr_at_10"]


@pytest.mark.parametrize(("given", "says"), [
    ("seq2={bad", "not NAME=JSON"),
    ('x={"redis_url": "redis://elsewhere"}', "not a recommendation setting"),
    ('t={"recommender": "trending"}', "compares personalised settings"),
    ('v={"vote_items": 500}', "history_length"),
])
def test_a_variant_that_cannot_be_compared_is_one_clear_error(given: str, says: str,
                                                              tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "e.csv", "user_id,item_id,timestamp", ["u,i,1700000000"])
    result = subprocess.run([sys.executable, "-m", "streamrec", "evaluate", str(csv),
                             "--variant", given], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert says in result.stderr
    assert "Traceback" not in result.stderr


async def test_the_replays_lists_judge_the_weightings_as_the_scoreboards_do(
        redis: Redis, servers: Servers) -> None:
    # Planted order: every user walks forward along a ring of 300 items, 1 to 3 items a step,
    # so what comes next is known from the last items (sequence rules) and co-occurrence,
    # which cannot tell forward from back, is weaker. Each served list's impression goes back
    # into the stream and the evaluated event (the user's next new item) judges it: with no
    # decay the online hits are the scoreboards' hits exactly (a list with no learned
    # candidates judges nothing, so there are fewer trials than evaluations).
    rng = random.Random(7)
    t = 1_700_000_000_000
    events = []
    for user in range(150):
        position = rng.randrange(300)
        for step in range(10):
            events.append(Interaction(f"u{user}", f"i{position % 300}", t + 100 * user + step,
                                      "click"))
            position += rng.randint(1, 3)
    settings = servers.settings(blend_evidence_horizon=10**12, blend_trials_before_switch=20)
    result = await Replay(settings, redis, every=1).run(events)
    boards, blend = result["recommenders"], result["blend"]
    evaluated = boards["default"]["evaluated"]
    assert evaluated - 50 < blend["trials"] < evaluated
    for label, rate in blend["hit_rates"].items():
        assert rate * blend["trials"] == pytest.approx(
            boards[f"blend {label}"]["hr_at_10"] * evaluated)
    assert boards["blend 0:1"]["hr_at_10"] > boards["blend 1:0"]["hr_at_10"]
    assert blend["served_at_end"] == max(blend["hit_rates"], key=blend["hit_rates"].get)
    assert blend["served_at_end"] == "0:1"
    assert boards["default"]["hr_at_10"] > boards["blend 1:1"]["hr_at_10"]
