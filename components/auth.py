"""Token authentication with roles for the private registry (authEnabled).

Declares the identities (one pulumi-random password per `authUsers` entry; only bcrypt hashes reach
the cluster), the token signing keys and certificates (pulumi-tls, RSA), the token server's Secret
(docker_auth config + the signing key), and a kubernetes.io/dockerconfigjson Secret with the node
identity's credential in each `pullSecretNamespaces` namespace. The registry component mounts the
token server and trusts the certificates (`certificate_bundle`, `jwks`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import pulumi_tls as tls

from registry_ha import auth
from registry_ha.k8s import Names, metadata
from registry_ha.registry_config import config_checksum, dump_config
from registry_ha.settings import Settings

SIGNING_KEY_BITS = 3072
# The registry takes the public key out of the certificate and does not check its dates; rotation is
# by key (tokenSigningKeys), so the certificate may outlive any plan to rotate.
SIGNING_CERT_VALIDITY_HOURS = 10 * 365 * 24


@dataclass
class TokenAuthArgs:
    settings: Settings
    namespace: pulumi.Input[str]


class TokenAuth(pulumi.ComponentResource):
    credentials: pulumi.Output  # secret {user: password}
    node_password: pulumi.Output  # secret
    node_authorization: pulumi.Output  # secret: "Basic ..." of the node identity, for the nodes' hosts.toml
    certificate_bundle: pulumi.Output  # every signing certificate (PEM): the registry's rootcertbundle
    jwks: pulumi.Output  # the same keys under the key id docker_auth sends
    checksum: pulumi.Output  # of the token server's Secret: a change rolls the registry pods

    def __init__(self, name: str, args: TokenAuthArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("registry-ha:auth:TokenAuth", name, None, opts)
        settings = args.settings
        access = settings.access
        if not access.auth_enabled:
            raise ValueError("TokenAuth needs authEnabled")
        names = Names.for_registry(settings, "private")
        child = pulumi.ResourceOptions(parent=self)

        self.passwords = {
            user.name: random.RandomPassword(f"{name}-user-{user.name}", length=32, special=False, opts=child)
            for user in access.users
        }
        users = list(self.passwords)
        self.credentials = pulumi.Output.secret(
            pulumi.Output.all(*[self.passwords[u].result for u in users]).apply(lambda values: dict(zip(users, values)))
        )
        self.node_password = pulumi.Output.secret(self.passwords[access.node_user].result)
        # What nodes' hosts.toml carry as their Authorization header (registry_ha.containerd.node_files).
        self.node_authorization = pulumi.Output.secret(
            self.node_password.apply(lambda password: auth.basic_authorization(access.node_user, password))
        )

        # The first key signs; every key is trusted (a rotation holds two for a while).
        self.signing_keys: dict[str, tls.PrivateKey] = {}
        self.signing_certificates: dict[str, tls.SelfSignedCert] = {}
        for key_name in access.signing_keys:
            key = tls.PrivateKey(f"{name}-signing-key-{key_name}", algorithm="RSA", rsa_bits=SIGNING_KEY_BITS, opts=child)
            self.signing_keys[key_name] = key
            self.signing_certificates[key_name] = tls.SelfSignedCert(
                f"{name}-signing-cert-{key_name}",
                private_key_pem=key.private_key_pem,
                subject=tls.SelfSignedCertSubjectArgs(common_name=f"{auth.issuer(settings)} token signer {key_name}"),
                validity_period_hours=SIGNING_CERT_VALIDITY_HOURS,
                allowed_uses=["digital_signature"],
                opts=child,
            )
        certificates = [self.signing_certificates[k].cert_pem for k in access.signing_keys]
        self.certificate_bundle = pulumi.Output.all(*certificates).apply(auth.certificate_bundle)
        self.jwks = pulumi.Output.all(*[self.signing_keys[k].public_key_pem for k in access.signing_keys]).apply(
            auth.jwks_document
        )

        signer = access.signing_keys[0]
        token_config = pulumi.Output.all(*[self.passwords[u].bcrypt_hash for u in users]).apply(
            lambda hashes: dump_config(auth.token_server_config(settings, dict(zip(users, hashes))))
        )
        secret_data = {
            auth.TOKEN_CONFIG_KEY: pulumi.Output.secret(token_config),
            auth.TOKEN_KEY_KEY: pulumi.Output.secret(self.signing_keys[signer].private_key_pem),
            auth.TOKEN_CERT_KEY: self.signing_certificates[signer].cert_pem,
        }
        self.token_secret = k8s.core.v1.Secret(
            f"{name}-token-server",
            metadata=pulumi.Output.from_input(args.namespace).apply(
                lambda ns: metadata(names.token_secret, ns, names.app, "token-server", settings.stack)
            ),
            type="Opaque",
            string_data=secret_data,
            opts=child,
        )
        # A digest of hashes and a key reveals neither; unsecret so a preview shows the pods will roll.
        self.checksum = pulumi.Output.unsecret(
            pulumi.Output.all(*[secret_data[k] for k in sorted(secret_data)]).apply(
                lambda texts: config_checksum("\n---\n".join(texts))
            )
        )

        # Route (b) for nodes: a pull secret per listed namespace (pods or their ServiceAccount name it).
        dockerconfig = pulumi.Output.secret(
            self.node_password.apply(
                lambda password: auth.dockerconfigjson(auth.registry_addresses(settings), access.node_user, password)
            )
        )
        self.pull_secrets = {
            namespace: k8s.core.v1.Secret(
                f"{name}-pull-secret-{namespace}",
                metadata=metadata(auth.PULL_SECRET_NAME, namespace, names.app, "pull-secret", settings.stack),
                type="kubernetes.io/dockerconfigjson",
                string_data={".dockerconfigjson": dockerconfig},
                opts=child,
            )
            for namespace in access.pull_secret_namespaces
        }
        self.register_outputs({"checksum": self.checksum, "pull_secret_namespaces": list(self.pull_secrets)})
