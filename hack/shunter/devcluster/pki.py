"""Certificates and keys for the local control plane, made with the openssl CLI.

One CA signs the API server's serving certificate and the admin client certificate
(group system:masters); the service-account key pair signs bound tokens. Certificates
last a year: a local cluster is thrown away long before that.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

_DAYS = "365"
_API_SERVER_SANS = (
    "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
    "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
)


@dataclass(frozen=True)
class Pki:
    """Paths of the files a control plane needs."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.root / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.root / "apiserver.key"

    @property
    def admin_cert(self) -> Path:
        return self.root / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.root / "admin.key"

    @property
    def sa_key(self) -> Path:
        return self.root / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.root / "sa.pub"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _key(path: Path) -> None:
    _openssl("genrsa", "-out", str(path), "2048")
    path.chmod(0o600)


def _signed_cert(pki: Pki, *, key: Path, cert: Path, subject: str, extensions: str) -> None:
    csr = cert.with_suffix(".csr")
    ext = cert.with_suffix(".ext")
    ext.write_text(extensions)
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(pki.ca_cert), "-CAkey", str(pki.ca_key),
        "-CAcreateserial", "-days", _DAYS, "-sha256", "-extfile", str(ext), "-out", str(cert),
    )  # fmt: skip
    csr.unlink()
    ext.unlink()


def issue(pki: Pki, name: str, *, subject: str, extensions: str) -> tuple[Path, Path]:
    """A new key and a certificate signed by the cluster CA: (cert, key) under root."""
    cert, key = pki.root / f"{name}.crt", pki.root / f"{name}.key"
    _key(key)
    _signed_cert(pki, key=key, cert=cert, subject=subject, extensions=extensions)
    return cert, key


def client_extensions() -> str:
    return "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"


def serving_extensions(sans: str) -> str:
    return (
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={sans}\n"
    )


def reissue_serving_cert(pki: Pki, *, extra_ips: tuple[str, ...]) -> None:
    """The API server's serving certificate again, also valid for extra_ips."""
    sans = _API_SERVER_SANS + "".join(f",IP:{ip}" for ip in extra_ips)
    _key(pki.serving_key)
    _signed_cert(pki, key=pki.serving_key, cert=pki.serving_cert, subject="/CN=kube-apiserver",
                 extensions=serving_extensions(sans))  # fmt: skip


def create_pki(root: Path) -> Pki:
    """Write a fresh CA, serving and admin certificates and SA keys under root."""
    root.mkdir(parents=True, exist_ok=True)
    pki = Pki(root)
    _key(pki.ca_key)
    _openssl(
        "req", "-x509", "-new", "-key", str(pki.ca_key), "-subj", "/CN=shunter-local-ca",
        "-days", _DAYS, "-sha256", "-out", str(pki.ca_cert),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    )  # fmt: skip
    _key(pki.serving_key)
    _signed_cert(
        pki,
        key=pki.serving_key,
        cert=pki.serving_cert,
        subject="/CN=kube-apiserver",
        extensions=(
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            f"subjectAltName={_API_SERVER_SANS}\n"
        ),
    )
    _key(pki.admin_key)
    _signed_cert(
        pki,
        key=pki.admin_key,
        cert=pki.admin_cert,
        subject="/O=system:masters/CN=shunter-admin",
        extensions="keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
    )
    _key(pki.sa_key)
    _openssl("rsa", "-in", str(pki.sa_key), "-pubout", "-out", str(pki.sa_pub))
    return pki
