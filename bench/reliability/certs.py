"""Throwaway X.509 material for the TLS tests (the `cryptography` package): a CA, a server
certificate for 127.0.0.1 / localhost, client certificates — signed by the CA or by a stranger."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject: str, key, issuer_name: x509.Name, issuer_key, *, ca: bool,
          san: list[x509.GeneralName] | None = None, usage=None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class Authority:
    """A CA that writes `<name>.crt` / `<name>.key` files into `folder`."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.name = Path(folder), name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.key = _key()
        self.subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
        self.cert = _cert(f"{name} test CA", self.key, self.subject, self.key, ca=True)
        self.cert_path = self._write(name, self.cert, self.key)[0]

    def _write(self, name: str, cert: x509.Certificate, key) -> tuple[Path, Path]:
        crt, pem = self.folder / f"{name}.crt", self.folder / f"{name}.key"
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pem.write_bytes(_pem_key(key))
        pem.chmod(0o600)
        return crt, pem

    def server(self, name: str = "server") -> tuple[Path, Path]:
        key = _key()
        san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        cert = _cert("localhost", key, self.subject, self.key, ca=False, san=san,
                     usage=[ExtendedKeyUsageOID.SERVER_AUTH])
        return self._write(name, cert, key)

    def client(self, name: str) -> tuple[Path, Path]:
        key = _key()
        cert = _cert(name, key, self.subject, self.key, ca=False,
                     usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
        return self._write(name, cert, key)
