"""Run the Pulumi program under the mock engine and record everything it declares.

Used by the tests and by `deploy-registry-ha.sh render`: no cloud credentials, no Pulumi
CLI. Stack config comes from `Pulumi.<stack>.yaml` exactly as the CLI would pass it
(strings; lists and maps as JSON; `secure:` values replaced by a placeholder, since they
can only be decrypted by the stack's secrets provider).
"""
from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import runpy
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import pulumi
from pulumi.runtime import config as runtime_config
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from registry_ha.iam import to_policy_json
from registry_ha.settings import PROJECT
from registry_ha.stacks import read_stack_file

REPO_ROOT = Path(__file__).resolve().parent.parent
PROGRAM = REPO_ROOT / "__main__.py"
ACCOUNT_ID = "123456789012"
MOCK_LB_IP = "192.0.2.10"  # TEST-NET-1: a documentation address, never a real host
MOCK_SERVICE_CIDR = "198.51.100.0/24"  # TEST-NET-2: where the mocks "allocate" unpinned ClusterIPs
SECRET_SIG = "4dabf18193072939515e22adb298388d"


@dataclass
class Recorded:
    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict
    state: dict = field(default_factory=dict)
    protect: bool = False
    retain_on_delete: bool = False
    dependencies: list[str] = field(default_factory=list)  # URNs: depends_on and the resources whose outputs are inputs


@dataclass
class ProgramRun:
    stack: str
    resources: list[Recorded]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    provider_seconds: float = 0.0  # CPU the mocks spent standing in for providers

    def of_type(self, type_: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str) -> Recorded:
        matches = [r for r in self.resources if r.type == type_ and r.name == name]
        if len(matches) != 1:
            have = sorted(r.name for r in self.of_type(type_))
            raise KeyError(f"{type_} {name!r}: {len(matches)} matches; have {have}")
        return matches[0]

    def component_of(self, resource: Recorded) -> str:
        """Name of the top-level component a resource belongs to."""
        by_urn = {r.urn: r for r in self.resources}
        current = resource
        while current.parent in by_urn:
            current = by_urn[current.parent]
        return current.name

    def manifests(self) -> list[dict]:
        """Kubernetes objects as the API server would receive them (secrets unwrapped)."""
        return [normalize(unwrap_secrets(r.inputs)) for r in self.resources if r.type.startswith("kubernetes:")]


def deterministic(seed: str, length: int = 40) -> str:
    text = ""
    counter = 0
    while len(text) < length:
        text += hashlib.sha256(f"{seed}:{counter}".encode()).hexdigest()
        counter += 1
    return text[:length]


def mock_cluster_ip(name: str) -> str:
    network = ipaddress.ip_network(MOCK_SERVICE_CIDR)
    return str(network[1 + int(hashlib.sha256(name.encode()).hexdigest(), 16) % (network.num_addresses - 2)])


_BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def bcrypt_hash(password: str, seed: str) -> str:
    """What pulumi-random's bcrypt_hash holds (the provider uses $2a$ cost 10; cost 4 here, for speed), with a salt from `seed` so
    renders are reproducible. A real hash when the bcrypt package is installed (the tests check it)."""
    digest = hashlib.sha256(f"bcrypt:{seed}".encode()).digest()
    salt = "".join(_BCRYPT_ALPHABET[b % 64] for b in digest[:21]) + "."  # 22 chars, last one's low bits 0
    try:
        import bcrypt
    except ImportError:  # render on a machine without it: same shape, not verifiable
        return f"$2a$04${salt}" + deterministic(f"bcrypt:{seed}", 31)
    return bcrypt.hashpw(password.encode()[:72], f"$2a$04${salt}".encode()).decode()


def _small_primes(limit: int) -> list[int]:
    sieve = bytearray([1]) * limit
    sieve[:2] = b"\x00\x00"
    for i in range(2, int(limit**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, limit, i)))
    return [i for i in range(3, limit) if sieve[i]]


SMALL_PRIMES = _small_primes(20000)


def _probable_prime(n: int) -> bool:
    """Miller-Rabin with the first 12 prime bases (n has no factor below 20000 when called)."""
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime_from(start: int, window: int = 4096) -> int:
    """The first prime p >= start (start odd) with p-1 prime to 65537: sieve a window of odd numbers by the
    small primes, then Miller-Rabin only the survivors (about 1 in 9)."""
    base = start
    while True:
        alive = bytearray([1]) * window  # alive[k]: base + 2k
        for p in SMALL_PRIMES:
            k = (-base * pow(2, -1, p)) % p
            alive[k::p] = bytes(len(range(k, window, p)))
        for k in range(window):
            n = base + 2 * k
            if alive[k] and (n - 1) % 65537 and _probable_prime(n):
                return n
        base += 2 * window


