"""registry_ha/settings.py: defaults that match the design, stack differences, and rejections."""
from __future__ import annotations

import pytest

from registry_ha.settings import (
    KEYS,
    SettingsError,
    bucket_name_problem,
    image_schema,
    is_hostname,
    load_settings,
)


def settings_for(stack="staging", **values):
    return load_settings({f"registry-ha:{k}": v for k, v in values.items()}, stack, aws_region="us-east-1")


def test_defaults_match_the_seed():
    s = settings_for()
    assert s.namespace == "registry"
    assert s.registry_address == "registry.neural-hive.local:5000"
    assert s.secondary_address == "37.60.241.150:30500"
    assert s.registry.replicas == 3
    assert s.registry.service_name == "docker-registry"
    assert s.registry.image == "registry:3.1.1" and s.registry.schema == "v3"
    (hub,) = s.caches  # Docker Hub only, with today's object names
    assert (hub.name, hub.host, hub.remote_url) == ("dockerhub", "docker.io", "https://registry-1.docker.io")
    assert (hub.service_name, hub.component_name, hub.root_directory) == ("docker-registry-mirror", "dockerhub-cache", "/dockerhub-cache")
    assert s.storage.region == "us-east-1"
    assert (s.redis.registry_db, hub.redis_db) == (0, 1)
    assert (hub.ttl, hub.replicas, hub.cluster_ip, hub.username) == ("168h", 1, None, None)
    assert s.nodes.configurator == "off"


def caches(entries, **values):
    import json

    return {c.name: c for c in settings_for(mirrors=json.dumps(entries), **values).caches}


def test_each_cache_fills_its_defaults_from_its_host_and_the_shared_keys():
    found = caches(
        [{"name": "hub", "host": "docker.io"}, {"name": "ghcr", "host": "ghcr.io", "ttl": "24h", "replicas": 2},
         {"name": "k8s", "host": "registry.k8s.io", "remoteUrl": "https://registry.k8s.io/", "clusterIP": "10.43.0.52"}],
        mirrorTtl="72h", mirrorReplicas="3",
    )
    assert found["hub"].remote_url == "https://registry-1.docker.io"  # Docker Hub's API host, not docker.io
    assert found["ghcr"].remote_url == "https://ghcr.io" and found["k8s"].remote_url == "https://registry.k8s.io"
    assert [found[n].service_name for n in found] == ["hub-cache", "ghcr-cache", "k8s-cache"]
    assert [(found[n].ttl, found[n].replicas) for n in found] == [("72h", 3), ("24h", 2), ("72h", 3)]
    assert found["k8s"].cluster_ip == "10.43.0.52" and found["ghcr"].root_directory == "/ghcr-cache"


def test_redis_dbs_never_collide_and_appending_a_cache_moves_none():
    a, b, c = ({"name": n, "host": f"{n}.example.com"} for n in ("a", "b", "c"))
    dbs = lambda entries: {name: cache.redis_db for name, cache in caches(entries).items()}  # noqa: E731
    assert dbs([a, b]) == {"a": 1, "b": 2}
    assert dbs([a, b, c]) == {"a": 1, "b": 2, "c": 3}  # appended: a and b keep theirs
    assert dbs([b, c]) == {"b": 1, "c": 2}  # removing the first moves the unpinned ones after it (documented)
    assert dbs([{**b, "redisDb": 2}, {**c, "redisDb": 3}]) == {"b": 2, "c": 3}  # pinned: they stay
    assert dbs([{**a, "redisDb": 1}, b, {**c, "redisDb": 2}]) == {"a": 1, "b": 3, "c": 2}  # the free ones go around pins
    full = [{"name": f"c{i}", "host": f"r{i}.example.com"} for i in range(15)]
    assert sorted(dbs(full).values()) == list(range(1, 16))


def test_node_configurator_reads_yaml_booleans_as_on_and_off():
    """`nodeConfigurator: on` unquoted in a stack file reaches the program as "true" from a YAML 1.1 reader."""
    assert [settings_for(nodeConfigurator=v).nodes.configurator for v in ("on", "true", "off", "false", "remove")] == [
        "on", "on", "off", "off", "remove"]


