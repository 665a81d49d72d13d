"""Datasets to replay and to demo with: the synthetic shop (planted structure, drift)."""

from .synthetic import (
    SHOP_DATASET,
    SHUFFLED_SHOP_DATASET,
    World,
    events,
    make_world,
    write_dataset,
)

__all__ = ["SHOP_DATASET", "SHUFFLED_SHOP_DATASET", "World", "events", "make_world",
           "write_dataset"]
