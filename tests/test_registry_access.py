"""Credentials and TLS trust for test-registry-ha.sh and push-with-fallback.sh (registry_ha.imagetools).

Measured: where the password may come from (environment or stdin, never argv), one-line usage errors
that never repeat a password, a CA file that must exist and be PEM, the 0600 auth file skopeo gets and
its removal, and that `repr` of the access object hides the password. The live behaviour against a
registry with auth and TLS is in tests/integration/test_9_auth_tls.py.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import pytest

from registry_ha import imagetools, live_test, push_fallback
from registry_ha.imagetools import RegistryAccess, UsageError, access_from

REPO_ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cr3t-Pa55word"


@pytest.fixture
def ca_file(tmp_path):
    """A real CA certificate made by openssl (skips when openssl is missing)."""
    from conftest import require_binary

    openssl = require_binary("openssl")
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(tmp_path / "ca.key"), "-out", str(tmp_path / "ca.pem"), "-days", "1",
                    "-subj", "/CN=test ca"], check=True, capture_output=True)
    return tmp_path / "ca.pem"


def test_default_is_anonymous_without_verification():
    access = access_from({})
    assert access == RegistryAccess() and access.authorization() is None and not access.tls_verify


def test_credentials_from_the_environment_or_stdin():
    env = {"REGISTRY_USERNAME": "ci", "REGISTRY_PASSWORD": SECRET}
    access = access_from(env)
    assert access.username == "ci" and access.password == SECRET
    assert access.authorization().startswith("Basic ")
    assert SECRET not in repr(access) and SECRET not in access.describe()
    assert access_from({}, "ops", SECRET).username == "ops"  # --username + --password-stdin


@pytest.mark.parametrize(
    "env, username, expected",
    [
        ({"REGISTRY_USERNAME": "ci"}, None, "REGISTRY_PASSWORD: required with a user name (or pipe it to --password-stdin)"),
        ({"REGISTRY_PASSWORD": SECRET}, None, "REGISTRY_USERNAME/--username: required when a password is given"),
        ({"REGISTRY_PASSWORD": SECRET}, "ci:push", "REGISTRY_USERNAME/--username: a user name without ':' or spaces (got 'ci:push')"),
        ({}, None, None),
    ],
)
def test_bad_credentials_are_one_line_without_the_password(env, username, expected):
    if expected is None:
        assert access_from(env, username) == RegistryAccess()
        return
    with pytest.raises(UsageError) as error:
        access_from(env, username)
    assert str(error.value) == expected and SECRET not in str(error.value)


def test_ca_cert_must_be_a_pem_file_and_turns_verification_on(tmp_path, ca_file):
    with pytest.raises(UsageError, match=r"^--ca-cert/REGISTRY_CA_CERT: a PEM CA certificate file \(got '/nonexistent/ca.pem': no such file\)$"):
        access_from({}, ca_cert="/nonexistent/ca.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(UsageError, match="not PEM certificates"):
        access_from({"REGISTRY_CA_CERT": str(junk)})
    access = access_from({"REGISTRY_CA_CERT": str(ca_file)})
    assert access.tls_verify and access.ca_cert == str(ca_file.resolve())
    assert access.ssl_context().verify_mode.name == "CERT_REQUIRED"


def test_skopeo_gets_a_private_auth_file_and_a_ca_only_cert_dir(ca_file):
    access = RegistryAccess("ci", SECRET, True, str(ca_file))
    with imagetools.skopeo_access(access, "registry.example:5000") as opts:
        authfile, cert_dir = Path(opts["authfile"]), Path(opts["cert_dir"])
        assert authfile.stat().st_mode & 0o777 == 0o600
        assert authfile.parent.stat().st_mode & 0o077 == 0
        auths = json.loads(authfile.read_text())["auths"]
        assert list(auths) == ["registry.example:5000"]
        assert sorted(p.name for p in cert_dir.iterdir()) == ["ca.crt"]
        assert opts["tls_verify"] is True
    assert not authfile.exists() and not cert_dir.exists()
    with imagetools.skopeo_access(imagetools.ANONYMOUS, "r:5000") as opts:
        assert opts == {"tls_verify": False}


@pytest.mark.parametrize("script", ["test-registry-ha.sh", "push-with-fallback.sh"])
@pytest.mark.parametrize(
    "env, extra, expected",
    [
        ({"REGISTRY_USERNAME": "ci"}, [], "error: REGISTRY_PASSWORD: required with a user name (or pipe it to --password-stdin)"),
        ({"REGISTRY_PASSWORD": SECRET}, [], "error: REGISTRY_USERNAME/--username: required when a password is given"),
        ({}, ["--ca-cert", "/nonexistent/ca.pem"], "error: --ca-cert/REGISTRY_CA_CERT: a PEM CA certificate file (got '/nonexistent/ca.pem': no such file)"),
    ],
)
def test_scripts_refuse_bad_access_settings_in_one_line(script, env, extra, expected, tmp_path):
    args = ["--registry", "127.0.0.1:5000"] if script == "test-registry-ha.sh" else [str(tmp_path), "team/app:1.0"]
    full_env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env}
    proc = subprocess.run([str(REPO_ROOT / "scripts" / script), *args, *extra], capture_output=True, text=True,
                          env=full_env, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip() == expected
    assert SECRET not in proc.stdout + proc.stderr


def test_password_is_not_a_command_line_option():
    for module in (live_test, push_fallback):
        base = ["--registry", "r:5000"] if module is live_test else ["src", "team/app:1.0"]
        with pytest.raises(SystemExit):
            module.parse_args([*base, "--password", SECRET])


def test_password_stdin_reads_one_line():
    parser_args = live_test.argparse.Namespace(username="ci", password_stdin=True, tls_verify=False, ca_cert=None)
    access = imagetools.access_from_args(parser_args, {}, stdin=io.StringIO(SECRET + "\n"))
    assert (access.username, access.password) == ("ci", SECRET)


def test_bearer_challenge_parsing():
    headers = {"Www-Authenticate": 'Bearer realm="http://10.0.0.5:30500/auth",service="registry.neural-hive.local",'
                                   'scope="repository:team/app:pull,push",error="insufficient_scope"'}
    assert imagetools.bearer_challenge(headers) == {
        "realm": "http://10.0.0.5:30500/auth", "service": "registry.neural-hive.local",
        "scope": "repository:team/app:pull,push", "error": "insufficient_scope"}
    assert imagetools.bearer_challenge({"WWW-Authenticate": 'Basic realm="registry-ha"'}) is None
    assert imagetools.bearer_challenge({}) is None


def test_no_credentials_to_a_plain_http_realm_when_tls_is_verified():
    """With --tls-verify the password never goes to an http:// realm (it would cross the network in clear),
    nor to something that is not a URL: no request is made at all."""
    access = RegistryAccess("ci", SECRET, tls_verify=True)
    assert imagetools.fetch_token({"realm": "http://127.0.0.1:1/auth"}, access) is None
    assert imagetools.fetch_token({"realm": "file:///etc/passwd"}, RegistryAccess("ci", SECRET)) is None