def test_no_caches():
    assert settings_for(mirrors="[]").caches == ()


@pytest.mark.parametrize("key", ["mirrorEnabled", "mirrorRemoteUrl", "mirrorServiceName", "mirrorNodePort",
                                 "dockerHubUsername", "dockerHubPassword"])
def test_removed_keys_say_what_replaced_them(key):
    with pytest.raises(SettingsError) as error:
        load_settings({f"registry-ha:{key}": "hunter2"}, "staging", secret_keys={f"registry-ha:{key}"})
    text = str(error.value)
    assert text.startswith(f"registry-ha:{key}: removed: ") and any(w in text for w in ("`mirrors`", "mirrorPasswords", "caches-and-nodes.md"))
    assert "hunter2" not in text and "\n" not in text


def test_production_is_stricter_than_staging():
    from tests.mocking import settings_for as stack_settings

    staging, production = stack_settings("staging"), stack_settings("production")
    assert (staging.registry.anti_affinity, production.registry.anti_affinity) == ("preferred", "required")
    assert (staging.registry.zone_spread, production.registry.zone_spread) == (False, True)
    assert (staging.storage.encryption, production.storage.encryption) == ("sse-s3", "sse-kms")
    assert (staging.storage.force_destroy, production.storage.force_destroy) == (True, False)
    assert production.storage.versioning and not staging.storage.versioning


def test_values_arrive_as_strings_and_are_typed():
    s = settings_for(replicas="5", zoneSpread="true", clientCidrs='["10.1.0.0/16"]', nodePort="30600")
    assert s.registry.replicas == 5 and s.registry.zone_spread is True
    assert s.network.client_cidrs == ("10.1.0.0/16",)
    assert s.secondary_address == "37.60.241.150:30600"


@pytest.mark.parametrize(
    "image, schema",
    [
        ("registry:3.1.1", "v3"),
        ("registry:3.0.0", "v3"),
        ("registry:2.8.3", "v2"),
        ("docker.io/library/registry:2.8.3@sha256:" + "a" * 64, "v2"),
        ("mirror.internal:5000/library/registry:3.1.1", "v3"),
        ("registry@sha256:" + "b" * 64, None),
        ("registry:latest", None),
        ("registry:2.5.0", None),
    ],
)
def test_image_schema_is_told_from_the_tag(image, schema):
    assert image_schema(image) == schema


