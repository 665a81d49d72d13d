"""The `streamrec` command: run the worker, the service, the embedded demo, demo traffic.

A mistake in what the user gave (an argument, an option, a setting, an input file) ends the
command with one line on stderr and a non-zero exit, never a traceback: `main` prints every
`typer.TyperException` (bad arguments and options are ones) that way, and commands turn
their input errors into one.
"""

import asyncio
import enum
import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError

from streamrec.contract import Settings, Variant, describe_validation_error, with_overrides


def _setting_rows() -> list[tuple[str, object, str]]:
    """(variable, default, description) of every setting."""
    return [(f"STREAMREC_{name.upper()}",
             field.default_factory() if field.default_factory else field.default,
             field.description or "")
            for name, field in Settings.model_fields.items()]


def _settings_help() -> str:
    # "\b" keeps click from re-wrapping a paragraph: a default is never split across lines.
    return "Settings come from environment variables (defaults in brackets):\n\n" + "".join(
        f"\b\n{variable} [{_shown(default)}]: {description}\n\n"
        for variable, default, description in _setting_rows())


def _shown(default: object) -> str:
    """A default as it is written in the environment: JSON, or `unset` for none."""
    return "unset" if default is None else default if isinstance(default, str) else json.dumps(
        default)


def settings_table() -> str:
    """The README's settings table."""
    rows = [f"| `{variable}` | `{_shown(default)}`"
            f" | {description} |" for variable, default, description in _setting_rows()]
    return "\n".join(["| variable | default | meaning |", "|---|---|---|", *rows])


def current_settings() -> Settings:
    """The settings from the environment; a malformed variable is the user's input error."""
    try:
        return Settings()
    except ValidationError as error:
        problem = error.errors(include_url=False)[0]
        variable = f"STREAMREC_{str(problem['loc'][0]).upper()}" if problem["loc"] else "settings"
        raise typer.TyperException(
            f"{variable}: {problem['msg'].removeprefix('Value error, ')}") from None
    except SettingsError as error:
        raise typer.TyperException(f"{error} ({error.__cause__})") from None


app = typer.Typer(help="Real-time recommendations from event streams.",
                  epilog=_settings_help(), no_args_is_help=True, rich_markup_mode=None)

LogLevel = Annotated[str, typer.Option(help="debug, info, warning or error.")]


@app.command()
def worker(log_level: LogLevel = "info") -> None:
    """Run a stream worker: consume events and catalogue, learn them into Redis."""
    from stream_app.worker import run_worker

    run_worker(current_settings(), log_level)


@app.command()
def serve(log_level: LogLevel = "info") -> None:
    """Run the HTTP service on STREAMREC_HTTP_HOST:STREAMREC_HTTP_PORT."""
    from serving.app import run_service

    logging.basicConfig(level=log_level.upper())
    run_service(current_settings(), log_level)


@app.command()
def demo(
    rate: Annotated[float, typer.Option(help="Synthetic events per second.")] = 200.0,
    users: Annotated[int, typer.Option(help="Synthetic users.")] = 300,
    experiment: Annotated[bool, typer.Option(
        help="Run an experiment, trending only against the blend, and print its verdict "
        "when the results declare one.")] = True,
) -> None:
    """Start everything on this machine (broker, Redis, worker, service, traffic) until Ctrl-C."""
    from streamrec.launcher import run_demo

    run_demo(current_settings(), rate, users, experiment)


@app.command()
def up(
    data_dir: Annotated[Path | None, typer.Option(
        help="Keep Redis's state here (append-only file) across restarts; default: a "
        "temporary directory, removed at the end.")] = None,
) -> None:
    """Start the broker, Redis, a worker and the service on this machine and print where they
    listen; Ctrl-C drains (the worker applies everything in the topics) and stops them."""
    from streamrec.launcher import run_up

    run_up(current_settings(), data_dir)


@app.command()
def examples(
    readme: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False, help="Rewrite this README's examples block.")] = None,
) -> None:
    """Run the README's HTTP examples against a real run (the stack and the demo's shoppers,
    about a minute) and print them as curl commands with their answers."""
    from streamrec.launcher import generate_examples

    generate_examples(current_settings(), readme)


