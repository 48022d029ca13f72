"""The generated parts of README.md and docs/ are current (registry_ha/docs.py)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

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


# --------------------------------------------------------------------------- the documents as operators read them

DOCUMENTS = docs.documents()
# Written on other branches at the same time; once a file exists it must leave this list.
PENDING: set[str] = set()
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
BUILD_HISTORY = re.compile(r"\bthe seed\b|\bseed's\b|\bissue \d+|\bissue's\b|rede interna|\b\d-core\b|"
                           r"other engineers|this machine|\.\./shared|/work/shared", re.I)


def slug(heading: str) -> str:
    """The anchor GitHub makes of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Heading anchors and explicit `<a id="...">` anchors (the runbook table's, which alerts link to)."""
    text = path.read_text()
    return ({slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}
            | set(re.findall(r'<a id="([^"]+)"></a>', text)))


def test_the_readme_is_a_runbook_of_at_most_250_lines():
    text = (docs.REPO_ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    headings = [line[3:] for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["What it is", "Prerequisites", "Set-up", "Quick start in the sandbox", "Deploy", "DNS",
                        "Verify", "Rollback", "Operations", "Uninstall", "Troubleshooting", "Links"]
    first_block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in first_block.splitlines()] == [
        "./scripts/bootstrap.sh && ./scripts/deploy-registry-ha.sh local up", "./scripts/run-tests.sh"]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_no_word_about_how_the_project_was_built(path):
    found = [line for line in path.read_text().splitlines() if BUILD_HISTORY.search(line)]
    assert found == []


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_every_relative_link_resolves(path):
    broken = []
    for match in LINK.finditer(path.read_text()):
        target = match.group("target")
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        relative = resolved.relative_to(docs.REPO_ROOT).as_posix() if resolved.is_relative_to(docs.REPO_ROOT) else str(resolved)
        if relative in PENDING:
            continue
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(target)
    assert broken == []


def test_pending_documents_are_still_pending():
    """When a branch that writes one of them is merged, take it off PENDING: its links get checked."""
    assert [name for name in sorted(PENDING) if (docs.REPO_ROOT / name).exists()] == []
    linked = (docs.REPO_ROOT / "README.md").read_text()
    assert all(f"({name})" in linked for name in PENDING) and "(docs/security.md)" in linked


def _integration_dir(root: Path, files: dict[str, str]) -> Path:
    (root / "tests" / "integration").mkdir(parents=True)
    for name, doc in files.items():
        (root / "tests" / "integration" / name).write_text(f'"""{doc}"""\n')
    return root


def test_the_integration_table_lists_every_test_module_in_number_order(monkeypatch, tmp_path):
    root = _integration_dir(tmp_path, {"test_10_b.py": "10. Ten. More.", "test_2_a.py": "2. Two: a | b.\n\nDetail."})
    monkeypatch.setattr(docs, "REPO_ROOT", root)
    rows = docs.integration_tests().splitlines()[2:]
    assert rows == ["| 2 | `test_2_a` | Two: a \\| b. |", "| 10 | `test_10_b` | Ten. |"]


@pytest.mark.parametrize("files", [
    {"test_15_a.py": "15. A.", "test_15_b.py": "15. B."},  # two modules with one number
    {"test_16_a.py": "14. A."},  # the docstring's number is not the file's
])
def test_the_integration_table_refuses_ambiguous_numbers(monkeypatch, tmp_path, files):
    monkeypatch.setattr(docs, "REPO_ROOT", _integration_dir(tmp_path, files))
    with pytest.raises(ValueError):
        docs.integration_tests()


def test_the_readme_quotes_redis_timeouts_default():
    readme = (docs.REPO_ROOT / "README.md").read_text()
    quoted = re.search(r"`redisTimeout` \((\d+) ms\)", readme)
    default = next(k.default for k in KEYS if k.name == "redisTimeout")
    assert quoted and f"{quoted.group(1)}ms" == default
