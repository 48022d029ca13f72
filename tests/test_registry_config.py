"""The pure Distribution config builder, for both schemas and both roles."""
from __future__ import annotations

import dataclasses

import pytest

from registry_ha.registry_config import Credentials, Endpoints, build_registry_config, config_checksum, dump_config
from registry_ha.settings import load_settings

ENDPOINTS = Endpoints(s3_bucket="bucket-1", s3_region="us-east-1", redis_addr="registry-redis.registry.svc:6379")
CREDENTIALS = Credentials(http_secret="h" * 48, redis_password="r" * 40, s3_access_key="AKIA1", s3_secret_key="s" * 40)


def config(role="private", schema=None, stack="staging", endpoints=ENDPOINTS, credentials=CREDENTIALS, cache=0, **values):
    """The document of the private registry, or (role mirror) of the cache at index `cache`."""
    values.setdefault("authEnabled", "false")  # token auth has its own tests (test_auth.py)
    settings = load_settings({f"registry-ha:{k}": v for k, v in values.items()}, stack)
    chosen = settings.caches[cache] if role == "mirror" else None
    return build_registry_config(settings, role, endpoints, credentials, schema=schema, cache=chosen)


TWO_CACHES = '[{"name": "dockerhub", "host": "docker.io"}, {"name": "ghcr", "host": "ghcr.io", "ttl": "24h"}]'


def test_v3_private_registry():
    c = config()
    assert c["http"]["secret"] == "h" * 48
    assert c["http"]["addr"] == ":5000"
    assert c["http"]["debug"] == {"addr": ":5001", "prometheus": {"enabled": True, "path": "/metrics"}}
    s3 = c["storage"]["s3"]
    assert s3["bucket"] == "bucket-1" and s3["region"] == "us-east-1"
    assert s3["encrypt"] is True and s3["secure"] is True and s3["v4auth"] is True
    assert s3["rootdirectory"] == "/registry"
    assert s3["objectacl"] == "bucket-owner-full-control"
    assert "regionendpoint" not in s3 and "forcepathstyle" not in s3 and "keyid" not in s3
    assert c["storage"]["delete"] == {"enabled": True}
    assert c["storage"]["redirect"] == {"disable": True}
    assert c["storage"]["cache"] == {"blobdescriptor": "redis"}
    assert c["health"]["storagedriver"] == {"enabled": True, "interval": "10s", "threshold": 3}
    redis = c["redis"]
    assert redis["addrs"] == ["registry-redis.registry.svc:6379"] and "addr" not in redis and "pool" not in redis
    assert redis["db"] == 0 and redis["password"] == "r" * 40
    assert redis["dialtimeout"] == redis["readtimeout"] == redis["writetimeout"] == redis["pooltimeout"] == "50ms"
    assert "proxy" not in c


@pytest.mark.parametrize("schema", ["v2", "v3"])
def test_every_redis_timeout_is_the_setting(schema):
    redis = config(schema=schema, redisTimeout="250ms")["redis"]
    assert (redis["dialtimeout"], redis["readtimeout"], redis["writetimeout"]) == ("250ms", "250ms", "250ms")


@pytest.mark.parametrize("pre_stop, drain", [("0", "5s"), ("3", "5s"), ("10", "10s"), ("45", "45s")])
def test_draintimeout_lets_requests_in_flight_finish(pre_stop, drain):
    """After the preStop sleep, SIGTERM: the registry keeps serving open requests this long (never 0s,
    which would cut every pull in flight at each rollout)."""
    assert config(preStopSeconds=pre_stop)["http"]["draintimeout"] == drain


def test_v2_schema_uses_the_28_keys():
    c = config(schema="v2")
    assert c["redis"]["addr"] == "registry-redis.registry.svc:6379" and "addrs" not in c["redis"]
    assert c["redis"]["pool"] == {"maxidle": 16, "maxactive": 64, "idletimeout": "300s"}
    assert "poolsize" not in c["redis"]


