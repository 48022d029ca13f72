"""registry_ha/containerd.py: the hosts.toml files nodes get, and what `render` writes of them.

The containerd-facing rules (from containerd 1.6/1.7/2.x behaviour): at least one [host] table in
every file (1.6.x and 1.7.0-1.7.31 reject a file without one and dial https://<name>), no address
listed twice, caches pull-only (pull + resolve), TLS options only on https hosts (1.7+/2.x try an
http host that has them as HTTPS first). Whether containerd follows the files is proven on a real
containerd in tests/integration/test_10_containerd.py.
"""
from __future__ import annotations

import json
import subprocess
import tomllib

import pytest

from registry_ha.containerd import (
    CERTS_D,
    NodeEndpoints,
    basic_authorization,
    cluster_endpoints,
    docker_daemon_json,
    hosts_toml,
    node_files,
)
from registry_ha.settings import load_settings

from conftest import REPO_ROOT

CA = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUZm9v\n-----END CERTIFICATE-----"
CACHES = [
    {"name": "dockerhub", "host": "docker.io", "clusterIP": "10.43.0.50", "serviceName": "docker-registry-mirror"},
    {"name": "ghcr", "host": "ghcr.io", "clusterIP": "10.43.0.51"},
    {"name": "k8s", "host": "registry.k8s.io", "clusterIP": "fd00:43::52"},
    {"name": "quay", "host": "quay.io"},  # not pinned: its address is known once deployed
]


def settings(mirrors=CACHES, **values):
    raw = {f"registry-ha:{k}": v for k, v in values.items()}
    raw["registry-ha:mirrors"] = json.dumps(mirrors)
    return load_settings(raw, "staging")


def pinned(s):
    return {c.name: c.cluster_ip for c in s.caches}


def parsed(files) -> dict[str, dict]:
    return {f.path: tomllib.loads(f.content) for f in files.files if f.path.endswith("hosts.toml")}


def test_every_file_is_valid_toml_with_a_host_table_and_no_address_twice():
    s = settings()
    files = node_files(s, cluster_endpoints(s, pinned(s)))
    docs = parsed(files)
    assert sorted(docs) == ["37.60.241.150:30500/hosts.toml", "docker.io/hosts.toml", "ghcr.io/hosts.toml",
                            "registry.k8s.io/hosts.toml", "registry.neural-hive.local:5000/hosts.toml"]
    for path, doc in docs.items():
        assert doc.get("host"), f"{path}: no [host] table"
        assert doc["server"] not in doc["host"], f"{path}: server listed again as a host"
    assert files.skipped == (
        "quay.io: the quay cache's ClusterIP is allocated when it is deployed; pin one with mirrors[3].clusterIP "
        "(an address in the cluster's Service CIDR)",
    )


def test_caches_first_upstream_as_the_fallback_pull_only():
    s = settings()
    docs = parsed(node_files(s, cluster_endpoints(s, {**pinned(s), "quay": "10.43.0.53"})))
    for host, cache_url, upstream in [
        ("docker.io", "http://10.43.0.50:5000", "https://registry-1.docker.io"),
        ("ghcr.io", "http://10.43.0.51:5000", "https://ghcr.io"),
        ("registry.k8s.io", "http://[fd00:43::52]:5000", "https://registry.k8s.io"),
        ("quay.io", "http://10.43.0.53:5000", "https://quay.io"),
    ]:
        doc = docs[f"{host}/hosts.toml"]
        assert doc["server"] == upstream
        assert doc["host"] == {cache_url: {"capabilities": ["pull", "resolve"]}}  # a proxy refuses pushes


