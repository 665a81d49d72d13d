"""Prequential (test-then-learn) evaluation through the production code.

Events are replayed in time order into a real Redis with the worker's own `StateWriter`,
and the recommenders are the service's own `Recommender` methods; only Kafka, Faust and
HTTP are left out (they move bytes, they do not change what is learned or served).

Protocol (the usual prequential one for MovieLens-style logs): stable sort by timestamp
(events that share a timestamp are first shuffled with a fixed, reported seed, because the
file's order for them, e.g. ascending item id, is an artefact next-item rules can learn);
the first `train_fraction` of events only train; after that every `every`-th event (global
index k, k % every == 0) is evaluated when its user already has history and the item is new
to that user: the recommender's top k from the state of all earlier events, the user's items
excluded, over the full catalogue; a hit if the event's item is in it. Then the event is
learned. The default's list goes back into the stream as its impression, just before the
event, as the service publishes it: so the impression penalty acts, and the event judges
the self-tuning blend's weightings (each weighting's own list is scored here too).
With `batch_size` B > 1 the state is only updated every B events, which shows what a
worker's batching lag costs.
"""

import contextlib
import csv
import hashlib
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError
from redis.asyncio import Redis

from serving.impressions import impression_event
from serving.recommender import RecommendationList, Recommender
from serving.scoring import COOCCURRENCE, NEIGHBOURS, SEQUENCE, weighting_label
from serving.state_reader import StateReader
from stream_app.state_writer import StateWriter, StreamRecord
from streamrec.contract import (
    InteractionEvent,
    ItemEvent,
    RedisKeys,
    Settings,
    describe_validation_error,
)

from .reference import StreamingReference

REQUIRED_COLUMNS = ("user_id", "item_id", "timestamp")
EVENT_COLUMNS = (*REQUIRED_COLUMNS, "event_type")
ITEM_COLUMNS = ("item_id", "categories", "title")
#: Events applied per script call while no evaluation needs the state (bounds Redis stalls).
MAX_APPLY_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Interaction:
    user_id: str
    item_id: str
    timestamp_ms: int
    event_type: str


class InvalidDataset(ValueError):
    """An input file that cannot be read as the evaluation expects: says which file, which
    line when one is at fault, and what is wrong."""


@contextlib.contextmanager
def csv_rows(path: Path) -> Iterator[csv.DictReader]:
    """The file as CSV rows; unreadable or undecodable input is an `InvalidDataset`."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            yield csv.DictReader(handle)
    except OSError as error:
        raise InvalidDataset(f"{path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise InvalidDataset(f"{path}: not UTF-8 text ({error.reason} at byte "
                             f"{error.start})") from None
    except csv.Error as error:
        raise InvalidDataset(f"{path}: not a CSV file ({error})") from None


def load_interactions(path: Path, columns: dict[str, str] | None = None,
                      time_unit: str = "auto", event_type: str = "click", *,
                      ties: str = "shuffle", seed: int = 0) -> list[Interaction]:
    """Rows of a CSV as interactions, sorted by time. `columns` maps our names (user_id,
    item_id, timestamp, event_type) to the file's; `time_unit` is s, ms or auto; `ties`
    "shuffle" orders same-time events by a shuffle with `seed`, "file" keeps the file's."""
    names = {name: name for name in EVENT_COLUMNS} | (columns or {})
    with csv_rows(path) as reader:
        fields = reader.fieldnames or []
        missing = [names[c] for c in REQUIRED_COLUMNS if names[c] not in fields]
        if missing:
            raise InvalidDataset(f"{path} has no column(s) {missing}; its header is "
                                 f"{fields}; map them with --columns")
        typed = names["event_type"] in fields
        rows = []
        for line, row in enumerate(reader, start=2):
            user, item, stamp = (row[names[c]] for c in REQUIRED_COLUMNS)
            if user is None or item is None or stamp is None:
                raise InvalidDataset(f"{path}:{line}: fewer cells than the header has columns")
            try:
                seconds_or_ms = float(stamp)
            except ValueError:
                raise InvalidDataset(f"{path}:{line}: timestamp {stamp!r} is not a "
                                     "number") from None
            rows.append((user, item, seconds_or_ms,
                         (row[names["event_type"]] or event_type) if typed else event_type))
    if not rows:
        raise InvalidDataset(f"{path} holds no events")
    if time_unit == "auto":
        time_unit = "s" if max(r[2] for r in rows) < 1e11 else "ms"
    scale = 1000 if time_unit == "s" else 1
    interactions = [Interaction(u, i, int(t * scale), kind) for u, i, t, kind in rows]
    if ties == "shuffle":
        random.Random(seed).shuffle(interactions)
    return sorted(interactions, key=lambda x: x.timestamp_ms)  # sorted() is stable