def test_image_tag_selects_the_schema():
    assert "addr" in config(image="registry:2.8.3")["redis"]
    assert "addrs" in config(image="registry:3.1.1")["redis"]


def test_s3_compatible_endpoint_needs_path_style_on_v3_only():
    endpoints = Endpoints(s3_bucket="b", s3_region="us-east-1", redis_addr="r:6379", s3_endpoint="http://127.0.0.1:8333")
    v3 = config(endpoints=endpoints)["storage"]["s3"]
    assert v3["regionendpoint"] == "http://127.0.0.1:8333" and v3["forcepathstyle"] is True and v3["secure"] is False
    v2 = config(endpoints=endpoints, schema="v2")["storage"]["s3"]
    assert v2["regionendpoint"] == "http://127.0.0.1:8333" and "forcepathstyle" not in v2


def test_sse_kms_leaves_encryption_to_the_bucket():
    s3 = config(encryption="sse-kms")["storage"]["s3"]
    assert s3["encrypt"] is False and "keyid" not in s3
    assert config(encryption="sse-s3")["storage"]["s3"]["encrypt"] is True


def test_each_cache_is_a_proxy_with_its_own_prefix_and_redis_db():
    private = config("private", mirrors=TWO_CACHES)
    hub, ghcr = config("mirror", mirrors=TWO_CACHES, cache=0), config("mirror", mirrors=TWO_CACHES, cache=1)
    assert (hub["proxy"]["remoteurl"], ghcr["proxy"]["remoteurl"]) == ("https://registry-1.docker.io", "https://ghcr.io")
    assert (hub["proxy"]["ttl"], ghcr["proxy"]["ttl"]) == ("168h", "24h")
    roots = [c["storage"]["s3"]["rootdirectory"] for c in (private, hub, ghcr)]
    assert roots == ["/registry", "/dockerhub-cache", "/ghcr-cache"]
    assert [c["redis"]["db"] for c in (private, hub, ghcr)] == [0, 1, 2]
    assert hub["storage"]["delete"] == {"enabled": True}  # the cache's expiry deletes through it
    assert "username" not in hub["proxy"]
    assert "ttl" not in config("mirror", schema="v2")["proxy"]  # 2.8 has no proxy.ttl
    assert "proxy" not in private


def test_mirror_credentials_and_upstream_override():
    credentials = Credentials("h", "r", "a", "s", upstream_username="neuralhive", upstream_password="tok")
    endpoints = Endpoints(s3_bucket="b", s3_region="us-east-1", redis_addr="r:6379", proxy_remote_url="http://127.0.0.1:9999")
    # 3.x: the credential helper answers per request (no upstream contact while starting)
    proxy = config("mirror", credentials=credentials, endpoints=endpoints)["proxy"]
    assert proxy == {"remoteurl": "http://127.0.0.1:9999", "exec": {"command": "/etc/distribution/credential-helper"},
                     "ttl": "168h"}
    # 2.8 has no proxy.exec
    proxy = config("mirror", credentials=credentials, endpoints=endpoints, schema="v2")["proxy"]
    assert proxy == {"remoteurl": "http://127.0.0.1:9999", "username": "neuralhive", "password": "tok"}


