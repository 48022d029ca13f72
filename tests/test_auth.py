"""Token authentication with roles, under mocks and as pure builders (authEnabled, TLS on top).

Measured: production turns auth on and staging off, each in its stack file (the default is on); the
token server's config holds bcrypt hashes that verify against the exported passwords and an ACL per
role; the signing key is RSA from pulumi-tls, only in the token server's Secret and only mounted into
its container; the registry trusts every signing certificate (rootcertbundle) and the same keys under
the libtrust key id docker_auth sends (jwks); the realm follows the client's address (autoredirect)
through the auth proxy, which owns :5000; a key rotation keeps the old key's resources; pull secrets
land in the listed namespaces with the node identity for both addresses; the caches stay anonymous and
off the NodePort; nothing secret leaves the program except the secret output.
"""
from __future__ import annotations

import base64
import json

import bcrypt
import pulumi
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from components.auth import SIGNING_KEY_BITS, TokenAuth, TokenAuthArgs
from components.registry import Registry, RegistryArgs
from registry_ha import auth
from registry_ha.k8s import network_policy_specs
from registry_ha.mock_engine import is_secret_wrapper, load_stack_config, mock_rsa_private_key, run_program
from registry_ha.registry_config import Credentials, Endpoints, build_registry_config, pod_security_paths
from registry_ha.settings import KEYS_BY_NAME
from registry_ha.stacks import read_stack_file
from tests.mocking import registered, settings_for, use_mocks

ENDPOINTS = Endpoints(s3_bucket="b", s3_region="us-east-1", redis_addr="r:6379")
CREDENTIALS = Credentials("h" * 48, "r" * 40, "AKIA1", "s" * 40)
DEFAULT_USERS = {"admin": "admin", "ci": "push", "node": "pull", "reader": "pull"}


def public_pem(seed: str = "test") -> str:
    key = mock_rsa_private_key(seed)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


# --------------------------------------------------------------------------- settings and stack files


def test_auth_is_on_by_default_and_each_stack_file_says_so():
    assert KEYS_BY_NAME["authEnabled"].default is True
    assert read_stack_file("production")[0]["registry-ha:authEnabled"] == "true"
    assert read_stack_file("staging")[0]["registry-ha:authEnabled"] == "false"
    production, staging = settings_for("production").access, settings_for("staging").access
    assert production.auth_enabled and not staging.auth_enabled
    assert {u.name: u.role for u in production.users} == DEFAULT_USERS
    assert (production.node_user, production.signing_keys, production.pull_secret_namespaces) == ("node", ("k1",), ())
    assert (staging.users, staging.node_user, staging.signing_keys) == ((), None, ())


# --------------------------------------------------------------------------- pure builders


def test_acl_one_rule_per_user_by_role_and_nothing_for_anyone_else():
    rules = auth.acl(settings_for("production").access.users)
    assert rules == [
        {"match": {"account": "admin"}, "actions": ["*"], "comment": "admin: admin"},
        {"match": {"account": "ci", "type": "repository"}, "actions": ["pull", "push"], "comment": "ci: push"},
        {"match": {"account": "node", "type": "repository"}, "actions": ["pull"], "comment": "node: pull"},
        {"match": {"account": "reader", "type": "repository"}, "actions": ["pull"], "comment": "reader: pull"},
    ]


def test_token_server_config_holds_hashes_only():
    settings = settings_for("production")
    hashes = {name: bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode() for name in DEFAULT_USERS}
    config = auth.token_server_config(settings, hashes)
    assert config["server"] == {"addr": ":5003"}
    assert config["token"] == {"issuer": "registry-ha-production", "expiration": 900,
                               "certificate": "/config/token.crt", "key": "/config/token.key"}
    assert config["users"] == {name: {"password": hashes[name]} for name in DEFAULT_USERS}
    assert "" not in config["users"]  # no anonymous user: a request without credentials gets 401
    with pytest.raises(ValueError, match="bcrypt hash, never the password"):
        auth.token_server_config(settings, {**hashes, "ci": "plaintext"})
    with pytest.raises(ValueError, match="no password hash for reader"):
        auth.token_server_config(settings, {k: v for k, v in hashes.items() if k != "reader"})