@functools.lru_cache(maxsize=None)
def mock_rsa_private_key(seed: str, bits: int = 2048):
    """A real RSA key derived from `seed` (pulumi-tls generates one at random; renders stay reproducible).
    A stand-in for tests and renders only: 2048 bits whatever the program asks for, for speed."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    def prime(label: str) -> int:
        raw = b"".join(hashlib.sha512(f"{seed}:{label}:{i}".encode()).digest() for i in range(bits // 1024))
        return _prime_from(int.from_bytes(raw[: bits // 16], "big") | (3 << (bits // 2 - 2)) | 1)

    p, q, e = prime("p"), prime("q"), 65537
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), rsa.RSAPublicNumbers(e, p * q))
    return numbers.private_key()


def mock_tls_private_key(seed: str) -> dict:
    """The outputs of a pulumi-tls PrivateKey (RSA) the program reads."""
    from cryptography.hazmat.primitives import serialization as ser

    key = mock_rsa_private_key(seed)
    return {
        "privateKeyPem": key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.TraditionalOpenSSL, ser.NoEncryption()).decode(),
        "privateKeyPemPkcs8": key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()).decode(),
        "publicKeyPem": key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo).decode(),
    }


def mock_self_signed_cert(inputs: dict) -> dict:
    """A real certificate for the key in `inputs`, with fixed dates and serial (reproducible)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization as ser
    from cryptography.x509.oid import NameOID

    key = ser.load_pem_private_key(inputs["privateKeyPem"].encode(), password=None)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (inputs.get("subject") or {}).get("commonName", "mock"))])
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
    end = start + datetime.timedelta(hours=int(inputs.get("validityPeriodHours", 24)))
    serial = int(hashlib.sha256(inputs["privateKeyPem"].encode()).hexdigest()[:16], 16)
    usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(serial).not_valid_before(start).not_valid_after(end)
        .add_extension(usage, critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return {
        "certPem": cert.public_bytes(ser.Encoding.PEM).decode(),
        "keyAlgorithm": "RSA",
        "validityStartTime": start.isoformat().replace("+00:00", "Z"),
        "validityEndTime": end.isoformat().replace("+00:00", "Z"),
        "readyForRenewal": False,
    }


class RegistryMocks(Mocks):
    """Provider-computed values the program reads, made up deterministically."""

    def __init__(self, region: str = "us-east-1", lb_ip: Optional[str] = MOCK_LB_IP):
        self.region = region
        self.lb_ip = lb_ip
        self.provider_seconds = 0.0  # CPU spent standing in for providers (RSA keys above all), not in the program

    def new_resource(self, args: MockResourceArgs):
        started = time.thread_time()  # the monitor may call from worker threads: their CPU, never a wait
        try:
            return self._new_resource(args)
        finally:
            self.provider_seconds += time.thread_time() - started

    def _new_resource(self, args: MockResourceArgs):
        inputs = dict(args.inputs)
        state = dict(inputs)
        resource_id = f"{args.name}-id"
        typ = args.typ
        if typ == "random:index/randomPassword:RandomPassword":
            length = int(inputs.get("length", 32))
            state["result"] = deterministic(f"password:{args.name}", length)
            state["bcryptHash"] = bcrypt_hash(state["result"], seed=args.name)
        elif typ == "tls:index/privateKey:PrivateKey":
            state.update(mock_tls_private_key(f"tls:{args.name}"))
        elif typ == "tls:index/selfSignedCert:SelfSignedCert":
            state.update(mock_self_signed_cert(unwrap_secrets(inputs)))
        elif typ == "aws:s3/bucket:Bucket":
            bucket = inputs.get("bucket") or f"{inputs.get('bucketPrefix', args.name + '-')}{deterministic(args.name, 8)}"
            resource_id = bucket
            state.update(bucket=bucket, arn=f"arn:aws:s3:::{bucket}", region=self.region)
        elif typ == "aws:iam/user:User":
            name = inputs.get("name", args.name)
            resource_id = name
            state.update(name=name, arn=f"arn:aws:iam::{ACCOUNT_ID}:user{inputs.get('path', '/')}{name}")
        elif typ == "aws:iam/accessKey:AccessKey":
            resource_id = "AKIA" + deterministic(f"key:{args.name}", 16).upper()
            state.update(secret=deterministic(f"secret:{args.name}", 40), status="Active")
        elif typ == "aws:kms/key:Key":
            key_id = deterministic(f"kms:{args.name}", 32)
            resource_id = key_id
            state.update(keyId=key_id, arn=f"arn:aws:kms:{self.region}:{ACCOUNT_ID}:key/{key_id}")
        elif typ == "kubernetes:core/v1:Service":
            spec = inputs.get("spec") or {}
            if spec.get("type") == "LoadBalancer" and self.lb_ip:
                state["status"] = {"loadBalancer": {"ingress": [{"ip": self.lb_ip}]}}
            if not spec.get("clusterIP"):  # the API server allocates one from the Service CIDR
                state["spec"] = {**spec, "clusterIP": mock_cluster_ip(args.name)}
        return resource_id, state

    def call(self, args: MockCallArgs):
        if args.token == "aws:iam/getPolicyDocument:getPolicyDocument":
            statements = [dict(s) for s in args.args.get("statements", [])]
            return {"json": to_policy_json(statements), "id": "policy"}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/mock", "userId": "MOCK"}
        raise NotImplementedError(f"no mock for invoke {args.token}")


class RecordingMonitor(MockMonitor):
    """Remembers each registration's parent, inputs, resource options (protect, retainOnDelete) and
    dependencies, so resources can be grouped by component and their options asserted."""

    def __init__(self, mocks: Mocks):
        super().__init__(mocks)
        self.recorded: list[Recorded] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            from pulumi.runtime import rpc

            inputs = rpc.deserialize_properties(request.object, keep_unknowns=True)
            registration = self.resources.get(response.urn)
            self.recorded.append(
                Recorded(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent,
                    custom=bool(request.custom),
                    inputs=inputs,
                    state=dict(registration.state) if registration else {},
                    protect=bool(request.protect) if request.HasField("protect") else False,
                    retain_on_delete=bool(request.retainOnDelete) if request.HasField("retainOnDelete") else False,
                    dependencies=list(request.dependencies),
                )
            )
        return response


def load_stack_config(stack: str, repo_root: Path = REPO_ROOT) -> tuple[dict[str, str], set[str]]:
    """`config:` of Pulumi.<stack>.yaml as the CLI hands it to the program: (values, secret keys)."""
    return read_stack_file(stack, repo_root)


def run_program(
    stack: str,
    config: Optional[Mapping[str, str]] = None,
    secret_keys: Optional[set[str]] = None,
    mocks: Optional[RegistryMocks] = None,
) -> ProgramRun:
    """Evaluate __main__.py for `stack` under mocks (preview=False) and return what it declared.

    `config`: the full config (defaults to Pulumi.<stack>.yaml); keys as `registry-ha:name`.
    """
    if config is None:
        config, file_secret_keys = load_stack_config(stack)
        secret_keys = (secret_keys or set()) | file_secret_keys
    config = dict(config)
    region = config.get("aws:region", "us-east-1")
    runtime_settings.ROOT.set(None)
    runtime_config.set_all_config(config, sorted(secret_keys or set()))
    mocks = mocks or RegistryMocks(region=region)
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor, logger=_engine_log())
    runtime_settings.SETTINGS.rpc_manager.clear()
    runtime_settings.SETTINGS.outputs.clear()

    exported: dict[str, Any] = {}
    secret_outputs: set[str] = set()

    def evaluate():
        runpy.run_path(str(PROGRAM), run_name="__pulumi_program__")
        root = runtime_settings.get_root_resource()
        for name, value in dict(getattr(root, "outputs", {}) or {}).items():
            output = pulumi.Output.from_input(value)
            exported[name] = _sync_await(output.future())
            if _sync_await(output.is_secret()):
                secret_outputs.add(name)

    _sync_await(run_pulumi_func(evaluate))
    return ProgramRun(stack=stack, resources=monitor.recorded, outputs=exported, secret_outputs=secret_outputs,
                      provider_seconds=mocks.provider_seconds)


def _engine_log() -> logging.Logger:
    """The program's pulumi.log messages, as the CLI shows them: `warning: ...` on stderr (info and debug dropped)."""
    logger = logging.getLogger("registry-ha.program")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        handler.addFilter(lambda record: setattr(record, "levelname", record.levelname.lower()) or True)
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False
    return logger


def is_secret_wrapper(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270"


def unwrap_secrets(value: Any) -> Any:
    if is_secret_wrapper(value):
        return unwrap_secrets(value["value"])
    if isinstance(value, dict):
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v) for v in value]
    return value


def redact_secrets(value: Any, placeholder: str = "[secret]") -> Any:
    if is_secret_wrapper(value):
        inner = value["value"]
        if isinstance(inner, dict):
            return {k: placeholder for k in inner}
        return placeholder
    if isinstance(value, dict):
        return {k: redact_secrets(v, placeholder) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_secrets(v, placeholder) for v in value]
    return value


def normalize(value: Any) -> Any:
    """The wire format turns every number into a float; Kubernetes wants integers back."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value