def test_digest_image_needs_an_explicit_schema():
    digest_image = "registry@sha256:" + "c" * 64
    with pytest.raises(SettingsError, match=r"registry-ha:image: .*configSchema"):
        settings_for(image=digest_image)
    assert settings_for(image=digest_image, configSchema="v3").registry.schema == "v3"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"replicas": "0"}, "registry-ha:replicas: an integer from 1 to 50 (got 0)"),
        ({"replicas": "three"}, "registry-ha:replicas: an integer (got 'three')"),
        ({"nodePort": "8080"}, "registry-ha:nodePort: an integer from 30000 to 32767 (got 8080)"),
        ({"nodePort": "32768"}, "registry-ha:nodePort: an integer from 30000 to 32767 (got 32768)"),
        ({"bucketName": "Bad_Bucket"}, "registry-ha:bucketName: an S3 bucket name: 3-63 characters"),
        ({"bucketName": "192.168.1.10"}, "registry-ha:bucketName: an S3 bucket name: not formatted as an IP address"),
        ({"loadBalancerProvider": "digitalocean"}, "registry-ha:loadBalancerProvider: one of aws, gcp, azure, metallb, none"),
        ({"image": "registry:latest"}, "registry-ha:image: an image pinned to a tag other than latest"),
        ({"image": "registry:1.0"}, "registry-ha:image: a registry:3.x or registry:2.8.x tag, or set configSchema"),
        ({"hostname": "registry_neural.local"}, "registry-ha:hostname: a DNS hostname"),
        ({"hostname": "-bad.local"}, "registry-ha:hostname: a DNS hostname"),
        ({"antiAffinity": "hard"}, "registry-ha:antiAffinity: one of required, preferred"),
        ({"encryption": "aes"}, "registry-ha:encryption: one of sse-s3, sse-kms"),
        ({"kmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/abc"}, "registry-ha:kmsKeyArn: only with encryption: sse-kms"),
        ({"encryption": "sse-kms", "kmsKeyArn": "arn:aws:kms:us-east-1:123456789012:alias/registry"},
         "registry-ha:kmsKeyArn: a KMS key ARN (not an alias)"),
        ({"zoneSpread": "yes"}, "registry-ha:zoneSpread: true or false (got 'yes')"),
        ({"clientCidrs": "10.0.0.0/8"}, "registry-ha:clientCidrs: a list of strings"),
        ({"clientCidrs": '["10.0.0.1/8"]'}, "registry-ha:clientCidrs: CIDR blocks"),
        ({"loadBalancerIP": "8.8.8.8"}, "registry-ha:loadBalancerIP: a private (internal) IP address"),
        ({"loadBalancerProvider": "aws", "loadBalancerIP": "10.0.0.5"}, "registry-ha:loadBalancerIP: only with loadBalancerProvider metallb, gcp or azure"),
        ({"redisTimeout": "fast"}, "registry-ha:redisTimeout: a Go duration"),
        ({"mirrors": '[{"name": "hub", "host": "docker.io", "username": "u"}]'}, "registry-ha:mirrorPasswords: a password for 'hub'"),
        ({"mirrors": '[{"name": "hub", "host": "docker.io", "serviceName": "docker-registry"}]'},
         "registry-ha:mirrors[0].serviceName: a name other than docker-registry"),
        ({"serviceName": "docker-registry-mirror"}, "registry-ha:mirrors[0].serviceName: a name other than docker-registry-mirror"),
        ({"mirrors": '[{"name": "hub", "host": "docker.io", "ttl": "1 week"}]'}, "registry-ha:mirrors[0].ttl: a duration such as 168h"),
        ({"mirrors": '[{"name": "hub", "host": "library"}]'}, "registry-ha:mirrors[0].host: a registry host"),
        ({"mirrors": '[{"name": "Hub", "host": "docker.io"}]'}, "registry-ha:mirrors[0].name: a short name"),
        ({"mirrors": '["docker.io"]'}, "registry-ha:mirrors[0]: an object with at least name and host"),
        ({"mirrors": '[{"name": "a", "host": "a.io", "clusterIP": "10.0.0.9"}, {"name": "b", "host": "b.io", "clusterIP": "10.0.0.9"}]'},
         "registry-ha:mirrors[1].clusterIP: distinct cluster IPs"),
        ({"namespace": "Registry"}, "registry-ha:namespace: a DNS label"),
        ({"replica": "3"}, "registry-ha:replica: unknown config key"),
    ],
)
def test_bad_values_are_rejected_with_one_line_naming_the_key(values, message):
    with pytest.raises(SettingsError) as error:
        settings_for(**values)
    text = str(error.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_plaintext_secret_is_refused():
    raw = {"registry-ha:mirrors": '[{"name": "hub", "host": "docker.io", "username": "u"}, {"name": "ghcr", "host": "ghcr.io"}]',
           "registry-ha:mirrorPasswords": '{"hub": "hunter2"}'}
    with pytest.raises(SettingsError, match=r"mirrorPasswords: must be a secret; set it with `pulumi config set --secret"):
        load_settings(raw, "staging")
    ok = load_settings(raw, "staging", secret_keys={"registry-ha:mirrorPasswords"})
    hub, ghcr = ok.caches
    assert hub.username == "u" and hub.password is not None
    assert ghcr.username is None and ghcr.password is None


def test_any_stack_name_that_fits_the_names_it_makes():
    assert load_settings({}, "dev").storage.bucket_prefix == "neural-hive-registry-dev-"
    assert len(load_settings({}, "a" * 15).storage.bucket_prefix) == 37  # S3's limit for a bucket prefix
    for bad in ("Dev", "a" * 16, "dev_1", "-dev", ""):
        with pytest.raises(SettingsError, match=r"stack '.*': a stack name of 1-15 lowercase letters, digits and '-'"):
            load_settings({}, bad)


def test_no_default_depends_on_the_stack_name():
    assert not any(callable(key.default) for key in KEYS)
    raw = {"registry-ha:encryption": "sse-kms", "registry-ha:replicas": "5"}
    one, other = load_settings(raw, "production"), load_settings(raw, "qa")
    names = ("stack", "storage")
    assert {k: v for k, v in vars(one).items() if k not in names} == {k: v for k, v in vars(other).items() if k not in names}
    assert one.storage.__class__(**{**vars(one.storage), "bucket_prefix": "x"}) == other.storage.__class__(
        **{**vars(other.storage), "bucket_prefix": "x"}
    )


def test_bad_region():
    with pytest.raises(SettingsError, match=r"aws:region: an AWS region such as us-east-1 \(got 'mars-1'\)"):
        load_settings({}, "staging", aws_region="mars-1")


def test_other_namespaces_are_left_to_their_providers():
    assert load_settings({"kubernetes:context": "prod", "aws:profile": "x"}, "staging").namespace == "registry"


def test_typo_suggests_the_key():
    with pytest.raises(SettingsError, match=r"registry-ha:Replicas: unknown config key; did you mean replicas\?"):
        settings_for(Replicas="3")


@pytest.mark.parametrize("name", ["ab", "a" * 64, "my..bucket", "xn--bucket", "bucket-s3alias", "-bucket", "bucket."])
def test_bucket_names_s3_rejects(name):
    assert bucket_name_problem(name)


@pytest.mark.parametrize("name", ["abc", "neural-hive-registry-prod", "a.b.c", "a" * 63])
def test_bucket_names_s3_accepts(name):
    assert bucket_name_problem(name) is None


def test_hostnames():
    assert is_hostname("registry.neural-hive.local")
    assert not is_hostname("registry..local")
    assert not is_hostname("a" * 64 + ".local")
    assert not is_hostname("10.0.0.1")


def test_from_pulumi_config_reads_the_cli_environment(monkeypatch):
    """`pulumi up` hands config over as PULUMI_CONFIG / PULUMI_CONFIG_SECRET_KEYS."""
    import json

    import pulumi
    from pulumi.runtime import config as runtime_config

    from registry_ha.settings import from_pulumi_config

    runtime_config.set_all_config({}, [])
    monkeypatch.setenv(
        "PULUMI_CONFIG",
        json.dumps(
            {
                "registry-ha:replicas": "4",
                "registry-ha:mirrors": '[{"name": "dockerhub", "host": "docker.io", "username": "u"}]',
                "registry-ha:mirrorPasswords": '{"dockerhub": "p"}',
                "aws:region": "eu-west-1",
                "kubernetes:context": "prod",
            }
        ),
    )
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(["registry-ha:mirrorPasswords"]))
    monkeypatch.setattr(pulumi, "get_stack", lambda: "production")
    settings = from_pulumi_config()
    assert settings.stack == "production" and settings.registry.replicas == 4
    assert settings.storage.region == "eu-west-1"
    assert settings.caches[0].username == "u"
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", "[]")
    with pytest.raises(SettingsError, match="mirrorPasswords: must be a secret"):
        from_pulumi_config()


@pytest.mark.parametrize("schedule", ["0 3 * * 0", "*/15 * * * *", "30 2 1-7 * mon", "0 0 1 jan,jul *", "@weekly", "0 4 * * 1-5/2"])
def test_gc_schedules_kubernetes_takes(schedule):
    assert load_settings({"registry-ha:gcSchedule": schedule}, "staging").registry.gc_schedule == schedule


def test_day2_defaults_keep_data_and_stay_writable():
    """A stack file that says nothing keeps its bucket on destroy and accepts pushes; staging opts out of retain."""
    bare = load_settings({}, "anything")
    assert (bare.storage.retain, bare.storage.force_destroy, bare.registry.read_only, bare.registry.gc_schedule) == (
        True, False, False, None)
    from tests.mocking import settings_for as stack_file_settings

    staging, production = stack_file_settings("staging"), stack_file_settings("production")
    assert (staging.storage.retain, staging.storage.force_destroy) == (False, True)
    assert (production.storage.retain, production.storage.force_destroy, production.storage.versioning) == (True, False, True)
