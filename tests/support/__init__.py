"""What tests share that is not a fixture: the servers' description, child processes,
state dumps, the hostile corpus and the cases of a session. Fixtures live in `tests/conftest.py`."""
