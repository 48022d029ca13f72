"""What pulumi-random generates in the program, generated once per sandbox and kept (0600)."""
from __future__ import annotations

import json
import os
import secrets
import string
from pathlib import Path


def random_text(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, mode)


def load_or_create_secrets(state_dir: Path) -> dict:
    path = state_dir / "secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    access_key = lambda: "AKIA" + random_text(16, string.ascii_uppercase + string.digits)  # noqa: E731
    values = {
        "http_secret": random_text(48),
        "redis_password": random_text(32),
        "s3_access_key": access_key(),
        "s3_secret_key": random_text(40),
        "admin_access_key": access_key(),
        "admin_secret_key": random_text(40),
    }
    write_private(path, json.dumps(values, indent=2))
    return values


def load_or_create_user_passwords(state_dir: Path, users: tuple[str, ...]) -> dict[str, str]:
    """authEnabled: one password per user (what pulumi-random generates), kept in secrets.json."""
    values = load_or_create_secrets(state_dir)
    passwords = values.setdefault("auth_passwords", {})
    missing = [u for u in users if u not in passwords]
    for user in missing:
        passwords[user] = random_text(32)
    if missing:
        write_private(state_dir / "secrets.json", json.dumps(values, indent=2))
    return {u: passwords[u] for u in users}
