"""Offline evaluation: prequential replay of a CSV through the production write and read
code, its report and its plots."""

from .plots import plot_bars, plot_series
from .replay import (
    ITEM_COLUMNS,
    Dataset,
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
from .report import run_evaluation

__all__ = [
    "ITEM_COLUMNS",
    "Dataset",
    "Interaction",
    "InvalidDataset",
    "Replay",
    "Scoreboard",
    "gini",
    "load_catalogue",
    "load_interactions",
    "parse_columns",
    "plot_bars",
    "plot_series",
    "rank_of",
    "run_evaluation",
    "self_information",
]
