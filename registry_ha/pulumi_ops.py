"""deploy / preview / rollback / history: a thin layer over the `pulumi` CLI.

Everything here shells out to `pulumi` (never the Automation API) so that what the
script does is exactly what an operator could type. The checks run first and stop
with one line naming the fix: the CLI is on PATH, `pulumi whoami` answers (a backend
is logged in), the stack exists in that backend.

Rollback follows what Pulumi's maintainers recommend (pulumi/pulumi#96, the FAQ):
there is no rollback command, so re-deploy the code and `Pulumi.<stack>.yaml` of an
earlier successful update. The commit comes from that update's `environment["git.head"]`
in `pulumi stack history --json`; it is checked out in a temporary `git worktree`
and `pulumi up` runs from there. The worktree is removed whatever happens.

Environment:
  REGISTRY_HA_PROJECT_DIR  the Pulumi project directory (default: the repository root)
  PULUMI_BACKEND_URL       the usual Pulumi override of the logged-in backend
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

from registry_ha.exit_codes import FAILURE, INTERRUPTED, USAGE
from registry_ha.settings import SettingsError
from registry_ha.stacks import check_no_collision, read_stack_file, unknown_provider_keys
from registry_ha.validators import STACK_NAME_RULE, is_stack_name

REPO_ROOT = Path(__file__).resolve().parent.parent
POLICY_DIR = "policy"
HISTORY_PAGE_SIZE = 500  # rollback looks this far back (pulumi's default page is 10)

INSTALL_HINT = "install it: curl -fsSL https://get.pulumi.com | sh (then open a new shell)"
LOGIN_HINT = (
    "log in to the state backend: pulumi login s3://<state-bucket>/registry-ha "
    "(or set PULUMI_BACKEND_URL; see the README's Deploy section)"
)


class OpsError(Exception):
    """A refusal or failed check: one line, printed as `error: ...`; exit code 1, or 2 for usage and config
    (registry_ha.exit_codes)."""

    def __init__(self, message: str, code: int = FAILURE):
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- argument parsing


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line + usage, exit 2, never a traceback
        raise OpsError(f"{message}\n{self.format_usage().rstrip()}", code=USAGE)


def _stack_arg(value: str) -> str:
    if not is_stack_name(value):
        raise argparse.ArgumentTypeError(f"stack {value!r}: a stack name of {STACK_NAME_RULE}")
    return value


def _parser(command: str, description: str) -> _Parser:
    parser = _Parser(prog=f"deploy-registry-ha.sh {command}", description=description)
    parser.add_argument("stack", type=_stack_arg, help="a stack with a Pulumi.<stack>.yaml (staging, production, ...)")
    return parser


def _run_main(fn, argv: Sequence[str]) -> int:
    try:
        return fn(list(argv))
    except OpsError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.code
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return INTERRUPTED


# --------------------------------------------------------------------------- pulumi CLI


def project_dir() -> Path:
    return Path(os.environ.get("REGISTRY_HA_PROJECT_DIR") or REPO_ROOT).resolve()


def pulumi_binary() -> str:
    path = shutil.which("pulumi")
    if path is None:
        raise OpsError(f"the pulumi CLI is not on PATH; {INSTALL_HINT}")
    return path


def _pulumi(args: list[str], cwd: Path, capture: bool = False, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    cmd = [pulumi_binary(), *args]
    if capture:
        return subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    # Streamed: the operator sees pulumi's own progress and diff.
    return subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL)


def _pulumi_json(args: list[str], cwd: Path, what: str) -> Any:
    proc = _pulumi(args, cwd, capture=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise OpsError(f"`pulumi {' '.join(args)}` failed: {detail[-1] if detail else 'exit ' + str(proc.returncode)}")
    try:
        return json.loads(proc.stdout or "null")
    except json.JSONDecodeError:
        raise OpsError(f"`pulumi {' '.join(args)}` did not return JSON ({what})") from None


def check_stack_file(stack: str, cwd: Path) -> None:
    """The stack file exists, does not collide with another stack on its cluster; provider-key typos warned."""
    try:
        config, _ = read_stack_file(stack, cwd)
        for warning in unknown_provider_keys(config):
            sys.stderr.write(f"warning: {warning}\n")
        check_no_collision(stack, cwd)
    except SettingsError as exc:
        raise OpsError(str(exc), code=USAGE) from None


def check_ready(stack: str, cwd: Optional[Path] = None) -> str:
    """CLI present, backend logged in, project and stack present. Returns the backend URL (or '')."""
    cwd = cwd or project_dir()
    pulumi_binary()
    if not (cwd / "Pulumi.yaml").is_file():
        raise OpsError(f"no Pulumi.yaml in {cwd}; run from the registry-ha checkout or set REGISTRY_HA_PROJECT_DIR")
    check_stack_file(stack, cwd)
    who = _pulumi(["whoami", "--verbose", "--non-interactive"], cwd, capture=True)
    if who.returncode != 0:
        raise OpsError(f"no Pulumi backend is logged in (`pulumi whoami` failed); {LOGIN_HINT}")
    backend = ""
    for line in who.stdout.splitlines():
        if line.strip().lower().startswith("backend url:"):
            backend = line.split(":", 1)[1].strip()
    stacks = _pulumi_json(["stack", "ls", "--json", "--non-interactive"], cwd, "stack list") or []
    names = {str(entry.get("name", "")).rsplit("/", 1)[-1] for entry in stacks if isinstance(entry, dict)}
    if stack not in names:
        where = f" in backend {backend}" if backend else ""
        raise OpsError(
            f"stack {stack!r} does not exist{where}; create it: "
            f"pulumi stack init {stack} --secrets-provider passphrase (from {cwd})"
        )
    settings_file = cwd / f"Pulumi.{stack}.yaml"
    if (
        settings_file.is_file()
        and "encryptionsalt:" in settings_file.read_text()
        and not (os.environ.get("PULUMI_CONFIG_PASSPHRASE") or os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE"))
    ):
        raise OpsError(
            f"stack {stack!r} uses the passphrase secrets provider; "
            "export PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) first",
            code=USAGE,
        )
    return backend


def policy_args(cwd: Path) -> list[str]:
    """`--policy-pack policy` once the guardrail pack exists (it is optional, and per checkout)."""
    if (cwd / POLICY_DIR / "PulumiPolicy.yaml").is_file():
        return ["--policy-pack", POLICY_DIR]
    return []


def confirm(question: str, assume_yes: bool) -> None:
    if assume_yes:
        return
    if not sys.stdin or not sys.stdin.isatty():
        raise OpsError("refusing to change the stack without confirmation: stdin is not a terminal; pass --yes",
                       code=USAGE)
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise OpsError("cancelled; nothing was changed")


# --------------------------------------------------------------------------- outputs


def format_outputs(outputs: dict) -> str:
    """The addresses an operator needs after a deploy (for DNS and clients)."""

    def get(key: str) -> str:
        value = outputs.get(key)
        return "" if value is None else str(value)

    lb = get("loadBalancerAddress")
    hosts = get("hostsLine") or (f"{lb} {get('registryAddress').split(':')[0]}" if lb else "")
    namespace = get("namespace") or "registry"
    pending = (
        f"pending; kubectl get svc docker-registry -n {namespace} "
        "-o jsonpath='{.status.loadBalancer.ingress[0].ip}'"
    )
    rows = [
        ("registry", get("registryAddress") or "(not exported)"),
        ("secondary", get("secondaryAddress") or "(not exported)"),
        ("LoadBalancer IP", lb or pending),
        ("/etc/hosts line", hosts or "(after the LoadBalancer has an IP)"),
        ("caches (node address)", ", ".join(f"{host} {address}" for host, address in (outputs.get("mirrorAddress") or {}).items())
         or "(none)"),
        ("bucket", get("bucketName")),
        ("region", get("region")),
        ("namespace", namespace),
    ]
    width = max(len(name) for name, _ in rows)
    return "".join(f"{name.ljust(width)}  {value}\n" for name, value in rows if value)


def print_outputs(stack: str, cwd: Path) -> None:
    outputs = _pulumi_json(["stack", "output", "--json", "--stack", stack, "--non-interactive"], cwd, "outputs")
    sys.stdout.write(format_outputs(outputs or {}))


# --------------------------------------------------------------------------- commands


def _preview(stack: str, cwd: Path) -> None:
    proc = _pulumi(["preview", "--diff", "--stack", stack, "--non-interactive", *policy_args(cwd)], cwd)
    if proc.returncode != 0:
        raise OpsError(f"pulumi preview failed for stack {stack!r} (exit {proc.returncode}); nothing was changed")


def _up(stack: str, cwd: Path, message: Optional[str] = None, env: Optional[dict] = None) -> None:
    args = ["up", "--yes", "--diff", "--stack", stack, "--non-interactive", *policy_args(cwd)]
    if message:
        args += ["--message", message]
    proc = _pulumi(args, cwd, env=env)
    if proc.returncode != 0:
        raise OpsError(
            f"pulumi up failed for stack {stack!r} (exit {proc.returncode}); "
            f"see the output above, then `deploy-registry-ha.sh history {stack}`"
        )


def _deploy(argv: list[str]) -> int:
    parser = _parser("deploy", "Preview, confirm, `pulumi up`, then print the registry addresses.")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask before pulumi up")
    args = parser.parse_args(argv)
    cwd = project_dir()
    backend = check_ready(args.stack, cwd)
    if backend:
        sys.stderr.write(f"backend: {backend}\n")
    _preview(args.stack, cwd)
    confirm(f"Apply these changes to stack {args.stack!r}?", args.yes)
    _up(args.stack, cwd)
    print_outputs(args.stack, cwd)
    return 0


def _preview_cmd(argv: list[str]) -> int:
    parser = _parser("preview", "`pulumi preview --diff` (with the policy pack when policy/ exists).")
    args = parser.parse_args(argv)
    cwd = project_dir()
    check_ready(args.stack, cwd)
    _preview(args.stack, cwd)
    return 0


def read_history(stack: str, cwd: Path, page_size: int = HISTORY_PAGE_SIZE) -> list[dict]:
    entries = _pulumi_json(
        ["stack", "history", "--json", "--stack", stack, "--page-size", str(page_size), "--non-interactive"],
        cwd,
        "stack history",
    )
    if not isinstance(entries, list):
        raise OpsError("`pulumi stack history --json` returned something other than a list")
    return sorted((e for e in entries if isinstance(e, dict)), key=lambda e: int(e.get("version", 0)), reverse=True)


def format_history(entries: list[dict]) -> str:
    header = ("VERSION", "KIND", "RESULT", "STARTED", "COMMIT", "MESSAGE")
    rows = []
    for entry in entries:
        env = entry.get("environment") or {}
        head = env.get("git.head", "")
        commit = head[:10] + ("+dirty" if env.get("git.dirty") == "true" else "") if head else "-"
        message = (entry.get("message") or "").splitlines()[0] if entry.get("message") else ""
        if len(message) > 50:
            message = message[:47] + "..."
        rows.append((str(entry.get("version", "")), entry.get("kind", ""), entry.get("result", ""),
                     str(entry.get("startTime", ""))[:19], commit, message))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n" for row in [header, *rows])


def _history(argv: list[str]) -> int:
    parser = _parser("history", "The stack's update history as a short table.")
    parser.add_argument("--limit", type=int, default=20, help="how many updates to show (default 20)")
    args = parser.parse_args(argv)
    if args.limit < 1:
        raise OpsError("--limit: a positive integer", code=USAGE)
    cwd = project_dir()
    check_ready(args.stack, cwd)
    entries = read_history(args.stack, cwd, page_size=args.limit)
    if not entries:
        sys.stdout.write(f"stack {args.stack!r} has no updates yet\n")
        return 0
    sys.stdout.write(format_history(entries[: args.limit]))
    return 0


def choose_rollback_target(entries: list[dict], to_version: Optional[int]) -> dict:
    """The update to return to: `--to VERSION`, else the last successful update before the current one."""
    updates = [e for e in entries if e.get("kind") == "update"]
    if to_version is not None:
        match = [e for e in entries if int(e.get("version", -1)) == to_version]
        if not match:
            known = ", ".join(str(e.get("version")) for e in entries[:10]) or "none"
            raise OpsError(f"--to {to_version}: no such version in the stack history (latest: {known})", code=USAGE)
        target = match[0]
        if target.get("kind") != "update" or target.get("result") != "succeeded":
            raise OpsError(
                f"--to {to_version}: version {to_version} is a {target.get('kind')} that {target.get('result')}; "
                "pick a successful update (see `history`)",
                code=USAGE,
            )
        return target
    if not updates:
        raise OpsError("the stack has no updates to roll back from")
    current = updates[0]  # newest first: what the stack runs now (even if it failed half-way)
    earlier = [
        e for e in updates if int(e["version"]) < int(current["version"]) and e.get("result") == "succeeded"
    ]
    if not earlier:
        raise OpsError(
            f"no successful update before the current one (version {current.get('version')}); nothing to roll back to"
        )
    return earlier[0]


def _git(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()
        raise OpsError(f"git {' '.join(args)} failed: {detail[-1] if detail else proc.returncode}")
    return proc


def validate_commit(target: dict, repo: Path) -> str:
    version = target.get("version")
    env = target.get("environment") or {}
    head = (env.get("git.head") or "").strip()
    if not head:
        raise OpsError(
            f"update {version} has no environment git.head (it was not deployed from a git checkout); "
            "cannot tell which code it ran"
        )
    if str(env.get("git.dirty", "")).lower() == "true":
        raise OpsError(
            f"update {version} was deployed from a dirty working tree; commit {head[:12]} is not the code "
            "it ran, so rolling back to it would deploy something else"
        )
    if _git(["cat-file", "-e", f"{head}^{{commit}}"], repo, check=False).returncode != 0:
        raise OpsError(
            f"commit {head[:12]} of update {version} is not in this repository; "
            "`git fetch` the branch that holds it, then retry"
        )
    return head


def _absolute_backend_env(cwd: Path) -> dict:
    """A relative file:// backend URL resolves against the working directory; pin it before we cd."""
    env = dict(os.environ)
    url = env.get("PULUMI_BACKEND_URL", "")
    if url.startswith("file://") and not url.startswith("file:///") and not url.startswith("file://~"):
        env["PULUMI_BACKEND_URL"] = "file://" + str((cwd / url[len("file://"):]).resolve())
    return env


