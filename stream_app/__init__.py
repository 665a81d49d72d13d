"""The write path: a Faust worker that validates events and learns them into Redis."""
