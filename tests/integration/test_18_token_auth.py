"""18. Token authentication with roles on Distribution 3.1.1: `local up --auth` (the docker_auth token
server, the auth proxy in front of each replica, the program's config for both), one sandbox for the module.

The role matrix is a table: every cell is measured, then the whole measured table is compared with the
expected one, so a change in any cell fails and the message shows the table. Clients: skopeo, containerd
(`ctr --user`, containerd 1.6.20's own resolver and token client) and the registry API itself (status,
the registry's error code and the WWW-Authenticate `error=`). Distribution answers every refusal with 401
UNAUTHORIZED (never 403 DENIED): an identity that may not gets `error="insufficient_scope"`, a bad token
`error="invalid_token"`.

Also: tokens from another issuer (a second, real docker_auth with its own key and issuer, and a token
signed with the sandbox's own key but another issuer) and expired tokens are refused; the realm follows
the address the client used (LB, a replica as the NodePort would reach it, a NodePort Host) and /auth
there is the token server; test-registry-ha.sh and push-with-fallback.sh work with the token server; the
node files `local up --auth` writes (the program's) carry the node identity, which containerd sends to the
token realm only from 2.1 on.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import require_binary, require_token_server
from registry_ha import auth, imagetools
from registry_ha.sandbox import procs, prometheus
from registry_ha.sandbox import token as sandbox_token
from registry_ha.sandbox.core import Sandbox

from .conftest import REPO_ROOT, free_port, free_port_base, replica_addresses
from .oci import build_image, skopeo

pytestmark = pytest.mark.integration

REPO = "demo/app"
IDENTITIES = ("anonymous", "reader", "node", "ci", "admin", "node-wrong-password")
ACTIONS = ("pull", "push", "delete")

OK, REFUSED = "ok", "refused"
EXPECTED_CLIENT = {  # skopeo and containerd: did the operation succeed
    "anonymous": {"pull": REFUSED, "push": REFUSED, "delete": REFUSED},
    "reader": {"pull": OK, "push": REFUSED, "delete": REFUSED},
    "node": {"pull": OK, "push": REFUSED, "delete": REFUSED},
    "ci": {"pull": OK, "push": OK, "delete": REFUSED},
    "admin": {"pull": OK, "push": OK, "delete": OK},
    "node-wrong-password": {"pull": REFUSED, "push": REFUSED, "delete": REFUSED},
}
NO_TOKEN = (401, "UNAUTHORIZED", None)  # no token at all: the realm refused the credentials (or there were none)
SCOPE = (401, "UNAUTHORIZED", "insufficient_scope")  # a valid token without the action
EXPECTED_API = {  # the registry's answer: (status, errors[0].code, WWW-Authenticate error=)
    "anonymous": {"pull": NO_TOKEN, "push": NO_TOKEN, "delete": NO_TOKEN, "catalog": NO_TOKEN},
    "reader": {"pull": (200, None, None), "push": SCOPE, "delete": SCOPE, "catalog": SCOPE},
    "node": {"pull": (200, None, None), "push": SCOPE, "delete": SCOPE, "catalog": SCOPE},
    "ci": {"pull": (200, None, None), "push": (202, None, None), "delete": SCOPE, "catalog": SCOPE},
    "admin": {"pull": (200, None, None), "push": (202, None, None), "delete": (202, None, None), "catalog": (200, None, None)},
    "node-wrong-password": {"pull": NO_TOKEN, "push": NO_TOKEN, "delete": NO_TOKEN, "catalog": NO_TOKEN},
}


@pytest.fixture(scope="module")
def authed(tmp_path_factory, bins):
    require_token_server()
    repo = tmp_path_factory.mktemp("auth-repo")
    # the staging stack with auth turned on (its default identities) and no cache: this module is about the
    # registry; two signing keys, as in the middle of a rotation (k1 signs, both are trusted)
    (repo / "Pulumi.staging.yaml").write_text(yaml.safe_dump({"config": {
        "registry-ha:authEnabled": "true", "registry-ha:mirrors": "[]",
        "registry-ha:tokenSigningKeys": '["k1", "k2"]'}}))
    sb = Sandbox(tmp_path_factory.mktemp("authed"), stack="staging", lb_port=free_port(),
                 port_base=free_port_base(), repo_root=repo)
    try:
        sb.up(out=open(os.devnull, "w"))
        yield sb
    finally:
        sb.down(out=open(os.devnull, "w"))


def password(sb: Sandbox, identity: str) -> str | None:
    if identity == "anonymous":
        return None
    if identity == "node-wrong-password":
        return "not-the-password-of-node"
    return sb.user_passwords()[identity]


def user_of(identity: str) -> str | None:
    return {"anonymous": None, "node-wrong-password": "node"}.get(identity, identity)


def access(sb: Sandbox, identity: str) -> imagetools.RegistryAccess:
    if identity == "anonymous":
        return imagetools.ANONYMOUS
    return imagetools.RegistryAccess(user_of(identity), password(sb, identity))


def authfile(directory: Path, sb: Sandbox, identity: str, address: str) -> list[str]:
    """skopeo's --authfile for `identity` (none for anonymous): a 0600 file, the password off argv."""
    if identity == "anonymous":
        return []
    path = directory / f"auth-{identity}-{address.replace(':', '_')}.json"
    secret = base64.b64encode(f"{user_of(identity)}:{password(sb, identity)}".encode()).decode()
    path.write_text(json.dumps({"auths": {address: {"auth": secret}}}))
    path.chmod(0o600)
    return [f"--authfile={path}"]


