"""The read path: an async HTTP service that reads Redis and serves recommendations."""