def test_jwk_matches_the_key_and_carries_the_libtrust_key_id():
    import hashlib

    key = mock_rsa_private_key("test").public_key()
    jwk = auth.jwk(public_pem())
    numbers = key.public_numbers()
    assert base64.urlsafe_b64decode(jwk["n"] + "==") == numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    assert jwk["e"] == "AQAB" and (jwk["kty"], jwk["alg"], jwk["use"]) == ("RSA", "RS256", "sig")
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    # libtrust: base32 of the first 30 bytes of sha256(SPKI), groups of four joined by ':'
    b32 = base64.b32encode(hashlib.sha256(spki).digest()[:30]).decode()
    assert jwk["kid"] == ":".join(b32[i:i + 4] for i in range(0, 48, 4)) and len(jwk["kid"].split(":")) == 12
    document = json.loads(auth.jwks_document([public_pem("a"), public_pem("b")]))
    assert len({k["kid"] for k in document["keys"]}) == 2
    with pytest.raises(ValueError, match="not an RSA public key"):
        from cryptography.hazmat.primitives.asymmetric import ec

        ec_pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        auth.jwk(ec_pem)


def test_registry_token_section_and_listen_address():
    settings = settings_for("production")
    paths = pod_security_paths(settings, "private")
    assert paths == {"listen_addr": ":5002"}  # the auth proxy owns :5000
    config = build_registry_config(settings, "private", Endpoints(**{**ENDPOINTS.__dict__, **paths}), CREDENTIALS)
    assert config["http"]["addr"] == ":5002" and "net" not in config["http"]
    assert config["auth"] == {"token": {
        "realm": "http://registry.neural-hive.local:5000/auth",
        "autoredirect": True,
        "autoredirectpath": "/auth",
        "service": "registry.neural-hive.local",
        "issuer": "registry-ha-production",
        "rootcertbundle": "/etc/distribution/token-bundle.pem",
        "jwks": "/etc/distribution/token-jwks.json",
        "signingalgorithms": ["RS256"],
    }}
    tls = settings_for("production", tlsSecretName="registry-tls")
    assert build_registry_config(tls, "private", ENDPOINTS, CREDENTIALS)["auth"]["token"]["realm"].startswith("https://")
    assert pod_security_paths(tls, "private") == {"listen_addr": ":5002"}  # TLS ends at the proxy
    assert "auth" not in build_registry_config(settings, "mirror", ENDPOINTS, CREDENTIALS, cache=settings.caches[0])  # caches: anonymous
    assert "auth" not in build_registry_config(settings_for("staging"), "private", ENDPOINTS, CREDENTIALS)
    with pytest.raises(ValueError, match="3.x schema"):
        build_registry_config(settings, "private", ENDPOINTS, CREDENTIALS, schema="v2")


def test_proxy_routes_the_realm_to_the_token_server_and_sets_the_scheme():
    plain = auth.proxy_config([auth.pod_proxy_site(settings_for("production"))])
    lines = [line.strip() for line in plain.splitlines()]
    assert "bind :5000" in lines
    assert "use_backend registry-token if { path /auth }" in lines and "default_backend registry-registry" in lines
    assert "server registry 127.0.0.1:5002" in lines and "server token 127.0.0.1:5003" in lines
    assert "http-request set-header X-Forwarded-Proto http" in lines
    assert "http-request del-header X-Forwarded-Host" in lines and "http-request del-header Forwarded" in lines
    tls = auth.proxy_config([auth.pod_proxy_site(settings_for("production", tlsSecretName="registry-tls"))])
    assert "bind :5000 ssl crt /etc/auth-proxy-tls/tls.pem" in tls and "X-Forwarded-Proto https" in tls


def test_node_credentials_for_both_addresses():
    settings = settings_for("production")
    node = auth.node_registry_auth(settings, "pw")
    assert node.addresses == ("registry.neural-hive.local:5000", "37.60.241.150:30500")
    header = "Basic " + base64.b64encode(b"node:pw").decode()
    assert node.hosts_toml_headers() == {address: {"Authorization": header} for address in node.addresses}
    assert node.cri_auths()["37.60.241.150:30500"] == {"username": "node", "password": "pw"}
    config = json.loads(node.dockerconfigjson())
    assert set(config["auths"]) == set(node.addresses)
    assert base64.b64decode(config["auths"]["37.60.241.150:30500"]["auth"]) == b"node:pw"
    assert auth.node_registry_auth(settings_for("staging"), "pw") is None
    assert auth.CONTAINERD_HEADER_AUTH_MIN_VERSION == (2, 1)