def test_the_credential_helper_answers_only_the_upstreams_hosts(tmp_path):
    import json
    import subprocess

    from registry_ha.registry_config import credential_helper_script, upstream_credentials_json
    from registry_ha.settings import load_settings

    settings = load_settings({"registry-ha:mirrors": TWO_CACHES}, "staging")
    endpoints = Endpoints(s3_bucket="b", s3_region="us-east-1", redis_addr="r:1", config_dir=str(tmp_path))
    helper = tmp_path / "credential-helper"
    helper.write_text(credential_helper_script(settings.caches[0], "v3", endpoints))
    helper.chmod(0o700)

    def ask(host: str, program=helper) -> dict:
        result = subprocess.run([str(program), "get"], input=host, capture_output=True, text=True, check=True)
        return json.loads(result.stdout)

    anonymous = {"Username": "", "Secret": ""}
    assert ask("registry-1.docker.io") == anonymous  # no credentials file: anonymous
    (tmp_path / "upstream-credentials.json").write_text(upstream_credentials_json("neuralhive", 'p"w\\d'))
    for host in ("registry-1.docker.io", "auth.docker.io", "https://auth.docker.io/token"):
        assert ask(host) == {"Username": "neuralhive", "Secret": 'p"w\\d'}, host
    for host in ("evil.example.com", "docker.io.evil.com", "127.0.0.1:5000", "ghcr.io"):
        assert ask(host) == anonymous, host
    # each cache's helper answers for its own upstream only
    ghcr_dir = tmp_path / "ghcr"
    ghcr_dir.mkdir()
    ghcr_helper = ghcr_dir / "credential-helper"
    ghcr_helper.write_text(credential_helper_script(settings.caches[1], "v3", dataclasses.replace(endpoints, config_dir=str(ghcr_dir))))
    ghcr_helper.chmod(0o700)
    (ghcr_dir / "upstream-credentials.json").write_text(upstream_credentials_json("org-bot", "ghp_x"))
    assert ask("ghcr.io", ghcr_helper) == {"Username": "org-bot", "Secret": "ghp_x"}
    assert ask("registry-1.docker.io", ghcr_helper) == anonymous


def test_settings_flow_into_the_document():
    c = config(storageRedirect="true", redisTimeout="50ms", logLevel="debug", uploadPurgeAge="72h")
    assert c["storage"]["redirect"] == {"disable": False}
    assert c["redis"]["readtimeout"] == "50ms"
    assert c["log"]["level"] == "debug"
    assert c["storage"]["maintenance"]["uploadpurging"]["age"] == "72h"


def test_checksum_follows_the_content():
    base = dump_config(config())
    assert config_checksum(base) == config_checksum(dump_config(config()))
    changed = dump_config(config(credentials=Credentials("other", "r" * 40, "AKIA1", "s" * 40)))
    assert config_checksum(base) != config_checksum(changed)
    assert config_checksum(base) != config_checksum(dump_config(config(redisTimeout="200ms")))


def test_bad_role_and_schema():
    with pytest.raises(ValueError, match="schema must be v2 or v3"):
        config(schema="v4")
    with pytest.raises(ValueError, match="role must be private or mirror"):
        config(role="proxy")
    settings = load_settings({}, "staging")
    with pytest.raises(ValueError, match="needs its CacheSettings"):
        build_registry_config(settings, "mirror", ENDPOINTS, CREDENTIALS)
    with pytest.raises(ValueError, match="needs its CacheSettings"):
        build_registry_config(settings, "private", ENDPOINTS, CREDENTIALS, cache=settings.caches[0])


def test_redis_failures_are_not_retried_on_v3():
    """A failed lookup falls back to storage; go-redis' 3 retries with backoff made a Redis outage 50x slower."""
    v3 = config()["redis"]
    assert v3["maxretries"] == -1 and v3["addrs"] == ["registry-redis.registry.svc:6379"]
    assert "maxretries" not in config(schema="v2")["redis"]  # 2.8's redigo pool has no retries


@pytest.mark.parametrize("schema", ["v2", "v3"])
def test_read_only_is_a_maintenance_switch_of_the_private_registry_only(schema):
    assert "readonly" not in config(schema=schema)["storage"]["maintenance"]  # off: the document is unchanged
    assert config(schema=schema, readOnly="true")["storage"]["maintenance"]["readonly"] == {"enabled": True}
    # the caches keep writing what they fetch
    assert "readonly" not in config("mirror", schema=schema, readOnly="true")["storage"]["maintenance"]
    on, off = dump_config(config(schema=schema, readOnly="true")), dump_config(config(schema=schema))
    assert config_checksum(on) != config_checksum(off)  # switching it rolls the pods
