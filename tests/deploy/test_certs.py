"""Certificates and site keys: round trips, SANs, key types, permissions, refusals."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedshift.deploy import certs
from fedshift.deploy.certs import CertError
from fedshift.errors import UsageError


@pytest.fixture
def pki(tmp_path: Path) -> tuple[certs.CertFiles, certs.CertFiles]:
    """A CA and a server certificate for localhost / 127.0.0.1 / ::1."""
    ca = certs.make_ca(tmp_path / "ca")
    server = certs.make_server_cert(tmp_path / "server", ["localhost", "127.0.0.1", "::1"], ca)
    return ca, server


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_signs_server_cert(pki: tuple[certs.CertFiles, certs.CertFiles]) -> None:
    ca, server = pki
    cert = certs.verify_server_cert(server.cert, ca.cert, host="localhost")
    ca_cert = certs.load_cert(ca.cert)
    cert.verify_directly_issued_by(ca_cert)  # raises if not
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usage
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA384)


def test_server_cert_has_dns_and_ip_sans(pki: tuple[certs.CertFiles, certs.CertFiles]) -> None:
    _, server = pki
    sans = certs.load_cert(server.cert).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert sans.value.get_values_for_type(x509.DNSName) == ["localhost"]
    assert sans.value.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    for host in ("localhost", "127.0.0.1", "::1", "LOCALHOST"):
        certs.verify_server_cert(server.cert, pki[0].cert, host=host)


def test_host_not_in_sans_is_refused(pki: tuple[certs.CertFiles, certs.CertFiles]) -> None:
    ca, server = pki
    with pytest.raises(CertError, match="does not name host '10.0.0.5'"):
        certs.verify_server_cert(server.cert, ca.cert, host="10.0.0.5")


def test_wrong_ca_fails_verification(
    tmp_path: Path, pki: tuple[certs.CertFiles, certs.CertFiles]
) -> None:
    _, server = pki
    other = certs.make_ca(tmp_path / "other")  # same subject name, different key
    with pytest.raises(CertError, match="not signed by the CA"):
        certs.verify_server_cert(server.cert, other.cert)
    renamed = certs.make_ca(tmp_path / "renamed", common_name="Another CA")
    with pytest.raises(CertError, match="not issued by the CA"):
        certs.verify_server_cert(server.cert, renamed.cert)


def test_all_keys_are_p384(tmp_path: Path, pki: tuple[certs.CertFiles, certs.CertFiles]) -> None:
    ca, server = pki
    site = certs.make_site_keypair(tmp_path / "keys", "site0")
    for path in (ca.key, server.key, site.private_key):
        assert isinstance(certs.load_private_key(path).curve, ec.SECP384R1)
    for path in (ca.cert, server.cert):
        key = certs.load_cert(path).public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert isinstance(key.curve, ec.SECP384R1)
    assert isinstance(certs.load_site_public_key(site.public_key).curve, ec.SECP384R1)


def test_site_keys_in_flower_formats(tmp_path: Path) -> None:
    """flwr loads the private key with load_ssh_private_key, the .pub with load_ssh_public_key."""
    pair = certs.make_site_keypair(tmp_path, "site0")
    private_text = pair.private_key.read_bytes()
    assert private_text.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    private = serialization.load_ssh_private_key(private_text, password=None)
    line = pair.public_key.read_text()
    assert line.startswith("ecdsa-sha2-nistp384 ") and line.rstrip().endswith(" site0")
    public = serialization.load_ssh_public_key(line.encode())
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.public_key().public_numbers() == public.public_numbers()  # type: ignore[union-attr]


def test_private_keys_are_0600(
    tmp_path: Path, pki: tuple[certs.CertFiles, certs.CertFiles]
) -> None:
    ca, server = pki
    site = certs.make_site_keypair(tmp_path / "keys", "site0")
    for path in (ca.key, server.key, site.private_key):
        assert _mode(path) == 0o600, path
    for path in (ca.cert, server.cert, site.public_key):
        assert _mode(path) & 0o077 != 0o077  # public files are readable, not private


def test_refuses_to_overwrite_keys(tmp_path: Path) -> None:
    ca = certs.make_ca(tmp_path)
    before = ca.key.read_bytes()
    with pytest.raises(CertError, match="refusing to overwrite"):
        certs.make_ca(tmp_path)
    assert ca.key.read_bytes() == before
    site = certs.make_site_keypair(tmp_path, "site0")
    with pytest.raises(CertError, match="refusing to overwrite"):
        certs.make_site_keypair(tmp_path, "site0")
    certs.make_server_cert(tmp_path, ["localhost"], ca)
    with pytest.raises(CertError, match="refusing to overwrite"):
        certs.make_server_cert(tmp_path, ["localhost"], ca)
    old = site.public_key.read_bytes()
    certs.make_site_keypair(tmp_path, "site0", force=True)
    assert site.public_key.read_bytes() != old
    assert _mode(site.private_key) == 0o600


def test_overwrite_refusal_is_a_usage_error(tmp_path: Path) -> None:
    certs.make_ca(tmp_path)
    with pytest.raises(UsageError):
        certs.make_ca(tmp_path)


@pytest.mark.parametrize("host", ["bad host", "", "a..b", "-x.org", "x" * 64 + ".org", "a_b.org"])
def test_bad_host_names_are_refused(host: str) -> None:
    with pytest.raises(CertError, match="neither an IP address nor a valid DNS name"):
        certs.parse_host(host)


def test_host_parsing() -> None:
    assert certs.parse_host("127.0.0.1") == x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    assert certs.parse_host("[::1]") == x509.IPAddress(ipaddress.ip_address("::1"))
    assert certs.parse_host("Fed.Example.ORG.") == x509.DNSName("fed.example.org")
    assert certs.parse_host("*.example.org") == x509.DNSName("*.example.org")


@pytest.mark.parametrize("name", ["", "../x", "a b", "-x", "x" * 64])
def test_bad_site_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(CertError, match="site name"):
        certs.make_site_keypair(tmp_path, name)


def test_mismatched_ca_key_is_refused(tmp_path: Path) -> None:
    a = certs.make_ca(tmp_path / "a")
    b = certs.make_ca(tmp_path / "b")
    with pytest.raises(CertError, match="does not belong"):
        certs.make_server_cert(tmp_path, ["localhost"], certs.CertFiles(cert=a.cert, key=b.key))


def test_wrong_key_types_are_refused(tmp_path: Path) -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "p256.key").write_bytes(
        p256.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "p256.pub").write_bytes(
        p256.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    )
    with pytest.raises(CertError, match="secp256r1 key; FedShift needs ECDSA P-384"):
        certs.load_private_key(tmp_path / "p256.key")
    with pytest.raises(CertError, match="secp256r1 key"):
        certs.load_site_public_key(tmp_path / "p256.pub")
    (tmp_path / "junk.pub").write_text("not a key\n")
    with pytest.raises(CertError, match="junk.pub' is not an OpenSSH public key"):
        certs.load_site_public_key(tmp_path / "junk.pub")
    with pytest.raises(CertError, match="cannot read private key"):
        certs.load_private_key(tmp_path / "missing.key")


def test_tampered_certificate_fails(pki: tuple[certs.CertFiles, certs.CertFiles]) -> None:
    ca, server = pki
    cert = certs.load_cert(server.cert)
    ca_cert = certs.load_cert(ca.cert)
    forged = (  # same subject, issuer and SANs, signed by an attacker's key
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(ca_cert.subject)
        .public_key(cert.public_key())
        .serial_number(cert.serial_number)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
        .add_extension(
            cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value,
            critical=False,
        )
        .sign(ec.generate_private_key(ec.SECP384R1()), hashes.SHA384())
    )
    server.cert.write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(CertError, match="not signed by the CA"):
        certs.verify_server_cert(server.cert, ca.cert)