def _rollback(argv: list[str]) -> int:
    parser = _parser("rollback", "Re-deploy the code and stack config of an earlier successful update.")
    parser.add_argument("--to", type=int, metavar="VERSION", help="the update version to return to (see `history`)")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask before pulumi up")
    args = parser.parse_args(argv)
    cwd = project_dir()
    check_ready(args.stack, cwd)
    repo = Path(_git(["rev-parse", "--show-toplevel"], cwd).stdout.strip()).resolve()
    subdir = cwd.relative_to(repo)  # the project may sit below the repository root
    target = choose_rollback_target(read_history(args.stack, cwd), args.to)
    commit = validate_commit(target, repo)
    version = target.get("version")
    sys.stderr.write(
        f"rollback {args.stack}: to update {version} ({target.get('startTime', '')}), commit {commit[:12]}"
        f"{': ' + target['message'].splitlines()[0] if target.get('message') else ''}\n"
    )
    confirm(f"Run pulumi up for stack {args.stack!r} with the code of commit {commit[:12]}?", args.yes)

    env = _absolute_backend_env(cwd)
    parent = Path(tempfile.mkdtemp(prefix="registry-ha-rollback-"))
    worktree = parent / "tree"
    added = False
    try:
        _git(["worktree", "add", "--detach", str(worktree), commit], repo)
        added = True
        project = worktree / subdir
        if not (project / "Pulumi.yaml").is_file():
            raise OpsError(f"commit {commit[:12]} has no {subdir / 'Pulumi.yaml'}; it predates the Pulumi program")
        # The old commit's own dependencies, into its own virtualenv (the worktree has none).
        install = _pulumi(["install"], project, env=env)
        if install.returncode != 0:
            raise OpsError(f"pulumi install failed in the worktree of {commit[:12]} (exit {install.returncode})")
        _up(args.stack, project, message=f"rollback to update {version} (commit {commit[:12]})", env=env)
    finally:
        if added:
            removed = _git(["worktree", "remove", "--force", str(worktree)], repo, check=False)
            if removed.returncode != 0:
                shutil.rmtree(worktree, ignore_errors=True)
                _git(["worktree", "prune"], repo, check=False)
        shutil.rmtree(parent, ignore_errors=True)
    sys.stderr.write(f"rolled back {args.stack} to the code of update {version} (commit {commit[:12]})\n")
    print_outputs(args.stack, cwd)
    return 0


# --------------------------------------------------------------------------- entry points (registry_ha.cli)


def deploy_main(argv: Sequence[str]) -> int:
    return _run_main(_deploy, argv)


def preview_main(argv: Sequence[str]) -> int:
    return _run_main(_preview_cmd, argv)


def rollback_main(argv: Sequence[str]) -> int:
    return _run_main(_rollback, argv)


def history_main(argv: Sequence[str]) -> int:
    return _run_main(_history, argv)
