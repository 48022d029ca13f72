"""Token authentication with roles, as data: the token server's config and ACL, the registry's trust
in its signing keys, the proxy that serves the token realm next to the registry, and the pull
credential nodes and namespaces get.

How the pieces fit (authEnabled):

    client ──> <LB or NodePort>:5000 ──> auth proxy (haproxy, in each registry pod)
                                           ├─ /auth ──> docker_auth 127.0.0.1:5003 (same pod): checks the
                                           │            password (bcrypt), applies the ACL, signs a JWT
                                           └─ else ───> registry :5002 (same pod): verifies the JWT

The registry announces the realm with `autoredirect`: `<scheme>://<the Host the client used>/auth`, so a
client that came through the LB fetches its token through the LB, and one that came through
`<node>:30500` fetches it through the NodePort. The proxy sets X-Forwarded-Proto (the scheme
Distribution puts in the realm) and drops client-sent forwarding headers.

Keys: docker_auth signs RS256 with a libtrust-style `kid` (the SPKI digest) unless its 1.14+
`disable_legacy_key_id` is set. The registry gets both the certificates (`rootcertbundle`, keyed by
their RFC 7638 thumbprint) and a JWKS with each key under its libtrust id, so the same rendered
config verifies tokens from docker_auth 1.14.0 (the cluster's image) and from the 2020 build the
sandbox runs (the newest the Go module proxy serves): both send the libtrust id, the path tested.
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

if TYPE_CHECKING:
    from registry_ha.settings import AuthUser, Settings

REGISTRY_BACKEND_PORT = 5002  # the registry behind the proxy, in the pod
TOKEN_SERVER_PORT = 5003  # docker_auth, in the pod
REALM_PATH = "/auth"  # docker_auth's token endpoint; the proxy routes exactly this path to it
TOKEN_EXPIRATION_SECONDS = 900  # the registry adds 60 s leeway on expiry
SIGNING_ALGORITHMS = ("RS256",)  # RSA only: docker_auth 1.14.0's ECDSA key id is wrong (see docs/security.md)
ROLE_ACTIONS = {"pull": ["pull"], "push": ["pull", "push"], "admin": ["*"]}
PULL_SECRET_NAME = "registry-pull"
# containerd sends a hosts.toml [header] to the token realm only from 2.1 on; older versions fetch
# the token without it and get 401 (they need CRI credentials: a pull secret or registry.configs).
CONTAINERD_HEADER_AUTH_MIN_VERSION = (2, 1)

# Files: the token server's Secret (<app>-token) and, next to config.yml, the registry's trust.
TOKEN_CONFIG_KEY = "auth_config.yml"
TOKEN_KEY_KEY = "token.key"
TOKEN_CERT_KEY = "token.crt"
BUNDLE_KEY = "token-bundle.pem"
JWKS_KEY = "token-jwks.json"
PROXY_CONFIG_KEY = "auth-proxy.cfg"
TOKEN_SERVER_CONFIG_DIR = "/config"  # the docker_auth image's default config directory
PROXY_CONFIG_DIR = "/etc/auth-proxy"
PROXY_TLS_DIR = "/etc/auth-proxy-tls"  # not under PROXY_CONFIG_DIR: no mount point inside a read-only mount
PROXY_TLS_PEM = "tls.pem"  # haproxy loads the key from tls.pem.key next to it


def role_permissions(role: str) -> dict[str, bool]:
    """What a role may do, read off its ACL actions (the catalog: only rules without a type match)."""
    actions = ROLE_ACTIONS[role]
    return {
        "pull": "*" in actions or "pull" in actions,
        "push": "*" in actions or "push" in actions,
        "delete": "*" in actions or "delete" in actions,
        "catalog": role == "admin",
    }


def issuer(settings: "Settings") -> str:
    return f"registry-ha-{settings.stack}"


def service(settings: "Settings") -> str:
    """The token audience: a name, not an address, shared by every way in."""
    return settings.exposure.hostname


# --------------------------------------------------------------------------- the token server


def acl(users: Sequence["AuthUser"]) -> list[dict]:
    """One rule per user (docker_auth stops at the first match). Users with no rule, and anonymous
    requests, get nothing: docker_auth has no "" user here, so a request without credentials is 401."""
    rules = []
    for user in users:
        match: dict = {"account": user.name}
        if user.role != "admin":
            match["type"] = "repository"  # the catalog (registry:catalog:*) is admin-only
        rules.append({"match": match, "actions": list(ROLE_ACTIONS[user.role]), "comment": f"{user.name}: {user.role}"})
    return rules


def token_server_config(
    settings: "Settings",
    password_hashes: Mapping[str, str],
    listen_addr: str = f":{TOKEN_SERVER_PORT}",
    config_dir: str = TOKEN_SERVER_CONFIG_DIR,
) -> dict:
    """docker_auth's auth_config.yml: static users (bcrypt hashes only) and the ACL."""
    users = settings.access.users
    missing = [user.name for user in users if user.name not in password_hashes]
    if missing:
        raise ValueError(f"no password hash for {', '.join(missing)}")
    for name, hashed in password_hashes.items():
        if not hashed.startswith("$2"):
            raise ValueError(f"password of {name!r}: a bcrypt hash, never the password")
    return {
        "server": {"addr": listen_addr},
        "token": {
            "issuer": issuer(settings),
            "expiration": TOKEN_EXPIRATION_SECONDS,
            # Set explicitly: without them docker_auth would sign with a TLS server key, if it had one.
            "certificate": f"{config_dir}/{TOKEN_CERT_KEY}",
            "key": f"{config_dir}/{TOKEN_KEY_KEY}",
        },
        "users": {user.name: {"password": password_hashes[user.name]} for user in users},
        "acl": acl(users),
    }


