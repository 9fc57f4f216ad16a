"""hub.tls_ca / tls_cert / tls_key: the uplink verifies the server and presents its own cert."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edge_agent.uplink import Uplink
from shared.embedded_nats import embedded_nats
from shared.errors import AglError

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(root: Path) -> Path:
    """A CA, a server cert for 127.0.0.1 and a client cert, all signed by the CA."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "2", "-subj", "/CN=agl-test-ca", cwd=root)  # fmt: skip
    for name, extra in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", "-subj", f"/CN=agl-{name}", cwd=root)  # fmt: skip
        ext = root / f"{name}.ext"
        ext.write_text(extra + "\n" if extra else "basicConstraints=CA:FALSE\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", ext.name,
                 cwd=root)  # fmt: skip
    conf = root / "tls.conf"
    conf.write_text(
        f'tls {{ cert_file: "{root}/server.pem", key_file: "{root}/server.key", '
        f'ca_file: "{root}/ca.pem", verify: true }}\n'
    )
    return conf


async def test_the_uplink_connects_over_mutual_tls(tmp_path: Path) -> None:
    conf = make_pki(tmp_path)
    with embedded_nats(include=conf) as server:
        link = Uplink(
            server.url,
            device="dev-tls",
            tls_ca=tmp_path / "ca.pem",
            tls_cert=tmp_path / "client.pem",
            tls_key=tmp_path / "client.key",
        )
        await link.connect()
        try:
            assert await link.wait_connected(10)
        finally:
            await link.close()
        plain = Uplink(server.url, device="dev-plain", connect_timeout_s=1)
        await plain.connect()
        try:  # without the client cert the server refuses the link
            assert not await plain.wait_connected(2)
        finally:
            await plain.close()


def test_unreadable_tls_files_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AglError, match="cannot load the TLS files"):
        Uplink("nats://127.0.0.1:4222", device="d", tls_ca=tmp_path / "missing-ca.pem")
