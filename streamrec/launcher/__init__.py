"""The whole system on one machine: `streamrec up` (broker, Redis, worker, service), the
one-command demo on top of it, and the demo's synthetic shoppers."""

from .demo import run_demo, run_up
from .traffic import produce_traffic

__all__ = ["produce_traffic", "run_demo", "run_up"]
