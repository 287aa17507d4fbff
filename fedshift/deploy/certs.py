"""Certificates and site keys for a deployed federation, made with ``cryptography``.

Three kinds of files, all made here without ``openssl`` or ``ssh-keygen``:

- a certificate authority (CA): ``ca.crt`` (public, given to every site) and ``ca.key``
  (stays with the coordinator's operator, ideally offline);
- the SuperLink's TLS certificate ``server.pem`` and key ``server.key``, signed by the CA,
  whose subject alternative names (SANs) list every DNS name and IP address the sites use
  to reach the coordinator (``DNS:localhost``, ``IP:127.0.0.1`` on loopback);
- one ECDSA NIST P-384 key pair per site for Flower's node authentication: the private
  key in OpenSSH format (what ``flower-supernode --auth-supernode-private-key`` loads) and
  the public key as one OpenSSH line ``ecdsa-sha2-nistp384 AAAA... site0`` (what
  ``flwr supernode register KEY.pub CONNECTION`` loads). The public key is sent to the
  coordinator; the private key never leaves the hospital.

Every key and certificate uses ECDSA on P-384 with SHA-384 signatures. Private keys are
written unencrypted with mode 0600 (the Flower executables cannot prompt for a passphrase)
and an existing file is never overwritten unless ``force=True``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedshift.errors import UsageError

#: the one curve FedShift uses, for TLS and node authentication alike
CURVE = ec.SECP384R1
#: validity of the CA and of the server certificate, in days
CA_DAYS = 3650
SERVER_DAYS = 825

_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class CertError(UsageError):
    """A certificate or key is missing, malformed, of the wrong type or not trusted."""


@dataclass(frozen=True)
class CertFiles:
    """A certificate and its private key on disk."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class SiteKeyFiles:
    """A site's node-authentication key pair on disk (OpenSSH formats)."""

    private_key: Path
    public_key: Path


# --------------------------------------------------------------------------- in memory


def new_private_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA private key on NIST P-384."""
    return ec.generate_private_key(CURVE())


def parse_host(host: str) -> x509.GeneralName:
    """One SAN entry: ``IPAddress`` for an IPv4/IPv6 literal, else ``DNSName``.

    Raises :class:`CertError` naming ``host`` when it is neither an IP address nor a
    valid DNS name (labels of letters, digits and hyphens; ``*.`` allowed as the first
    label).
    """
    text = host.strip()
    try:
        return x509.IPAddress(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    labels = text.rstrip(".").split(".")
    if labels and labels[0] == "*":
        labels = labels[1:]
    if not text or len(text) > 253 or not labels or not all(_DNS_LABEL.match(x) for x in labels):
        raise CertError(f"host {host!r} is neither an IP address nor a valid DNS name")
    return x509.DNSName(text.rstrip(".").lower())


def build_ca(
    key: ec.EllipticCurvePrivateKey, common_name: str = "FedShift CA", days: int = CA_DAYS
) -> x509.Certificate:
    """A self-signed CA certificate for ``key`` (may sign leaf certificates only)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
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
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA384())
    )


def build_server_cert(
    key: ec.EllipticCurvePrivateKey,
    hosts: Sequence[str],
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    days: int = SERVER_DAYS,
) -> x509.Certificate:
    """A TLS server certificate for ``key``, signed by the CA, with SANs for ``hosts``.

    ``hosts`` lists every name the sites dial: DNS names and IP addresses
    (e.g. ``["localhost", "127.0.0.1"]``). The first one is also the common name.
    """
    if not hosts:
        raise CertError("hosts is empty: give at least one DNS name or IP address")
    sans = list(dict.fromkeys(parse_host(h) for h in hosts))
    now = dt.datetime.now(dt.timezone.utc)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0].strip())]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA384())
    )


def site_public_line(key: ec.EllipticCurvePublicKey, comment: str = "") -> bytes:
    """The OpenSSH public-key line ``ecdsa-sha2-nistp384 AAAA... [comment]``."""
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return line + (b" " + comment.encode() if comment else b"") + b"\n"


# --------------------------------------------------------------------------- on disk


def make_ca(
    out_dir: str | Path, common_name: str = "FedShift CA", days: int = CA_DAYS, force: bool = False
) -> CertFiles:
    """Create ``OUT_DIR/ca.crt`` and ``OUT_DIR/ca.key`` (0600).

    Raises :class:`CertError` if either file exists and ``force`` is false.
    """
    out = Path(out_dir)
    files = CertFiles(cert=out / "ca.crt", key=out / "ca.key")
    _refuse_existing([files.cert, files.key], force)
    key = new_private_key()
    cert = build_ca(key, common_name=common_name, days=days)
    _write_private(files.key, _private_pem(key), force)
    _write_public(files.cert, cert.public_bytes(serialization.Encoding.PEM), force)
    return files


