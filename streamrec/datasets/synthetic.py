"""Synthetic shoppers with planted structure, for the demo and for tests that check the
structure is recovered.

- Items belong to one category each; popularity within a category is Zipf-like.
- Each user has a hidden favourite category: with probability `taste` a session starts in it.
- Items come in planted bundles (pairs): right after an item, its partner follows with
  probability `bundle_follow`.
- Within a session a shopper moves down the funnel view -> click -> add_to_cart -> purchase.
- Optional drift: a user's favourite category moves with probability `drift` per session,
  and every `trend_every` events each category's popularity ranking rotates (yesterday's
  hits fade, others rise), so recent behaviour predicts better than all-time counts.
"""

import csv
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from streamrec.contract import InteractionEvent, ItemEvent

FUNNEL = (("view", 1.0), ("click", 0.5), ("add_to_cart", 0.4), ("purchase", 0.5))


@dataclass(frozen=True)
class World:
    categories: list[str]
    items_by_category: dict[str, list[str]]
    favourite_category: dict[str, str]  # user -> hidden taste
    bundle_partner: dict[str, str]  # item -> planted partner

    @property
    def users(self) -> list[str]:
        return list(self.favourite_category)

    def category_of(self, item_id: str) -> str:
        return item_id.split("-")[1]

    def catalogue(self) -> list[ItemEvent]:
        return [
            ItemEvent(item_id=item, categories=[category], title=f"{category} item {k}")
            for category, items in self.items_by_category.items()
            for k, item in enumerate(items)
        ]


def make_world(users: int = 200, categories: int = 8, items_per_category: int = 40, *,
               seed: int = 7) -> World:
    rng = random.Random(seed)
    names = [f"c{k}" for k in range(categories)]
    items = {c: [f"item-{c}-{k}" for k in range(items_per_category)] for c in names}
    partners: dict[str, str] = {}
    for category_items in items.values():
        shuffled = rng.sample(category_items, len(category_items))
        for a, b in zip(shuffled[0::2], shuffled[1::2], strict=False):
            partners[a], partners[b] = b, a
    return World(names, items, {f"user-{k}": rng.choice(names) for k in range(users)}, partners)


def events(world: World, count: int, *, start_ms: int, step_ms: int = 1000,
           taste: float = 0.9, bundle_follow: float = 0.6, session_length: int = 6,
           seed: int = 11, drift: float = 0.0, trend_every: int = 0,
           ordered_sessions: bool = True) -> Iterator[InteractionEvent]:
    """`count` events, one every `step_ms`, sessions of random users interleaved. Without
    `ordered_sessions` the items of a session come in a random order (each item's funnel
    kept together): what a session holds is planted, what follows what is not."""
    rng = random.Random(seed)
    session_order = random.Random(seed + 1)  # the same sessions as ordered ones, reordered
    ranked = {c: list(i) for c, i in world.items_by_category.items()}  # most popular first
    zipf = [1.0 / (rank + 1) for rank in range(max(map(len, ranked.values())))]
    favourite = dict(world.favourite_category)
    users = world.users
    emitted, next_rotation = 0, trend_every

    def pick(category: str) -> str:
        items = ranked[category]
        return rng.choices(items, zipf[:len(items)])[0]

    while True:
        user = rng.choice(users)
        if drift and rng.random() < drift:
            favourite[user] = rng.choice(world.categories)
        if trend_every and emitted >= next_rotation:
            next_rotation += trend_every
            for items in ranked.values():
                shift = max(1, len(items) // 10)
                items[:] = items[shift:] + items[:shift]
        category = favourite[user] if rng.random() < taste else rng.choice(world.categories)
        item = pick(category)
        visits: list[tuple[str, list[str]]] = []  # (item, its funnel's event types)
        for _ in range(session_length):
            funnel = []
            for event_type, probability in FUNNEL:
                if rng.random() >= probability:
                    break
                funnel.append(event_type)
            visits.append((item, funnel))
            follow = rng.random() < bundle_follow
            item = world.bundle_partner[item] if follow else pick(category)
        if not ordered_sessions:
            session_order.shuffle(visits)
        for visited, funnel in visits:
            for event_type in funnel:
                yield InteractionEvent(
                    event_id=f"synthetic-{seed}-{emitted}", user_id=user, item_id=visited,
                    event_type=event_type, timestamp=start_ms + emitted * step_ms)
                emitted += 1
                if emitted == count:
                    return


#: The second evaluation dataset (beside MovieLens): sessions, a funnel, drifting tastes and
#: rotating hits; one event a minute from 2024-01-01, so decay half-lives in days matter.
SHOP_DATASET = {"users": 2000, "categories": 20, "items_per_category": 200, "events": 100_000,
                "start_ms": 1_704_067_200_000, "step_ms": 60_000, "taste": 0.8,
                "bundle_follow": 0.5, "session_length": 8, "drift": 0.05,
                "trend_every": 5000, "seed": 2026, "ordered_sessions": 1}
#: The same shop with each session's items in a random order (measured: next-item rules
#: still beat co-occurrence there, as a session's items still follow each other).
SHUFFLED_SHOP_DATASET = SHOP_DATASET | {"ordered_sessions": 0}


def write_dataset(events_path: Path, items_path: Path,
                  spec: dict[str, int | float] = SHOP_DATASET) -> int:
    """Writes user_id,item_id,timestamp,event_type rows and the item_id,categories,title
    catalogue (the plain layouts `evaluate` reads); returns the number of events."""
    world = make_world(int(spec["users"]), int(spec["categories"]),
                       int(spec["items_per_category"]), seed=int(spec["seed"]))
    with items_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "categories", "title"])
        writer.writerows([item.item_id, "|".join(item.categories), item.title]
                         for item in world.catalogue())
    stream = events(world, int(spec["events"]), start_ms=int(spec["start_ms"]),
                    step_ms=int(spec["step_ms"]), taste=spec["taste"],
                    bundle_follow=spec["bundle_follow"],
                    session_length=int(spec["session_length"]), seed=int(spec["seed"]),
                    drift=spec["drift"], trend_every=int(spec["trend_every"]),
                    ordered_sessions=bool(spec["ordered_sessions"]))
    written = 0
    with events_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "item_id", "timestamp", "event_type"])
        for event in stream:
            writer.writerow([event.user_id, event.item_id, event.timestamp, event.event_type])
            written += 1
    return written