# --------------------------------------------------------------------------- the registry's side


def registry_token_auth(settings: "Settings", config_dir: str) -> dict:
    """Distribution's `auth.token` section (3.x)."""
    scheme = "https" if settings.access.tls else "http"
    return {
        "token": {
            # Required even with autoredirect; it names the LB address, the one documented for clients.
            "realm": f"{scheme}://{settings.registry_address}{REALM_PATH}",
            "autoredirect": True,
            "autoredirectpath": REALM_PATH,
            "service": service(settings),
            "issuer": issuer(settings),
            "rootcertbundle": f"{config_dir}/{BUNDLE_KEY}",
            "jwks": f"{config_dir}/{JWKS_KEY}",
            "signingalgorithms": list(SIGNING_ALGORITHMS),
        }
    }


def certificate_bundle(certificates: Sequence[str]) -> str:
    """Every signing certificate, PEM after PEM: the registry trusts each (a rotation holds two)."""
    blocks = [pem.strip() + "\n" for pem in certificates]
    if not blocks or any("-----BEGIN CERTIFICATE-----" not in block for block in blocks):
        raise ValueError("certificate_bundle: one or more PEM certificates")
    return "".join(blocks)


def _der_read(data: bytes, offset: int) -> tuple[int, bytes, int]:
    """(tag, content, offset after it) of one DER element."""
    tag, length = data[offset], data[offset + 1]
    offset += 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(data[offset:offset + size], "big")
        offset += size
    return tag, data[offset:offset + length], offset + length


_RSA_ENCRYPTION = bytes.fromhex("2a864886f70d010101")  # OID 1.2.840.113549.1.1.1


def _pem_body(pem: str, label: str) -> bytes:
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    if begin not in pem or end not in pem:
        raise ValueError(f"not a PEM {label}")
    return base64.b64decode("".join(pem.split(begin, 1)[1].split(end, 1)[0].split()))


def rsa_public_numbers(public_key_pem: str) -> tuple[int, int, bytes]:
    """(n, e, DER SubjectPublicKeyInfo) of a PEM `PUBLIC KEY` (pulumi-tls public_key_pem)."""
    der = _pem_body(public_key_pem, "PUBLIC KEY")
    _, spki, _ = _der_read(der, 0)
    _, algorithm, after = _der_read(spki, 0)
    _, oid, _ = _der_read(algorithm, 0)
    if oid != _RSA_ENCRYPTION:
        raise ValueError("not an RSA public key: the token keys are RSA (RS256)")
    _, bits, _ = _der_read(spki, after)
    _, key, _ = _der_read(bits[1:], 0)  # skip the unused-bits byte
    _, n, after = _der_read(key, 0)
    _, e, _ = _der_read(key, after)
    return int.from_bytes(n, "big"), int.from_bytes(e, "big"), der


def libtrust_key_id(spki_der: bytes) -> str:
    """docker/libtrust's KeyID: base32 of the first 240 bits of sha256(SPKI), in groups of four."""
    text = base64.b32encode(hashlib.sha256(spki_der).digest()[:30]).decode().rstrip("=")
    return ":".join(text[i:i + 4] for i in range(0, len(text), 4))


