"""One exit-code convention for every command in scripts/, and what makes each command exit 1 or 2.

docs/operations.md's table is generated from COMMANDS (registry_ha/docs.py), and
tests/test_exit_codes.py runs every command into each of its documented failures.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

DONE = 0
FAILURE = 1
USAGE = 2
INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT

MEANING = {
    DONE: "done: everything asked for ran (for the checks: every check passed, every started component is healthy)",
    FAILURE: "runtime failure: a step failed (pulumi, a push, a check, a server), or the machine or the state "
             "backend lacks something the command needs (a tool, a login, an initialised stack)",
    USAGE: "usage or config error: an argument, an environment variable or a stack file is invalid, incomplete, or "
           "names something that does not exist; found before anything is changed",
}


@dataclass(frozen=True)
class Command:
    name: str
    usage: str  # what exits 2
    runtime: str  # what exits 1
    config: Optional[str] = None  # what stack config exits 2 (None: the command reads no stack config)


STACK_FILE = ("a stack without a `Pulumi.<stack>.yaml`; a stack file colliding with another on the same "
              "kubernetes:context")
PULUMI_NOT_READY = "pulumi missing or not logged in; the stack not initialised in the backend"

COMMANDS: tuple[Command, ...] = (
    Command("deploy-registry-ha.sh deploy", "unknown option; no terminal and no `--yes`",
            f"{PULUMI_NOT_READY}; preview or up failed; the answer to the question was no",
            f"{STACK_FILE}; `PULUMI_CONFIG_PASSPHRASE` unset for a passphrase stack"),
    Command("deploy-registry-ha.sh preview", "unknown option",
            f"{PULUMI_NOT_READY}; preview failed (a policy violation too)",
            f"{STACK_FILE}; `PULUMI_CONFIG_PASSPHRASE` unset for a passphrase stack"),
    Command("deploy-registry-ha.sh rollback",
            "unknown option; no terminal and no `--yes`; `--to` a version that is not a successful update",
            f"{PULUMI_NOT_READY}; no earlier successful update; its commit missing, from a dirty tree or from no "
            "checkout; `pulumi install` or up failed; the answer was no",
            f"{STACK_FILE}; `PULUMI_CONFIG_PASSPHRASE` unset for a passphrase stack"),
    Command("deploy-registry-ha.sh history", "unknown option; `--limit` below 1",
            f"{PULUMI_NOT_READY}; `pulumi stack history` failed",
            f"{STACK_FILE}; `PULUMI_CONFIG_PASSPHRASE` unset for a passphrase stack"),
    Command("deploy-registry-ha.sh render", "no stack; unknown option",
            "the output directory cannot be written",
            f"{STACK_FILE}; an invalid or unknown `registry-ha:` key; a stack file that is not a YAML map"),
    Command("deploy-registry-ha.sh local", "unknown action or option; `--registry-version` other than 3.x.y or 2.8",
            "a port in use; a server missing, not starting or not healthy (`status`: a started component "
            "unhealthy); a sandbox already up with other settings in that state directory",
            "an invalid stack config (as render); more replicas or an image the sandbox cannot run"),
    Command("test-registry-ha.sh", "unknown option; a malformed `HOST:PORT` (options, `REGISTRY_PRIMARY`, "
            "`REGISTRY_METRICS`); credential or CA options that do not fit together",
            "a check failed (its `FAIL` line says which); skopeo missing"),
    Command("push-with-fallback.sh", "missing SOURCE or NAME:TAG; a SOURCE that does not exist; a malformed "
            "`REGISTRY_PRIMARY`, `REGISTRY_SECONDARY` or `AWS_REGION`",
            "no registry took the image (primary, secondary and ECR all failed); skopeo missing"),
    Command("bench.sh", "unknown option or measurement; `--render` of a file that is not a result",
            "a measurement failed (its row says ERROR); the sandbox did not start; the results directory "
            "cannot be written",
            "a stack without a stack file, or with an invalid one"),
)


def command(name: str) -> Command:
    return next(c for c in COMMANDS if c.name == name)
