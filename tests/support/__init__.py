"""What tests share that is not a fixture: the servers' description, child processes,
state dumps and the hostile corpus. Fixtures live in `tests/conftest.py`."""
