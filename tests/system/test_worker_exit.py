"""A worker leaves nothing behind in the temporary directory when it stops."""

import sys
from pathlib import Path

from stream_app.worker import WORKER_DIRECTORY_PREFIX
from streamrec.servers import child_environment, start_child, stop_child
from tests.support.processes import wait_for
from tests.support.servers import Servers


def test_a_stopped_worker_removes_its_temporary_folder(servers: Servers, tmp_path: Path
                                                       ) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    environment = {**child_environment(servers.settings()), "TMPDIR": str(temporary)}
    worker = start_child([sys.executable, "-m", "streamrec", "worker"], tmp_path / "worker.log",
                         environment)
    try:
        folders = wait_for(lambda: list(temporary.glob(f"{WORKER_DIRECTORY_PREFIX}*")),
                           "the worker's folder", 60)
        wait_for(lambda: "Ready" in (tmp_path / "worker.log").read_text(errors="replace"),
                 "the worker to start", 60)
    finally:
        stop_child(worker)
    assert worker.returncode == 0
    assert folders and not any(folder.exists() for folder in folders)
    assert list(temporary.iterdir()) == []