@pytest.fixture(scope="module")
def seeded(authed, skopeo_bin, tmp_path_factory):
    """demo/app:v1 pushed by admin, and one image per identity for it to try deleting."""
    work = tmp_path_factory.mktemp("seed")
    image = build_image(work / "layout", "v1", layer_sizes=(16 * 1024, 64 * 1024), seed=b"demo")
    admin = authfile(work, authed, "admin", authed.endpoint)
    result = skopeo(skopeo_bin, "copy", "--dest-tls-verify=false", *admin, image.ref, f"docker://{authed.endpoint}/{REPO}:v1")
    assert result.returncode == 0, result.stderr
    victims = {}
    for identity in IDENTITIES:
        for client in ("skopeo", "api"):
            victim = build_image(work / f"victim-{identity}-{client}", "v1", layer_sizes=(1024,),
                                 seed=f"victim-{identity}-{client}".encode())
            tag = f"delete-me-{identity}-{client}"
            result = skopeo(skopeo_bin, "copy", "--dest-tls-verify=false", *admin, victim.ref,
                            f"docker://{authed.endpoint}/{REPO}:{tag}")
            assert result.returncode == 0, result.stderr
            victims[identity, client] = (tag, victim.manifest_digest)
    return image, victims


def api_answer(status: int, headers: dict, body: bytes) -> tuple:
    try:
        code = (json.loads(body or b"{}").get("errors") or [{}])[0].get("code")
    except ValueError:
        code = None
    challenge = imagetools.bearer_challenge(headers) or {}
    return status, code, challenge.get("error")


# --------------------------------------------------------------------------- the role matrix


def test_role_matrix_with_skopeo(authed, seeded, skopeo_bin, workdir):
    image, victims = seeded
    ep = authed.endpoint
    measured = {}
    for identity in IDENTITIES:
        creds = authfile(workdir, authed, identity, ep)
        pull = skopeo(skopeo_bin, "copy", "--src-tls-verify=false", *creds, f"docker://{ep}/{REPO}:v1",
                      f"oci:{workdir / ('pull-' + identity)}:x")
        push = skopeo(skopeo_bin, "copy", "--dest-tls-verify=false", *creds, image.ref,
                      f"docker://{ep}/{REPO}:pushed-by-{identity}")
        tag, _ = victims[identity, "skopeo"]
        delete = skopeo(skopeo_bin, "delete", "--tls-verify=false", *creds, f"docker://{ep}/{REPO}:{tag}")
        measured[identity] = {action: OK if result.returncode == 0 else REFUSED
                              for action, result in (("pull", pull), ("push", push), ("delete", delete))}
        for action, result in (("pull", pull), ("push", push), ("delete", delete)):
            if result.returncode != 0:  # refused for want of rights, not for anything else
                text = result.stderr.lower()
                assert "unauthorized" in text or "authentication required" in text, (identity, action, result.stderr)
    print("\nskopeo:", json.dumps(measured))
    assert measured == EXPECTED_CLIENT
    # what was refused left nothing behind; what was allowed is there
    for identity in IDENTITIES:
        status, _ = imagetools.manifest_digest(ep, REPO, f"pushed-by-{identity}", access=access(authed, "admin"))
        assert status == (200 if EXPECTED_CLIENT[identity]["push"] == OK else 404), identity
        tag, _ = victims[identity, "skopeo"]
        status, _ = imagetools.manifest_digest(ep, REPO, tag, access=access(authed, "admin"))
        assert status == (404 if EXPECTED_CLIENT[identity]["delete"] == OK else 200), identity


