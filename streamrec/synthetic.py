"""Synthetic shoppers with planted structure, for the demo and for tests that check the
structure is recovered.

- Items belong to one category each; popularity within a category is Zipf-like.
- Each user has a hidden favourite category: with probability `taste` a session starts in it.
- Items come in planted bundles (pairs): right after an item, its partner follows with
  probability `bundle_follow`.
- Within a session a shopper moves down the funnel view -> click -> add_to_cart -> purchase.
"""

import random
from collections.abc import Iterator
from dataclasses import dataclass

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


def make_world(users: int = 200, categories: int = 8, items_per_category: int = 40,
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


def events(world: World, count: int, start_ms: int, step_ms: int = 1000, taste: float = 0.9,
           bundle_follow: float = 0.6, session_length: int = 6, seed: int = 11
           ) -> Iterator[InteractionEvent]:
    """`count` events, one every `step_ms`, sessions of random users interleaved."""
    rng = random.Random(seed)
    zipf = {c: [1.0 / (rank + 1) for rank in range(len(i))]
            for c, i in world.items_by_category.items()}
    users = world.users
    emitted = 0
    while True:
        user = rng.choice(users)
        category = (world.favourite_category[user] if rng.random() < taste
                    else rng.choice(world.categories))
        item = rng.choices(world.items_by_category[category], zipf[category])[0]
        for _ in range(session_length):
            for event_type, probability in FUNNEL:
                if rng.random() >= probability:
                    break
                yield InteractionEvent(
                    event_id=f"synthetic-{seed}-{emitted}", user_id=user, item_id=item,
                    event_type=event_type, timestamp=start_ms + emitted * step_ms)
                emitted += 1
                if emitted == count:
                    return
            if rng.random() < bundle_follow:
                item = world.bundle_partner[item]
            else:
                item = rng.choices(world.items_by_category[category], zipf[category])[0]
