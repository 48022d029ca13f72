"""The node configurator's write logic (registry_ha/node_configurator.sh), run for real against a temp
dir standing in for a node's /etc/containerd/certs.d, with dash (Debian's /bin/sh) and BusyBox's sh
(the shell of the image the DaemonSet runs). The desired files are laid out as kubelet mounts a
Secret (`..data` symlinks), from the program's own node files."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import require_binary
from registry_ha.containerd import cluster_endpoints, node_files
from registry_ha.nodes import SCRIPT_PATH
from registry_ha.settings import load_settings

MANIFEST = ".registry-ha-manifest"


@pytest.fixture(params=["dash", "busybox"])
def shell(request) -> list[str]:
    binary = require_binary(request.param)
    return [binary, "sh"] if request.param == "busybox" else [binary]


def settings(mirrors=None, **values):
    raw = {f"registry-ha:{k}": v for k, v in values.items()}
    if mirrors is not None:
        raw["registry-ha:mirrors"] = json.dumps(mirrors)
    return load_settings(raw, "staging")


HUB = {"name": "dockerhub", "host": "docker.io", "clusterIP": "10.43.0.50"}
GHCR = {"name": "ghcr", "host": "ghcr.io", "clusterIP": "10.43.0.51"}


def mount_like_kubelet(source: Path, s, authorization=None) -> dict[str, str]:
    """Write the program's node files as kubelet projects a Secret with items: a timestamped dir,
    `..data` pointing at it, and each top-level entry a symlink through `..data`."""
    files = node_files(s, cluster_endpoints(s, {c.name: c.cluster_ip for c in s.caches}), authorization)
    if source.exists():
        shutil.rmtree(source)
    stamp = source / "..2026_01_01_00_00_00.000000001"
    for node_file in files.files:
        path = stamp / node_file.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(node_file.content)
        path.chmod(node_file.mode)
    (source / "..data").symlink_to(stamp.name)
    for top in {f.path.split("/")[0] for f in files.files}:
        (source / top).symlink_to(f"..data/{top}")
    return files.as_dict()


def run(shell, source: Path, target: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*shell, str(SCRIPT_PATH), str(source), str(target), "--once", *extra],
                          capture_output=True, text=True, timeout=30, env={"PATH": os.environ["PATH"]})


def tree(target: Path) -> dict[str, tuple[str, str]]:
    """relative path -> (octal mode, content) of every file, and (mode, 'dir') of every directory."""
    found = {}
    for path in sorted(target.rglob("*")):
        mode = oct(path.stat().st_mode & 0o777)
        found[str(path.relative_to(target))] = (mode, "dir" if path.is_dir() else path.read_text())
    return found


def test_writes_the_files_idempotently_and_removes_only_its_own(shell, tmp_path):
    source, node = tmp_path / "desired", tmp_path / "node-certs.d"
    # the node already has files of its own: another registry's, and a hand-written docker.io one
    (node / "quay.io").mkdir(parents=True)
    (node / "quay.io" / "hosts.toml").write_text("server = 'https://quay.io'\n")
    (node / "docker.io").mkdir()
    (node / "docker.io" / "hosts.toml").write_text("# the operator's own\n")
    (node / "docker.io" / "ca.crt").write_text("operator's CA\n")
    before = tree(node)

    desired = mount_like_kubelet(source, settings([HUB, GHCR]))
    first = run(shell, source, node)
    assert first.returncode == 0, first.stdout + first.stderr
    written = tree(node)
    for path, content in desired.items():
        assert written[path][1] == content, path
        assert written[path][0] == "0o644"
    assert written["quay.io/hosts.toml"] == before["quay.io/hosts.toml"]  # never touched
    assert written["docker.io/ca.crt"] == before["docker.io/ca.crt"]
    assert written["docker.io/hosts.toml.before-registry-ha"][1] == "# the operator's own\n"  # kept aside
    manifest = (node / MANIFEST).read_text().splitlines()
    assert sorted(line for line in manifest if line.startswith("f ")) == sorted(f"f {p}" for p in desired)
    assert "d ghcr.io" in manifest and "d docker.io" not in manifest  # it created ghcr.io/, not docker.io/
    assert "wrote" in first.stdout
    assert not [p for p in node.rglob("*registry-ha.*") if "before-registry-ha" not in p.name]  # no temp files left

    # idempotent: same input, nothing written, nothing changed (inode and mtime kept)
    stats = {p: (node / p).stat() for p in desired}
    second = run(shell, source, node)
    assert second.returncode == 0 and "wrote" not in second.stdout, second.stdout
    assert tree(node) == written
    for path, stat in stats.items():
        after = (node / path).stat()
        assert (after.st_ino, after.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns), path

    # a content change rewrites that file only, through a rename (new inode: containerd never reads half a file)
    desired = mount_like_kubelet(source, settings([{**HUB, "clusterIP": "10.43.0.99"}, GHCR]))
    third = run(shell, source, node)
    assert third.returncode == 0
    assert third.stdout.count("wrote") == 1 and "docker.io/hosts.toml" in third.stdout
    assert "10.43.0.99" in (node / "docker.io/hosts.toml").read_text()
    assert (node / "docker.io/hosts.toml").stat().st_ino != stats["docker.io/hosts.toml"].st_ino
    assert (node / "ghcr.io/hosts.toml").stat().st_ino == stats["ghcr.io/hosts.toml"].st_ino

    # a cache taken out of mirrors: its file goes, and the directory it created
    mount_like_kubelet(source, settings([{**HUB, "clusterIP": "10.43.0.99"}]))
    fourth = run(shell, source, node)
    assert fourth.returncode == 0
    assert not (node / "ghcr.io").exists() and "removed" in fourth.stdout

    # nodeConfigurator: remove -> everything it wrote goes, the operator's file comes back, the rest stays
    fifth = run(shell, source, node, "--remove")
    assert fifth.returncode == 0, fifth.stdout + fifth.stderr
    assert tree(node) == before
    assert run(shell, source, node, "--remove").returncode == 0 and tree(node) == before  # idempotent too


def test_credentials_get_mode_0600(shell, tmp_path):
    source, node = tmp_path / "desired", tmp_path / "node"
    mount_like_kubelet(source, settings([HUB]), authorization="Basic bm9kZTpwdw==")
    assert run(shell, source, node).returncode == 0
    private = node / "registry.neural-hive.local:5000" / "hosts.toml"
    assert oct(private.stat().st_mode & 0o777) == "0o600" and "Basic bm9kZTpwdw==" in private.read_text()
    assert oct((node / "docker.io" / "hosts.toml").stat().st_mode & 0o777) == "0o644"


def test_an_empty_source_changes_nothing(shell, tmp_path):
    """A broken or empty mount must not wipe the node's files: only --remove removes."""
    source, node = tmp_path / "desired", tmp_path / "node"
    mount_like_kubelet(source, settings([HUB]))
    assert run(shell, source, node).returncode == 0
    written = tree(node)
    shutil.rmtree(source)
    source.mkdir()
    result = run(shell, source, node)
    assert result.returncode == 1 and "no files" in result.stdout
    assert tree(node) == written


