"""The key layout is one table: accessors, Lua templates and the Lua scripts agree with it."""

import re
from importlib.resources import files

import pytest

from streamrec.contract import RedisKeys
from streamrec.contract.keys import KEY_LAYOUT

SCRIPTS = [path for package in ("streamrec.contract", "stream_app", "serving")
           for path in files(package).joinpath("lua").iterdir() if path.name.endswith(".lua")]


def test_the_scripts_name_keys_only_through_the_templates() -> None:
    named = {name for script in SCRIPTS
             for pattern in (r"key\('(\w+)'", r"\bK\.(\w+)")
             for name in re.findall(pattern, script.read_text())}
    assert len(named) > 10
    for script in SCRIPTS:  # no key spelled out: every key is a template or key(name, id)
        assert not re.search(r"'(user|item|category|recommend\w*):", script.read_text())


def test_every_entry_has_an_accessor_and_a_template() -> None:
    keys = RedisKeys("p")
    templates = keys.templates()
    assert set(templates) == {spec.name for spec in KEY_LAYOUT}
    for spec in KEY_LAYOUT:
        if spec.per_id:
            head, tail = templates[spec.name]
            assert getattr(keys, spec.name)("x{}y") == f"{head}x{{}}y{tail}"
        else:
            assert getattr(keys, spec.name) == templates[spec.name] == f"p:{spec.pattern}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_every_key_a_script_names_is_declared_with_its_kind(script: object) -> None:
    text = script.read_text()  # type: ignore[attr-defined]
    per_id = set(re.findall(r"key\('(\w+)'", text))
    fixed = set(re.findall(r"\bK\.(\w+)", text))
    declared = {spec.name: spec.per_id for spec in KEY_LAYOUT}
    assert {name: declared.get(name) for name in per_id} == dict.fromkeys(per_id, True)
    assert {name: declared.get(name) for name in fixed} == dict.fromkeys(fixed, False)
