"""9. `local up --auth --tls` on a sandbox of its own: anonymous pushes refused, a push identity's push
identical everywhere, roles held over TLS, TLS verified end to end, the scripts with credentials and a CA.

The sandbox: authEnabled with the default identities, tlsSecretName with a sandbox CA made by openssl;
Distribution 3.1.1 x3 behind the auth proxy, which ends TLS and serves the token realm (docker_auth),
haproxy as the LB in TCP passthrough, SeaweedFS, Redis, skopeo.

Measured:
- anonymous push through the LB is refused (skopeo: authentication required; raw: 401 with a Bearer
  challenge whose realm is https://<the LB>/auth) and leaves nothing behind; a wrong password is refused;
- a push identity's push works and pulls back byte-identical through the LB and from every replica;
- roles hold over TLS too: the pull identity ("reader") cannot push;
- GET / (the readiness probe, the LB's health check) answers 200 without credentials over HTTPS;
- skopeo trusting the sandbox CA (--cert-dir) works; skopeo and Python with the system trust store
  fail on the certificate; plain HTTP to the TLS port gets no registry answer; the certificate a
  client sees through the LB is the replicas' own (passthrough);
- the Docker Hub cache stays anonymous plain HTTP;
- test-registry-ha.sh and push-with-fallback.sh with REGISTRY_USERNAME/REGISTRY_PASSWORD and
  --ca-cert pass, without credentials they fail on auth, and the password never appears in output.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import require_token_server
from registry_ha import imagetools
from registry_ha.sandbox.core import Sandbox

from .conftest import REPO_ROOT, free_port, free_port_base, replica_addresses
from .oci import assert_dir_matches, build_image, sha256, skopeo

pytestmark = pytest.mark.integration

USERS = ("admin", "ci", "node", "reader")


@pytest.fixture(scope="module")
def hardened(tmp_path_factory, bins, pool):
    require_token_server()
    # an upstream of its own: test 5 stops the session's upstream
    upstream = pool.plain_registry("upstream-9")
    repo = tmp_path_factory.mktemp("hardened-repo")
    (repo / "Pulumi.staging.yaml").write_text("config:\n  registry-ha:authEnabled: 'true'\n")
    sb = Sandbox(
        tmp_path_factory.mktemp("hardened"),
        stack="staging",
        lb_port=free_port(),
        port_base=free_port_base(),
        upstream=f"http://{upstream.address}",
        repo_root=repo,
        tls=True,
    )
    try:
        sb.up(out=open(os.devnull, "w"))
        yield sb
    finally:
        sb.down(out=open(os.devnull, "w"))


def authfile(tmp: Path, sb: Sandbox, user: str, password: str | None = None, address: str | None = None) -> str:
    """A 0600 skopeo auth file (the password stays off argv, as the scripts do it)."""
    address = address or sb.endpoint
    path = tmp / f"auth-{user}-{address.replace(':', '_')}.json"
    secret = password if password is not None else sb.user_passwords()[user]
    path.write_text(json.dumps({"auths": {address: {"auth": base64.b64encode(f"{user}:{secret}".encode()).decode()}}}))
    path.chmod(0o600)
    return str(path)


def https(sb: Sandbox, address: str, method: str, path: str, user: str | None = None, context=None):
    """One HTTPS request verified against the sandbox CA; with `user`, through the token flow (realm, token)."""
    if context is not None:
        import http.client

        host, _, port = address.rpartition(":")
        conn = http.client.HTTPSConnection(host, int(port), timeout=10, context=context)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()
    access = imagetools.RegistryAccess(user, sb.user_passwords()[user] if user else None, True, str(sb.ca_cert))
    status, headers, body = imagetools.http_request(f"https://{address}{path}", method, timeout=10, access=access)
    return status, {k.lower(): v for k, v in headers.items()}, body


def test_sandbox_runs_both(hardened):
    status = hardened.status()
    assert status["scheme"] == "https" and status["auth_users"] == list(USERS)
    assert all(c["healthy"] for c in status["components"]), status
    config = hardened.registry_config("registry-1")
    assert config["auth"]["token"]["realm"] == "https://registry.neural-hive.local:5000/auth"
    assert config["auth"]["token"]["autoredirect"] is True
    # the auth proxy ends TLS (it routes by path); the registry listens behind it on a socket
    assert "tls" not in config["http"] and config["http"]["net"] == "unix"
    proxy = (hardened.config_dir / "auth-proxy.cfg").read_text()
    assert proxy.count(" ssl crt ") == 3 and proxy.count("set-header X-Forwarded-Proto https") == 3
    assert "auth" not in hardened.registry_config("dockerhub-cache") and "tls" not in hardened.registry_config("dockerhub-cache")["http"]
    token_config = (hardened.config_dir / "token" / "auth_config.yml").read_text()
    assert sorted(yaml.safe_load(token_config)["users"]) == sorted(USERS)
    assert not [p for p in hardened.user_passwords().values() if p in token_config]  # bcrypt hashes only
    for secret_file in ("token/auth_config.yml", "token/token.key"):
        assert (hardened.config_dir / secret_file).stat().st_mode & 0o077 == 0
    assert (hardened.tls_dir / "server.key").stat().st_mode & 0o077 == 0
    assert sorted(p.name for p in hardened.ca_dir.iterdir()) == ["ca.crt"]  # usable as skopeo --cert-dir


def test_anonymous_push_refused_authenticated_push_pulls_back_identical(hardened, skopeo_bin, workdir):
    image = build_image(workdir / "layout", "v1", layer_sizes=(64 * 1024, 512 * 1024))
    cert_dir = f"--dest-cert-dir={hardened.ca_dir}"
    anonymous = skopeo(skopeo_bin, "copy", cert_dir, image.ref, f"docker://{hardened.endpoint}/it/auth:v1")
    assert anonymous.returncode != 0
    assert "authentication required" in anonymous.stderr or "unauthorized" in anonymous.stderr.lower(), anonymous.stderr
    status, headers, _ = https(hardened, hardened.endpoint, "POST", "/v2/it/auth/blobs/uploads/")
    assert status == 401
    assert imagetools.bearer_challenge(headers)["realm"] == f"https://{hardened.endpoint}/auth"
    wrong = skopeo(skopeo_bin, "copy", cert_dir, f"--dest-authfile={authfile(workdir, hardened, 'ci', 'not-the-password')}",
                   image.ref, f"docker://{hardened.endpoint}/it/auth:v1")
    assert wrong.returncode != 0
    # nothing got in: not even with credentials can the tag be found
    assert https(hardened, hardened.endpoint, "GET", "/v2/it/auth/manifests/v1", user="ci")[0] == 404

    pushed = skopeo(skopeo_bin, "copy", cert_dir, f"--dest-authfile={authfile(workdir, hardened, 'ci')}",
                    image.ref, f"docker://{hardened.endpoint}/it/auth:v1")
    assert pushed.returncode == 0, pushed.stderr
    for address in [hardened.endpoint, *replica_addresses(hardened)]:
        dest = workdir / f"pull-{address.replace(':', '_')}"
        pulled = skopeo(skopeo_bin, "copy", f"--src-cert-dir={hardened.ca_dir}",
                        f"--src-authfile={authfile(workdir, hardened, 'ci', address=address)}",
                        f"docker://{address}/it/auth:v1", f"dir:{dest}")
        assert pulled.returncode == 0, (address, pulled.stderr)
        assert_dir_matches(dest, image)
        status, _, body = https(hardened, address, "GET", f"/v2/it/auth/blobs/{image.layer_digests[-1]}", user="ci")
        assert status == 200 and sha256(body) == image.layer_digests[-1]
        assert https(hardened, address, "GET", f"/v2/it/auth/blobs/{image.layer_digests[-1]}")[0] == 401
    anonymous_pull = skopeo(skopeo_bin, "copy", f"--src-cert-dir={hardened.ca_dir}",
                            f"docker://{hardened.endpoint}/it/auth:v1", f"dir:{workdir / 'anon'}")
    assert anonymous_pull.returncode != 0


def test_roles_hold_over_tls_the_pull_identity_cannot_push(hardened, skopeo_bin, workdir):
    image = build_image(workdir / "layout", "v1", layer_sizes=(32 * 1024,))
    result = skopeo(skopeo_bin, "copy", f"--dest-cert-dir={hardened.ca_dir}",
                    f"--dest-authfile={authfile(workdir, hardened, 'reader')}", image.ref,
                    f"docker://{hardened.endpoint}/it/reader-pushed:v1")
    assert result.returncode != 0 and "unauthorized" in result.stderr.lower(), result.stderr


def test_health_check_needs_no_credentials_but_v2_does(hardened):
    for address in [hardened.endpoint, *replica_addresses(hardened)]:
        assert https(hardened, address, "GET", "/")[0] == 200, address
        assert https(hardened, address, "GET", "/v2/")[0] == 401, address
        assert https(hardened, address, "GET", "/v2/", user="reader")[0] == 200, address


def test_clients_that_do_not_trust_the_ca_fail(hardened, skopeo_bin, workdir):
    image = build_image(workdir / "layout", "v1", layer_sizes=(16 * 1024,))
    untrusting = skopeo(skopeo_bin, "copy", f"--dest-authfile={authfile(workdir, hardened, 'ci')}", image.ref,
                        f"docker://{hardened.endpoint}/it/untrusted:v1")
    assert untrusting.returncode != 0
    assert "x509" in untrusting.stderr or "certificate" in untrusting.stderr, untrusting.stderr
    with pytest.raises(ssl.SSLCertVerificationError):
        https(hardened, hardened.endpoint, "GET", "/", context=ssl.create_default_context())
    # what the client sees through the LB is the pods' certificate (the auth proxy's), for 127.0.0.1, from the sandbox CA
    host, _, port = hardened.endpoint.rpartition(":")
    context = ssl.create_default_context(cafile=str(hardened.ca_cert))
    with socket.create_connection((host, int(port)), timeout=5) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
        cert = tls.getpeercert()
        assert ("IP Address", "127.0.0.1") in cert["subjectAltName"]
        assert dict(x[0] for x in cert["issuer"])["commonName"] == "registry-ha sandbox CA"
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    # plain HTTP to the TLS port: the proxy hangs up, no registry API answers
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        imagetools.http_request(f"http://{hardened.endpoint}/v2/", timeout=5)
    # ...and the scripts' probe then tries https (without verification here, as without --tls-verify)
    probe = imagetools.probe_v2(hardened.endpoint, access=imagetools.RegistryAccess("reader", hardened.user_passwords()["reader"]))
    assert probe.ok and probe.scheme == "https", probe


def test_cache_stays_anonymous_plain_http(hardened):
    status, _, _ = imagetools.http_request(f"http://{hardened.mirror_address()}/v2/", timeout=5)
    assert status == 200


# --------------------------------------------------------------------------- the scripts


def script_env(extra: dict) -> dict:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
           "KUBECONFIG": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
    env.update(extra)
    return env


def run_script(name: str, args: list[str], env: dict, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO_ROOT / "scripts" / name), *args], capture_output=True, text=True,
                          env=script_env(env), timeout=120, input=stdin)


def test_live_test_script_with_credentials_and_ca(hardened):
    password = hardened.user_passwords()["admin"]
    creds = {"REGISTRY_USERNAME": "admin", "REGISTRY_PASSWORD": password}
    ok = run_script("test-registry-ha.sh", ["--registry", hardened.endpoint, "--ca-cert", str(hardened.ca_cert)], creds)
    output = ok.stdout + ok.stderr
    assert ok.returncode == 0, output
    assert [l.split()[1] for l in ok.stdout.splitlines() if l.startswith("PASS ")] == ["v2", "push", "pull", "delete"]
    assert "https://" in output and "user admin" in output
    assert password not in output
    # the same through --password-stdin
    stdin = run_script("test-registry-ha.sh", ["--registry", hardened.endpoint, "--ca-cert", str(hardened.ca_cert),
                                               "--username", "admin", "--password-stdin"], {}, stdin=password + "\n")
    assert stdin.returncode == 0, stdin.stdout + stdin.stderr
    # no credentials: /v2/ answers 401 (that is a registry), the push fails on auth
    anonymous = run_script("test-registry-ha.sh", ["--registry", hardened.endpoint, "--ca-cert", str(hardened.ca_cert)], {})
    assert anonymous.returncode == 1
    assert [l for l in anonymous.stdout.splitlines() if l.startswith("FAIL  push") and "(auth)" in l], anonymous.stdout
    # a wrong password: the v2 check says the credentials were rejected, and does not print them
    wrong = run_script("test-registry-ha.sh", ["--registry", hardened.endpoint, "--ca-cert", str(hardened.ca_cert)],
                       {"REGISTRY_USERNAME": "admin", "REGISTRY_PASSWORD": "wrong-password-1234"})
    assert wrong.returncode == 1 and "credentials of user admin were rejected" in wrong.stdout
    assert "wrong-password-1234" not in wrong.stdout + wrong.stderr
    # verification on without the CA: the system store does not know it
    untrusted = run_script("test-registry-ha.sh", ["--registry", hardened.endpoint, "--tls-verify"], creds)
    assert untrusted.returncode == 1
    assert [l for l in untrusted.stdout.splitlines() if l.startswith("FAIL  v2") and "tls" in l], untrusted.stdout


def test_push_with_fallback_with_credentials_and_ca(hardened, workdir):
    image = imagetools.build_oci_layout(workdir / "image", "v1", (8192, 65536))
    password = hardened.user_passwords()["ci"]
    dead = f"127.0.0.1:{free_port()}"
    env = {"REGISTRY_PRIMARY": hardened.endpoint, "REGISTRY_SECONDARY": dead, "AWS_REGION": "eu-west-1"}
    anonymous = run_script("push-with-fallback.sh", [str(image.layout), "team/hardened:1.0", "--no-ecr",
                                                     "--ca-cert", str(hardened.ca_cert)], env)
    assert anonymous.returncode == 1, anonymous.stdout + anonymous.stderr
    assert "primary" in anonymous.stderr and "skipped (auth" in anonymous.stderr
    ok = run_script("push-with-fallback.sh", [str(image.layout), "team/hardened:1.0", "--no-ecr",
                                              "--ca-cert", str(hardened.ca_cert)],
                    {**env, "REGISTRY_USERNAME": "ci", "REGISTRY_PASSWORD": password})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"to primary {hardened.endpoint}/team/hardened:1.0 (https push" in ok.stdout
    assert password not in ok.stdout + ok.stderr
    access = imagetools.RegistryAccess("ci", password, True, str(hardened.ca_cert))
    assert imagetools.manifest_digest(hardened.endpoint, "team/hardened", "1.0", "https", access=access) == (
        200, image.manifest_digest)
