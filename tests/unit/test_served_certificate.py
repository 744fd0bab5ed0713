"""The listener's certificate: a reload hands the new pair to the next handshakes; a pair that
does not load raises and leaves the one served (handshakes in memory, no sockets)."""

from __future__ import annotations

import contextlib
import ssl

import pytest
import trustme

from warden.edge.tls import ServedCertificate


def pair(directory, name: str, key_type: trustme.KeyType) -> tuple:
    cert = trustme.CA().issue_cert("localhost", key_type=key_type)
    chain, key = directory / f"{name}.pem", directory / f"{name}.key"
    cert.cert_chain_pems[0].write_to_path(chain)
    cert.private_key_pem.write_to_path(key)
    return chain, key, cert.cert_chain_pems[0].bytes()


def served_certificate(served: ServedCertificate) -> bytes:
    """The PEM certificate a client's handshake gets (no server name sent)."""
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.check_hostname = False
    client_context.verify_mode = ssl.CERT_NONE
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, to_server)
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = served.context.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(10):
        for side in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        server_in.write(to_server.read())
        to_client.write(server_out.read())
        if client.version() is not None and server.version() is not None:
            break
    return ssl.DER_cert_to_PEM_cert(client.getpeercert(binary_form=True)).encode()


def test_each_reload_is_served_whatever_its_key_type(tmp_path):
    ecdsa, rsa = trustme.KeyType.ECDSA, trustme.KeyType.RSA
    first = pair(tmp_path, "a", ecdsa)
    served = ServedCertificate(first[0], first[1])
    assert served_certificate(served) == first[2]
    for n, key_type in enumerate([rsa, ecdsa, rsa]):
        chain, key, pem = pair(tmp_path, f"b{n}", key_type)
        served.reload(chain, key)
        assert served_certificate(served) == pem


def test_a_pair_that_does_not_load_leaves_the_one_served(tmp_path):
    chain, key, pem = pair(tmp_path, "a", trustme.KeyType.ECDSA)
    served = ServedCertificate(chain, key)
    other_chain, _, _ = pair(tmp_path, "b", trustme.KeyType.RSA)
    with pytest.raises(ssl.SSLError):
        served.reload(other_chain, key)  # a key that is not the certificate's
    with pytest.raises(OSError):
        served.reload(tmp_path / "gone.pem", key)
    assert served_certificate(served) == pem
