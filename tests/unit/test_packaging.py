"""What can be checked without Docker: the compose file, the image recipe, the CLI help."""

import re
from pathlib import Path

import yaml
from typer.testing import CliRunner

from streamrec.cli import app, settings_table
from streamrec.contract import Settings
from streamrec.contract.experiments import RECOMMENDATION_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = {command.name or command.callback.__name__ for command in app.registered_commands}


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_services_run_our_commands_from_a_buildable_context() -> None:
    services = compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["redis"]["image"].startswith("redis:")
    ours = {name: s for name, s in services.items() if "build" in s}
    assert set(ours) == {"worker", "service", "traffic"}
    for name, service in ours.items():
        context = ROOT / service["build"]
        assert (context / "Dockerfile").is_file(), name
        assert service["command"][0] in COMMANDS, name
    dockerfile = (ROOT / "Dockerfile").read_text()
    for copied in ("streamrec", "stream_app", "serving", "pyproject.toml"):
        assert f"COPY {copied}" in dockerfile
        assert (ROOT / copied).exists()


def test_compose_environment_names_are_settings_and_ports_match() -> None:
    fields = {f"STREAMREC_{name.upper()}" for name in Settings.model_fields}
    services = compose()["services"]
    for name in ("worker", "service", "traffic"):
        environment = services[name]["environment"]
        assert set(environment) <= fields, name
        assert environment["STREAMREC_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert environment["STREAMREC_REDIS_URL"].startswith("redis://redis:6379")
    service = services["service"]
    published = service["ports"][0].split(":")[1]
    assert published == service["environment"]["STREAMREC_HTTP_PORT"]
    assert service["environment"]["STREAMREC_HTTP_HOST"] == "0.0.0.0"


def test_compose_traffic_browses_the_service_so_metrics_show_a_ctr() -> None:
    services = compose()["services"]
    command = services["traffic"]["command"]
    port = services["service"]["environment"]["STREAMREC_HTTP_PORT"]
    assert command[command.index("--service") + 1] == f"http://service:{port}"
    assert set(services["traffic"]["depends_on"]) == {"kafka", "redis", "service"}


def test_help_lists_every_setting() -> None:
    result = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    for name in Settings.model_fields:
        assert f"STREAMREC_{name.upper()}" in result.output
    for command in ("worker", "serve", "demo", "traffic"):
        assert command in COMMANDS


def test_readme_settings_table_is_the_generated_one() -> None:
    assert settings_table() in (ROOT / "README.md").read_text()


def test_readme_lists_the_settings_a_variant_may_override() -> None:
    readme = " ".join((ROOT / "README.md").read_text().split())
    listed = readme[readme.index("A variant's `settings` override only"):]
    listed = listed[:listed.index("plus `recommender`")]
    assert set(re.findall(r"`([a-z_]+)`", listed)) == {"settings", *RECOMMENDATION_SETTINGS}


def test_readme_documents_every_setting_and_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"`STREAMREC_{name.upper()}`" in readme
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def section(readme: str, title: str) -> str:
    return readme.split(f"\n{title}\n", 1)[1].split("\n## ", 1)[0]


def test_readme_says_where_every_input_comes_from_and_where_the_service_listens() -> None:
    readme = (ROOT / "README.md").read_text()
    evaluation = section(readme, "## Evaluation")
    assert "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip" in evaluation
    assert "Harper" in evaluation and "Konstan" in evaluation and "commercial" in evaluation
    assert "data/ml-latest-small/ratings.csv" in evaluation and "../" not in evaluation
    own = section(readme, "## Running on your own Kafka and Redis")
    assert "`127.0.0.1:8000`" in own and "`STREAMREC_HTTP_HOST" in own