@app.command()
def traffic(
    rate: Annotated[float, typer.Option(help="Events per second.")] = 200.0,
    users: Annotated[int, typer.Option(help="Synthetic users.")] = 300,
    count: Annotated[int, typer.Option(help="Stop after this many events (0: never).")] = 0,
    service: Annotated[str | None, typer.Option(
        help="Service URL: shoppers also browse served lists and click on them.")] = None,
    browse_rate: Annotated[float, typer.Option(help="Lists browsed per second.")] = 5.0,
    api_key: Annotated[str | None, typer.Option(
        envvar="STREAMREC_API_KEY", show_default=False,
        help="Key (read and write scopes) for browsing the service.")] = None,
) -> None:
    """Produce the synthetic catalogue, then synthetic shopper events, to Kafka."""
    from streamrec.launcher import produce_traffic

    asyncio.run(produce_traffic(current_settings(), rate, users, count=count, service=service,
                                browse_rate=browse_rate, api_key=api_key))


class TimeUnit(enum.StrEnum):
    s = "s"
    ms = "ms"
    auto = "auto"


def parse_variant(text: str, settings: Settings) -> Variant:
    """NAME=JSON as an experiment's variant of `settings`; one clear error otherwise."""
    name, _, overrides = text.partition("=")
    try:
        parsed = Variant(name=name, settings=json.loads(overrides or "{}"))
    except json.JSONDecodeError as error:
        raise typer.BadParameter(f"{text!r}: not NAME=JSON ({error})",
                                 param_hint="--variant") from None
    except ValidationError as error:
        raise typer.BadParameter(f"{text!r}: {describe_validation_error(error)}",
                                 param_hint="--variant") from None
    if parsed.settings.recommender != "personalised":
        raise typer.BadParameter(f"{text!r}: evaluate compares personalised settings (trending "
                                 "has its own row)", param_hint="--variant")
    try:
        with_overrides(settings, parsed)
    except ValueError as error:
        raise typer.BadParameter(f"{text!r}: {error}", param_hint="--variant") from None
    return parsed


class Ties(enum.StrEnum):
    shuffle = "shuffle"
    file = "file"


@app.command()
def evaluate(
    path: Annotated[Path, typer.Argument(
        exists=True, dir_okay=False, help="CSV with user_id,item_id,timestamp columns.")],
    columns: Annotated[str | None, typer.Option(
        help="Map our names to the file's, e.g. user_id=userId,item_id=movieId")] = None,
    time_unit: Annotated[TimeUnit, typer.Option(help="s, ms or auto (detected).")
                         ] = TimeUnit.auto,
    batch_size: Annotated[int, typer.Option(
        min=1, help="Apply events in batches of B (1: exact).")] = 1,
    every: Annotated[int, typer.Option(min=1, help="Evaluate every k-th event.")] = 5,
    out: Annotated[Path | None, typer.Option(
        file_okay=False, help="Write metrics.json and a plot here.")] = None,
    redis_url: Annotated[str | None, typer.Option(
        help="Replay into this Redis (under a fresh key prefix) instead of an embedded one.")
    ] = None,
    items: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False,
        help="Catalogue CSV (item_id, categories separated by |, title), loaded first.")
    ] = None,
    item_columns: Annotated[str | None, typer.Option(
        help="Map the catalogue's columns, e.g. item_id=movieId,categories=genres")] = None,
    ties: Annotated[Ties, typer.Option(
        help="Events that share a timestamp: shuffled with --seed, or in the file's order "
        "(which next-item rules can learn).")] = Ties.shuffle,
    seed: Annotated[int, typer.Option(help="Seed of the same-time shuffle.")] = 0,
    variant: Annotated[list[str] | None, typer.Option(
        help="NAME=JSON overrides of the recommendation settings, as an experiment's variant "
        "(e.g. 'seq2={\"sequence_weight\": 2}'); repeatable; each gets a row, scored on the "
        "same replay.")] = None,
    reference: Annotated[bool, typer.Option(
        help="Score the streaming reference (exact cosine and jaccard co-occurrence, pair "
        "windows 20 and 50, in process) on the same events; its counts are dense, so a "
        "catalogue too large for them is skipped, with a message.")] = True,
) -> None:
    """Prequential replay of a CSV through the production write and read code."""
    from streamrec.evaluation import (
        ITEM_COLUMNS,
        Dataset,
        InvalidDataset,
        parse_columns,
        run_evaluation,
    )

    try:
        mapping = parse_columns(columns)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--columns") from None
    try:
        item_mapping = parse_columns(item_columns, ITEM_COLUMNS)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--item-columns") from None
    dataset = Dataset(path, mapping, time_unit.value, items, item_mapping, ties.value, seed)
    settings = current_settings()
    variants = [parse_variant(text, settings) for text in variant or []]
    try:
        run_evaluation(dataset, settings, batch_size, every, out, redis_url, variants,
                       reference)
    except InvalidDataset as error:
        raise typer.TyperException(str(error)) from None