def test_role_matrix_at_the_registry_api(authed, seeded):
    """The registry's own answers, through the token flow a client follows (realm, token, retry)."""
    _, victims = seeded
    base = f"http://{authed.endpoint}/v2/{REPO}"
    measured = {}
    for identity in IDENTITIES:
        who = access(authed, identity)
        _, digest = victims[identity, "api"]
        answers = {
            "pull": imagetools.http_request(f"{base}/manifests/v1", headers={"Accept": imagetools.MANIFEST_ACCEPT}, access=who),
            "push": imagetools.http_request(f"{base}/blobs/uploads/", "POST", access=who),
            "delete": imagetools.http_request(f"{base}/manifests/{digest}", "DELETE", access=who),
            "catalog": imagetools.http_request(f"http://{authed.endpoint}/v2/_catalog", access=who),
        }
        measured[identity] = {action: api_answer(*answer) for action, answer in answers.items()}
    print("\nAPI:", json.dumps(measured))
    assert measured == {identity: {a: tuple(v) for a, v in row.items()} for identity, row in EXPECTED_API.items()}


def test_role_matrix_with_containerd(authed, seeded, containerd):
    """ctr pull/push --user (containerd has no registry delete: the delete column is skopeo's and the API's)."""
    ep = authed.endpoint
    source = f"{ep}/{REPO}:v1"
    measured = {}
    for identity in IDENTITIES:
        user = None if identity == "anonymous" else f"{user_of(identity)}:{password(authed, identity)}"
        containerd.ctr("images", "rm", source)
        pull = containerd.pull(source, user=user)
        if pull.returncode != 0:  # push needs the content locally: fetch it as admin (not measured)
            assert containerd.pull(source, user=f"admin:{password(authed, 'admin')}").returncode == 0
        push = containerd.tag_and_push(f"{ep}/{REPO}:ctr-{identity}", source, user=user)
        measured[identity] = {"pull": OK if pull.returncode == 0 else REFUSED, "push": OK if push.returncode == 0 else REFUSED}
        for action, result in (("pull", pull), ("push", push)):
            if result.returncode != 0:
                text = result.stderr.lower()
                # A refused manifest PUT can surface as the write error: the registry answers 401 before it
                # reads the body containerd is streaming ("read/write on closed pipe"); the tag check below
                # shows it was refused.
                refused = ("401", "unauthorized", "insufficient_scope") + (("closed pipe",) if action == "push" else ())
                assert any(word in text for word in refused), (identity, action, result.stderr)
        status, _ = imagetools.manifest_digest(ep, REPO, f"ctr-{identity}", access=access(authed, "admin"))
        assert status == (200 if push.returncode == 0 else 404), (identity, status)  # what was refused left nothing
    print("\ncontainerd:", json.dumps(measured))
    assert measured == {identity: {a: row[a] for a in ("pull", "push")} for identity, row in EXPECTED_CLIENT.items()}