# --------------------------------------------------------------------------- the components under mocks


def registry_args(settings, token_auth, role="private", cache=None):
    return RegistryArgs(
        settings=settings, role=role, namespace="registry", bucket_name="bucket-1", access_key_id="AKIA1",
        secret_access_key=pulumi.Output.secret("s" * 40), redis_address="registry-redis.registry.svc:6379",
        redis_password=pulumi.Output.secret("r" * 40), cache=cache, token_auth=token_auth if role == "private" else None,
    )


@pulumi.runtime.test
def test_token_auth_resources_and_the_registry_pod():
    monitor = use_mocks("production")
    settings = settings_for("production", pullSecretNamespaces='["apps", "ci"]')
    token_auth = TokenAuth("auth", TokenAuthArgs(settings, "registry"))
    registry = Registry("private", registry_args(settings, token_auth))
    (key,) = token_auth.signing_keys.values()
    (cert,) = token_auth.signing_certificates.values()

    def check(args):
        (key_in, cert_in, token_secret, pull_apps, pull_ci, config_secret, deployment), credentials, secret_flag = args
        assert secret_flag is True and set(credentials) == set(DEFAULT_USERS)
        assert (key_in["algorithm"], key_in["rsaBits"]) == ("RSA", SIGNING_KEY_BITS)
        assert cert_in["allowedUses"] == ["digital_signature"] and cert_in["validityPeriodHours"] == 87600
        assert cert_in["subject"]["commonName"] == "registry-ha-production token signer k1"
        # the token server's Secret: hashes that verify, the signing key and its certificate
        data = token_secret["stringData"]
        assert token_secret["metadata"]["name"] == "docker-registry-token"
        assert set(data) == {"auth_config.yml", "token.key", "token.crt"}
        config = yaml.safe_load(data["auth_config.yml"])
        for user, password in credentials.items():
            assert len(password) == 32 and password not in data["auth_config.yml"]
            assert bcrypt.checkpw(password.encode(), config["users"][user]["password"].encode()), user
        assert data["token.key"].startswith("-----BEGIN RSA PRIVATE KEY-----")
        assert data["token.crt"] == config_secret["stringData"]["token-bundle.pem"]
        certificate = x509.load_pem_x509_certificate(data["token.crt"].encode())
        jwks = json.loads(config_secret["stringData"]["token-jwks.json"])
        spki = certificate.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        assert [k["kid"] for k in jwks["keys"]] == [auth.libtrust_key_id(spki)]
        # the registry's config: token auth, behind the proxy
        registry_config = yaml.safe_load(config_secret["stringData"]["config.yml"])
        assert registry_config["auth"]["token"]["issuer"] == config["token"]["issuer"]
        assert "server token 127.0.0.1:5003" in config_secret["stringData"]["auth-proxy.cfg"]
        # pull secrets: the node identity for both addresses, in the namespaces listed
        for secret, namespace in ((pull_apps, "apps"), (pull_ci, "ci")):
            assert (secret["metadata"]["namespace"], secret["metadata"]["name"], secret["type"]) == (
                namespace, "registry-pull", "kubernetes.io/dockerconfigjson")
            auths = json.loads(secret["stringData"][".dockerconfigjson"])["auths"]
            assert {a: base64.b64decode(v["auth"]).decode() for a, v in auths.items()} == {
                "registry.neural-hive.local:5000": f"node:{credentials['node']}",
                "37.60.241.150:30500": f"node:{credentials['node']}"}
        # the pod: proxy on :5000, registry on :5002, token server on :5003; the key only in the token server
        pod = deployment["spec"]["template"]["spec"]
        containers = {c["name"]: c for c in pod["containers"]}
        assert list(containers) == ["registry", "auth-proxy", "token-server"]
        assert [(c, p["name"], p["containerPort"]) for c in containers for p in containers[c]["ports"]] == [
            ("registry", "registry", 5002), ("registry", "debug", 5001), ("auth-proxy", "http", 5000),
            ("token-server", "token", 5003)]
        assert containers["auth-proxy"]["image"] == "haproxy:2.6.17-alpine"
        assert containers["auth-proxy"]["command"] == ["haproxy", "-db", "-f", "/etc/auth-proxy/haproxy.cfg"]
        assert containers["token-server"]["image"] == "cesanta/docker_auth:1.14.0"
        assert containers["token-server"]["args"] == ["--logtostderr", "/config/auth_config.yml"]
        mounts = {c: {m["name"] for m in containers[c]["volumeMounts"]} for c in containers}
        assert mounts == {"registry": {"config", "tmp"}, "auth-proxy": {"auth-proxy"}, "token-server": {"token-server"}}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["token-server"]["secret"]["secretName"] == "docker-registry-token"
        assert [i["key"] for i in volumes["config"]["secret"]["items"]] == ["config.yml", "token-bundle.pem", "token-jwks.json"]
        assert volumes["auth-proxy"]["secret"]["items"] == [{"key": "auth-proxy.cfg", "path": "haproxy.cfg"}]
        for container in containers.values():
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] and context["runAsUser"] > 10000 and not context["allowPrivilegeEscalation"]
            assert container["readinessProbe"] and container["livenessProbe"]
        assert containers["auth-proxy"]["readinessProbe"]["httpGet"] == {"path": "/", "port": "http"}
        # the proxy outlives the registry's drain
        grace = pod["terminationGracePeriodSeconds"]
        assert int(containers["auth-proxy"]["lifecycle"]["preStop"]["exec"]["command"][1]) == grace - 10
        annotations = deployment["metadata"]["annotations"]
        assert annotations["checkov.io/skip2"].startswith(
            "CKV_K8S_43=pinned by tag (cesanta/docker_auth:1.14.0, haproxy:2.6.17-alpine, registry:3.1.1)")

    return pulumi.Output.all(
        registered(monitor, key, cert, token_auth.token_secret, token_auth.pull_secrets["apps"],
                   token_auth.pull_secrets["ci"], registry.config_secret, registry.deployment),
        token_auth.credentials,
        token_auth.credentials.is_secret(),
    ).apply(check)


