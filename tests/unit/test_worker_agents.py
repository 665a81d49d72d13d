"""How the worker's agents are set up (what needs no broker to check)."""

from pathlib import Path

from mode.supervisors import CrashingSupervisor

from stream_app.worker import create_app
from streamrec.contract import Settings


def test_an_agent_that_raises_stops_the_worker_instead_of_restarting_past_its_records(
        tmp_path: Path) -> None:
    app = create_app(Settings(), tmp_path)
    assert len(app.agents) == 2
    assert {agent.supervisor_strategy for agent in app.agents.values()} == {CrashingSupervisor}
