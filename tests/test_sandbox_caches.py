"""The sandbox's plan for N caches (no process is started): ports, names, upstreams, node files."""
from __future__ import annotations

import json
import tomllib

import pytest

from registry_ha.sandbox.core import Sandbox, SandboxError
from registry_ha.sandbox.ports import SPAN, Ports

CACHES = [
    {"name": "dockerhub", "host": "docker.io", "serviceName": "docker-registry-mirror"},
    {"name": "ghcr", "host": "ghcr.io"},
    {"name": "k8s", "host": "registry.k8s.io"},
]


def plan(tmp_path, caches=CACHES, **kwargs) -> Sandbox:
    return Sandbox(tmp_path / "state", stack="staging", lb_port=5999, port_base=30000,
                   overrides={"mirrors": json.dumps(caches)}, **kwargs)


def test_every_cache_is_a_process_named_like_its_component_on_its_own_ports(tmp_path):
    sb = plan(tmp_path)
    caches = {n: c for n, c in sb.components.items() if c.role == "mirror"}
    assert {n: c.ports for n, c in caches.items()} == {
        "dockerhub-cache": [30000, 30001],  # the first keeps base+0/base+1
        "ghcr-cache": [30062, 30063],  # then base+60+2i / base+61+2i
        "k8s-cache": [30064, 30065],
    }
    assert [sb.debug_address(n) for n in caches] == ["127.0.0.1:30001", "127.0.0.1:30063", "127.0.0.1:30065"]
    all_ports = [p for c in sb.components.values() for p in c.ports if p != 5999]
    assert len(all_ports) == len(set(all_ports))  # no process shares a port with another
    last = Ports(lb=1, base=0)
    assert max(last.cache(14), last.cache_debug(14)) < SPAN  # 15 caches fit the port span


def test_caches_proxy_one_stand_in_unless_told(tmp_path):
    sb = plan(tmp_path)
    stand_in = f"http://127.0.0.1:{sb.ports.upstream}"
    assert sb.upstreams == {"dockerhub": stand_in, "ghcr": stand_in, "k8s": stand_in}
    config = sb.registry_config("ghcr-cache")
    assert config["proxy"]["remoteurl"] == stand_in and config["redis"]["db"] == 2
    assert config["storage"]["s3"]["rootdirectory"] == "/ghcr-cache"

    sb = plan(tmp_path, upstream=["ghcr=http://127.0.0.1:7001", "registry.k8s.io=http://127.0.0.1:7002/"])
    assert sb.upstreams == {"dockerhub": stand_in, "ghcr": "http://127.0.0.1:7001", "k8s": "http://127.0.0.1:7002"}
    real = plan(tmp_path, real_upstreams=True)
    assert real.upstreams == {"dockerhub": "https://registry-1.docker.io", "ghcr": "https://ghcr.io", "k8s": "https://registry.k8s.io"}
    assert "upstream" not in real.components  # no stand-in when nothing uses it
    single = plan(tmp_path, caches=CACHES[:1], upstream="http://127.0.0.1:7003")
    assert single.upstreams == {"dockerhub": "http://127.0.0.1:7003"}


@pytest.mark.parametrize("value, message", [
    ("http://127.0.0.1:7001", "--upstream: NAME=URL when the stack has 3 caches (dockerhub, ghcr, k8s)"),
    ("quay=http://127.0.0.1:7001", "--upstream: NAME is a cache's name or host"),
    ("ghcr=127.0.0.1:7001", "--upstream: URL is http(s)://HOST:PORT"),
])
def test_bad_upstream_arguments(tmp_path, value, message):
    with pytest.raises(SandboxError) as error:
        plan(tmp_path, upstream=[value])
    assert str(error.value).startswith(message)


def test_the_node_files_are_the_programs_with_the_sandboxs_addresses(tmp_path):
    sb = plan(tmp_path)
    files = sb.node_files().as_dict()
    assert sorted(files) == ["37.60.241.150:30500/hosts.toml", "docker.io/hosts.toml", "ghcr.io/hosts.toml",
                             "registry.k8s.io/hosts.toml", "registry.neural-hive.local:5000/hosts.toml"]
    ghcr = tomllib.loads(files["ghcr.io/hosts.toml"])
    assert ghcr == {"server": f"http://127.0.0.1:{sb.ports.upstream}",
                    "host": {"http://127.0.0.1:30062": {"capabilities": ["pull", "resolve"]}}}
    private = tomllib.loads(files["registry.neural-hive.local:5000/hosts.toml"])
    assert private["server"] == "http://127.0.0.1:5999" and list(private["host"]) == ["http://127.0.0.1:5999"]
    # a cache that could not start is left out of the files: containerd goes to the upstream directly
    sb.components["ghcr-cache"].skipped = "panic: ..."
    assert tomllib.loads(sb.node_files().as_dict()["docker.io/hosts.toml"])["host"]
    assert "ghcr.io/hosts.toml" not in sb.node_files().as_dict()


def test_a_cache_with_a_username_pulls_anonymously_in_the_sandbox(tmp_path):
    stack = tmp_path / "repo"
    stack.mkdir()
    (stack / "Pulumi.staging.yaml").write_text(
        "config:\n  registry-ha:mirrors:\n    - {name: dockerhub, host: docker.io, username: neuralhive}\n"
        "  registry-ha:mirrorPasswords:\n    secure: AAABAciphertext\n")
    sb = Sandbox(tmp_path / "state", stack="staging", lb_port=5999, port_base=30000, repo_root=stack)
    assert sb.settings.caches[0].username is None
    assert any("pulls anonymously" in note for note in sb.notes)


def test_one_stack_per_cluster_configures_its_nodes(tmp_path):
    """Two node configurators on one cluster would write the same files on the same nodes."""
    from registry_ha.settings import SettingsError
    from registry_ha.stacks import check_no_collision

    def stack(name: str, context: str, configurator: str, namespace: str, node_port: int) -> None:
        (tmp_path / f"Pulumi.{name}.yaml").write_text(
            f"config:\n  kubernetes:context: {context}\n  registry-ha:nodeConfigurator: {configurator}\n"
            f"  registry-ha:namespace: {namespace}\n  registry-ha:nodePort: {node_port}\n")

    stack("blue", "shared", "on", "registry-blue", 30500)
    stack("green", "shared", "off", "registry-green", 30600)
    check_no_collision("blue", tmp_path)  # only one of them configures the nodes
    stack("green", "shared", "on", "registry-green", 30600)
    with pytest.raises(SettingsError, match=r"^stack 'blue': nodeConfigurator is also on in Pulumi.green.yaml on the same kubernetes:context shared"):
        check_no_collision("blue", tmp_path)
    stack("green", "other-cluster", "on", "registry-green", 30600)
    check_no_collision("blue", tmp_path)