def test_a_forged_manifest_cannot_delete_outside_its_entries(shell, tmp_path):
    source, node = tmp_path / "desired", tmp_path / "node"
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (node / "etc").mkdir(parents=True)
    (node / "etc" / "passwd").write_text("keep me too")
    node.joinpath(MANIFEST).write_text(f"f ../victim\nf {victim}\nf etc/../../victim\nd ..\nf etc/passwd/x\n")
    mount_like_kubelet(source, settings([HUB]))
    assert run(shell, source, node, "--remove").returncode == 0
    assert victim.read_text() == "keep me" and (node / "etc" / "passwd").read_text() == "keep me too"


def test_bad_arguments_exit_2(shell, tmp_path):
    for args in ([], [str(tmp_path)], [str(tmp_path), str(tmp_path), "--interval", "soon"], [str(tmp_path), str(tmp_path), "--bogus"]):
        result = subprocess.run([*shell, str(SCRIPT_PATH), *args], capture_output=True, text=True, timeout=10)
        assert result.returncode == 2 and "usage:" in result.stderr, args


def test_the_loop_syncs_then_stops_on_sigterm(shell, tmp_path):
    """How the DaemonSet runs it: a loop that writes, reports ready, and exits at once on SIGTERM."""
    import signal
    import time

    source, node, ready = tmp_path / "desired", tmp_path / "node", tmp_path / "ready"
    desired = mount_like_kubelet(source, settings([HUB]))
    proc = subprocess.Popen([*shell, str(SCRIPT_PATH), str(source), str(node), "--interval", "1", "--ready", str(ready)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "never reported ready"
        assert {p: c for p, (_, c) in tree(node).items() if p in desired} == desired
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
