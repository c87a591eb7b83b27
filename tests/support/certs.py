"""Throw-away PKI for the real-registry tests: a CA, a TLS server certificate, a token signer.

Everything is ECDSA P-256: fast to generate, accepted by Go's TLS stack, and
the key type the distribution token spec uses in its examples (ES256).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertPaths", "generate_certs", "load_private_key"]

_DEFAULT_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class CertPaths:
    """PEM files written by `generate_certs`.

    Attributes:
        directory: where the files live.
        ca_cert: the test CA certificate (trust anchor for TLS clients).
        ca_key: the CA's private key.
        server_cert: TLS server certificate for the hosts, signed by the CA.
        server_key: its private key.
        token_cert: certificate of the token-signing key, signed by the CA.
        token_key: the token-signing private key.
        token_bundle: `auth.token.rootcertbundle` for the registry: the
            token-signing certificate followed by the CA certificate, so tokens
            verify both through an `x5c` chain and through a `kid`.
    """

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    token_cert: Path
    token_key: Path
    token_bundle: Path


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "image-syncer tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, days: int):
    # Backdate a little: the registry and the test process read the same clock,
    # but a certificate "not yet valid" by a second is a miserable failure.
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _make_ca(days: int) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    cert = (
        _builder("image-syncer test CA", _name("image-syncer test CA"), key, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _make_leaf(
    subject: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    days: int,
    *,
    hosts: Sequence[str] = (),
    usage: x509.ObjectIdentifier | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    key = _new_key()
    builder = (
        _builder(subject, ca_cert.subject, key, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if hosts:
        builder = builder.add_extension(_san(hosts), critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _write_cert(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def generate_certs(
    directory: Path, *, hosts: Sequence[str] = _DEFAULT_HOSTS, days: int = 7
) -> CertPaths:
    """Create the CA, the TLS server certificate and the token signer as PEM files.

    Args:
        directory: where to write; created if missing.
        hosts: subject alternative names of the server certificate; IP
            addresses become IP SANs, anything else a DNS SAN.
        days: validity of every certificate.

    Returns:
        The paths of the files written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca = _make_ca(days)
    server_cert, server_key = _make_leaf(
        hosts[0], ca, days, hosts=hosts, usage=ExtendedKeyUsageOID.SERVER_AUTH
    )
    token_cert, token_key = _make_leaf("image-syncer test token signer", ca, days)
    return CertPaths(
        directory=directory,
        ca_cert=_write_cert(directory / "ca.pem", ca[0]),
        ca_key=_write_key(directory / "ca-key.pem", ca[1]),
        server_cert=_write_cert(directory / "server.pem", server_cert),
        server_key=_write_key(directory / "server-key.pem", server_key),
        token_cert=_write_cert(directory / "token-signer.pem", token_cert),
        token_key=_write_key(directory / "token-signer-key.pem", token_key),
        token_bundle=_write_cert(directory / "token-bundle.pem", token_cert, ca[0]),
    )


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Read an unencrypted PEM EC private key written by `generate_certs`.

    Raises:
        TypeError: the file holds another kind of key.
    """
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{path} does not hold an EC private key")
    return key