@app.command()
def dataset(
    directory: Annotated[Path, typer.Argument(help="Where to write events.csv and items.csv.")],
    shuffled_sessions: Annotated[bool, typer.Option(
        help="Each session's items in a random order (each item's funnel kept together): "
        "the same sessions without their order.")] = False,
) -> None:
    """Write the synthetic shop dataset (sessions, funnel, drift) for `evaluate`."""
    from streamrec.datasets import SHOP_DATASET, SHUFFLED_SHOP_DATASET, write_dataset

    spec = SHUFFLED_SHOP_DATASET if shuffled_sessions else SHOP_DATASET
    try:
        directory.mkdir(parents=True, exist_ok=True)
        count = write_dataset(directory / "events.csv", directory / "items.csv", spec)
    except OSError as error:
        raise typer.TyperException(f"{error.filename or directory}: {error.strerror}") from None
    typer.echo(f"wrote {count:,} events and the catalogue to {directory} ({spec});\n"
               f"evaluate with: streamrec evaluate {directory / 'events.csv'} "
               f"--items {directory / 'items.csv'}")


keys = typer.Typer(help="API keys of the service (STREAMREC_API_KEYS_FILE).",
                   no_args_is_help=True)
app.add_typer(keys, name="keys")

KeysFile = Annotated[Path | None, typer.Option(
    "--file", help="The keys file (default: STREAMREC_API_KEYS_FILE).")]


def _keys_file(file: Path | None) -> Path:
    """The keys file to act on, once it is known to be one (or does not exist yet)."""
    from streamrec.contract import describe_validation_error, load_keys

    chosen = file or current_settings().api_keys_file
    if chosen is None:
        raise typer.BadParameter("set STREAMREC_API_KEYS_FILE or pass --file", param_hint="--file")
    try:
        load_keys(chosen)
    except ValidationError as error:
        raise typer.TyperException(f"{chosen} is not a keys file: "
                                   f"{describe_validation_error(error)}") from None
    except OSError as error:
        raise typer.TyperException(f"{chosen}: {error.strerror or error}") from None
    return chosen