def _b64url(number: int) -> str:
    raw = number.to_bytes(max(1, (number.bit_length() + 7) // 8), "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwk(public_key_pem: str) -> dict:
    n, e, der = rsa_public_numbers(public_key_pem)
    return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": libtrust_key_id(der), "n": _b64url(n), "e": _b64url(e)}


def jwks_document(public_key_pems: Sequence[str]) -> str:
    """The registry's `jwks` file: every signing key under the key id docker_auth puts in its tokens."""
    if not public_key_pems:
        raise ValueError("jwks_document: at least one public key")
    return json.dumps({"keys": [jwk(pem) for pem in public_key_pems]}, indent=2) + "\n"


# --------------------------------------------------------------------------- the proxy


@dataclass(frozen=True)
class ProxySite:
    """One registry pod's front door: what it binds, and where the realm and everything else go."""

    name: str
    bind: str  # ":5000" in the pod, 127.0.0.1:<port> in the sandbox
    registry: str  # "127.0.0.1:5002", or "unix@<path>"
    token_server: str  # "127.0.0.1:5003"
    tls_pem: Optional[str] = None  # set: TLS ends here (the key sits next to it as <pem>.key)


def proxy_config(sites: Sequence[ProxySite]) -> str:
    """haproxy.cfg of the auth proxy (one site in a pod; the sandbox runs one site per replica)."""
    lines = [
        "global",
        "    maxconn 1024",
        "    ssl-default-bind-options ssl-min-ver TLSv1.2",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout http-request 30s",
        # Inactivity limits: a large layer streams through for as long as it keeps moving.
        "    timeout client 300s",
        "    timeout server 300s",
    ]
    for site in sites:
        bind = f"    bind {site.bind}" + (f" ssl crt {site.tls_pem}" if site.tls_pem else "")
        lines += [
            f"frontend {site.name}",
            bind,
            # The realm is built from Host and X-Forwarded-Proto: the proxy alone says which scheme,
            # and no client-sent forwarding header reaches the registry's URL building.
            "    http-request del-header X-Forwarded-Host",
            "    http-request del-header Forwarded",
            f"    http-request set-header X-Forwarded-Proto {'https' if site.tls_pem else 'http'}",
            f"    use_backend {site.name}-token if {{ path {REALM_PATH} }}",
            f"    default_backend {site.name}-registry",
            f"backend {site.name}-registry",
            f"    server registry {site.registry}",
            f"backend {site.name}-token",
            f"    server token {site.token_server}",
        ]
    return "\n".join(lines) + "\n"


def pod_proxy_site(settings: "Settings") -> ProxySite:
    from registry_ha.settings import REGISTRY_PORT

    return ProxySite(
        name="registry",
        bind=f":{REGISTRY_PORT}",
        registry=f"127.0.0.1:{REGISTRY_BACKEND_PORT}",
        token_server=f"127.0.0.1:{TOKEN_SERVER_PORT}",
        tls_pem=f"{PROXY_TLS_DIR}/{PROXY_TLS_PEM}" if settings.access.tls else None,
    )


# --------------------------------------------------------------------------- credentials for clients


def registry_addresses(settings: "Settings") -> tuple[str, ...]:
    """Where clients reach the private registry: the LB name and the NodePort address."""
    return (settings.registry_address, settings.secondary_address)


def basic_authorization(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def dockerconfigjson(addresses: Sequence[str], username: str, password: str) -> str:
    """`.dockerconfigjson` of a kubernetes.io/dockerconfigjson Secret, the same credential for every address."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return json.dumps(
        {"auths": {address: {"username": username, "password": password, "auth": auth} for address in addresses}},
        sort_keys=True,
    )


@dataclass(frozen=True)
class NodeRegistryAuth:
    """The pull-only credential as node configuration can carry it, per registry address.

    - `hosts_toml_headers`: `[host."<url>".header]` entries for containerd's hosts.toml. containerd
      >= 2.1 also sends them to the token realm, so token auth works; 1.6/1.7/2.0 fetch the token
      without them (401). A header holds the password: write hosts.toml 0600, from a Secret.
    - `cri_auths`: for containerd < 2.1, `[plugins."io.containerd.grpc.v1.cri".registry.configs."<address>".auth]`
      username/password, keyed by the address containerd dials (deprecated there, but it works with
      config_path), or a kubelet image pull secret (`dockerconfigjson`).
    """

    username: str
    password: str
    addresses: tuple[str, ...]

    @property
    def authorization(self) -> str:
        return basic_authorization(self.username, self.password)

    def hosts_toml_headers(self) -> dict[str, dict[str, str]]:
        return {address: {"Authorization": self.authorization} for address in self.addresses}

    def cri_auths(self) -> dict[str, dict[str, str]]:
        return {address: {"username": self.username, "password": self.password} for address in self.addresses}

    def dockerconfigjson(self) -> str:
        return dockerconfigjson(self.addresses, self.username, self.password)


def node_registry_auth(settings: "Settings", password: str) -> Optional[NodeRegistryAuth]:
    """The node identity's credential for every address of the private registry; None when auth is off."""
    if not settings.access.auth_enabled:
        return None
    return NodeRegistryAuth(settings.access.node_user, password, registry_addresses(settings))
