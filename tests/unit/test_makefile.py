"""`make` on a machine whose Python is too old, or whose build fails: a clear message, and no
half-made virtualenv left for the next run to reuse. The interpreter is a stand-in script
that answers as the situation would (the version check, `-m venv`)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

OLD_PYTHON = """#!/bin/sh
case "$1" in
  --version) echo "Python 3.10.12" ;;
  -c) exit 1 ;;  # sys.exit(sys.version_info < (3, 11)) on 3.10
  *) mkdir -p .venv/bin; exit 0 ;;
esac
"""
#: Passes the version check; makes a virtualenv whose pip fails (a broken build).
FAILING_BUILD_PYTHON = """#!/bin/sh
case "$1" in
  -c) exit 0 ;;
  -m) mkdir -p "$3/bin"; printf '#!/bin/sh\\nexit 1\\n' > "$3/bin/pip"; chmod +x "$3/bin/pip" ;;
esac
"""


def make(tmp_path: Path, python: str, target: str = "demo") -> subprocess.CompletedProcess:
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    stand_in = tmp_path / "python-stand-in"
    stand_in.write_text(python)
    stand_in.chmod(0o755)
    return subprocess.run(["make", "-f", str(ROOT / "Makefile"), target,
                           f"PYTHON={stand_in}"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)


def test_an_old_python_is_named_before_anything_is_built(tmp_path: Path) -> None:
    done = make(tmp_path, OLD_PYTHON)
    assert done.returncode != 0
    assert "needs Python 3.11 or newer" in done.stderr and "Python 3.10.12" in done.stderr
    assert "make demo PYTHON=python3.11" in done.stderr
    assert not (tmp_path / ".venv").exists()


def test_a_failed_build_removes_the_half_made_virtualenv(tmp_path: Path) -> None:
    done = make(tmp_path, FAILING_BUILD_PYTHON)
    assert done.returncode != 0
    assert "the build failed; .venv was removed" in done.stderr
    assert not (tmp_path / ".venv").exists()


def test_the_readme_says_how_to_pick_a_python_and_start_over() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo PYTHON=python3.11" in readme and "make clean" in readme
