"""A throw-away certificate authority for the TLS admin listener: server and client certificates."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    """PEM files: the CA, the server's pair (for 127.0.0.1 / localhost) and a client's pair."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _issue(subject: str, key: ec.EllipticCurvePrivateKey, ca_key: ec.EllipticCurvePrivateKey, issuer: str,
           *, ca: bool = False, usage: ExtendedKeyUsageOID | None = None, sans: list[x509.GeneralName] = ()
           ) -> x509.Certificate:  # type: ignore[assignment]
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def make_pki(root: Path) -> Pki:
    root.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("solstice test CA", ca_key, ca_key, "solstice test CA", ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue("localhost", server_key, ca_key, "solstice test CA", usage=ExtendedKeyUsageOID.SERVER_AUTH,
                    sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _issue("operator", client_key, ca_key, "solstice test CA", usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    pki = Pki(root / "ca.crt", root / "server.crt", root / "server.key", root / "client.crt", root / "client.key")
    for path, data in ((pki.ca, ca.public_bytes(serialization.Encoding.PEM)),
                       (pki.server_cert, server.public_bytes(serialization.Encoding.PEM)),
                       (pki.server_key, _key_pem(server_key)),
                       (pki.client_cert, client.public_bytes(serialization.Encoding.PEM)),
                       (pki.client_key, _key_pem(client_key))):
        path.write_bytes(data)
    return pki
