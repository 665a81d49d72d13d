"""The README's HTTP examples are what the service answers: the commands are the ones
`streamrec examples` sends, and every answer has the keys of the live answer, at every
level, once the demo's shoppers have made the lists personalised and clicked."""

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streamrec.launcher.examples import (
    EXAMPLES,
    parse_block,
    ready_for_examples,
    run_examples,
)
from streamrec.launcher.stack import FIRST_KEYS
from streamrec.servers import child_environment, start_child, stop_child
from tests.support.processes import wait_for
from tests.support.servers import Secured

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"


def keys_of(value: Any) -> Any:
    """The shape of an answer: objects by their keys, lists by their first element."""
    if isinstance(value, dict):
        return {key: keys_of(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [keys_of(value[0])] if value else []
    return None


@pytest.fixture(scope="module")
def demo(secured_service: Callable[..., Secured], tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Secured]:
    """A service with the demo's keys, fed by the demo's shoppers (faster) until the examples
    are meaningful."""
    service = secured_service(FIRST_KEYS)
    logs = tmp_path_factory.mktemp("traffic")
    traffic = start_child(
        [sys.executable, "-m", "streamrec", "traffic", "--rate", "1000", "--browse-rate", "20",
         "--service", service.base], logs / "traffic.log",
        {**child_environment(service.settings), "STREAMREC_API_KEY": service.keys["app"]})
    try:
        wait_for(lambda: ready_for_examples(service.base, service.keys),
                 "personalised and clicked lists", 240, 1.0)
        yield service
    finally:
        stop_child(traffic)


def test_the_readme_shows_the_commands_the_generator_sends() -> None:
    documented = parse_block(README.read_text())
    assert [command for command, _ in documented] == [e.command() for e in EXAMPLES]


def test_every_readme_answer_has_the_keys_of_the_live_answer(demo: Secured) -> None:
    documented = parse_block(README.read_text())
    live = run_examples(demo.base, demo.keys)
    for (command, shown), (_, answered) in zip(documented, live, strict=True):
        assert keys_of(shown) == keys_of(answered), command
