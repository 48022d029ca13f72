"""Generated parts of README.md and docs/*.md, so that no table or figure is typed by hand.

A generated block sits between two markers:

    <!-- generated: NAME -->
    ...
    <!-- end generated: NAME -->

`python -m registry_ha.docs` rewrites every block from GENERATORS; `--check` exits 1 and
names the stale blocks instead (the test suite runs it).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- generated: (?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(<!-- end generated: (?P=name) -->)", re.S)


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, (list, tuple)):
        return "`" + json.dumps(list(value)) + "`" if value else "`[]`"
    return f"`{value}`"


def config_reference() -> str:
    """Every key: its default, what each shipped stack file sets, and its meaning."""
    from registry_ha.config_keys import KEYS
    from registry_ha.stacks import read_stack_file, stack_names

    stacks = stack_names(REPO_ROOT)
    files = {stack: read_stack_file(stack, REPO_ROOT)[0] for stack in stacks}
    header = "| key | default | " + " | ".join(f"`Pulumi.{s}.yaml`" for s in stacks) + " | meaning |"
    lines = [header, "|---" * (len(stacks) + 3) + "|"]
    for key in KEYS:
        set_in = []
        for stack in stacks:
            value = files[stack].get(f"registry-ha:{key.name}")
            set_in.append("" if value is None else ("(secret)" if key.secret else f"`{value}`"))
        secret = " (secret)" if key.secret else ""
        row = [f"`{key.name}`{secret}", _show(key.default), *set_in, key.help.replace("|", "/")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def access_matrix() -> str:
    """Who can do what with the default identities (authUsers' default), from the ACL roles."""
    from registry_ha.auth import ROLE_ACTIONS, role_permissions
    from registry_ha.config_keys import KEYS_BY_NAME

    purpose = {"admin": "operators (deletes, garbage collection)", "ci": "CI (publishes images)",
               "node": "cluster nodes (`nodeUser`)", "reader": "humans"}
    yes_no = {True: "yes", False: "no"}
    lines = ["| identity | role (ACL actions) | for | pull | push | delete | list the catalog |", "|---|---|---|---|---|---|---|"]
    for entry in KEYS_BY_NAME["authUsers"].default:
        name, role = entry.split(":", 1)
        can = role_permissions(role)
        actions = ", ".join(ROLE_ACTIONS[role])
        lines.append(f"| `{name}` | {role} (`{actions}`) | {purpose.get(name, '')} | "
                     + " | ".join(yes_no[can[k]] for k in ("pull", "push", "delete", "catalog")) + " |")
    lines.append("| anonymous, or a wrong password | none | anyone else | no | no | no | no |")
    lines.append("| anyone reaching a pull-through cache (no credentials) | the cache is anonymous | pods, `clientCidrs` "
                 "| yes (upstream images) | no (405) | no | yes |")
    return "\n".join(lines) + "\n"


GENERATORS: dict[str, Callable[[], str]] = {
    "config-reference": config_reference,
    "access-matrix": access_matrix,
}


def documents(root: Path = REPO_ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def regenerate(text: str, generators: dict[str, Callable[[], str]] = GENERATORS) -> tuple[str, list[str]]:
    """(text with every known block rewritten, names of blocks whose content changed)."""
    changed: list[str] = []
    cache: dict[str, str] = {}

    def replace(match: re.Match) -> str:
        name = match.group("name")
        if name not in generators:
            raise KeyError(f"unknown generated block {name!r}")
        body = cache.setdefault(name, generators[name]())
        if body != match.group("body"):
            changed.append(name)
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(replace, text), changed


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for path in documents():
        text = path.read_text()
        new, changed = regenerate(text)
        if changed:
            stale += [f"{path.relative_to(REPO_ROOT)}: {name}" for name in changed]
            if not check:
                path.write_text(new)
    if check and stale:
        sys.stderr.write("stale generated blocks (run python -m registry_ha.docs): " + ", ".join(stale) + "\n")
        return 1
    for entry in stale:
        print(f"updated {entry}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
