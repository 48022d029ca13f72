"""2. A chunked upload whose POST, PATCHes and PUT go to different replicas works with the shared
http.secret, and fails with BLOB_UPLOAD_INVALID when the replicas have different secrets (control)."""
from __future__ import annotations

import dataclasses
import os
import secrets

import pytest

from registry_ha.registry_config import build_registry_config, dump_config
from registry_ha.sandbox import procs

from .conftest import free_port, replica_addresses
from .oci import UploadFailed, chunked_upload, get_blob, sha256

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "size,chunk",
    [
        (512 * 1024, 512 * 1024),  # POST r1, PATCH r2, PUT r3: every request on a different replica
        (3 * 1024 * 1024 + 17, 1024 * 1024),  # 4 PATCHes rotating over the replicas, parts under S3's 5 MiB minimum
    ],
)
def test_upload_across_replicas_with_shared_secret(any_sandbox, size, chunk):
    sandbox = any_sandbox
    replicas = replica_addresses(sandbox)
    blob = os.urandom(size)
    seen = chunked_upload(replicas, "it/cross", blob, chunk)
    # consecutive requests of the upload never hit the same replica
    hosts = [s.split()[1] for s in seen]
    assert all(a != b for a, b in zip(hosts, hosts[1:])), seen
    for address in [*replicas, sandbox.endpoint]:
        status, _, body = get_blob(address, "it/cross", sha256(blob))
        assert status == 200 and sha256(body) == sha256(blob), address


@pytest.fixture
def replicas_with_own_secrets(sandbox, pool, bins):
    """Three more private replicas on the same S3 and Redis, rendered by the same builder,
    differing only in http.secret (what per-pod random secrets would give)."""
    addresses = []
    base = sandbox.credentials()
    for i in range(3):
        listen, debug = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        creds = dataclasses.replace(base, http_secret=secrets.token_urlsafe(32))
        config = build_registry_config(sandbox.settings, "private", sandbox.endpoints(listen, debug), creds)
        path = pool.root / f"own-secret-{i}-{listen.rsplit(':', 1)[1]}.yml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(dump_config(config))
        server = pool.start(
            f"own-secret-{i}",
            [bins["registry"], "serve", str(path)],
            listen,
            ready=lambda listen=listen: procs.http_status(listen, "/") == 200,
        )
        addresses.append(server)
    yield [s.address for s in addresses]
    for server in addresses:
        server.stop()


def test_control_different_secrets_fail_blob_upload_invalid(replicas_with_own_secrets):
    replicas = replicas_with_own_secrets
    blob = os.urandom(512 * 1024)
    # the control's replicas work on their own: the whole upload on one replica succeeds
    chunked_upload([replicas[0]], "it/control", blob, 256 * 1024)
    # ... and fail as soon as the upload crosses replicas: the _state token does not verify
    with pytest.raises(UploadFailed) as failure:
        chunked_upload(replicas, "it/control", os.urandom(512 * 1024), 512 * 1024)
    assert failure.value.step.startswith("PATCH") and failure.value.status == 404
    assert b"BLOB_UPLOAD_INVALID" in failure.value.body
