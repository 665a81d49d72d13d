"""The one-command demo: the whole stack on this machine and synthetic shoppers feeding it."""

from .stack import run_demo
from .traffic import produce_traffic

__all__ = ["produce_traffic", "run_demo"]
