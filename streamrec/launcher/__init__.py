"""The whole system on one machine: `streamrec up` (broker, Redis, worker, service), the
one-command demo on top of it, the demo's synthetic shoppers, and the README's HTTP examples
from a real run."""

from .demo import run_demo, run_up
from .examples import generate_examples
from .traffic import produce_traffic

__all__ = ["generate_examples", "produce_traffic", "run_demo", "run_up"]
