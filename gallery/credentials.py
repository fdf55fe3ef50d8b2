"""Content Credentials (C2PA): the studio signs every image it makes, and reads credentials back.

Signing is offline: no timestamp authority, no OCSP, no remote manifests (c2pa-python with ``ta_url=None``
and fetching switched off in every context), so nothing leaves the studio's network.

Keys come from one of two places:

* the operator's PKI: ``STUDIO_C2PA_CERT_CHAIN`` (the signing certificate, then its intermediates, PEM),
  ``STUDIO_C2PA_KEY_FILE`` (its private key, PEM) or ``STUDIO_C2PA_SIGNER`` (``module:function``, a hook that
  signs bytes with a key in a KMS or an HSM through PKCS#11), and ``STUDIO_C2PA_ROOT`` (the root to publish);
* otherwise the studio's own: a root and a signing certificate it makes in ``STUDIO_C2PA_DIR`` (the data
  dir's ``credentials/``) on first use, keys readable by its user only. ``manage.py studio_rotate_signing``
  replaces the signing certificate (``--new-root``: the root too; old roots stay trust anchors).

This module knows certificates and manifests; ``gallery.services`` decides what goes in them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import importlib
import io
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)

GENERATOR = "Studio"
TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
COMPOSITE_TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
GENERATION_LABEL = "org.studio.generation"
REVIEW_LABEL = "org.studio.review"
ROOT_YEARS = 20
SIGNING_YEARS = 2

# Never fetch anything while reading or signing: no OCSP responder, no remote manifest.
_OFFLINE = {"verify": {"ocsp_fetch": False, "remote_manifest_fetch": False, "verify_trust": True}}


class SigningUnavailable(Exception):
    """Why an image could not be signed (the image is kept, unsigned)."""


def studio_version() -> str:
    try:
        return version("studio")
    except PackageNotFoundError:
        return "0"


def generator_info() -> dict[str, str]:
    return {"name": GENERATOR, "version": studio_version()}


# --- keys and certificates --


def own_dir() -> Path:
    return Path(settings.STUDIO_C2PA_DIR)


def uses_own_pki() -> bool:
    return not (settings.STUDIO_C2PA_CERT_CHAIN or settings.STUDIO_C2PA_SIGNER)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One process at a time makes or replaces the studio's own certificates."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only, replacing any older one atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _name(common_name: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, settings.STUDIO_C2PA_ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(cert.public_bytes(serialization.Encoding.PEM))


def _key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _make_root() -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = _name(f"{settings.STUDIO_C2PA_ORGANIZATION} Content Credentials root")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=365 * ROOT_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _pem(cert), _key_pem(key)


def _make_signing(root_pem: bytes, root_key_pem: bytes) -> tuple[bytes, bytes]:
    """A signing (end-entity) certificate issued by the root: ES256, for document signing."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    root: Any = x509.load_pem_x509_certificate(root_pem)
    root_key: Any = serialization.load_pem_private_key(root_key_pem, None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{settings.STUDIO_C2PA_ORGANIZATION} image signing"))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(min(now + dt.timedelta(days=365 * SIGNING_YEARS), root.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    return _pem(cert) + root_pem, _key_pem(key)


def ensure_own_credentials() -> bool:
    """Make the studio's own root and signing certificate in ``STUDIO_C2PA_DIR`` if they are not there yet.
    Returns whether they were made now."""
    directory = own_dir()
    if (directory / "signing.pem").exists():
        return False
    with _locked(directory):
        if (directory / "signing.pem").exists():
            return False
        if not (directory / "root.pem").exists():
            root_pem, root_key = _make_root()
            _write_private(directory / "root.key", root_key)
            _write_public(directory / "root.pem", root_pem)
        root_pem = (directory / "root.pem").read_bytes()
        chain, key = _make_signing(root_pem, (directory / "root.key").read_bytes())
        _write_private(directory / "signing.key", key)
        _write_public(directory / "signing.pem", chain)
    logger.info("made the studio's Content Credentials root and signing certificate in %s", directory)
    return True


def rotate_own_credentials(*, new_root: bool = False) -> dict[str, str]:
    """Replace the studio's own signing certificate (and, with ``new_root``, its root; the old root stays a
    trust anchor, so images signed before still verify as trusted). Returns the new certificates' subjects
    and fingerprints."""
    if not uses_own_pki():
        raise ImproperlyConfigured(
            "Signing uses your own PKI (STUDIO_C2PA_CERT_CHAIN / STUDIO_C2PA_SIGNER): issue a new "
            "certificate there and point the settings at it."
        )
    ensure_own_credentials()
    directory = own_dir()
    with _locked(directory):
        if new_root:
            previous = directory / "previous-roots.pem"
            old = (directory / "root.pem").read_bytes()
            _write_public(previous, (previous.read_bytes() if previous.exists() else b"") + old)
            root_pem, root_key = _make_root()
            _write_private(directory / "root.key", root_key)
            _write_public(directory / "root.pem", root_pem)
        chain, key = _make_signing(
            (directory / "root.pem").read_bytes(), (directory / "root.key").read_bytes()
        )
        _write_private(directory / "signing.key", key)
        _write_public(directory / "signing.pem", chain)
    return {"signing": describe_certificate(chain), "root": describe_certificate(root_certificate_pem())}


def describe_certificate(pem: bytes | str) -> str:
    """ "<subject> (SHA-256 <fingerprint>)" of the first certificate in a PEM text."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    data = pem.encode() if isinstance(pem, str) else pem
    cert = x509.load_pem_x509_certificates(data)[0]
    return f"{cert.subject.rfc4514_string()} (SHA-256 {cert.fingerprint(hashes.SHA256()).hex(':')})"


def root_certificate_pem() -> bytes:
    """The studio's root certificate, PEM: the configured one, or the studio's own (made on first use)."""
    if settings.STUDIO_C2PA_ROOT:
        return Path(settings.STUDIO_C2PA_ROOT).read_bytes()
    if uses_own_pki():
        ensure_own_credentials()
        return (own_dir() / "root.pem").read_bytes()
    # An operator chain without a named root: its last certificate.
    from cryptography import x509

    chain = x509.load_pem_x509_certificates(Path(settings.STUDIO_C2PA_CERT_CHAIN).read_bytes())
    return _pem(chain[-1])


def published_roots_pem() -> bytes:
    """What ``GET /api/v1/credentials/root.pem`` serves: the studio's root, then roots it used before."""
    previous = own_dir() / "previous-roots.pem"
    extra = previous.read_bytes() if uses_own_pki() and previous.exists() else b""
    return root_certificate_pem() + extra


def trust_anchors_pem() -> str:
    """The roots a verification trusts: the studio's (current and previous), plus configured anchors."""
    anchors = published_roots_pem()
    if settings.STUDIO_C2PA_TRUST_ANCHORS:
        anchors += b"\n" + Path(settings.STUDIO_C2PA_TRUST_ANCHORS).read_bytes()
    return anchors.decode()


def _context(*, trust: bool = True) -> Any:
    import c2pa

    config: dict[str, Any] = {**_OFFLINE, "builder": {"thumbnail": {"enabled": False}}}
    if trust:
        config["trust"] = {"trust_anchors": trust_anchors_pem()}
    return c2pa.Context.from_dict(config)


def _signer_hook() -> Callable[[bytes], bytes]:
    path = settings.STUDIO_C2PA_SIGNER
    module_name, _, attr = path.partition(":")
    try:
        hook = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise SigningUnavailable(f"STUDIO_C2PA_SIGNER {path!r} cannot be imported: {exc}") from exc
    if not callable(hook):
        raise SigningUnavailable(f"STUDIO_C2PA_SIGNER {path!r} is not a function.")
    return hook


def _signer() -> Any:
    import c2pa

    algorithm = getattr(c2pa.C2paSigningAlg, settings.STUDIO_C2PA_ALG.upper(), None)
    if algorithm is None:
        raise SigningUnavailable(f"STUDIO_C2PA_ALG {settings.STUDIO_C2PA_ALG!r} is not a C2PA algorithm.")
    try:
        if uses_own_pki():
            ensure_own_credentials()
            chain = (own_dir() / "signing.pem").read_bytes()
            key = (own_dir() / "signing.key").read_bytes()
        else:
            chain = Path(settings.STUDIO_C2PA_CERT_CHAIN).read_bytes()
            if settings.STUDIO_C2PA_SIGNER:
                return c2pa.Signer.from_callback(_signer_hook(), algorithm, chain.decode(), None)
            key = Path(settings.STUDIO_C2PA_KEY_FILE).read_bytes()
    except OSError as exc:
        raise SigningUnavailable(f"The signing certificate or key cannot be read: {exc}") from exc
    return c2pa.Signer.from_info(c2pa.C2paSignerInfo(algorithm, chain, key, None))


# --- signing --


@dataclass
class Parent:
    """An image a new one was made from: its bytes (with their own manifest, if any) and what to call it."""

    data: bytes
    title: str
    instance_id: str


def sign_png(manifest: dict[str, Any], png: bytes, parent: Parent | None = None) -> bytes:
    """The PNG with the manifest embedded and signed (its text chunks are kept). ``parent`` becomes the
    ``parentOf`` ingredient, labelled ``parent`` for the manifest's ``c2pa.opened`` action to name.
    SigningUnavailable on any failure."""
    import c2pa

    try:
        signer = _signer()
        context = _context()
        with signer, context, c2pa.Builder(manifest, context) as builder:
            if parent is not None:
                builder.add_ingredient(
                    {
                        "title": parent.title,
                        "relationship": "parentOf",
                        "instance_id": parent.instance_id,
                        "label": "parent",
                    },
                    "image/png",
                    io.BytesIO(parent.data),
                )
            out = io.BytesIO()
            builder.sign(signer, "image/png", io.BytesIO(png), out)
    except SigningUnavailable:
        raise
    except Exception as exc:  # the SDK's errors, a hook's, a broken key: the image is kept unsigned
        raise SigningUnavailable(f"{type(exc).__name__}: {exc}") from exc
    return out.getvalue()


def actions(first: dict[str, Any], *more: dict[str, Any]) -> dict[str, Any]:
    return {"label": "c2pa.actions", "data": {"actions": [first, *more]}}


def manifest(title: str, assertions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "claim_generator_info": [generator_info()],
        "title": title,
        "format": "image/png",
        "assertions": assertions,
    }


# --- reading --


@dataclass
class Step:
    """One manifest in an image's chain of edits, newest first."""

    label: str
    title: str
    generator: str
    actions: list[str]
    signer: str
    author: str | None
    project: str | None
    model: dict[str, Any] | None
    parameters: dict[str, Any] | None
    review: dict[str, Any] | None
    asset_id: str | None
    source_type: str | None


@dataclass
class Report:
    """What an image's credentials say. ``state``: ``trusted`` (valid, signed under a trusted root),
    ``valid`` (intact, but signed by someone not trusted here), ``invalid`` (changed since it was signed,
    or a broken signature), ``none`` (no credentials)."""

    state: str
    sha256: str
    problems: list[str] = field(default_factory=list)
    chain: list[Step] = field(default_factory=list)

    @property
    def has_credentials(self) -> bool:
        return self.state != "none"

    @property
    def summary(self) -> str:
        return {
            "trusted": "Valid Content Credentials, signed by a trusted certificate.",
            "valid": "Intact Content Credentials, but signed by a certificate this studio does not trust.",
            "invalid": "Content Credentials that no longer match the image: it was changed after it was "
            "signed, or the signature is broken.",
            "none": "No Content Credentials: the image was never signed, or they were stripped.",
        }[self.state]


def _assertion(manifest_data: dict[str, Any], label: str) -> dict[str, Any] | None:
    for item in manifest_data.get("assertions", []):
        if item.get("label") == label:
            data = item.get("data")
            return data if isinstance(data, dict) else None
    return None


def _step(label: str, data: dict[str, Any]) -> Step:
    generators = data.get("claim_generator_info") or [{}]
    generator = " ".join(str(generators[0].get(k, "")) for k in ("name", "version")).strip()
    acts: list[str] = []
    source_type = None
    for item in data.get("assertions", []):
        if str(item.get("label", "")).startswith("c2pa.actions"):
            for action in item.get("data", {}).get("actions", []):
                acts.append(str(action.get("action", "")))
                source_type = source_type or action.get("digitalSourceType")
    generation = _assertion(data, GENERATION_LABEL) or {}
    work = _assertion(data, "stds.schema-org.CreativeWork") or {}
    authors = [a.get("name") for a in work.get("author", []) if isinstance(a, dict)]
    signature = data.get("signature_info") or {}
    signer = ", ".join(str(signature[k]) for k in ("common_name", "issuer") if signature.get(k))
    project = generation.get("project")
    return Step(
        label=label,
        title=str(data.get("title", "")),
        generator=generator,
        actions=acts,
        signer=signer,
        author=generation.get("author") or (authors[0] if authors else None),
        project=project.get("name") if isinstance(project, dict) else project,
        model=generation.get("model"),
        parameters=generation.get("parameters"),
        review=_assertion(data, REVIEW_LABEL),
        asset_id=generation.get("asset") or (_assertion(data, REVIEW_LABEL) or {}).get("asset"),
        source_type=source_type.rsplit("/", 1)[-1] if isinstance(source_type, str) else None,
    )


def read(data: bytes, mime: str = "image/png") -> Report:
    """Read and validate an image's credentials against the studio's trust anchors. ValueError when the
    bytes are not an image format the SDK reads."""
    import c2pa

    digest = hashlib.sha256(data).hexdigest()
    with _context() as context:
        try:
            reader = c2pa.Reader(mime, io.BytesIO(data), context=context)
        except c2pa.C2paError.ManifestNotFound:
            return Report(state="none", sha256=digest)
        except c2pa.C2paError as exc:
            raise ValueError(str(exc)) from exc
        with reader:
            store = json.loads(reader.json())
            results = reader.get_validation_results() or {}
            state = str(reader.get_validation_state() or "")
    failures = [
        f"{f.get('code')}: {f.get('explanation')}"
        for f in (results.get("activeManifest") or {}).get("failure", [])
    ]
    chain: list[Step] = []
    manifests = store.get("manifests", {})
    label = store.get("active_manifest")
    seen: set[str] = set()
    while label and label in manifests and label not in seen:
        seen.add(label)
        current = manifests[label]
        chain.append(_step(label, current))
        parents = [i for i in current.get("ingredients", []) if i.get("relationship") == "parentOf"]
        label = parents[0].get("active_manifest") if parents else None
    verdict = {"Trusted": "trusted", "Valid": "valid"}.get(state, "invalid")
    if verdict == "trusted" and failures:
        verdict = "invalid"
    return Report(state=verdict, sha256=digest, problems=failures, chain=chain)


def signed_manifest_label(data: bytes) -> str | None:
    """The active manifest's label of an image the studio just signed (to find its exports and children
    later), or None."""
    import c2pa

    with _context(trust=False) as context:
        try:
            with c2pa.Reader("image/png", io.BytesIO(data), context=context) as reader:
                label = json.loads(reader.json()).get("active_manifest")
        except c2pa.C2paError:
            return None
    return str(label) if label else None
