"""Schemathesis against the service's own OpenAPI document: every operation, generated
requests valid and invalid, zero server errors. (Run through its CLI: its pytest plugin
does not support pytest 9 yet.)"""

import subprocess
import sys
from pathlib import Path

import pytest

from serving.app import create_app
from streamrec.contract import create_key
from tests.support.processes import ChildProcesses
from tests.support.servers import Servers

pytestmark = pytest.mark.slow


def test_schemathesis_finds_no_server_error(servers: Servers, tmp_path: Path) -> None:
    # With a key holding every scope, so every operation is reached past the gate. No worker
    # here: an erasure answers 202 (pending) at once instead of waiting for one.
    key = create_key(tmp_path / "keys.json", "fuzz", ["read", "write", "catalogue", "admin"])
    children = ChildProcesses(servers.settings(
        erasure_wait_seconds=0, auth="required", api_keys_file=tmp_path / "keys.json",
        rate_limit_per_second=10_000, rate_limit_burst=10_000), tmp_path)
    try:
        _, base = children.start_service()
        run = subprocess.run(
            [str(Path(sys.executable).parent / "schemathesis"), "run", f"{base}/openapi.json",
             "--checks", "not_a_server_error", "--max-examples", "50", "--seed", "1",
             # one worker: CPython 3.11's ast.parse is not thread-safe (SystemError)
             "--workers", "1", "--header", f"Authorization: Bearer {key}"],
            capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
        operations = sum(len(methods) for methods in create_app().openapi()["paths"].values())
        assert f"Tested: {operations}" in run.stdout and " passed" in run.stdout, (
            run.stdout[-3000:])
    finally:
        children.stop_all()
