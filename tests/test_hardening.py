"""Opt-in hardening under mocks: htpasswd auth (authEnabled/authUsers) and TLS (tlsSecretName).

Measured: both are off by default and the default render is untouched by them; each key turns on
exactly its part (an `auth.htpasswd` section plus an htpasswd key in the config Secret whose bcrypt
entries verify against the exported passwords; an `http.tls` section, the TLS Secret mounted read-only,
an HTTPS readiness probe); the Docker Hub cache stays open plain HTTP; the credentials leave the
program only as a secret output and appear in no non-Secret resource.
"""
from __future__ import annotations

import json

import bcrypt
import pulumi
import pytest
import yaml

from components.registry import Registry, RegistryArgs
from registry_ha.mock_engine import is_secret_wrapper, load_stack_config, run_program
from registry_ha.registry_config import (
    AUTH_REALM,
    Credentials,
    Endpoints,
    build_registry_config,
    htpasswd_file,
    pod_security_paths,
)
from registry_ha.settings import KEYS_BY_NAME, load_settings
from tests.mocking import registered, settings_for, use_mocks

ENDPOINTS = Endpoints(s3_bucket="b", s3_region="us-east-1", redis_addr="r:6379")
CREDENTIALS = Credentials("h" * 48, "r" * 40, "AKIA1", "s" * 40)
HARDENED = {"authEnabled": "true", "authUsers": '["ci", "ops"]', "tlsSecretName": "registry-tls"}


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_off_by_default(stack):
    access = settings_for(stack).access
    assert (access.auth_enabled, access.auth_users, access.tls_secret_name, access.tls) == (False, (), None, False)
    assert KEYS_BY_NAME["authUsers"].default == ("ci",)


def test_each_key_turns_on_its_part():
    assert settings_for(authEnabled="true").access.auth_users == ("ci",)
    assert settings_for(authEnabled="true").access.tls is False
    tls = settings_for(tlsSecretName="registry-tls").access
    assert tls.tls and tls.tls_secret_name == "registry-tls" and not tls.auth_enabled
    assert settings_for(**HARDENED).access.auth_users == ("ci", "ops")


# --------------------------------------------------------------------------- the pure builder


@pytest.mark.parametrize("schema, config_dir", [("v2", "/etc/docker/registry"), ("v3", "/etc/distribution")])
def test_builder_adds_auth_and_tls_from_endpoints(schema, config_dir):
    settings = settings_for(**HARDENED)
    paths = pod_security_paths(settings, "private", schema)
    assert paths == {
        "htpasswd_path": f"{config_dir}/htpasswd",
        "tls_certificate": "/etc/registry-tls/tls.crt",
        "tls_key": "/etc/registry-tls/tls.key",
    }
    config = build_registry_config(settings, "private", Endpoints(**{**ENDPOINTS.__dict__, **paths}), CREDENTIALS, schema)
    assert config["auth"] == {"htpasswd": {"realm": AUTH_REALM, "path": f"{config_dir}/htpasswd"}}
    assert config["http"]["tls"] == {
        "certificate": "/etc/registry-tls/tls.crt", "key": "/etc/registry-tls/tls.key", "minimumtls": "tls1.2",
    }


def test_builder_without_paths_has_neither_and_the_cache_gets_none():
    settings = settings_for(**HARDENED)
    plain = build_registry_config(settings, "private", ENDPOINTS, CREDENTIALS)
    assert "auth" not in plain and "tls" not in plain["http"]
    assert pod_security_paths(settings, "mirror") == {}
    assert pod_security_paths(settings_for(), "private") == {}
    with pytest.raises(ValueError, match="go together"):
        build_registry_config(settings, "private", Endpoints(**{**ENDPOINTS.__dict__, "tls_certificate": "/c"}), CREDENTIALS)


def test_htpasswd_file_is_user_colon_bcrypt():
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    assert htpasswd_file({"ops": hashed, "ci": hashed}) == f"ci:{hashed}\nops:{hashed}\n"
    for bad in ({"a:b": hashed}, {"ci": "plaintext"}):
        with pytest.raises(ValueError):
            htpasswd_file(bad)


# --------------------------------------------------------------------------- the component under mocks


def registry_args(settings, role="private", cache=None):
    return RegistryArgs(
        settings=settings, role=role, namespace="registry", bucket_name="bucket-1", access_key_id="AKIA1",
        secret_access_key=pulumi.Output.secret("s" * 40), redis_address="registry-redis.registry.svc:6379",
        redis_password=pulumi.Output.secret("r" * 40), cache=cache,
    )