def load_catalogue(path: Path, columns: dict[str, str] | None = None) -> list[ItemEvent]:
    """Catalogue rows (item_id, categories separated by '|', optional title) as item events;
    MovieLens movies.csv reads with item_id=movieId,categories=genres."""
    names = {name: name for name in ITEM_COLUMNS} | (columns or {})
    with csv_rows(path) as reader:
        fields = reader.fieldnames or []
        if names["item_id"] not in fields:
            raise InvalidDataset(f"{path} has no column {names['item_id']!r}; its header is "
                                 f"{fields}; map it with --item-columns")
        items = []
        for line, row in enumerate(reader, start=2):
            try:
                items.append(ItemEvent(
                    item_id=row[names["item_id"]],
                    categories=[c for c in (row.get(names["categories"]) or "").split("|") if c],
                    title=row.get(names["title"]) or None))
            except ValidationError as error:
                raise InvalidDataset(f"{path}:{line}: {describe_validation_error(error)}"
                                     ) from None
    return items


def fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Dataset:
    """An events CSV and, optionally, a catalogue CSV, with how to read their columns."""

    events: Path
    columns: dict[str, str] = field(default_factory=dict)
    time_unit: str = "auto"
    items: Path | None = None
    item_columns: dict[str, str] = field(default_factory=dict)
    ties: str = "shuffle"
    seed: int = 0

    def interactions(self) -> list[Interaction]:
        return load_interactions(self.events, self.columns, self.time_unit, ties=self.ties,
                                 seed=self.seed)

    def catalogue(self) -> list[ItemEvent]:
        return load_catalogue(self.items, self.item_columns) if self.items else []

    def describe(self, events: int) -> dict[str, object]:
        described: dict[str, object] = {"path": str(self.events),
                                        "sha256": fingerprint(self.events), "events": events,
                                        "ties": self.ties, "seed": self.seed}
        if self.items:
            described["items"] = {"path": str(self.items), "sha256": fingerprint(self.items)}
        return described


def rank_of(recommended: Sequence[str], target: str) -> int | None:
    """1-based rank of `target` in the list, None when absent."""
    for rank, item in enumerate(recommended, start=1):
        if item == target:
            return rank
    return None


def gini(values: Sequence[float]) -> float:
    """0 when every item is shown equally often, towards 1 when a few items take it all."""
    ordered = sorted(values)
    total = sum(ordered)
    if not ordered or total == 0:
        return 0.0
    n = len(ordered)
    return sum((2 * k - n + 1) * x for k, x in enumerate(ordered)) / (n * total)


@dataclass
class Scoreboard:
    """Running HR@k, NDCG@k, MRR@k, novelty and how often each item was recommended."""

    evaluated: int = 0
    hits: int = 0
    ndcg: float = 0.0
    reciprocal_rank: float = 0.0
    novelty: float = 0.0
    exposure: Counter[str] = field(default_factory=Counter)
    window_hits: list[int] = field(default_factory=list)
    evaluated_apart: int = 0
    hits_apart: int = 0

    def add(self, recommended: Sequence[str], target: str, novelty: float, apart: bool) -> None:
        """`novelty`: the list's mean self-information, -log2(share of users who know it);
        `apart`: the event's time differs from its user's previous event's (no tie to learn)."""
        rank = rank_of(recommended, target)
        self.evaluated += 1
        self.evaluated_apart += apart
        self.hits_apart += apart and rank is not None
        self.novelty += novelty
        self.exposure.update(recommended)
        self.window_hits.append(rank is not None)
        if rank is not None:
            self.hits += 1
            self.ndcg += 1 / math.log2(rank + 1)
            self.reciprocal_rank += 1 / rank

    def summary(self, catalogue: Collection[str], window: int) -> dict[str, object]:
        """`catalogue`: every item seen in the stream, the base of coverage and Gini."""
        n = max(self.evaluated, 1)
        windows = [
            {"evaluated_up_to": end, "hr_at_10": sum(self.window_hits[end - window:end]) / window}
            for end in range(window, self.evaluated + 1, window)
        ]
        return {"hr_at_10": self.hits / n, "ndcg_at_10": self.ndcg / n,
                "mrr_at_10": self.reciprocal_rank / n,
                "coverage": len(self.exposure) / max(len(catalogue), 1),
                "novelty": self.novelty / n,
                "exposure_gini": gini([self.exposure[item] for item in catalogue]),
                "evaluated": self.evaluated,
                "hr_at_10_apart": self.hits_apart / max(self.evaluated_apart, 1),
                "evaluated_apart": self.evaluated_apart, "windows": windows}