@keys.command("create")
def create_key_command(
    name: Annotated[str, typer.Option(help="Who holds the key (letters, digits, . _ -).")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: read, write, catalogue, admin.")],
    rate_limit: Annotated[float | None, typer.Option(
        min=0.001, help="This key's units of work a second (default: "
        "STREAMREC_RATE_LIMIT_PER_SECOND), e.g. for a backend serving a whole site.")] = None,
    file: KeysFile = None,
) -> None:
    """Add a key; it is printed once, alone on the last line (the file keeps its SHA-256)."""
    from pydantic import ValidationError

    from streamrec.contract import create_key

    path = _keys_file(file)
    try:
        key = create_key(path, name, [s.strip() for s in scopes.split(",") if s.strip()],
                         rate_per_second=rate_limit)
    except (ValueError, ValidationError) as error:
        raise typer.BadParameter(str(error).splitlines()[0]) from None
    typer.echo(f"created the key {name!r} in {path} (shown once, keep it secret):")
    typer.echo(key)


@keys.command("list")
def list_keys_command(file: KeysFile = None) -> None:
    """Names, scopes and own rates of the keys (the keys themselves are not stored)."""
    from streamrec.contract import load_keys

    for entry in load_keys(_keys_file(file)).keys:
        rate = "default rate" if entry.rate_per_second is None else f"{entry.rate_per_second:g}/s"
        typer.echo(f"{entry.name}\t{','.join(entry.scopes)}\t{rate}")


@keys.command("revoke")
def revoke_key_command(name: Annotated[str, typer.Argument(help="The key's name.")],
                       file: KeysFile = None) -> None:
    """Remove a key; a running service stops accepting it within a second."""
    from streamrec.contract import revoke_key

    if not revoke_key(_keys_file(file), name):
        raise typer.BadParameter(f"no key named {name!r}")
    typer.echo(f"revoked {name!r}")


@app.command()
def forget(
    user_id: Annotated[str, typer.Argument(help="The user to erase.")],
    wait: Annotated[float, typer.Option(help="Seconds to wait for the worker.")] = 30.0,
) -> None:
    """Erase a user exactly (their contributions to shared rankings and rows, their own state
    and served lists), through the events topic in order with their events; prints the audit."""
    import time

    from pydantic import TypeAdapter, ValidationError
    from redis import Redis

    from stream_app.retention import request_erasures
    from streamrec.contract import (
        OTHER_PSEUDONYM_KEY,
        Identifier,
        RedisKeys,
        describe_validation_error,
        learned_under_another_key,
        pseudonymise,
    )

    settings = current_settings()
    keys = RedisKeys(settings.key_prefix)
    try:  # the id as the service and the validator take it (NFC, allowed characters)
        user_id = TypeAdapter(Identifier).validate_python(user_id)
    except ValidationError as error:
        raise typer.BadParameter(describe_validation_error(error), param_hint="USER_ID"
                                 ) from None
    with Redis.from_url(settings.redis_url) as redis:
        if learned_under_another_key(redis.get(keys.learning_settings),
                                     settings.id_hmac_key_fingerprint):
            raise typer.BadParameter(OTHER_PSEUDONYM_KEY, param_hint="STREAMREC_ID_HMAC_KEY")
        [request] = asyncio.run(request_erasures(settings,
                                                 [pseudonymise(user_id, settings.id_key)]))
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            audit = redis.hget(keys.erasures, request.event_id)
            if audit is not None:
                typer.echo(audit.decode())
                return
            time.sleep(0.1)
    typer.echo(f"erasure {request.event_id} requested; the worker has not finished it yet")
    raise typer.Exit(2)


@app.command()
def sweep(
    now_ms: Annotated[int | None, typer.Option(
        help="Judge inactivity as of this time (epoch ms); default: now.")] = None,
) -> None:
    """Request the exact erasure of every user inactive for longer than
    STREAMREC_USER_RETENTION_DAYS (the worker also does this every hour)."""
    from stream_app.retention import sweep as sweep_inactive

    settings = current_settings()
    if settings.user_retention_days is None:
        raise typer.BadParameter("STREAMREC_USER_RETENTION_DAYS is not set")
    requested = asyncio.run(sweep_inactive(settings, now_ms))
    for request in requested:
        typer.echo(f"{request.event_id}\t{request.pseudonym}")
    typer.echo(f"requested the erasure of {len(requested)} inactive users", err=True)


@app.command("settings")
def show_settings(
    markdown: Annotated[bool, typer.Option(help="Every setting as the README's table.")] = False,
) -> None:
    """Print the settings in effect, as JSON."""
    typer.echo(settings_table() if markdown else current_settings().model_dump_json(indent=2))


def main() -> None:
    """Run the command; a usage or input error is one line on stderr and exit 1 or 2."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as error:
        message = error.format_message()
        if "\n" in message:  # the help, asked for by giving no arguments
            print(message, file=sys.stderr)
        else:
            context = getattr(error, "ctx", None)
            hint = f" (see {context.command_path} --help)" if context is not None else ""
            print(f"streamrec: {message}{hint}", file=sys.stderr)
        sys.exit(error.exit_code)
    except typer.Abort:
        sys.exit(130)  # Ctrl-C at a prompt
    sys.exit(code or 0)