@pulumi.runtime.test
def test_component_generates_passwords_and_mounts_both():
    monitor = use_mocks("staging")
    registry = Registry("private", registry_args(settings_for(**HARDENED)))
    assert set(registry.user_passwords) == {"ci", "ops"}

    def check(args):
        (secret, deployment), credentials, credentials_secret = args
        assert credentials_secret is True  # the {user: password} map is a Pulumi secret
        assert set(secret["stringData"]) == {"config.yml", "htpasswd"}
        entries = dict(line.split(":", 1) for line in secret["stringData"]["htpasswd"].splitlines())
        assert set(entries) == {"ci", "ops"}
        for user, password in credentials.items():
            assert len(password) == 32
            assert password not in secret["stringData"]["htpasswd"]  # only the hash is stored
            assert bcrypt.checkpw(password.encode(), entries[user].encode()), user
        config = yaml.safe_load(secret["stringData"]["config.yml"])
        assert config["auth"]["htpasswd"]["path"] == "/etc/distribution/htpasswd"
        assert config["http"]["tls"]["certificate"] == "/etc/registry-tls/tls.crt"
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["readinessProbe"]["httpGet"] == {"path": "/", "port": "http", "scheme": "HTTPS"}
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["tls"] == {"name": "tls", "mountPath": "/etc/registry-tls", "readOnly": True}
        assert mounts["config"]["mountPath"] == "/etc/distribution"  # htpasswd sits next to config.yml
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["tls"]["secret"]["secretName"] == "registry-tls"
        assert {i["key"] for i in volumes["tls"]["secret"]["items"]} == {"tls.crt", "tls.key"}

    return pulumi.Output.all(
        registered(monitor, registry.config_secret, registry.deployment),
        registry.credentials,
        registry.credentials.is_secret(),
    ).apply(check)


@pulumi.runtime.test
def test_cache_stays_open_plain_http_with_both_keys_on():
    monitor = use_mocks("staging")
    settings = settings_for(**HARDENED)
    mirror = Registry("dockerhub-cache", registry_args(settings, "mirror", settings.caches[0]))
    assert mirror.credentials is None and mirror.user_passwords == {}

    def check(args):
        secret, deployment = args
        assert set(secret["stringData"]) == {"config.yml", "credential-helper"}  # no htpasswd
        config = yaml.safe_load(secret["stringData"]["config.yml"])
        assert "auth" not in config and "tls" not in config["http"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["readinessProbe"]["httpGet"] == {"path": "/", "port": "http"}
        assert "tls" not in {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]}

    return registered(monitor, mirror.config_secret, mirror.deployment).apply(check)


# --------------------------------------------------------------------------- the whole program


def hardened_run(stack, **values):
    config, secret_keys = load_stack_config(stack)
    config.update({f"registry-ha:{k}": v for k, v in values.items()})
    return run_program(stack, config=config, secret_keys=secret_keys)


def deployment_checksum(run):
    deployment = next(m for m in run.manifests() if m["kind"] == "Deployment" and m["metadata"]["name"] == "docker-registry")
    return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_program_exports_credentials_only_as_a_secret(stack):
    run = hardened_run(stack, **HARDENED)
    assert run.secret_outputs == {"registryCredentials"}
    credentials = run.outputs["registryCredentials"]
    assert set(credentials) == {"ci", "ops"}
    for resource in run.resources:
        if resource.type == "kubernetes:core/v1:Secret":
            assert is_secret_wrapper(resource.inputs["stringData"])
            continue
        if resource.type == "random:index/randomPassword:RandomPassword":
            continue  # the generator itself
        text = json.dumps(resource.inputs)
        assert not [p for p in credentials.values() if p in text], f"{resource.type} {resource.name} holds a password"
    # the default program exports no credentials at all
    assert "registryCredentials" not in run_program(stack).outputs


def test_users_change_rolls_the_pods_and_the_default_is_untouched():
    default = hardened_run("staging")
    assert deployment_checksum(default) == deployment_checksum(run_program("staging"))
    one = hardened_run("staging", authEnabled="true")
    two = hardened_run("staging", authEnabled="true", authUsers='["ci", "ops"]')
    assert len({deployment_checksum(default), deployment_checksum(one), deployment_checksum(two)}) == 3
    assert deployment_checksum(hardened_run("staging", authEnabled="true")) == deployment_checksum(one)
