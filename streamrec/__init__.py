"""streamrec: real-time recommendations from event streams."""

__version__ = "0.1.0"