def self_information(recommended: Sequence[str], users_of: Counter[str], users: int) -> float:
    """Mean -log2(n_i / users) of a list: higher for items fewer users know (novelty)."""
    if not recommended:
        return 0.0
    return sum(-math.log2(max(users_of[item], 1) / max(users, 1)) for item in recommended
               ) / len(recommended)


RECOMMENDERS = ("default", "co-occurrence", "sequence", "neighbours", "trending", "popularity")
#: The replay's name for the shadow list of a weighting the self-tuning blend judges.
WEIGHTING_RECOMMENDER = "blend {}"


def as_event(index: int, interaction: Interaction, settings: Settings) -> InteractionEvent:
    """The event the worker would learn; what it would refuse stops the replay."""
    try:
        return InteractionEvent.model_validate(
            {"event_id": str(index), "user_id": interaction.user_id,
             "item_id": interaction.item_id, "event_type": interaction.event_type,
             "timestamp": interaction.timestamp_ms},
            context={"decay_horizon": settings.decay_horizon})
    except ValidationError as error:
        raise InvalidDataset(f"the event {interaction}: {describe_validation_error(error)}"
                             ) from None


async def ask_all(recommender: Recommender, user_id: str, k: int, now_ms: int
                  ) -> tuple[dict[str, list[str]], RecommendationList]:
    """Top-k item ids of every recommender compared, over the same state: the service's
    default (the blend, re-ranked and topped up), each learned source alone, the two
    popularity baselines and each weighting the self-tuning blend judges (its shadow list);
    and the default's list as served (its impression goes back into the stream)."""
    def ids(served: RecommendationList) -> list[str]:
        return [item.item_id for item in served.items]

    served, by_source = await recommender.for_user_by_source(user_id, k, now_ms=now_ms)
    return {
        "default": ids(served),
        "co-occurrence": by_source.get(COOCCURRENCE, []),
        "sequence": by_source.get(SEQUENCE, []),
        "neighbours": by_source.get(NEIGHBOURS, []),
        "trending": ids(await recommender.trending(k, user_id=user_id, now_ms=now_ms)),
        "popularity": ids(await recommender.popular(k, user_id=user_id)),
    } | {WEIGHTING_RECOMMENDER.format(label): served.weighting_lists.get(label, [])
         for label in judged_labels(recommender.settings)}, served


def judged_labels(settings: Settings) -> list[str]:
    """The weightings the self-tuning blend judges (none when it has one to choose from)."""
    weightings = settings.weightings
    return [weighting_label(w) for w in weightings] if len(weightings) > 1 else []


DEFAULT_RECOMMENDER = "default"
#: The stream position of the impressions the replay publishes, as the service would.
IMPRESSIONS_SOURCE = "replay-impressions:0"


