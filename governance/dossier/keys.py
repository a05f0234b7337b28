"""The institution's signing key: a self-signed certificate made by ``govern keys init`` (or the
institution's own PKCS#12), kept passphrase-protected in the instance folder."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from ..config import Settings, write_instance_config

SIGNING_DIR = "signing"
PKCS12_NAME = "institution.p12"
CERT_NAME = "institution-cert.pem"
PASSPHRASE_ENV = "GOVERNANCE_SIGNING_PASSPHRASE"


class SigningKeyError(ValueError):
    """The signing key is missing or cannot be opened; the message says what to do."""


@dataclass(frozen=True)
class KeyPaths:
    pkcs12: Path
    certificate: Path


def paths(settings: Settings) -> KeyPaths:
    folder = settings.instance_path / SIGNING_DIR
    pkcs12_path = Path(settings.signing_pkcs12) if settings.signing_pkcs12 else folder / PKCS12_NAME
    return KeyPaths(pkcs12_path, folder / CERT_NAME)


def passphrase(settings: Settings) -> bytes:
    value = os.environ.get(PASSPHRASE_ENV) or settings.signing_passphrase.get_secret_value()
    if not value:
        raise SigningKeyError(f"no signing passphrase: set {PASSPHRASE_ENV} or signing_passphrase in the instance config")
    return value.encode("utf-8")


def init_keys(settings: Settings, *, force: bool = False, years: int = 5) -> KeyPaths:
    """Create an ECDSA P-256 key and a self-signed certificate for signing dossiers.

    Key usage includes non-repudiation (content commitment), which pyHanko's default validation requires;
    CA:TRUE lets relying parties (NSS, pdfsig) trust the certificate as a root.
    """
    where = paths(settings)
    if settings.signing_pkcs12 and not force:
        raise SigningKeyError(f"signing_pkcs12 names the institution's own key ({where.pkcs12}); not replacing it")
    if where.pkcs12.exists() and not force:
        return where
    secret = os.environ.get(PASSPHRASE_ENV) or settings.signing_passphrase.get_secret_value()
    if not secret:
        secret = secrets.token_urlsafe(24)
        write_instance_config(settings.instance_path, {"signing_passphrase": secret})
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, settings.institution_name),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Ethics Review Committee"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"{settings.institution_name} IRB dossier signing"),
    ])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * years))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256()))
    where.pkcs12.parent.mkdir(parents=True, exist_ok=True)
    where.pkcs12.parent.chmod(0o700)
    bundle = pkcs12.serialize_key_and_certificates(b"institution", key, certificate, None,
                                                   serialization.BestAvailableEncryption(secret.encode("utf-8")))
    where.pkcs12.write_bytes(bundle)
    where.pkcs12.chmod(0o600)
    where.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return where


def load_certificate(settings: Settings) -> x509.Certificate:
    where = paths(settings)
    if not where.pkcs12.exists():
        raise SigningKeyError(f"no signing key at {where.pkcs12}: run `govern keys init`")
    try:
        _key, certificate, _chain = pkcs12.load_key_and_certificates(where.pkcs12.read_bytes(), passphrase(settings))
    except ValueError:
        raise SigningKeyError(f"cannot open {where.pkcs12}: wrong passphrase or not a PKCS#12 file") from None
    return certificate


def export_certificate(settings: Settings, out: Path) -> Path:
    out.write_bytes(load_certificate(settings).public_bytes(serialization.Encoding.PEM))
    return out


def fingerprint(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()