# --------------------------------------------------------------------------- tokens the registry must refuse


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(key_path: Path, *, issuer: str, audience: str, exp_offset: int = 300, actions=("pull",)) -> str:
    """A JWT as docker_auth makes them: RS256, libtrust key id, the access claim."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"typ": "JWT", "alg": "RS256", "kid": auth.libtrust_key_id(spki)}
    now = int(time.time())
    claims = {"iss": issuer, "sub": "node", "aud": audience, "exp": now + exp_offset, "nbf": now - 10, "iat": now,
              "jti": os.urandom(8).hex(), "access": [{"type": "repository", "name": REPO, "actions": list(actions)}]}
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


def with_token(sb: Sandbox, token: str) -> tuple:
    status, headers, body = imagetools.http_request(
        f"http://{sb.endpoint}/v2/{REPO}/manifests/v1",
        headers={"Accept": imagetools.MANIFEST_ACCEPT, "Authorization": f"Bearer {token}"})
    return api_answer(status, headers, body)


@pytest.fixture(scope="module")
def foreign_token_server(authed, pool, tmp_path_factory):
    """A second, real docker_auth: its own key, its own issuer, a user of its own."""
    import bcrypt

    work = tmp_path_factory.mktemp("foreign")
    key, cert = work / "token.key", work / "token.crt"
    subprocess.run([shutil.which("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=foreign"], check=True, capture_output=True)
    port = free_port()
    config = {
        "server": {"addr": f"127.0.0.1:{port}"},
        "token": {"issuer": "someone-else", "expiration": 900, "certificate": str(cert), "key": str(key)},
        "users": {"node": {"password": bcrypt.hashpw(b"foreign-pass", bcrypt.gensalt(4)).decode()}},
        "acl": [{"match": {"account": "node"}, "actions": ["pull"]}],
    }
    (work / "auth_config.yml").write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{port}"
    pool.start("foreign-token-server", [sandbox_token.binary(), "--logtostderr", str(work / "auth_config.yml")],
               address, ready=lambda: procs.http_status(address, "/") == 200)
    return address, key


def test_tokens_from_another_issuer_or_expired_are_refused(authed, seeded, foreign_token_server):
    issuer, audience = auth.issuer(authed.settings), auth.service(authed.settings)
    key = sandbox_token.signing_key_path(authed)
    assert key.read_text() == (sandbox_token.keys_dir(authed) / "k1.key").read_text()  # the first key signs
    foreign_address, foreign_key = foreign_token_server
    foreign = imagetools.RegistryAccess("node", "foreign-pass")
    foreign_token = imagetools.fetch_token(
        {"realm": f"http://{foreign_address}/auth", "service": audience, "scope": f"repository:{REPO}:pull"}, foreign)
    assert foreign_token, "the foreign token server gave no token"
    invalid = (401, "UNAUTHORIZED", "invalid_token")
    measured = {
        # the control: minted exactly like docker_auth does, so each refusal below is for its one difference
        "sandbox key, right issuer": with_token(authed, mint(key, issuer=issuer, audience=audience)),
        "another docker_auth (its key, its issuer)": with_token(authed, foreign_token),
        "sandbox key, another issuer": with_token(authed, mint(key, issuer="someone-else", audience=audience)),
        "another key, right issuer": with_token(authed, mint(foreign_key, issuer=issuer, audience=audience)),
        # a rotation: the second key (not signing yet) is already trusted
        "second signing key (k2)": with_token(authed, mint(sandbox_token.keys_dir(authed) / "k2.key", issuer=issuer,
                                                           audience=audience)),
        "sandbox key, another audience": with_token(authed, mint(key, issuer=issuer, audience="elsewhere")),
        # the registry allows 60 s of clock skew: 120 s past expiry is expired
        "expired 120 s ago": with_token(authed, mint(key, issuer=issuer, audience=audience, exp_offset=-120)),
        "expired 30 s ago (inside the leeway)": with_token(authed, mint(key, issuer=issuer, audience=audience, exp_offset=-30)),
    }
    print("\ntokens:", json.dumps(measured))
    assert measured == {
        "sandbox key, right issuer": (200, None, None),
        "another docker_auth (its key, its issuer)": invalid,
        "sandbox key, another issuer": invalid,
        "another key, right issuer": invalid,
        "second signing key (k2)": (200, None, None),
        "sandbox key, another audience": invalid,
        "expired 120 s ago": invalid,
        "expired 30 s ago (inside the leeway)": (200, None, None),
    }


# --------------------------------------------------------------------------- the realm, per way in


def test_realm_follows_the_address_the_client_used(authed, seeded, skopeo_bin, workdir):
    """The LB and each replica (what <node>:30500 reaches) announce themselves as the realm, and /auth there is
    the token server; a NodePort Host gets the NodePort realm. Pulling through a replica directly works."""
    for address in [authed.endpoint, *replica_addresses(authed)]:
        status, headers, _ = imagetools.plain_request(address, "GET", "/v2/")
        assert status == 401
        assert imagetools.bearer_challenge(headers)["realm"] == f"http://{address}/auth", address
        status, headers, body = imagetools.plain_request(address, "GET", "/auth")  # docker_auth, no credentials
        assert status == 401 and headers.get("www-authenticate", "").startswith("Basic realm="), (address, headers)
    _, headers, _ = imagetools.plain_request(authed.endpoint, "GET", "/v2/", headers={
        "Host": authed.settings.secondary_address, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"})
    # the proxy decides the scheme and drops forwarded hosts: the realm is the Host the client used
    assert imagetools.bearer_challenge(headers)["realm"] == f"http://{authed.settings.secondary_address}/auth"
    # ...and the URLs the registry hands out (an upload's Location) name the address used, not a forwarded host
    status, headers, _ = imagetools.http_request(f"http://{authed.endpoint}/v2/{REPO}/blobs/uploads/", "POST",
                                                 headers={"X-Forwarded-Host": "evil.example"}, access=access(authed, "ci"))
    location = next(v for k, v in headers.items() if k.lower() == "location")
    assert status == 202 and location.startswith(f"http://{authed.endpoint}/v2/{REPO}/blobs/uploads/"), location
    replica = replica_addresses(authed)[1]
    pulled = skopeo(skopeo_bin, "copy", "--src-tls-verify=false", *authfile(workdir, authed, "node", replica),
                    f"docker://{replica}/{REPO}:v1", f"oci:{workdir / 'via-replica'}:x")
    assert pulled.returncode == 0, pulled.stderr
    # the health check the LB and the kubelet use needs no token
    assert imagetools.plain_request(authed.endpoint, "GET", "/")[0] == 200


# --------------------------------------------------------------------------- monitoring behind the auth proxy


def test_prometheus_scrapes_the_debug_ports_without_a_token(authed, seeded):
    """The auth proxy owns the registry's :5000, not its debug port: a real Prometheus with the program's rules
    (the sandbox's, as the ServiceMonitor scrapes the metrics Service's `debug` target) scrapes every replica
    with no credentials and sees the token-auth traffic; the proxy serves neither /metrics nor /debug/."""
    require_binary("prometheus")
    authed.enable_prometheus()
    authed.start("prometheus")
    try:
        address = authed.components["prometheus"].address

        def scraped() -> list[str]:
            return sorted(t["labels"]["pod"] for t in prometheus.api(address, "targets")["activeTargets"]
                          if t["health"] == "up")

        assert procs.wait_until(lambda: scraped() == sorted(authed.replica_names()), 30, 0.5), scraped()
        # the seeded pushes (admin, through the token flow) are counted by the registries behind the proxy
        pushes = 'sum(registry_http_requests_total{job="docker-registry-metrics",handler="manifest",code="201"})'
        assert procs.wait_until(lambda: float((prometheus.query(address, pushes) or [{"value": [0, "0"]}])[0]["value"][1]) > 0,
                                30, 0.5)
    finally:
        authed.stop("prometheus")
    for where in [authed.endpoint, *replica_addresses(authed)]:
        for path in ("/metrics", "/debug/metrics", "/debug/vars", "/debug/health"):
            status, _, body = imagetools.plain_request(where, "GET", path)
            assert status != 200 and b"registry_http_requests_total" not in body and b"memstats" not in body, (where, path)


# --------------------------------------------------------------------------- the scripts


def run_script(name: str, args: list[str], env: dict) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
            "KUBECONFIG": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
    return subprocess.run([str(REPO_ROOT / "scripts" / name), *args], capture_output=True, text=True,
                          env={**base, **env}, timeout=180)


def checks(result: subprocess.CompletedProcess) -> dict[str, str]:
    return {line.split()[1]: line.split()[0] for line in result.stdout.splitlines()
            if line.split() and line.split()[0] in ("PASS", "FAIL", "SKIP")}


def test_live_test_script_per_identity(authed):
    def run(identity):
        env = {} if identity == "anonymous" else {"REGISTRY_USERNAME": user_of(identity), "REGISTRY_PASSWORD": password(authed, identity)}
        return run_script("test-registry-ha.sh", ["--registry", authed.endpoint, "--no-kubectl"], env)

    admin, ci, node, anonymous = run("admin"), run("ci"), run("node"), run("anonymous")
    for result in (admin, ci, node, anonymous):
        for identity in ("admin", "ci", "node"):
            assert password(authed, identity) not in result.stdout + result.stderr
    assert admin.returncode == 0 and checks(admin) == {"v2": "PASS", "push": "PASS", "pull": "PASS", "pods": "SKIP",
                                                       "metrics": "SKIP", "mirror": "SKIP", "delete": "PASS"}, admin.stdout
    # CI pushes and pulls; it may not delete, by design: the delete check says so and does not fail the run
    assert ci.returncode == 0 and checks(ci)["push"] == "PASS" and checks(ci)["delete"] == "SKIP", ci.stdout
    assert "ci may not delete (401 insufficient_scope)" in ci.stdout
    assert node.returncode == 1 and checks(node)["push"] == "FAIL" and "(auth)" in node.stdout, node.stdout
    assert anonymous.returncode == 1 and checks(anonymous)["v2"] == "PASS" and checks(anonymous)["push"] == "FAIL"


def test_push_with_fallback_through_the_nodeport_realm(authed, workdir):
    """The LB is down: the push falls back to the secondary address and gets its token there."""
    image = imagetools.build_oci_layout(workdir / "image", "v1", (8192,))
    secondary = replica_addresses(authed)[0]  # what <node>:30500 reaches: a pod's auth proxy
    env = {"REGISTRY_PRIMARY": f"127.0.0.1:{free_port()}", "REGISTRY_SECONDARY": secondary, "AWS_REGION": "eu-west-1",
           "REGISTRY_USERNAME": "ci", "REGISTRY_PASSWORD": password(authed, "ci")}
    ok = run_script("push-with-fallback.sh", [str(image.layout), "team/fallback:1.0", "--no-ecr"], env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"to secondary {secondary}/team/fallback:1.0" in ok.stdout
    assert password(authed, "ci") not in ok.stdout + ok.stderr
    assert imagetools.manifest_digest(authed.endpoint, "team/fallback", "1.0", access=access(authed, "reader")) == (
        200, image.manifest_digest)
    refused = run_script("push-with-fallback.sh", [str(image.layout), "team/fallback:2.0", "--no-ecr"],
                         {**env, "REGISTRY_USERNAME": "reader", "REGISTRY_PASSWORD": password(authed, "reader")})
    assert refused.returncode == 1, refused.stdout + refused.stderr


def containerd_version(binary: str) -> tuple[int, int]:
    import re

    text = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    major, minor = re.search(r"\sv?(\d+)\.(\d+)\.\d+", text).groups()
    return int(major), int(minor)


def test_node_files_carry_the_node_identity_which_containerd_sends_to_the_realm_from_2_1(authed, seeded, containerd):
    """Route (a) for nodes: the hosts.toml files `local up --auth` writes (the program's node_files, as render
    and the node configurator write them) carry the node identity's header for the private registry's names,
    0600. containerd sends it to the registry but, before 2.1, not to the token realm: there the pull fails
    and nodes need CRI credentials (a pull secret, or registry.configs) instead. This machine's containerd
    decides the expectation."""
    ep = authed.endpoint
    name = authed.settings.registry_address  # registry.neural-hive.local:5000, dialled through the LB
    header = auth.node_registry_auth(authed.settings, password(authed, "node")).authorization
    for address in (name, authed.settings.secondary_address):
        hosts = authed.certs_dir / address / "hosts.toml"
        assert hosts.stat().st_mode & 0o777 == 0o600, address
        assert hosts.read_text().count(f'Authorization = "{header}"') == 2, hosts.read_text()  # server and host
    # the header itself is right: the realm gives a pull token for the credential it carries
    user, secret = base64.b64decode(header.split()[1]).decode().split(":", 1)
    assert user == "node" and imagetools.fetch_token(
        {"realm": f"http://{ep}/auth", "service": auth.service(authed.settings), "scope": f"repository:{REPO}:pull"},
        imagetools.RegistryAccess(user, secret))
    ref = f"{name}/{REPO}:v1"
    containerd.ctr("images", "rm", ref)
    result = containerd.pull(ref, authed.certs_dir)
    version = containerd_version(containerd.binary)
    print(f"\ncontainerd {version}: the node files' header only -> rc {result.returncode}")
    if version >= auth.CONTAINERD_HEADER_AUTH_MIN_VERSION:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0 and "401" in result.stderr, result.stderr
    # the control: the same files with the credential offered to the realm (as kubelet's pull secret does) pull
    with_credentials = containerd.pull(ref, authed.certs_dir, user=f"node:{password(authed, 'node')}")
    assert with_credentials.returncode == 0, with_credentials.stderr