@dataclass
class Replay:
    settings: Settings
    redis: Redis
    batch_size: int = 1
    every: int = 5
    train_fraction: float = 0.1
    k: int = 10
    window: int = 1000
    #: Variants of the recommendation settings (read-side only, as an experiment's), each
    #: asked for the service's default list on the same state: `variant NAME` rows.
    variants: dict[str, Settings] = field(default_factory=dict)
    #: Score the streaming reference (`reference.py`) on the same events, one row per method
    #: (dense counts: see `reference_bytes`).
    reference: bool = False

    async def run(self, interactions: Sequence[Interaction],
                  progress: Callable[[int], None] = lambda _: None,
                  catalogue: Sequence[ItemEvent] = ()) -> dict[str, object]:
        """Replays `interactions` after loading `catalogue` (categories, titles) first."""
        writer = StateWriter(self.redis, self.settings)
        recommender = Recommender(
            StateReader(self.redis, RedisKeys(self.settings.key_prefix)), self.settings)
        boards = {name: Scoreboard() for name in [
            *RECOMMENDERS, *map(WEIGHTING_RECOMMENDER.format, judged_labels(self.settings))]}
        served_weightings: list[str] = []  # per evaluation, the weighting the default used
        impressions = 0
        variants = {f"variant {name}": Recommender(recommender.reader, changed)
                    for name, changed in self.variants.items()}
        boards |= {name: Scoreboard() for name in variants}
        yardstick = (StreamingReference(event.item_id for event in interactions)
                     if self.reference else None)
        if yardstick is not None:
            boards |= {method.name: Scoreboard() for method in yardstick.methods}
        seen: dict[str, set[str]] = {}
        last_time: dict[str, int] = {}
        users_of: Counter[str] = Counter()  # n_i, for novelty
        pending: list[StreamRecord] = []
        train_end = int(len(interactions) * self.train_fraction)
        started = time.monotonic()

        async def flush() -> None:
            """Applies the pending events; the reference learns them at the same moment, so
            with batching it lags as the recommenders do."""
            if pending:
                await writer.apply(pending)
                if yardstick is not None:
                    for record in pending:
                        if isinstance(record.payload, InteractionEvent):
                            yardstick.learn(record.payload.user_id, record.payload.item_id)
                pending.clear()

        for start in range(0, len(catalogue), MAX_APPLY_CHUNK):
            await writer.apply([StreamRecord("replay-items:0", start + k, item) for k, item
                                in enumerate(catalogue[start:start + MAX_APPLY_CHUNK])])

        for index, event in enumerate(interactions):
            history = seen.setdefault(event.user_id, set())
            if (index >= train_end and index % self.every == 0 and history
                    and event.item_id not in history):
                if self.batch_size == 1:
                    await flush()  # exact test-then-learn: the state holds every earlier event
                lists, served = await ask_all(recommender, event.user_id, self.k,
                                              event.timestamp_ms)
                served_weightings.append(weighting_label(
                    await recommender.served_weighting(event.timestamp_ms)))
                if served.items:  # what the service publishes for a list it serves
                    pending.append(StreamRecord(IMPRESSIONS_SOURCE, impressions, impression_event(
                        event.user_id, served, event.timestamp_ms)))
                    impressions += 1
                for name, variant in variants.items():
                    varied = await variant.for_user(event.user_id, self.k,
                                                    now_ms=event.timestamp_ms)
                    lists[name] = [item.item_id for item in varied.items]
                if yardstick is not None:
                    lists |= yardstick.recommend(event.user_id, self.k)
                apart = last_time[event.user_id] != event.timestamp_ms
                for name, recommended in lists.items():
                    boards[name].add(recommended, event.item_id,
                                     self_information(recommended, users_of, len(seen)), apart)
            if event.item_id not in history:
                users_of[event.item_id] += 1
            history.add(event.item_id)
            last_time[event.user_id] = event.timestamp_ms
            pending.append(StreamRecord("replay:0", index, as_event(index, event, self.settings)))
            if len(pending) >= (MAX_APPLY_CHUNK if self.batch_size == 1 else self.batch_size):
                await flush()
            progress(index + 1)
        await flush()
        evidence = await recommender.reader.blend_evidence()
        return {
            "recommenders": {name: board.summary(users_of.keys(), self.window)
                             for name, board in boards.items()},
            "default": DEFAULT_RECOMMENDER,
            "blend": {
                "served_at_end": weighting_label(await recommender.served_weighting(
                    interactions[-1].timestamp_ms if interactions else None)),
                "served_by_window": [
                    {"evaluated_up_to": end, "served": Counter(
                        served_weightings[end - self.window:end]).most_common(1)[0][0]}
                    for end in range(self.window, len(served_weightings) + 1, self.window)],
                "trials": evidence.trials,
                "hit_rates": evidence.hit_rates(),
            },
            "events": len(interactions),
            "seconds": time.monotonic() - started,
        }


async def delete_prefix(redis: Redis, prefix: str) -> None:
    keys: list[bytes] = []
    async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
        keys.append(key)
        if len(keys) >= 1000:
            await redis.unlink(*keys)
            keys.clear()
    if keys:
        await redis.unlink(*keys)


def parse_columns(mapping: str | None, ours: Sequence[str] = EVENT_COLUMNS) -> dict[str, str]:
    """'user_id=userId,item_id=movieId' -> {'user_id': 'userId', 'item_id': 'movieId'}"""
    result: dict[str, str] = {}
    for pair in filter(None, (mapping or "").split(",")):
        name, _, theirs = pair.partition("=")
        if name.strip() not in ours or not theirs.strip():
            raise ValueError(f"entry {pair!r}: expected NAME=COLUMN with NAME one of "
                             f"{list(ours)}")
        result[name.strip()] = theirs.strip()
    return result

