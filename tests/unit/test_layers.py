"""The layers contract in pyproject.toml: a wrong import between layers fails here."""

from importlinter.cli import lint_imports


def test_imports_respect_the_layers() -> None:
    assert lint_imports() == 0