def test_the_private_registry_under_both_names_plain_http():
    s = settings()
    docs = parsed(node_files(s, cluster_endpoints(s, pinned(s))))
    by_name = docs["registry.neural-hive.local:5000/hosts.toml"]
    by_node = docs["37.60.241.150:30500/hosts.toml"]
    assert by_name == {"server": "http://37.60.241.150:30500",
                       "host": {"http://registry.neural-hive.local:5000": {"capabilities": ["pull", "resolve", "push"]}}}
    assert by_node == {"server": "http://registry.neural-hive.local:5000",
                       "host": {"http://37.60.241.150:30500": {"capabilities": ["pull", "resolve", "push"]}}}


def test_tls_https_with_the_ca_next_to_the_file_and_none_on_plain_http_hosts():
    s = settings(tlsSecretName="registry-tls", tlsCaCertificate=CA)
    files = node_files(s, cluster_endpoints(s, pinned(s)))
    docs = parsed(files)
    private = docs["registry.neural-hive.local:5000/hosts.toml"]
    assert private["server"] == "https://37.60.241.150:30500" and private["ca"] == "ca.crt"
    assert private["host"] == {"https://registry.neural-hive.local:5000": {"capabilities": ["pull", "resolve", "push"], "ca": "ca.crt"}}
    contents = files.as_dict()
    assert contents["registry.neural-hive.local:5000/ca.crt"] == CA + "\n"
    assert contents["37.60.241.150:30500/ca.crt"] == CA + "\n"
    assert "ca" not in docs["docker.io/hosts.toml"] and "ca" not in docs["docker.io/hosts.toml"]["host"]["http://10.43.0.50:5000"]
    # TLS without a CA given: https, trusting the node's own store (no ca line, no ca.crt)
    s = settings(tlsSecretName="registry-tls")
    files = node_files(s, cluster_endpoints(s, pinned(s)))
    private = parsed(files)["registry.neural-hive.local:5000/hosts.toml"]
    assert private["server"].startswith("https://") and "ca" not in private
    assert not [f for f in files.files if f.path.endswith("ca.crt")]


def test_credentials_are_a_header_on_the_private_registry_only_and_the_file_0600():
    """The hook for the nodes' pull identity: an Authorization header on every host of the private
    registry's files (containerd has no other place for credentials in hosts.toml)."""
    s = settings()
    header = basic_authorization("node", "p@ss:w\"rd")
    files = node_files(s, cluster_endpoints(s, pinned(s)), authorization=header)
    docs = parsed(files)
    modes = {f.path: f.mode for f in files.files}
    for path in ("registry.neural-hive.local:5000/hosts.toml", "37.60.241.150:30500/hosts.toml"):
        doc = docs[path]
        assert doc["header"] == {"Authorization": header}  # for `server`
        assert all(h["header"] == {"Authorization": header} for h in doc["host"].values())
        assert modes[path] == 0o600
    assert header == "Basic bm9kZTpwQHNzOncicmQ="
    assert "header" not in docs["docker.io/hosts.toml"] and modes["docker.io/hosts.toml"] == 0o644
    assert all(f.mode == 0o644 for f in node_files(s, cluster_endpoints(s, pinned(s))).files)


def test_a_file_without_a_host_table_or_with_a_control_character_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        hosts_toml("c", "https://registry-1.docker.io", [])
    with pytest.raises(ValueError, match="control character"):
        hosts_toml("c", "http://a\n[host.x]", [("http://b", ("pull",))])


def test_the_sandbox_shape_same_files_other_addresses():
    """NodeEndpoints is the only difference between the cluster's files and the sandbox's."""
    s = settings(mirrors=CACHES[:2])
    cluster = node_files(s, cluster_endpoints(s, pinned(s)))
    local = node_files(s, NodeEndpoints(caches={"docker.io": "http://127.0.0.1:25000", "ghcr.io": "http://127.0.0.1:25062"},
                                        upstreams={"docker.io": "http://127.0.0.1:25003", "ghcr.io": "http://127.0.0.1:25003"},
                                        registry="http://127.0.0.1:5000", node_port="http://127.0.0.1:5000"))
    assert [f.path for f in local.files] == [f.path for f in cluster.files]
    shape = lambda doc: ({k for k in doc}, [v["capabilities"] for v in doc["host"].values()])  # noqa: E731
    assert [shape(d) for d in parsed(local).values()] == [shape(d) for d in parsed(cluster).values()]


