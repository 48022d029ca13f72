"""Hostile and bad stack configuration: each stops the program before a single resource is
registered, with one line that names the key and says what is allowed (a pulumi.RunError, which
the Pulumi CLI prints without a traceback). The same through the `render` command: exit 2, one
line on stderr, no "Traceback".
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pulumi
import pytest

from registry_ha import mock_engine
from registry_ha.mock_engine import is_secret_wrapper, load_stack_config, run_program, unwrap_secrets
from registry_ha.settings import SettingsError
from registry_ha.stacks import SECURE_PLACEHOLDER

from conftest import REPO_ROOT

S = "registry-ha:"

# (id, stack, config changes on top of Pulumi.<stack>.yaml, secret keys added, exact expected message)
BAD_CONFIGS = [
    # wrong types
    ("replicas-word", "staging", {"replicas": "three"}, (), "registry-ha:replicas: an integer (got 'three')"),
    ("replicas-float", "staging", {"replicas": "3.0"}, (), "registry-ha:replicas: an integer (got '3.0')"),
    ("nodeport-bool", "staging", {"nodePort": "true"}, (), "registry-ha:nodePort: an integer (got 'true')"),
    ("zone-spread-yes", "production", {"zoneSpread": "yes"}, (), "registry-ha:zoneSpread: true or false (got 'yes')"),
    ("cidrs-not-a-list", "staging", {"clientCidrs": "10.0.0.0/8"}, (),
     "registry-ha:clientCidrs: a list of strings (JSON or YAML list) (got '10.0.0.0/8')"),
    ("cidrs-list-of-numbers", "staging", {"clientCidrs": "[10, 172]"}, (), "registry-ha:clientCidrs: a list of strings (got '[10, 172]')"),
    # out of range
    ("replicas-zero", "staging", {"replicas": "0"}, (), "registry-ha:replicas: an integer from 1 to 50 (got 0)"),
    ("replicas-huge", "production", {"replicas": "5000"}, (), "registry-ha:replicas: an integer from 1 to 50 (got 5000)"),
    ("prestop-negative", "staging", {"preStopSeconds": "-1"}, (), "registry-ha:preStopSeconds: an integer from 0 to 120 (got -1)"),
    ("nodeport-80", "staging", {"nodePort": "80"}, (), "registry-ha:nodePort: an integer from 30000 to 32767 (got 80)"),
    ("redis-maxmemory-zero", "staging", {"redisMaxMemory": "0"}, (),
     "registry-ha:redisMaxMemory: a Redis size above 0 and below redisMemoryLimit (256Mi) (got '0')"),
    ("redis-maxmemory-over-limit", "production", {"redisMaxMemory": "1gb"}, (),
     "registry-ha:redisMaxMemory: a Redis size above 0 and below redisMemoryLimit (384Mi) (got '1gb')"),
    ("memory-request-over-limit", "staging", {"registryMemoryRequest": "2Gi"}, (),
     "registry-ha:registryMemoryRequest: at most registryMemoryLimit (512Mi) (got '2Gi')"),
    ("redis-timeout-zero", "staging", {"redisTimeout": "0s"}, (), "registry-ha:redisTimeout: a Go duration above 0 such as 50ms (got '0s')"),
    ("purge-age-minutes", "staging", {"uploadPurgeAge": "5m"}, (), "registry-ha:uploadPurgeAge: a duration of at least 1h such as 168h (got '5m')"),
    # unknown enum values
    ("anti-affinity-soft", "production", {"antiAffinity": "soft"}, (), "registry-ha:antiAffinity: one of required, preferred (got 'soft')"),
    ("log-level-trace", "staging", {"logLevel": "trace"}, (), "registry-ha:logLevel: one of error, warn, info, debug (got 'trace')"),
    ("encryption-aes", "staging", {"encryption": "aes"}, (), "registry-ha:encryption: one of sse-s3, sse-kms (got 'aes')"),
    ("lb-provider-do", "staging", {"loadBalancerProvider": "digitalocean"}, (),
     "registry-ha:loadBalancerProvider: one of aws, gcp, azure, metallb, none (got 'digitalocean')"),
    ("schema-v4", "staging", {"configSchema": "v4"}, (), "registry-ha:configSchema: one of v2, v3 (got 'v4')"),
    ("schema-contradicts-tag", "staging", {"configSchema": "v2"}, (),
     "registry-ha:configSchema: v3 for image registry:3.1.1, or unset (the tag tells) (got 'v2')"),
    # malformed hostnames and addresses
    ("hostname-underscore", "staging", {"hostname": "registry_ha.local"}, (),
     "registry-ha:hostname: a DNS hostname such as registry.neural-hive.local (got 'registry_ha.local')"),
    ("hostname-leading-dash", "staging", {"hostname": "-registry.local"}, (),
     "registry-ha:hostname: a DNS hostname such as registry.neural-hive.local (got '-registry.local')"),
    ("hostname-ip", "staging", {"hostname": "10.0.0.5"}, (),
     "registry-ha:hostname: a DNS hostname such as registry.neural-hive.local (got '10.0.0.5')"),
    ("hostname-injection", "staging", {"hostname": "registry.local\n  evil: true"}, (),
     "registry-ha:hostname: a DNS hostname such as registry.neural-hive.local (got 'registry.local\\n  evil: true')"),
    ("node-address-unspecified", "staging", {"nodeAddress": "0.0.0.0"}, (),
     "registry-ha:nodeAddress: the address of a node clients can reach (not 0.0.0.0, loopback or multicast) (got '0.0.0.0')"),
    ("lb-ip-public", "staging", {"loadBalancerIP": "8.8.8.8"}, (), "registry-ha:loadBalancerIP: a private (internal) IP address (got '8.8.8.8')"),
    ("cidr-host-bits", "staging", {"clientCidrs": '["10.0.0.1/8"]'}, (), "registry-ha:clientCidrs: CIDR blocks such as 10.0.0.0/8 (got '10.0.0.1/8')"),
    ("aws-region", "staging", {"aws:region": "mars-1"}, (), "aws:region: an AWS region such as us-east-1 (got 'mars-1')"),
    ("s3-endpoint-ftp", "staging", {"s3Endpoint": "ftp://minio:9000"}, (),
     "registry-ha:s3Endpoint: an http(s) URL such as https://minio.internal:9000 (got 'ftp://minio:9000')"),
    # bucket names S3 rejects
    ("bucket-uppercase", "staging", {"bucketName": "My_Bucket"}, (),
     "registry-ha:bucketName: an S3 bucket name: 3-63 characters of a-z, 0-9, '.', '-', starting and ending with a letter or digit (got 'My_Bucket')"),
    ("bucket-ip", "staging", {"bucketName": "192.168.1.1"}, (),
     "registry-ha:bucketName: an S3 bucket name: not formatted as an IP address (got '192.168.1.1')"),
    ("bucket-xn", "staging", {"bucketName": "xn--registry"}, (), "registry-ha:bucketName: an S3 bucket name: must not start with 'xn--' (got 'xn--registry')"),
    ("bucket-dots", "production", {"bucketName": "reg..istry"}, (),
     "registry-ha:bucketName: an S3 bucket name: no adjacent periods or period next to a hyphen (got 'reg..istry')"),
    ("bucket-s3alias", "staging", {"bucketName": "registry-s3alias"}, (),
     "registry-ha:bucketName: an S3 bucket name: must not end with '-s3alias' (got 'registry-s3alias')"),
    ("bucket-too-long", "staging", {"bucketName": "a" * 64}, (),
     "registry-ha:bucketName: an S3 bucket name: 3-63 characters of a-z, 0-9, '.', '-', starting and ending with a letter or digit (got 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa')"),
    # nodePort collisions
    # token auth: keys without auth, bad users and roles, the node identity, keys, namespaces, 2.8
    ("auth-users-without-auth", "staging", {"authUsers": '["ci:push"]'}, (), "registry-ha:authUsers: only with authEnabled: true (got ['ci:push'])"),
    ("pull-secrets-without-auth", "staging", {"pullSecretNamespaces": '["apps"]'}, (),
     "registry-ha:pullSecretNamespaces: only with authEnabled: true (got ['apps'])"),
    ("signing-keys-without-auth", "staging", {"tokenSigningKeys": '["k2"]'}, (),
     "registry-ha:tokenSigningKeys: only with authEnabled: true (got ['k2'])"),
    ("auth-no-users", "production", {"authUsers": "[]"}, (),
     "registry-ha:authUsers: at least one name:role entry when authEnabled is true (got [])"),
    ("auth-user-without-role", "production", {"authUsers": '["ci"]'}, (),
     "registry-ha:authUsers: name:role entries with role pull, push, admin, such as ci:push (got 'ci')"),
    ("auth-user-unknown-role", "production", {"authUsers": '["ci:delete"]'}, (),
     "registry-ha:authUsers: name:role entries with role pull, push, admin, such as ci:push (got 'ci:delete')"),
    ("auth-user-bad-name", "production", {"authUsers": '["CI:push"]'}, (),
     "registry-ha:authUsers: user names of a-z, 0-9, '.', '_', '-', at most 63, starting and ending with a letter or digit (got 'CI:push')"),
    ("auth-duplicate-user", "production", {"authUsers": '["ci:push", "ci:pull"]'}, (),
     "registry-ha:authUsers: distinct user names (got 'ci')"),
    ("auth-too-many-users", "production", {"authUsers": json.dumps([f"u{i}:pull" for i in range(21)])}, (),
     "registry-ha:authUsers: at most 20 users (got " + repr(repr([f"u{i}:pull" for i in range(21)])[:77] + "...") + ")"),
    ("node-user-no-pull-users", "production", {"authUsers": '["admin:admin", "ci:push"]'}, (),
     "registry-ha:nodeUser: a user of role pull in authUsers (there is none) (got 'node')"),
    ("node-user-may-push", "production", {"nodeUser": "ci"}, (),
     "registry-ha:nodeUser: a user of role pull in authUsers (node, reader) (got 'ci')"),
    ("node-user-unknown", "production", {"nodeUser": "kubelet"}, (),
     "registry-ha:nodeUser: a user of role pull in authUsers (node, reader) (got 'kubelet')"),
    ("signing-keys-none", "production", {"tokenSigningKeys": "[]"}, (),
     "registry-ha:tokenSigningKeys: 1 to 3 key names (the first signs; during a rotation, two) (got [])"),
    ("signing-keys-repeated", "production", {"tokenSigningKeys": '["k1", "k1"]'}, (),
     "registry-ha:tokenSigningKeys: distinct key names (got 'k1')"),
    ("pull-secret-namespace-bad", "production", {"pullSecretNamespaces": '["Apps"]'}, (),
     "registry-ha:pullSecretNamespaces: namespace names (DNS labels) (got 'Apps')"),
    ("token-server-image-latest", "production", {"tokenServerImage": "cesanta/docker_auth:latest"}, (),
     "registry-ha:tokenServerImage: an image pinned to a tag other than latest, or a digest (got 'cesanta/docker_auth:latest')"),
    ("auth-on-2.8", "production", {"image": "registry:2.8.3"}, (),
     "registry-ha:authEnabled: false with a Distribution 2.8 image (token auth needs 3.x) (got True)"),
    ("auth-enabled-word", "staging", {"authEnabled": "on"}, (), "registry-ha:authEnabled: true or false (got 'on')"),
    ("tls-secret-uppercase", "staging", {"tlsSecretName": "Registry_TLS"}, (),
     "registry-ha:tlsSecretName: a Secret name: lowercase letters, digits, '-' and '.', at most 253 (got 'Registry_TLS')"),
    ("tls-secret-is-the-config", "production", {"tlsSecretName": "docker-registry-config"}, (),
     "registry-ha:tlsSecretName: a kubernetes.io/tls Secret of its own, not one the program manages "
     "(docker-registry-config, docker-registry-mirror-config, docker-registry-token, registry-redis-config) (got 'docker-registry-config')"),
    # monitoring: needs the ServiceMonitor's scrape; thresholds only with the rule; bad thresholds
    ("rule-without-service-monitor", "staging", {"prometheusRule": "true"}, (),
     "registry-ha:prometheusRule: true only with serviceMonitor: true (it reads what the ServiceMonitor scrapes) (got True)"),
    ("dashboard-without-service-monitor", "production", {"serviceMonitor": "false", "prometheusRule": "false", "grafanaDashboard": "true"}, (),
     "registry-ha:grafanaDashboard: true only with serviceMonitor: true (it reads what the ServiceMonitor scrapes) (got True)"),
    ("threshold-without-rule", "staging", {"alertRestarts": "5"}, (), "registry-ha:alertRestarts: only with prometheusRule: true (got 5)"),
    ("latency-fraction", "production", {"alertManifestP99": "2.5s"}, (),
     "registry-ha:alertManifestP99: a duration from 50ms to 60s such as 1s or 2500ms (got '2.5s')"),
    ("latency-too-small", "production", {"alertStorageP99": "1ms"}, (),
     "registry-ha:alertStorageP99: a duration from 50ms to 60s such as 1s or 2500ms (got '1ms')"),
    ("error-percent-zero", "production", {"alert5xxPercent": "0"}, (), "registry-ha:alert5xxPercent: an integer from 1 to 100 (got 0)"),
    ("runbook-with-fragment", "production", {"runbookUrl": "https://git.example.com/docs/monitoring.md#top"}, (),
     "registry-ha:runbookUrl: a URL or path without a #fragment (the alert name is appended) (got 'https://git.example.com/docs/monitoring.md#top')"),
    ("runbook-not-a-url", "production", {"runbookUrl": "see the wiki"}, (),
     "registry-ha:runbookUrl: an http(s) URL or a repository path such as docs/monitoring.md (got 'see the wiki')"),
    # settings that the mirrors list replaced: one line saying what to set instead, never the value
    ("removed-mirror-node-port", "staging", {"mirrorNodePort": "30501"}, (),
     "registry-ha:mirrorNodePort: removed: caches are ClusterIP only (never on a NodePort); nodes reach them through "
     "kube-proxy, see docs/caches-and-nodes.md"),
    ("removed-docker-hub-password", "production", {"dockerHubPassword": "dckr_pat_x"}, ("dockerHubPassword",),
     "registry-ha:dockerHubPassword: removed: put the password in the secret `mirrorPasswords` "
     "(`pulumi config set --secret mirrorPasswords '{\"dockerhub\": \"...\"}'`)"),
    ("removed-mirror-remote-url", "staging", {"mirrorRemoteUrl": "https://mirror.gcr.io"}, (),
     "registry-ha:mirrorRemoteUrl: removed: set `remoteUrl` in the cache's `mirrors` entry"),
    # the caches: one line naming the entry and the field
    ("mirrors-not-a-list", "staging", {"mirrors": '{"name": "dockerhub"}'}, (),
     "registry-ha:mirrors: a list of objects (JSON or YAML) (got '{\"name\": \"dockerhub\"}')"),
    ("mirrors-remote-url-with-path", "staging", {"mirrors": '[{"name": "dockerhub", "host": "docker.io", "remoteUrl": "https://registry-1.docker.io/v2/"}]'}, (),
     "registry-ha:mirrors[0].remoteUrl: a registry root URL such as https://registry-1.docker.io (got 'https://registry-1.docker.io/v2/')"),
    ("mirrors-remote-url-ftp", "production", {"mirrors": '[{"name": "dockerhub", "host": "docker.io"}, {"name": "ghcr", "host": "ghcr.io", "remoteUrl": "ftp://ghcr.io"}]'}, (),
     "registry-ha:mirrors[1].remoteUrl: a registry root URL such as https://registry-1.docker.io (got 'ftp://ghcr.io')"),
    ("mirrors-host-is-a-url", "staging", {"mirrors": '[{"name": "ghcr", "host": "https://ghcr.io"}]'}, (),
     "registry-ha:mirrors[0].host: a registry host as it appears in image references, such as docker.io, ghcr.io or quay.io (got 'https://ghcr.io')"),
    ("mirrors-host-missing", "staging", {"mirrors": '[{"name": "ghcr"}]'}, (),
     "registry-ha:mirrors[0].host: required: a registry host as it appears in image references, such as docker.io, ghcr.io or quay.io (got None)"),
    ("mirrors-unknown-field", "staging", {"mirrors": '[{"name": "ghcr", "host": "ghcr.io", "remoteURL": "https://ghcr.io"}]'}, (),
     "registry-ha:mirrors[0].remoteURL: unknown field; the fields are name, host, remoteUrl, ttl, replicas, username, "
     "redisDb, serviceName, clusterIP (got 'https://ghcr.io')"),
    ("mirrors-same-host-twice", "staging", {"mirrors": '[{"name": "hub", "host": "docker.io"}, {"name": "hub2", "host": "docker.io"}]'}, (),
     "registry-ha:mirrors[1].host: distinct hosts (mirrors[0] has it too) (got 'docker.io')"),
    ("mirrors-same-db-twice", "staging", {"mirrors": '[{"name": "hub", "host": "docker.io", "redisDb": 3}, {"name": "ghcr", "host": "ghcr.io", "redisDb": 3}]'}, (),
     "registry-ha:mirrors[1].redisDb: distinct Redis dbs (mirrors[0] has it too) (got 3)"),
    ("mirrors-db-zero", "staging", {"mirrors": '[{"name": "hub", "host": "docker.io", "redisDb": 0}]'}, (),
     "registry-ha:mirrors[0].redisDb: an integer from 1 to 15 (db 0 is the private registry's) (got 0)"),
    ("mirrors-more-than-redis-dbs", "staging", {"mirrors": json.dumps([{"name": f"c{i}", "host": f"r{i}.example.com"} for i in range(16)])}, (),
     "registry-ha:mirrors: at most 15 caches (Redis has 16 dbs; db 0 is the private registry's) (got '16 entries')"),
    ("mirrors-name-too-long", "staging", {"mirrors": '[{"name": "a-very-long-cache-name-x", "host": "docker.io"}]'}, (),
     "registry-ha:mirrors[0].name: a short name: lowercase letters, digits and '-', at most 20 (it names the cache's objects) (got 'a-very-long-cache-name-x')"),
    ("mirrors-service-is-the-registry", "production", {"mirrors": '[{"name": "hub", "host": "docker.io", "serviceName": "docker-registry"}]'}, (),
     "registry-ha:mirrors[0].serviceName: a name other than docker-registry, registry-redis (got 'docker-registry')"),
    ("mirrors-host-is-the-registry", "staging", {"mirrors": '[{"name": "self", "host": "registry.neural-hive.local:5000"}]'}, (),
     "registry-ha:mirrors[0].host: an upstream, not the private registry's own address (got 'registry.neural-hive.local:5000')"),
    ("mirrors-cluster-ip-bad", "staging", {"mirrors": '[{"name": "hub", "host": "docker.io", "clusterIP": "10.43.0.300"}]'}, (),
     "registry-ha:mirrors[0].clusterIP: an IP address in the cluster's Service CIDR such as 10.43.0.50 (got '10.43.0.300')"),
    ("mirrors-replicas-word", "staging", {"mirrors": '[{"name": "hub", "host": "docker.io", "replicas": "two"}]'}, (),
     "registry-ha:mirrors[0].replicas: an integer from 1 to 10 (got 'two')"),
    # cache credentials: the password is secret config, named, never shown
    ("mirror-password-missing", "staging", {"mirrors": '[{"name": "dockerhub", "host": "docker.io", "username": "neuralhive"}]'}, (),
     "registry-ha:mirrorPasswords: a password for 'dockerhub': mirrors[0] sets a username (got [])"),
    ("mirror-password-plaintext", "production", {"mirrors": '[{"name": "dockerhub", "host": "docker.io", "username": "neuralhive"}]',
                                                 "mirrorPasswords": '{"dockerhub": "dckr_pat_x"}'}, (),
     "registry-ha:mirrorPasswords: must be a secret; set it with `pulumi config set --secret mirrorPasswords`"),
    ("mirror-password-empty", "staging", {"mirrors": '[{"name": "dockerhub", "host": "docker.io", "username": "neuralhive"}]',
                                          "mirrorPasswords": '{"dockerhub": " "}'}, ("mirrorPasswords",),
     "registry-ha:mirrorPasswords: a non-empty password or token for each cache name (got 'dockerhub')"),
    ("mirror-password-for-no-user", "staging", {"mirrorPasswords": '{"dockerhub": "dckr_pat_x"}'}, ("mirrorPasswords",),
     "registry-ha:mirrorPasswords: passwords only for caches whose mirrors entry sets a username (got 'dockerhub')"),
    ("mirror-passwords-not-a-map", "staging", {"mirrorPasswords": "dckr_pat_x"}, ("mirrorPasswords",),
     "registry-ha:mirrorPasswords: a map of name to string (JSON or YAML), such as {\"dockerhub\": \"...\"} (got '(a secret)')"),
    ("username-with-colon", "staging", {"mirrors": '[{"name": "dockerhub", "host": "docker.io", "username": "user:pass"}]'}, (),
     "registry-ha:mirrors[0].username: a registry user name: no spaces, no ':' (got 'user:pass')"),
    # nodes
    ("node-configurator-yes", "staging", {"nodeConfigurator": "yes"}, (), "registry-ha:nodeConfigurator: one of off, on, remove (got 'yes')"),
    ("node-configurator-image-latest", "staging", {"nodeConfiguratorImage": "busybox:latest"}, (),
     "registry-ha:nodeConfiguratorImage: an image pinned to a tag other than latest, or a digest (got 'busybox:latest')"),
    ("tls-ca-without-tls", "staging", {"tlsCaCertificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"}, (),
     "registry-ha:tlsCaCertificate: only with tlsSecretName (the registry serves HTTPS) (got '(a certificate)')"),
    ("tls-ca-not-pem", "staging", {"tlsSecretName": "registry-tls", "tlsCaCertificate": "ca.crt"}, (),
     "registry-ha:tlsCaCertificate: PEM certificates (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----) (got 'ca.crt')"),
    ("kms-other-region", "production", {"kmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/abc"}, (),
     "registry-ha:kmsKeyArn: a key in the bucket's region us-east-1 (S3 cannot use another region's key) (got 'arn:aws:kms:eu-west-1:123456789012:key/abc')"),
    ("kms-with-sse-s3", "staging", {"kmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/abc"}, (),
     "registry-ha:kmsKeyArn: only with encryption: sse-kms (got 'arn:aws:kms:us-east-1:123456789012:key/abc')"),
    # unknown keys (typos)
    ("typo-replcas", "staging", {"replcas": "3"}, (), "registry-ha:replcas: unknown config key; did you mean replicas?"),
    ("typo-case", "production", {"NodePort": "30500"}, (), "registry-ha:NodePort: unknown config key; did you mean nodePort?"),
    ("unknown-key", "staging", {"enableTurbo": "true"}, (), "registry-ha:enableTurbo: unknown config key; see docs/configuration.md"),
    # things that would break the cluster or the design
    ("namespace-kube-system", "staging", {"namespace": "kube-system"}, (),
     "registry-ha:namespace: a namespace of its own, not default or kube-* (got 'kube-system')"),
    ("namespace-default", "production", {"namespace": "default"}, (),
     "registry-ha:namespace: a namespace of its own, not default or kube-* (got 'default')"),
    ("image-latest", "staging", {"image": "registry:latest"}, (),
     "registry-ha:image: an image pinned to a tag other than latest, or a digest (got 'registry:latest')"),
    ("redis-image-untagged", "staging", {"redisImage": "redis"}, (),
     "registry-ha:redisImage: an image pinned to a tag other than latest, or a digest (got 'redis')"),
    # day-2 keys: a schedule Kubernetes would refuse, a retained bucket that destroy would empty
    ("gc-schedule-four-fields", "production", {"gcSchedule": "0 3 * *"}, (),
     "registry-ha:gcSchedule: a cron schedule of 5 fields such as '0 3 * * 0', or @daily/@weekly (no TZ= prefix) (got '0 3 * *')"),
    ("gc-schedule-hour-25", "staging", {"gcSchedule": "0 25 * * *"}, (),
     "registry-ha:gcSchedule: a cron schedule of 5 fields such as '0 3 * * 0', or @daily/@weekly (no TZ= prefix) (got '0 25 * * *')"),
    ("gc-schedule-tz", "staging", {"gcSchedule": "TZ=UTC 0 3 * * 0"}, (),
     "registry-ha:gcSchedule: a cron schedule of 5 fields such as '0 3 * * 0', or @daily/@weekly (no TZ= prefix) (got 'TZ=UTC 0 3 * * 0')"),
    ("gc-schedule-empty", "staging", {"gcSchedule": ""}, (), "registry-ha:gcSchedule: a non-empty value, or leave it unset (got '')"),
    ("read-only-word", "production", {"readOnly": "yes"}, (), "registry-ha:readOnly: true or false (got 'yes')"),
    ("force-destroy-retained-bucket", "production", {"forceDestroy": "true"}, (),
     "registry-ha:forceDestroy: true only with retainBucket: false (a retained bucket is never emptied) (got True)"),
    ("force-destroy-default-retain", "staging", {"retainBucket": "true"}, (),
     "registry-ha:forceDestroy: true only with retainBucket: false (a retained bucket is never emptied) (got True)"),
    ("source-ranges-without-lb", "staging", {"loadBalancerProvider": "none", "loadBalancerSourceRanges": '["10.0.0.0/8"]'}, (),
     "registry-ha:loadBalancerSourceRanges: only with a loadBalancerProvider other than none (got ['10.0.0.0/8'])"),
    # a pool the aws/gcp/azure annotations would never name: refused rather than ignored
    ("metallb-pool-without-metallb", "staging", {"loadBalancerProvider": "aws", "metallbAddressPool": "internal"}, (),
     "registry-ha:metallbAddressPool: only with loadBalancerProvider: metallb (got 'internal')"),
]


def _full(key: str) -> str:
    return key if ":" in key else f"{S}{key}"


class CountingMonitor(mock_engine.RecordingMonitor):
    """Counts every registration the engine receives, the stack itself included."""

    registrations: list[str] = []

    def RegisterResource(self, request):
        CountingMonitor.registrations.append(request.type)
        return super().RegisterResource(request)


def evaluate(stack: str, changes: dict, secret: tuple = ()):
    """run_program with Pulumi.<stack>.yaml plus `changes`: (exception or None, registered types)."""
    config, secret_keys = load_stack_config(stack)
    config = {**config, **{_full(k): v for k, v in changes.items()}}
    secret_keys = set(secret_keys) | {_full(k) for k in secret}
    CountingMonitor.registrations = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mock_engine, "RecordingMonitor", CountingMonitor)
        try:
            run_program(stack, config=config, secret_keys=secret_keys)
        except Exception as error:  # noqa: BLE001 - the test asserts on the type
            return error, [t for t in CountingMonitor.registrations if t != "pulumi:pulumi:Stack"]
    return None, [t for t in CountingMonitor.registrations if t != "pulumi:pulumi:Stack"]


def test_the_table_is_big_enough_and_distinct():
    assert len(BAD_CONFIGS) >= 20
    assert len({case[0] for case in BAD_CONFIGS}) == len(BAD_CONFIGS)


def test_the_limits_themselves_are_accepted():
    """Controls of the cases above: 20 users, and a pool with metallb, pass."""
    twenty = json.dumps([f"u{i}:pull" for i in range(1, 21)])
    for stack, changes in (("production", {"authEnabled": "true", "authUsers": twenty, "nodeUser": "u1"}),
                           ("staging", {"loadBalancerProvider": "metallb", "metallbAddressPool": "internal"})):
        error, registered = evaluate(stack, changes)
        assert error is None and "kubernetes:apps/v1:Deployment" in registered, error


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_control_a_good_config_registers_resources(stack):
    """The counting works: the same path with a valid config registers the whole program."""
    mirrors = '[{"name": "dockerhub", "host": "docker.io", "username": "neuralhive"}, {"name": "ghcr", "host": "ghcr.io"}]'
    error, registered = evaluate(stack, {"replicas": "4", "mirrors": mirrors, "mirrorPasswords": '{"dockerhub": "x"}'},
                                 ("mirrorPasswords",))
    assert error is None
    assert len(registered) >= 30 and "aws:s3/bucket:Bucket" in registered


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_stops_the_program_before_any_resource(case):
    _, stack, changes, secret, expected = case
    error, registered = evaluate(stack, changes, secret)
    assert isinstance(error, SettingsError), repr(error)
    assert isinstance(error, pulumi.RunError)  # the CLI prints a RunError's message, no traceback
    assert registered == []
    message = str(error)
    assert message == expected
    assert "\n" not in message and "Traceback" not in message


def test_secret_values_are_not_echoed():
    """A rejected secret is named, never shown."""
    mirrors = '[{"name": "dockerhub", "host": "docker.io", "username": "neuralhive"}]'
    for changes, secret in [
        ({"mirrors": mirrors, "mirrorPasswords": '{"dockerhub": "hunter2-plaintext"}'}, ()),
        ({"mirrors": mirrors, "mirrorPasswords": "hunter2-not-json"}, ("mirrorPasswords",)),
        ({"mirrors": mirrors, "mirrorPasswords": '["hunter2-in-a-list"]'}, ("mirrorPasswords",)),
        ({"mirrors": mirrors, "mirrorPasswords": '{"ghcr": "hunter2-other-name"}'}, ("mirrorPasswords",)),
        ({"dockerHubPassword": "hunter2-removed-key"}, ("dockerHubPassword",)),
    ]:
        error, _ = evaluate("staging", changes, secret)
        assert isinstance(error, SettingsError) and "hunter2" not in str(error), (changes, error)


# --------------------------------------------------------------------------- the stack file itself


def write_stack(root: Path, stack: str, text: str) -> Path:
    path = root / f"Pulumi.{stack}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(
    "text, expected",
    [
        ("- aws:region: us-east-1\n- registry-ha:replicas: 3\n",
         "Pulumi.staging.yaml: must be a map with a `config:` map (got a list)"),
        ("config:\n  - registry-ha:replicas: 3\n",
         "Pulumi.staging.yaml: `config:` must be a map of key: value (got a list)"),
        ("config: just-a-string\n", "Pulumi.staging.yaml: `config:` must be a map of key: value (got a str)"),
        ("config:\n  registry-ha:replicas: [3\n", "Pulumi.staging.yaml: line 3: not valid YAML"),
    ],
    ids=["document-is-a-list", "config-is-a-list", "config-is-a-string", "broken-yaml"],
)
def test_stack_file_of_the_wrong_shape(tmp_path, text, expected):
    write_stack(tmp_path, "staging", text)
    with pytest.raises(SettingsError) as caught:
        load_stack_config("staging", repo_root=tmp_path)
    assert str(caught.value) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("config:\n  registry-ha:mirrors:\n    - {name: dockerhub, host: docker.io, username: neuralhive}\n"
         "  registry-ha:mirrorPasswords:\n    dockerhub: hunter2\n",
         "registry-ha:mirrorPasswords: must be a secret; set it with `pulumi config set --secret mirrorPasswords`"),
        ("config:\n  registry-ha:clientCidrs:\n    cidr: 10.0.0.0/8\n",
         "registry-ha:clientCidrs: a list of strings (got '{\"cidr\": \"10.0.0.0/8\"}')"),
        ("config:\n  registry-ha:replicas: [1, 2, 3]\n", "registry-ha:replicas: an integer (got '[1, 2, 3]')"),
        ("config:\n  registry-ha:hostname:\n    host: registry.local\n",
         "registry-ha:hostname: a DNS hostname such as registry.neural-hive.local (got '{\"host\": \"registry.local\"}')"),
    ],
    ids=["plaintext-password", "map-where-list", "list-where-int", "map-where-string"],
)
def test_stack_file_values_of_the_wrong_shape(tmp_path, text, expected):
    write_stack(tmp_path, "staging", text)
    config, secret_keys = load_stack_config("staging", repo_root=tmp_path)
    CountingMonitor.registrations = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mock_engine, "RecordingMonitor", CountingMonitor)
        with pytest.raises(SettingsError) as caught:
            run_program("staging", config=config, secret_keys=secret_keys)
    assert str(caught.value) == expected
    assert [t for t in CountingMonitor.registrations if t != "pulumi:pulumi:Stack"] == []


def test_a_secure_value_in_the_stack_file_is_accepted(tmp_path):
    """A YAML list of caches, one with a username, and its password map encrypted (unreadable here)."""
    write_stack(tmp_path, "staging", """\
        config:
          registry-ha:mirrors:
            - {name: dockerhub, host: docker.io, username: neuralhive, serviceName: docker-registry-mirror}
            - {name: ghcr, host: ghcr.io}
          registry-ha:mirrorPasswords:
            secure: AAABAJ1Ng9v0ciphertext
        """)
    config, secret_keys = load_stack_config("staging", repo_root=tmp_path)
    assert secret_keys == {"registry-ha:mirrorPasswords"}
    assert SECURE_PLACEHOLDER in config["registry-ha:mirrorPasswords"]  # only the secrets provider can decrypt it
    run = run_program("staging", config=config, secret_keys=secret_keys)
    assert run.one("kubernetes:apps/v1:Deployment", "ghcr-cache-deployment")
    secret = run.one("kubernetes:core/v1:Secret", "dockerhub-cache-config")
    assert is_secret_wrapper(secret.inputs["stringData"])  # the value travels as a Pulumi secret
    credentials = json.loads(unwrap_secrets(secret.inputs)["stringData"]["upstream-credentials.json"])
    assert credentials["Username"] == "neuralhive" and credentials["Secret"]


# --------------------------------------------------------------------------- the render command, end to end


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> Path:
    """The program and scripts copied to a temp dir, so a bad Pulumi.<stack>.yaml harms no one."""
    root = tmp_path_factory.mktemp("repo")
    for name in ("__main__.py", "Pulumi.yaml", "Pulumi.staging.yaml", "Pulumi.production.yaml"):
        shutil.copy2(REPO_ROOT / name, root / name)
    for directory in ("components", "registry_ha", "scripts"):
        shutil.copytree(REPO_ROOT / directory, root / directory, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def render(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "REGISTRY_HA_PYTHON": str(REPO_ROOT / ".venv" / "bin" / "python"),
    }
    return subprocess.run(
        [str(root / "scripts" / "deploy-registry-ha.sh"), "render", *args],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("config:\n  registry-ha:replicas: \"0\"\n", "error: registry-ha:replicas: an integer from 1 to 50 (got 0)"),
        ("- registry-ha:replicas: 3\n", "error: Pulumi.staging.yaml: must be a map with a `config:` map (got a list)"),
        ("config:\n  registry-ha:mirrors: [{name: dockerhub, host: docker.io, username: u1}]\n"
         "  registry-ha:mirrorPasswords: {dockerhub: hunter2}\n",
         "error: registry-ha:mirrorPasswords: must be a secret; set it with `pulumi config set --secret mirrorPasswords`"),
        ("config:\n  registry-ha:nodePort: 30500\n  registry-ha:mirrorNodePort: 30500\n",
         "error: registry-ha:mirrorNodePort: removed: caches are ClusterIP only (never on a NodePort); nodes reach them "
         "through kube-proxy, see docs/caches-and-nodes.md"),
        ("config:\n  registry-ha:mirrors:\n    - {name: ghcr, host: ghcr.io, remoteUrl: 'ghcr.io'}\n",
         "error: registry-ha:mirrors[0].remoteUrl: a registry root URL such as https://registry-1.docker.io (got 'ghcr.io')"),
    ],
    ids=["out-of-range", "list-document", "plaintext-secret", "removed-key", "bad-mirror-entry"],
)
def test_render_cli_with_a_bad_stack_file(repo_copy, text, expected):
    out = repo_copy / "out"
    shutil.rmtree(out, ignore_errors=True)
    original = (repo_copy / "Pulumi.staging.yaml").read_text()
    try:
        write_stack(repo_copy, "staging", text)
        proc = render(repo_copy, "staging", "--out", str(out))
    finally:
        (repo_copy / "Pulumi.staging.yaml").write_text(original)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [expected]
    assert "Traceback" not in proc.stderr + proc.stdout and "hunter2" not in proc.stderr
    assert not out.exists()  # nothing rendered


def test_render_cli_with_a_good_stack_file_works_in_the_copy(repo_copy):
    """Control: the copied repo renders, so the failures above are the config's."""
    proc = render(repo_copy, "staging", "--out", str(repo_copy / "good"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("rendered staging: 17 Kubernetes objects")


@pytest.mark.parametrize(
    "args, first_line",
    [
        (("dev",), "error: stack 'dev': no Pulumi.dev.yaml in {repo} (stack files: Pulumi.production.yaml, "
                   "Pulumi.staging.yaml); create it with `pulumi stack init dev` and set its config"),
        (("staging", "--bogus"), "error: render: unrecognized arguments: --bogus"),
        ((), "error: render: the following arguments are required: stack"),
    ],
    ids=["unknown-stack", "unknown-option", "no-stack"],
)
def test_render_cli_with_bad_arguments(repo_copy, args, first_line):
    proc = render(repo_copy, *args)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert lines[0] == first_line.format(repo=repo_copy)
    assert all(line.startswith(("error:", "usage:")) for line in lines), lines
    assert "Traceback" not in proc.stderr