@pulumi.runtime.test
def test_tls_with_auth_ends_at_the_proxy():
    monitor = use_mocks("production")
    settings = settings_for("production", tlsSecretName="registry-tls")
    registry = Registry("private", registry_args(settings, TokenAuth("auth", TokenAuthArgs(settings, "registry"))))

    def check(args):
        (deployment,) = args
        pod = deployment["spec"]["template"]["spec"]
        containers = {c["name"]: c for c in pod["containers"]}
        assert {"name": "tls", "mountPath": "/etc/auth-proxy-tls", "readOnly": True} in containers["auth-proxy"]["volumeMounts"]
        assert "tls" not in {m["name"] for m in containers["registry"]["volumeMounts"]}
        assert containers["auth-proxy"]["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
        assert "scheme" not in containers["registry"]["readinessProbe"]["httpGet"]
        (tls,) = [v for v in pod["volumes"] if v["name"] == "tls"]
        assert tls["secret"]["items"] == [{"key": "tls.crt", "path": "tls.pem"}, {"key": "tls.key", "path": "tls.pem.key"}]

    return registered(monitor, registry.deployment).apply(check)


@pulumi.runtime.test
def test_tls_without_auth_ends_at_the_registry():
    monitor = use_mocks("staging")
    registry = Registry("private", registry_args(settings_for("staging", tlsSecretName="registry-tls"), None))

    def check(args):
        secret, deployment = args
        config = yaml.safe_load(secret["stringData"]["config.yml"])
        assert config["http"]["tls"] == {"certificate": "/etc/registry-tls/tls.crt", "key": "/etc/registry-tls/tls.key",
                                         "minimumtls": "tls1.2"}
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["readinessProbe"]["httpGet"] == {"path": "/", "port": "http", "scheme": "HTTPS"}
        assert {"name": "tls", "mountPath": "/etc/registry-tls", "readOnly": True} in container["volumeMounts"]

    return registered(monitor, registry.config_secret, registry.deployment).apply(check)


@pulumi.runtime.test
def test_caches_stay_anonymous_plain_http_proxies_with_auth_and_tls_on():
    """No front proxy, no token server, no TLS in a cache's pod: one container, its credential helper only."""
    monitor = use_mocks("production")
    settings = settings_for("production", tlsSecretName="registry-tls", mirrors=json.dumps([
        {"name": "dockerhub", "host": "docker.io", "serviceName": "docker-registry-mirror"}, {"name": "ghcr", "host": "ghcr.io"}]))
    caches = [Registry(cache.component_name, registry_args(settings, None, "mirror", cache)) for cache in settings.caches]

    def check(args):
        for secret, deployment, service in zip(args[0::3], args[1::3], args[2::3]):
            assert set(secret["stringData"]) == {"config.yml", "credential-helper"}
            config = yaml.safe_load(secret["stringData"]["config.yml"])
            assert "auth" not in config and "tls" not in config["http"] and config["http"]["addr"] == ":5000"
            pod = deployment["spec"]["template"]["spec"]
            (container,) = pod["containers"]
            assert container["readinessProbe"]["httpGet"] == {"path": "/", "port": "http"}
            assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [("http", 5000), ("debug", 5001)]
            assert {v["name"] for v in pod["volumes"]} == {"config", "tmp"}
            assert service["spec"]["type"] == "ClusterIP"
            assert "checkov.io/skip2" in deployment["metadata"]["annotations"]  # registry:3.1.1 alone, by tag
            assert "docker_auth" not in deployment["metadata"]["annotations"]["checkov.io/skip2"]

    return registered(monitor, *[r for c in caches for r in (c.config_secret, c.deployment, c.service)]).apply(check)


def test_registry_takes_token_auth_exactly_when_auth_is_on():
    use_mocks("production")
    with pytest.raises(ValueError, match="exactly when authEnabled"):
        Registry("private", registry_args(settings_for("production"), None))


# --------------------------------------------------------------------------- the whole program


def program(stack, **values):
    config, secret_keys = load_stack_config(stack)
    config.update({f"registry-ha:{k}": v for k, v in values.items()})
    return run_program(stack, config=config, secret_keys=secret_keys)


def manifest(run, kind, name):
    (found,) = [m for m in run.manifests() if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_auth_wiring_per_stack(stack):
    run = program(stack)
    deployment = manifest(run, "Deployment", "docker-registry")
    containers = [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]]
    config = yaml.safe_load(manifest(run, "Secret", "docker-registry-config")["stringData"]["config.yml"])
    if stack == "production":
        assert containers == ["registry", "auth-proxy", "token-server"]
        assert config["auth"]["token"]["autoredirect"] is True
        assert run.secret_outputs == {"registryCredentials"} and set(run.outputs["registryCredentials"]) == set(DEFAULT_USERS)
        assert [r.type for r in run.resources].count("tls:index/privateKey:PrivateKey") == 1
    else:  # staging stays open, as its stack file says
        assert containers == ["registry"] and "auth" not in config
        assert "registryCredentials" not in run.outputs
        assert not [r for r in run.resources if r.type.startswith("tls:") or r.type == "registry-ha:auth:TokenAuth"]
    # the caches stay anonymous and off the NodePort, whatever the registry does
    mirror = yaml.safe_load(manifest(run, "Secret", "docker-registry-mirror-config")["stringData"]["config.yml"])
    assert "auth" not in mirror
    assert manifest(run, "Service", "docker-registry-mirror")["spec"]["type"] == "ClusterIP"
    # who reaches a cache: every pod in the cluster and clientCidrs, on :5000 only
    allow = network_policy_specs(settings_for(stack))["registry-allow-clients"]
    assert "docker-registry-mirror" in allow["podSelector"]["matchExpressions"][0]["values"]
    assert allow["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 5000}]
    # :5000 is the auth proxy's with auth; the registry behind it (:5002) and the token server (:5003) are
    # admitted by no NetworkPolicy: only the proxy, in the same pod, reaches them
    pod = deployment["spec"]["template"]["spec"]
    ports = {p["name"]: (c["name"], p["containerPort"]) for c in pod["containers"] for p in c["ports"]}
    assert ports["http"] == ("auth-proxy" if stack == "production" else "registry", 5000)
    admitted = {p["port"] for m in run.manifests() if m["kind"] == "NetworkPolicy"
                for rule in m["spec"].get("ingress", []) for p in rule.get("ports", [])}
    assert admitted == {5000, 5001, 6379}
    # the scrape: the metrics Service targets the registry container's debug port, whatever owns :5000
    assert ports["debug"] == ("registry", 5001)
    metrics = manifest(run, "Service", "docker-registry-metrics")["spec"]
    assert metrics["ports"] == [{"name": "metrics", "port": 5001, "targetPort": "debug", "protocol": "TCP"}]
    assert metrics["type"] == "ClusterIP"
    if stack == "production":  # its stack file turns the ServiceMonitor on
        monitor = manifest(run, "ServiceMonitor", "docker-registry")["spec"]
        assert monitor["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]


def test_no_secret_leaves_the_program_but_the_secret_output():
    run = program("production", pullSecretNamespaces='["apps"]')
    credentials = run.outputs["registryCredentials"]
    key = next(r for r in run.resources if r.type == "tls:index/privateKey:PrivateKey").state["privateKeyPem"]
    for resource in run.resources:
        if resource.type.startswith(("random:", "tls:")):
            continue  # the generators themselves
        if resource.type == "kubernetes:core/v1:Secret":
            assert is_secret_wrapper(resource.inputs["stringData"]) or all(
                is_secret_wrapper(v) or not any(p in str(v) for p in credentials.values())
                for v in resource.inputs["stringData"].values()), resource.name
            continue
        text = json.dumps(resource.inputs)
        assert not [p for p in credentials.values() if p in text], f"{resource.type} {resource.name} holds a password"
        assert key.splitlines()[1] not in text, f"{resource.type} {resource.name} holds the signing key"
    for name, keys in (("auth-token-server", ("auth_config.yml", "token.key")), ("auth-pull-secret-apps", (".dockerconfigjson",))):
        data = next(r for r in run.resources if r.name == name).inputs["stringData"]
        assert is_secret_wrapper(data) or all(is_secret_wrapper(data[k]) for k in keys), name


def checksum(run):
    deployment = manifest(run, "Deployment", "docker-registry")
    return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


def test_users_and_keys_roll_the_pods_and_a_rotation_keeps_the_old_key():
    base = program("production")
    more_users = program("production", authUsers='["admin:admin", "ci:push", "node:pull", "reader:pull", "alice:pull"]')
    rotating = program("production", tokenSigningKeys='["k1", "k2"]')
    switched = program("production", tokenSigningKeys='["k2", "k1"]')
    assert len({checksum(base), checksum(more_users), checksum(rotating), checksum(switched)}) == 4
    assert checksum(program("production")) == checksum(base)

    def urns(run, type_):
        return {r.name: r.urn for r in run.resources if r.type == type_}

    # adding k2 keeps k1's key and certificate (same URNs: nothing replaced), and the registry trusts both
    assert urns(base, "tls:index/privateKey:PrivateKey").items() <= urns(rotating, "tls:index/privateKey:PrivateKey").items()
    assert set(urns(rotating, "tls:index/privateKey:PrivateKey")) == {"auth-signing-key-k1", "auth-signing-key-k2"}
    config = manifest(rotating, "Secret", "docker-registry-config")["stringData"]
    assert config["token-bundle.pem"].count("BEGIN CERTIFICATE") == 2
    assert len(json.loads(config["token-jwks.json"])["keys"]) == 2

    def signer(run):
        token = manifest(run, "Secret", "docker-registry-token")["stringData"]
        cert = x509.load_pem_x509_certificate(token["token.crt"].encode())
        return cert.subject.rfc4514_string()

    assert signer(rotating).endswith("signer k1") and signer(switched).endswith("signer k2")


def test_the_documented_access_matrix_is_the_measured_one():
    """docs/security.md's who-can-do-what table is generated from the ACL roles; the integration test's
    literal tables (measured on 3.1.1 with skopeo, containerd and the API) must say the same."""
    from tests.integration.test_18_token_auth import EXPECTED_API, EXPECTED_CLIENT, OK

    for entry in KEYS_BY_NAME["authUsers"].default:
        name, role = entry.split(":", 1)
        can = auth.role_permissions(role)
        assert {a: EXPECTED_CLIENT[name][a] == OK for a in ("pull", "push", "delete")} == {
            a: can[a] for a in ("pull", "push", "delete")}, name
        assert (EXPECTED_API[name]["catalog"][0] == 200) == can["catalog"], name
    assert set(EXPECTED_CLIENT["anonymous"].values()) == {"refused"}


# --------------------------------------------------------------------------- nodes: the node identity in hosts.toml

PINNED_HUB = '[{"name": "dockerhub", "host": "docker.io", "serviceName": "docker-registry-mirror", "clusterIP": "10.43.0.50"}]'
PRIVATE_FILES = ("registry.neural-hive.local:5000/hosts.toml", "37.60.241.150:30500/hosts.toml")


def configurator_files(run) -> tuple[dict, dict, dict]:
    """(the files Secret's stringData, whether it was a secret, path -> mode on the DaemonSet's volume)."""
    secret = next(r for r in run.resources if r.name == "node-configurator-files")
    daemonset = next(r for r in run.resources if r.name == "node-configurator-daemonset")
    assert not is_secret_wrapper(daemonset.inputs["spec"])  # paths and modes only: readable in a preview
    (desired,) = [v for v in manifest(run, "DaemonSet", "registry-node-configurator")["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == "desired"]
    data = manifest(run, "Secret", "node-configurator-files")["stringData"]
    by_path = {item["key"]: item["path"] for item in desired["secret"]["items"]}
    return ({by_path[k]: v for k, v in data.items()}, is_secret_wrapper(secret.inputs["stringData"]),
            {item["path"]: item["mode"] for item in desired["secret"]["items"]})


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_the_node_configurator_carries_the_node_identity_only_with_auth(stack):
    run = program(stack, nodeConfigurator="on", mirrors=PINNED_HUB)
    files, secret, modes = configurator_files(run)
    assert secret is True  # the files Secret is a Pulumi secret either way
    assert set(files) == {"docker.io/hosts.toml", *PRIVATE_FILES}
    assert "Authorization" not in files["docker.io/hosts.toml"] and modes["docker.io/hosts.toml"] == 0o644
    if stack == "production":
        header = auth.basic_authorization("node", run.outputs["registryCredentials"]["node"])
        for path in PRIVATE_FILES:
            # for `server` and for the [host]: containerd has no other place for credentials in hosts.toml
            assert files[path].count(f'Authorization = "{header}"') == 2, files[path]
            assert modes[path] == 0o600
        other = [p for name, p in run.outputs["registryCredentials"].items() if name != "node"]
        assert not [p for p in other if any(p in text for text in files.values())]  # the node identity only
    else:  # staging is open: nothing to carry
        assert not [path for path, text in files.items() if "Authorization" in text]
        assert set(modes.values()) == {0o644}


def test_render_writes_the_node_identity_redacted_unless_show_secrets(tmp_path):
    from registry_ha import render

    config, secret_keys = load_stack_config("production")
    config["registry-ha:mirrors"] = PINNED_HUB
    settings = settings_for("production", mirrors=PINNED_HUB)
    run = run_program("production", config=config, secret_keys=secret_keys)
    render.write_render(run, tmp_path / "redacted", settings=settings)
    render.write_render(run, tmp_path / "shown", show_secrets=True, settings=settings)
    header = auth.basic_authorization("node", run.outputs["registryCredentials"]["node"])
    for path in PRIVATE_FILES:
        redacted, shown = (tmp_path / d / "nodes/etc/containerd/certs.d" / path for d in ("redacted", "shown"))
        assert redacted.read_text().count('Authorization = "[secret]"') == 2 and header not in redacted.read_text()
        assert shown.read_text().count(f'Authorization = "{header}"') == 2
        assert redacted.stat().st_mode & 0o777 == shown.stat().st_mode & 0o777 == 0o600
    hub = tmp_path / "redacted/nodes/etc/containerd/certs.d/docker.io/hosts.toml"
    assert "Authorization" not in hub.read_text() and hub.stat().st_mode & 0o777 == 0o644
    # an open registry: no header, no note
    open_run = run_program("staging")
    render.write_render(open_run, tmp_path / "open", settings=settings_for("staging"))
    assert "Authorization" not in (tmp_path / "open/nodes/etc/containerd/certs.d" / PRIVATE_FILES[0]).read_text()


def test_render_cli_says_where_the_node_identity_goes(tmp_path):
    import subprocess

    from registry_ha.mock_engine import REPO_ROOT

    result = subprocess.run([str(REPO_ROOT / "scripts/deploy-registry-ha.sh"), "render", "production", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert ("authEnabled: the private registry's hosts.toml carry the node identity's Authorization header (0600), "
            "written as [secret]: put in the real one") in result.stdout
    staging = subprocess.run([str(REPO_ROOT / "scripts/deploy-registry-ha.sh"), "render", "staging", "--out", str(tmp_path / "s")],
                             capture_output=True, text=True, timeout=180)
    assert staging.returncode == 0 and "authEnabled" not in staging.stdout
