"""Signed shared-cache entries, the way Nix signs store paths (`trusted-public-keys`).

A writer holding a secret key signs every manifest it publishes; a workspace that names trusted
public keys accepts a remote entry only if one of them signed it, over the whole manifest
(key, file digests, model config, record), so a manifest changed after signing is a miss. Keys
have names (`team-2026`); rotating means generating a new named key, trusting both for a while,
then dropping the old name. Without trusted keys nothing is checked (and `plan` says so).

Public keys are written `NAME:BASE64` (32 raw ed25519 bytes); secret key files hold
`NAME:BASE64` of the 32-byte private seed, mode 0600. ed25519 through `cryptography`.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import StoreError

SIGNED = "olivepipe-entry-v1\n"  # domain separation: a signature over an entry is never one over anything else
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
KEYGEN_HINT = "make one with `olivepipe cache keygen NAME`"


class BadSignature(ValueError):
    pass


def _crypto():
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:  # pragma: no cover - a declared dependency
        raise StoreError("signed caches need the `cryptography` package", "pip install cryptography") from None
    return ed25519


def message(manifest: dict) -> bytes:
    """The bytes a signature covers: the manifest without its signature, canonical JSON."""
    body = {k: v for k, v in manifest.items() if k not in ("signature", "pulled_from")}
    return SIGNED.encode() + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                                        allow_nan=False).encode()


@dataclass(frozen=True)
class PublicKey:
    name: str
    raw: bytes

    def __str__(self) -> str:
        return f"{self.name}:{base64.b64encode(self.raw).decode()}"


def parse_public(text: str, where: str) -> PublicKey:
    name, sep, b64 = str(text).strip().partition(":")
    try:
        raw = base64.b64decode(b64, validate=True) if sep else b""
    except (binascii.Error, ValueError):
        raw = b""
    if not _NAME.match(name) or len(raw) != 32:
        raise StoreError(f"{where}: {str(text)[:100]!r} is not a public key",
                         f"write it as NAME:BASE64, as `olivepipe cache keygen` prints it; {KEYGEN_HINT}")
    return PublicKey(name, raw)


class Signer:
    """A named secret key, read from a key file."""

    def __init__(self, name: str, seed: bytes):
        self.name = name
        self._key = _crypto().Ed25519PrivateKey.from_private_bytes(seed)

    def __repr__(self) -> str:
        return f"Signer({self.name!r})"  # never the key

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        from ..core.safefs import read_regular

        try:
            text = read_regular(Path(path).expanduser()).decode("ascii").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise StoreError(f"cannot read the signing key {path}: {getattr(e, 'strerror', None) or e}",
                             f"point OLIVEPIPE_SIGNING_KEY at a key file; {KEYGEN_HINT}") from None
        name, _, b64 = text.partition(":")
        try:
            seed = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            seed = b""
        if not _NAME.match(name) or len(seed) != 32:
            raise StoreError(f"{path} is not an olivepipe signing key", KEYGEN_HINT)
        return cls(name, seed)

    def public(self) -> PublicKey:
        from cryptography.hazmat.primitives import serialization

        raw = self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return PublicKey(self.name, raw)

    def sign(self, manifest: dict) -> dict:
        """The manifest with its signature field."""
        sig = self._key.sign(message(manifest))
        return {**manifest, "signature": {"key": self.name, "sig": base64.b64encode(sig).decode()}}


def check(manifest: dict, trusted: dict[str, PublicKey]) -> None:
    """Raise BadSignature unless one of ``trusted`` (name -> key) signed exactly this manifest."""
    sig = manifest.get("signature")
    if not isinstance(sig, dict):
        raise BadSignature("unsigned, and this workspace accepts only signed entries")
    key = trusted.get(sig.get("key"))
    if key is None:
        raise BadSignature(f"signed by {str(sig.get('key'))[:64]!r}, which is not a trusted key")
    try:
        raw = base64.b64decode(sig.get("sig") or "", validate=True)
        _crypto().Ed25519PublicKey.from_public_bytes(key.raw).verify(raw, message(manifest))
    except Exception:  # noqa: BLE001 - InvalidSignature, bad base64, a manifest that is not JSON data
        raise BadSignature(f"the signature of key {key.name!r} does not match: the manifest was changed "
                           "after it was signed") from None


def keygen(name: str, folder: Path) -> tuple[Path, PublicKey]:
    """A new named key: the secret in ``folder``/NAME.secret (0600, never overwritten), and its
    public half (also written to NAME.pub)."""
    if not _NAME.match(name):
        raise StoreError(f"{name!r} is not a key name", "letters, digits, '.', '_' and '-' (e.g. team-2026)")
    from cryptography.hazmat.primitives import serialization

    key = _crypto().Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = folder / f"{name}.secret"
    try:
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        raise StoreError(f"a key named {name!r} exists already ({secret})",
                         "rotate by giving the new key a new name (e.g. team-2027), trusting both for a while") \
            from None
    with os.fdopen(fd, "w") as f:
        f.write(f"{name}:{base64.b64encode(seed).decode()}\n")
    pub = Signer(name, seed).public()
    (folder / f"{name}.pub").write_text(f"{pub}\n")
    return secret, pub


__all__ = ["Signer", "PublicKey", "BadSignature", "parse_public", "check", "keygen", "message"]
