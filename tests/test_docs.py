"""The generated parts of README.md and docs/ are current (registry_ha/docs.py)."""
from __future__ import annotations

from registry_ha import docs
from registry_ha.config_keys import KEYS


def test_every_generated_block_is_current():
    stale = {}
    for path in docs.documents():
        _, changed = docs.regenerate(path.read_text())
        if changed:
            stale[path.name] = changed
    assert stale == {}, "run: .venv/bin/python -m registry_ha.docs"


def test_the_config_reference_lists_every_key_and_each_stack_files_value():
    text = (docs.REPO_ROOT / "docs" / "configuration.md").read_text()
    assert all(f"| `{k.name}`" in text for k in KEYS)
    row = next(line for line in text.splitlines() if line.startswith("| `antiAffinity`"))
    assert row.split(" | ")[1:4] == ["`preferred`", "`required`", "`preferred`"]  # default, production, staging


def test_a_stale_block_is_found_and_rewritten():
    text = "a\n<!-- generated: config-reference -->\nSTALE-TEXT\n<!-- end generated: config-reference -->\nb\n"
    new, changed = docs.regenerate(text)
    assert changed == ["config-reference"] and "STALE-TEXT" not in new and new.startswith("a\n") and new.endswith("b\n")
    assert docs.regenerate(new)[1] == []
