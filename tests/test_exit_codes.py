"""The exit-code convention (registry_ha/exit_codes.py, the table in docs/operations.md), run for real:
every script in scripts/ with a usage error, a config error where it reads stack config, and a runtime
failure. 0 done, 1 runtime failure, 2 usage or config error; never a traceback."""
from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT, copy_repo, require_binary
from registry_ha import exit_codes, imagetools

FAKES = REPO_ROOT / "tests" / "fakes"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A copy of the project with a results "directory" that is a file (the bench cannot write) and git
    history (rollback reads it)."""
    root = copy_repo(tmp_path_factory.mktemp("exit-codes"), git_commit=True)
    (root / "bench" / "results").write_text("not a directory\n")
    return root


@pytest.fixture
def clash(repo):
    """Pulumi.clash.yaml: staging's namespace and NodePort on staging's cluster (while a test runs)."""
    context = "neural-hive-staging"
    assert f"kubernetes:context: {context}" in (repo / "Pulumi.staging.yaml").read_text()
    path = repo / "Pulumi.clash.yaml"
    path.write_text(f"config:\n  kubernetes:context: {context}\n")
    yield path
    path.unlink()


def run(repo: Path, tmp_path: Path, script: str, *args: str, fake: tuple[str, ...] = (),
        env: dict | None = None) -> subprocess.CompletedProcess:
    """scripts/<script> of the copy with the stand-in pulumi first on PATH; `fake` = files that make it fail."""
    state = tmp_path / "fake-pulumi"
    state.mkdir(exist_ok=True)
    for name in fake:
        (state / name).touch()
    full_env = {
        "PATH": f"{FAKES}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(tmp_path),
        "FAKE_PULUMI_DIR": str(state),
        **(env or {}),
    }
    return subprocess.run([str(repo / "scripts" / script), *args], cwd=tmp_path, env=full_env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


def deploy(*args):
    return ("deploy-registry-ha.sh", *args)


# (documented command, kind, script and arguments, stand-in pulumi failures, expected first stderr line)
CASES = [
    ("deploy-registry-ha.sh deploy", "usage", deploy("deploy", "staging", "--force"), (), "error: unrecognized arguments: --force"),
    ("deploy-registry-ha.sh deploy", "usage", deploy("deploy", "staging"), (),
     "error: refusing to change the stack without confirmation: stdin is not a terminal; pass --yes"),
    ("deploy-registry-ha.sh deploy", "config", deploy("deploy", "clash", "--yes"), (),
     "error: stack 'clash': namespace 'registry' is also used by Pulumi.staging.yaml on the same kubernetes:context"),
    ("deploy-registry-ha.sh deploy", "runtime", deploy("deploy", "staging", "--yes"), ("fail_up",),
     "error: pulumi up failed for stack 'staging' (exit 1)"),
    ("deploy-registry-ha.sh preview", "usage", deploy("preview"), (), "error: the following arguments are required: stack"),
    ("deploy-registry-ha.sh preview", "config", deploy("preview", "qa"), (), "error: stack 'qa': no Pulumi.qa.yaml in"),
    ("deploy-registry-ha.sh preview", "runtime", deploy("preview", "staging"), ("whoami_fails",),
     "error: no Pulumi backend is logged in"),
    ("deploy-registry-ha.sh rollback", "usage", deploy("rollback", "staging", "--to", "7", "--yes"), (),
     "error: --to 7: no such version in the stack history"),
    ("deploy-registry-ha.sh rollback", "config", deploy("rollback", "clash", "--yes"), (), "error: stack 'clash': namespace"),
    ("deploy-registry-ha.sh rollback", "runtime", deploy("rollback", "staging", "--yes"), (),
     "error: the stack has no updates to roll back from"),
    ("deploy-registry-ha.sh history", "usage", deploy("history", "staging", "--limit", "0"), (), "error: --limit: a positive integer"),
    ("deploy-registry-ha.sh history", "config", deploy("history", "qa"), (), "error: stack 'qa': no Pulumi.qa.yaml in"),
    ("deploy-registry-ha.sh history", "runtime", deploy("history", "staging"), ("fail_stack",),
     "error: `pulumi stack ls --json --non-interactive` failed"),
    ("deploy-registry-ha.sh gc", "usage", deploy("gc", "staging", "--delete-everything"), (),
     "error: unrecognized arguments: --delete-everything"),
    ("deploy-registry-ha.sh gc", "config", deploy("gc", "qa", "--yes"), (), "error: stack 'qa': no Pulumi.qa.yaml in"),
    ("deploy-registry-ha.sh gc", "runtime", deploy("gc", "staging", "--yes"), ("whoami_fails",),
     "error: no Pulumi backend is logged in"),
    ("deploy-registry-ha.sh destroy", "usage", deploy("destroy", "staging"), (),
     "error: refusing to change the stack without confirmation: stdin is not a terminal; pass --yes"),
    ("deploy-registry-ha.sh destroy", "config", deploy("destroy", "clash", "--yes"), (), "error: stack 'clash': namespace"),
    ("deploy-registry-ha.sh destroy", "runtime", deploy("destroy", "staging", "--yes"), ("whoami_fails",),
     "error: no Pulumi backend is logged in"),
    ("deploy-registry-ha.sh restore", "usage", deploy("restore", "staging", "team/app:1", "--before", "yesterday"), (),
     "error: argument --before: an ISO 8601 time such as"),
    ("deploy-registry-ha.sh restore", "config", deploy("restore", "qa", "team/app:1", "--before", "2026-01-01T00:00:00Z"), (),
     "error: stack 'qa': no Pulumi.qa.yaml in"),
    ("deploy-registry-ha.sh restore", "runtime", deploy("restore", "staging", "team/app:1", "--before", "2026-01-01T00:00:00Z"),
     ("whoami_fails",), "error: no Pulumi backend is logged in"),
    ("deploy-registry-ha.sh render", "usage", deploy("render"), (), "error: render: the following arguments are required: stack"),
    ("deploy-registry-ha.sh render", "config", deploy("render", "clash"), (), "error: stack 'clash': namespace 'registry'"),
    ("deploy-registry-ha.sh render", "runtime", deploy("render", "staging", "--out", "{repo}/README.md/out"), (),
     "error: render: cannot write {repo}/README.md/out: Not a directory"),
    ("deploy-registry-ha.sh local", "usage", deploy("local", "up", "--registry-version", "9"), (),
     "local: error: --registry-version '9':"),
    ("deploy-registry-ha.sh local", "config", deploy("local", "up", "--stack", "qa", "--state-dir", "{tmp}/sb"), (),
     "local: error: stack 'qa': no Pulumi.qa.yaml in"),
    ("deploy-registry-ha.sh local", "usage", deploy("local", "up", "--auth", "--registry-version", "2.8", "--state-dir", "{tmp}/sb"),
     (), "local: error: --auth: token auth needs Distribution 3.x, not --registry-version 2.8"),
    ("deploy-registry-ha.sh local", "config", deploy("local", "up", "--stack", "production", "--registry-version", "2.8",
                                                     "--state-dir", "{tmp}/sb"), (),
     "local: error: registry-ha:authEnabled: false with a Distribution 2.8 image (token auth needs 3.x) (got True)"),
    ("deploy-registry-ha.sh local", "runtime", deploy("local", "up", "--state-dir", "{tmp}/sb", "--port-base", "{busy_base}",
                                                      "--port", "{free}"), (),
     "local: error: s3: port(s) {busy} on 127.0.0.1 already in use"),
    ("test-registry-ha.sh", "usage", ("test-registry-ha.sh", "--registry", "no-port"), (),
     "error: --registry: HOST:PORT such as registry.neural-hive.local:5000 (got 'no-port')"),
    ("test-registry-ha.sh", "runtime", ("test-registry-ha.sh", "--registry", "127.0.0.1:{closed}", "--no-kubectl",
                                        "--timeout", "2"), (), None),
    ("push-with-fallback.sh", "usage", ("push-with-fallback.sh", "{tmp}/no-such-layout", "team/app:1"), (),
     "error: SOURCE {tmp}/no-such-layout: "),
    ("push-with-fallback.sh", "runtime", ("push-with-fallback.sh", "{tmp}/layout", "team/app:1", "--no-ecr",
                                          "--timeout", "2"), (), None),
    ("bench.sh", "usage", ("bench.sh", "--only", "speed"), (), "bench: error: --only: unknown measurement(s) speed"),
    ("bench.sh", "config", ("bench.sh", "--stack", "qa"), (), "bench: error: --stack: stack 'qa': no Pulumi.qa.yaml"),
    ("bench.sh", "runtime", ("bench.sh", "--only", "program", "--quick"), (), "bench: error: cannot write results to"),
]
EXPECTED = {"usage": exit_codes.USAGE, "config": exit_codes.USAGE, "runtime": exit_codes.FAILURE}


def test_every_command_of_the_dispatcher_is_documented():
    from registry_ha import cli

    documented = {c.name for c in exit_codes.COMMANDS}
    assert {f"deploy-registry-ha.sh {name}" for name in cli.COMMANDS} <= documented


def test_every_documented_command_is_exercised_for_each_kind_it_documents():
    kinds = {(name, kind) for name, kind, *_ in CASES}
    for command in exit_codes.COMMANDS:
        assert (command.name, "usage") in kinds and (command.name, "runtime") in kinds, command.name
        assert ((command.name, "config") in kinds) == (command.config is not None), command.name


@pytest.mark.parametrize("name, kind, argv, fake, first_line", CASES,
                         ids=[f"{c[0].split()[-1]}-{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_exit_code(repo, tmp_path, request, name, kind, argv, fake, first_line):
    if "clash" in argv:
        request.getfixturevalue("clash")
    values = {"repo": repo, "tmp": tmp_path, "closed": closed_port(), "free": closed_port()}
    holders = []
    try:
        if name.endswith("local") and kind == "runtime":
            from registry_ha.sandbox.ports import free_port_base

            require_binary("redis-server"), require_binary("haproxy")
            base = free_port_base()
            busy = socket.socket()
            busy.bind(("127.0.0.1", base + 50))  # the sandbox's S3 port: the first server it starts
            busy.listen(1)
            holders.append(busy)
            values.update(busy_base=base, busy=base + 50)
        if name == "push-with-fallback.sh" and kind == "runtime":
            require_binary("skopeo")
            imagetools.build_oci_layout(tmp_path / "layout", "v1", (1024,))
            dead = f"127.0.0.1:{closed_port()}"
            env = {"REGISTRY_PRIMARY": dead, "REGISTRY_SECONDARY": dead}
        else:
            env = {}
        if name == "test-registry-ha.sh" and kind == "runtime":
            require_binary("skopeo")
        proc = run(repo, tmp_path, *[a.format(**values) for a in argv], fake=fake, env=env)
    finally:
        for sock in holders:
            sock.close()
    output = proc.stdout + proc.stderr
    assert proc.returncode == EXPECTED[kind], output
    assert "Traceback" not in output
    if first_line is not None:
        lines = [line for line in proc.stderr.splitlines() if "error" in line]
        assert lines and lines[-1].startswith(first_line.format(**values)), proc.stderr
    elif name == "test-registry-ha.sh":
        assert proc.stdout.splitlines()[1].startswith("FAIL  v2         127.0.0.1:"), proc.stdout
    elif name == "push-with-fallback.sh":
        assert proc.stdout.startswith("FAILED: team/app:1 was not pushed anywhere"), output