def test_docker_daemon_equivalent_covers_docker_hub_only():
    s = settings()
    daemon = docker_daemon_json(s, cluster_endpoints(s, pinned(s)))
    assert daemon == {
        "registry-mirrors": ["http://10.43.0.50:5000"],
        "insecure-registries": ["registry.neural-hive.local:5000", "37.60.241.150:30500", "10.43.0.50:5000"],
    }
    s = settings(mirrors=CACHES[1:2], tlsSecretName="registry-tls")
    assert docker_daemon_json(s, cluster_endpoints(s, pinned(s))) == {"insecure-registries": []}


def test_render_writes_the_node_files_lists_them_and_prints_the_docker_equivalent(tmp_path):
    """`render` with a stack whose caches are pinned: every file, listed in outputs.json."""
    from registry_ha import render
    from registry_ha.mock_engine import load_stack_config, run_program

    config, secret_keys = load_stack_config("staging")
    config["registry-ha:mirrors"] = json.dumps(CACHES)
    s = load_settings(config, "staging", secret_keys, aws_region="us-east-1")
    run = run_program("staging", config=config, secret_keys=secret_keys)
    render.write_render(run, tmp_path, settings=s)
    outputs = json.loads((tmp_path / "outputs.json").read_text())
    base = f"nodes{CERTS_D}"
    assert outputs["nodeFiles"] == [
        f"{base}/docker.io/hosts.toml", f"{base}/ghcr.io/hosts.toml", f"{base}/registry.k8s.io/hosts.toml",
        f"{base}/registry.neural-hive.local:5000/hosts.toml", f"{base}/37.60.241.150:30500/hosts.toml",
        "nodes/docker-daemon.json",
    ]
    assert len(outputs["nodeFilesSkipped"]) == 1 and outputs["nodeFilesSkipped"][0].startswith("quay.io:")
    expected = node_files(s, cluster_endpoints(s, pinned(s))).as_dict()
    for path, content in expected.items():
        assert (tmp_path / base / path).read_text() == content
    assert json.loads((tmp_path / "nodes/docker-daemon.json").read_text())["registry-mirrors"] == ["http://10.43.0.50:5000"]


def test_render_cli_prints_what_it_could_not_write_and_the_docker_note(tmp_path):
    result = subprocess.run([str(REPO_ROOT / "scripts/deploy-registry-ha.sh"), "render", "staging", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "not written: docker.io: the dockerhub cache's ClusterIP is allocated when it is deployed" in result.stdout
    assert "registry-mirrors covers Docker Hub only" in result.stdout
    assert (tmp_path / f"nodes{CERTS_D}/registry.neural-hive.local:5000/hosts.toml").exists()
    assert not (tmp_path / f"nodes{CERTS_D}/docker.io").exists()


def test_the_settings_the_docs_show_are_valid():
    """Every `pulumi config set mirrors '...'` and the YAML example in the docs load as they are written."""
    import re

    import yaml

    from registry_ha.stacks import _config_string

    shown = []
    for doc in (REPO_ROOT / "README.md", REPO_ROOT / "docs" / "caches-and-nodes.md"):
        text = doc.read_text()
        shown += re.findall(r"pulumi config set mirrors '(.*?)'", text, re.S)
        for block in re.findall(r"```yaml\n(config:\n.*?)```", text, re.S):
            config = yaml.safe_load(block)["config"]
            if "registry-ha:mirrors" in config:
                shown.append(_config_string(config["registry-ha:mirrors"]))
    assert len(shown) >= 3
    for value in shown:
        caches = load_settings({"registry-ha:mirrors": value, "registry-ha:nodeConfigurator": "on"}, "staging").caches
        assert caches[0].service_name == "docker-registry-mirror" and len(caches) >= 2
