"""The `streamrec` command as a user meets it: every mistake in an argument, an option, a
setting or an input file is one line on stderr and a non-zero exit, never a traceback; the
help prints defaults as they are written in the environment."""

import json
from pathlib import Path

import pytest

from streamrec.cli import main
from streamrec.contract.settings import DEFAULT_EVENT_WEIGHTS

EVENTS_HEADER = "user_id,item_id,timestamp"


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        *arguments: str) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.argv", ["streamrec", *arguments])
    with pytest.raises(SystemExit) as exit_:
        main()
    captured = capsys.readouterr()
    code = exit_.value.code
    return (code if isinstance(code, int) else 1), captured.out, captured.err


def write(path: Path, content: str | bytes) -> str:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


@pytest.mark.parametrize(("arguments", "expected"), [
    (lambda d: ["evaluate", str(d / "missing.csv")], "file '{d}/missing.csv' does not exist"),
    (lambda d: ["evaluate", str(d)], "is a directory"),
    (lambda d: ["evaluate"], "Missing argument 'path'. (see streamrec evaluate --help)"),
    (lambda d: ["evaluate", write(d / "e.csv", b"\x89PNG\r\n\x1a\n\xff\xfe")], "not UTF-8 text"),
    (lambda d: ["evaluate", write(d / "e.csv", "a,b\n1,2\n")],
     "has no column(s) ['user_id', 'item_id', 'timestamp']; its header is ['a', 'b']"),
    (lambda d: ["evaluate", write(d / "e.csv", f"{EVENTS_HEADER}\nu1,i1,yesterday\n")],
     "e.csv:2: timestamp 'yesterday' is not a number"),
    (lambda d: ["evaluate", write(d / "e.csv", f"{EVENTS_HEADER}\nu1,i1,5\nu1,i2\n")],
     "e.csv:3: fewer cells than the header has columns"),
    (lambda d: ["evaluate", write(d / "e.csv", f"{EVENTS_HEADER}\n")], "e.csv holds no events"),
    (lambda d: ["evaluate", write(d / "e.csv", f"{EVENTS_HEADER},event_type\nu1,i1,5,like\n")],
     "event types ['like'] are not weighted in STREAMREC_EVENT_WEIGHTS"),
    (lambda d: ["evaluate", write(d / "e.csv", f"{EVENTS_HEADER}\nu1,i1,5\n"),
                "--items", write(d / "i.csv", "movieId,genres\n1,Drama\n")],
     "i.csv has no column 'item_id'"),
    (lambda d: ["evaluate", write(d / "e.csv", f"{EVENTS_HEADER}\nu1,i1,5\n"),
                "--columns", "user=userId"], "entry 'user=userId': expected NAME=COLUMN"),
    (lambda d: ["evaluate", write(d / "e.csv", f"{EVENTS_HEADER}\nu1,i1,5\n"),
                "--time-unit", "hours"], "Invalid value for '--time-unit'"),
    (lambda d: ["evaluate", write(d / "e.csv", f"{EVENTS_HEADER}\nu1,i1,5\n"), "--every", "0"],
     "Invalid value for '--every'"),
    (lambda d: ["keys", "list", "--file", write(d / "keys.json", "{not json")],
     "keys.json is not a keys file: record: Invalid JSON"),
    (lambda d: ["keys", "create", "--name", "web", "--scopes", "everything",
                "--file", str(d / "keys.json")], "unknown scopes ['everything']"),
    (lambda d: ["dataset", write(d / "taken", "a file, not a directory")], "taken"),
    (lambda d: ["no-such-command"], "No such command 'no-such-command'"),
])
def test_an_input_error_is_one_line_and_a_failure(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        arguments: object, expected: str) -> None:
    code, _, err = run(monkeypatch, capsys, *arguments(tmp_path))  # type: ignore[operator]
    assert code != 0
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("streamrec: ") and expected.format(d=tmp_path) in err, err


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("STREAMREC_HTTP_PORT", "eighty", "streamrec: STREAMREC_HTTP_PORT: Input should be a valid "
                                      "integer"),
    ("STREAMREC_EVENT_WEIGHTS", "view=1", 'error parsing value for field "event_weights"'),
    ("STREAMREC_EVENT_WEIGHTS", '{"view": 1e300}', "less than or equal to 1000000"),
    ("STREAMREC_USER_RETENTION_DAYS", "400", "user_retention_days must be shorter than"),
    ("STREAMREC_COOCCURRENCE_HALF_LIFE_DAYS", "inf", "finite number"),
    ("STREAMREC_SESSION_GAP_MINUTES", "20000", "less than or equal to 10080"),
    ("STREAMREC_DECAY_ANCHOR_MS", "253402300799999", "streamrec: settings: decay_anchor_ms "
                                                    "253402300799999 (9999-12-31T23:59:59Z) is "
                                                    "in the future"),
    ("STREAMREC_ID_HMAC_KEY", "", "at least 32"),  # an empty key is no key
    ("STREAMREC_ID_HMAC_KEY", "guessable", "at least 32"),
])
def test_a_malformed_setting_is_one_line_and_a_failure(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str,
        value: str, expected: str) -> None:
    monkeypatch.setenv(variable, value)
    code, _, err = run(monkeypatch, capsys, "settings")
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and expected in err, err


def test_help_prints_defaults_as_they_are_written_in_the_environment(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(monkeypatch, capsys, "--help")
    assert code == 0
    assert f"STREAMREC_EVENT_WEIGHTS [{json.dumps(DEFAULT_EVENT_WEIGHTS)}]: " in out
    assert "STREAMREC_USER_RETENTION_DAYS [unset]: " in out
    assert "STREAMREC_CORS_ALLOWED_ORIGINS [[]]: " in out
