"""Test certificates: trustme for CAs and CN/DNS certificates, cryptography for URI SANs (trustme has none)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class CertFiles:
    """A certificate and key on disk."""

    cert: str
    key: str


def issue(ca: trustme.CA, directory: Path, name: str, *, cn: str | None = None,
          uri: str | None = None) -> CertFiles:
    """A leaf certificate signed by ``ca`` with Common Name ``cn`` and/or a URI SAN ``uri``, written to files."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}-key.pem"
    if uri is None:
        leaf = ca.issue_cert("127.0.0.1", "localhost", common_name=cn)
        leaf.cert_chain_pems[0].write_to_path(str(cert_path))
        leaf.private_key_pem.write_to_path(str(key_path))
        return CertFiles(str(cert_path), str(key_path))
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return CertFiles(str(cert_path), str(key_path))


def write_ca(ca: trustme.CA, directory: Path, name: str = "ca") -> str:
    """The CA certificate as a file; its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)