def make_server_cert(
    out_dir: str | Path,
    hosts: Sequence[str],
    ca: CertFiles,
    days: int = SERVER_DAYS,
    force: bool = False,
) -> CertFiles:
    """Create ``OUT_DIR/server.pem`` and ``OUT_DIR/server.key`` (0600), signed by ``ca``.

    ``hosts`` are the SANs (DNS names and IP addresses) the sites will dial.
    Raises :class:`CertError` if either file exists and ``force`` is false, or if the CA
    files cannot be read.
    """
    out = Path(out_dir)
    files = CertFiles(cert=out / "server.pem", key=out / "server.key")
    _refuse_existing([files.cert, files.key], force)
    ca_cert = load_cert(ca.cert)
    ca_key = load_private_key(ca.key)
    if ca_key.public_key().public_numbers() != ca_cert.public_key().public_numbers():
        raise CertError(
            f"CA key {str(ca.key)!r} does not belong to CA certificate {str(ca.cert)!r}"
        )
    key = new_private_key()
    cert = build_server_cert(key, hosts, ca_cert, ca_key, days=days)
    _write_private(files.key, _private_pem(key), force)
    _write_public(files.cert, cert.public_bytes(serialization.Encoding.PEM), force)
    return files


def make_site_keypair(out_dir: str | Path, site: str, force: bool = False) -> SiteKeyFiles:
    """Create ``OUT_DIR/SITE.key`` (OpenSSH private key, 0600) and ``OUT_DIR/SITE.pub``.

    ``SITE.pub`` is what the coordinator registers (``flwr supernode register``);
    ``SITE.key`` stays at the site (``flower-supernode --auth-supernode-private-key``).
    Raises :class:`CertError` for a bad site name or if a file exists and ``force`` is false.
    """
    if not _SITE_NAME.match(site):
        raise CertError(
            f"site name {site!r} must be 1-63 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    out = Path(out_dir)
    files = SiteKeyFiles(private_key=out / f"{site}.key", public_key=out / f"{site}.pub")
    _refuse_existing([files.private_key, files.public_key], force)
    key = new_private_key()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    _write_private(files.private_key, private, force)
    _write_public(files.public_key, site_public_line(key.public_key(), site), force)
    return files


# --------------------------------------------------------------------------- loading, checks


def load_cert(path: str | Path) -> x509.Certificate:
    """Load a PEM certificate; :class:`CertError` naming ``path`` if it cannot be read."""
    data = _read(path, "certificate")
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise CertError(f"{str(path)!r} is not a PEM certificate: {exc}") from exc


def load_private_key(path: str | Path) -> ec.EllipticCurvePrivateKey:
    """Load an unencrypted P-384 private key (PEM/PKCS#8 or OpenSSH format)."""
    data = _read(path, "private key")
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CertError(f"{str(path)!r} is not an unencrypted private key: {exc}") from exc
    return _require_p384(key, path, ec.EllipticCurvePrivateKey)


def load_site_public_key(path: str | Path) -> ec.EllipticCurvePublicKey:
    """Load a site public key (OpenSSH line), checking it is ECDSA P-384."""
    data = _read(path, "public key")
    try:
        key = serialization.load_ssh_public_key(data.strip())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertError(f"{str(path)!r} is not an OpenSSH public key: {exc}") from exc
    return _require_p384(key, path, ec.EllipticCurvePublicKey)


def verify_server_cert(
    cert_path: str | Path, ca_cert_path: str | Path, host: str | None = None
) -> x509.Certificate:
    """Check that the CA signed ``cert_path``, that it is valid now and (if given) names ``host``.

    Returns the certificate; raises :class:`CertError` saying what failed.
    """
    cert, ca = load_cert(cert_path), load_cert(ca_cert_path)
    ca_key = ca.public_key()
    if cert.issuer != ca.subject or not isinstance(ca_key, ec.EllipticCurvePublicKey):
        raise CertError(f"{str(cert_path)!r} was not issued by the CA in {str(ca_cert_path)!r}")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CertError(
            f"{str(cert_path)!r} is not signed by the CA in {str(ca_cert_path)!r}"
        ) from exc
    now = dt.datetime.now(dt.timezone.utc)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise CertError(
            f"{str(cert_path)!r} is valid only from {cert.not_valid_before_utc:%Y-%m-%d} "
            f"to {cert.not_valid_after_utc:%Y-%m-%d}"
        )
    if host is not None and parse_host(host) not in server_sans(cert):
        names = ", ".join(str(n.value) for n in server_sans(cert))
        raise CertError(f"{str(cert_path)!r} does not name host {host!r} (SANs: {names})")
    return cert


def server_sans(cert: x509.Certificate) -> list[x509.GeneralName]:
    """The certificate's subject alternative names (DNS names and IP addresses)."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(ext.value)


# --------------------------------------------------------------------------- helpers


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _require_p384(key: object, path: str | Path, kind: type) -> ec.EllipticCurvePrivateKey:
    if not isinstance(key, kind) or not isinstance(key.curve, CURVE):  # type: ignore[attr-defined]
        curve = getattr(getattr(key, "curve", None), "name", type(key).__name__)
        raise CertError(f"{str(path)!r} holds a {curve} key; FedShift needs ECDSA P-384")
    return key  # type: ignore[return-value]


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CertError(f"cannot read {what} {str(path)!r}: {exc.strerror}") from exc


def _refuse_existing(paths: Sequence[Path], force: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise CertError(
            f"{', '.join(existing)} already exist(s); refusing to overwrite "
            "(use --force to replace)"
        )


def _write_private(path: Path, data: bytes, force: bool) -> None:
    """Write ``data`` so that the file is never readable by others, even for an instant."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if force and path.exists():
        path.unlink()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise CertError(f"{str(path)!r} already exists; refusing to overwrite") from exc
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)  # the umask may have removed bits, never added: make it exact


def _write_public(path: Path, data: bytes, force: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not force:
        raise CertError(f"{str(path)!r} already exists; refusing to overwrite")
    path.write_bytes(data)
