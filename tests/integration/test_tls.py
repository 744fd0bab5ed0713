"""HTTPS on the gateway's listener, with certificates made here (trustme): the openai SDK over
TLS, verified; TLS 1.2 at least; a certificate renewed by a reload while streams are open
drops none of them, and new connections get the new one; a pair that does not load is refused
at load."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading

import openai
import pytest
import trustme
from openai import DefaultHttpxClient, OpenAI

from tests.harness import GatewayThread
from warden.config import ConfigError
from warden.settings import parse_settings

MESSAGES = [{"role": "user", "content": "hi"}]


def issue(ca: trustme.CA, directory, name: str,
          key_type: trustme.KeyType = trustme.KeyType.ECDSA) -> dict:
    cert = ca.issue_cert("127.0.0.1", "localhost", key_type=key_type)
    chain, key = directory / f"{name}.pem", directory / f"{name}.key"
    cert.private_key_pem.write_to_path(key)
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return {"cert": str(chain), "key": str(key)}


def trusting(ca: trustme.CA, directory, name: str) -> str:
    path = directory / f"{name}-ca.pem"
    ca.cert_pem.write_to_path(path)
    return str(path)


def sdk(port: int, ca_file: str) -> OpenAI:
    return OpenAI(base_url=f"https://127.0.0.1:{port}/v1", api_key="unused", max_retries=0,
                  http_client=DefaultHttpxClient(
                      verify=ssl.create_default_context(cafile=ca_file)))


def test_https_with_a_certificate_renewed_under_open_streams(slow_fleet, tmp_path):
    first_ca, second_ca = trustme.CA(), trustme.CA()
    config = {"backends": slow_fleet.backends_config(), "tls": issue(first_ca, tmp_path, "a")}
    gw = GatewayThread(config)
    first, second = trusting(first_ca, tmp_path, "a"), trusting(second_ca, tmp_path, "b")
    port = gw.gateway.port
    try:
        reply = sdk(port, first).chat.completions.create(model="sim-model", messages=MESSAGES,
                                                         max_tokens=2)
        assert reply.usage.completion_tokens == 2
        chunks: list[list] = [[], [], []]
        started = threading.Barrier(len(chunks) + 1)

        def stream(into: list) -> None:
            events = sdk(port, first).chat.completions.create(
                model="sim-model", messages=MESSAGES, max_tokens=60, stream=True)
            for n, event in enumerate(events):
                into.append(event)
                if n == 0:
                    started.wait(timeout=20)

        threads = [threading.Thread(target=stream, args=(c,)) for c in chunks]
        for thread in threads:
            thread.start()
        started.wait(timeout=20)  # every stream has begun
        assert gw.reload({**config, "tls": issue(second_ca, tmp_path, "b")}) == []
        for thread in threads:
            thread.join(timeout=30)
        finishes = [c[-1].choices[0].finish_reason for c in chunks]
        assert finishes == ["length"] * 3  # none was cut by the renewal
        assert sdk(port, second).models.list().data  # new connections: the new certificate
        with pytest.raises(openai.APIConnectionError) as refused:
            sdk(port, first).models.list()
        assert "CERTIFICATE_VERIFY_FAILED" in repr(refused.value.__cause__)
    finally:
        gw.stop()


def test_a_renewal_with_another_key_type_is_what_new_connections_get(fleet, tmp_path):
    """ECDSA, then RSA, then ECDSA again: each reload's pair is the one served (loading a pair
    of another key type into the live context kept the old one beside it, and clients that
    accept both kept getting the old certificate)."""
    config = {"backends": fleet.backends_config()}
    gw = None
    try:
        for n, key_type in enumerate([trustme.KeyType.ECDSA, trustme.KeyType.RSA,
                                      trustme.KeyType.ECDSA]):
            ca = trustme.CA()
            pair = issue(ca, tmp_path, f"k{n}", key_type)
            if gw is None:
                gw = GatewayThread({**config, "tls": pair})
            else:
                assert gw.reload({**config, "tls": pair}) == []
            assert sdk(gw.gateway.port, trusting(ca, tmp_path, f"k{n}")).models.list().data
    finally:
        if gw is not None:
            gw.stop()


def test_admin_commands_given_the_config_trust_its_own_certificate(fleet, tmp_path):
    """`-c` reaches the TLS listener at 127.0.0.1, which a certificate for the gateway's
    public name does not carry, from a private CA: its own certificate is what is trusted."""
    cert = trustme.CA().issue_cert("gw.example")
    chain, key = tmp_path / "gw.pem", tmp_path / "gw.key"
    cert.private_key_pem.write_to_path(key)
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    tls = {"cert": str(chain), "key": str(key)}
    gw = GatewayThread({"backends": fleet.backends_config(), "tls": tls})
    try:
        config = tmp_path / "warden.yaml"
        config.write_text(json.dumps({"listen": f"127.0.0.1:{gw.gateway.port}", "tls": tls,
                                      "backends": fleet.backends_config()}))
        listed = subprocess.run([sys.executable, "-m", "warden", "backends", "list", "-c",
                                 str(config)],
                                capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0 and "policy:" in listed.stdout, listed.stderr
        other = trustme.CA().issue_cert("gw.example")  # not the one served: refused
        other.cert_chain_pems[0].write_to_path(chain)
        other.private_key_pem.write_to_path(key)
        refused = subprocess.run([sys.executable, "-m", "warden", "backends", "list", "-c",
                                  str(config)], capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr
        assert "not the certificate the config names" in refused.stderr  # (renewed: SIGHUP)
    finally:
        gw.stop()


def test_tls_before_1_2_is_refused(fleet, tmp_path):
    ca = trustme.CA()
    gw = GatewayThread({"backends": fleet.backends_config(), "tls": issue(ca, tmp_path, "c")})
    try:
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.check_hostname = False
        old.verify_mode = ssl.CERT_NONE
        old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        with pytest.warns(DeprecationWarning):  # (as it should be: that is the point)
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        with socket.create_connection(("127.0.0.1", gw.gateway.port), timeout=5) as raw, \
                pytest.raises(ssl.SSLError):
            old.wrap_socket(raw).do_handshake()
    finally:
        gw.stop()


def test_a_pair_that_does_not_load_is_refused_at_load(tmp_path):
    other = issue(trustme.CA(), tmp_path, "d")
    mismatched = {"cert": other["cert"], "key": issue(trustme.CA(), tmp_path, "e")["key"]}
    for tls in (mismatched, {"cert": str(tmp_path / "none.pem"), "key": other["key"]}):
        with pytest.raises(ConfigError) as refused:
            parse_settings({"backends": [{"name": "b", "url": "http://127.0.0.1:9"}],
                            "tls": tls}, {})
        assert "tls: cannot load the certificate" in str(refused.value.problems)


def test_a_ca_bundle_that_does_not_load_is_refused_at_load(tmp_path):
    """(At a reload it would have failed the new config halfway through being built.)"""
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    for ca in (tmp_path / "none.pem", junk):
        with pytest.raises(ConfigError) as refused:
            parse_settings({"backends": [{"name": "b", "url": "https://127.0.0.1:9",
                                          "tls_ca": str(ca)}]}, {})
        assert "cannot load the CA bundle" in str(refused.value.problems)


def test_https_backends_verified_against_the_configured_ca(fleet, tmp_path):
    """A gateway whose backend speaks TLS (here another Warden, serving HTTPS in front of the
    simulated fleet): verified with the CA it is given, refused with the system's (which does
    not know this CA), reached without verification when told so."""
    ca = trustme.CA()
    front = GatewayThread({"backends": fleet.backends_config(), "tls": issue(ca, tmp_path, "f")})
    url = f"https://127.0.0.1:{front.gateway.port}"
    trusted = {"name": "tls", "url": url, "models": ["sim-model"],
               "tls_ca": trusting(ca, tmp_path, "f")}
    gateways = [GatewayThread({"backends": [backend]}) for backend in (
        trusted, {**trusted, "tls_ca": None}, {**trusted, "tls_ca": None, "tls_verify": False})]
    try:
        answers = []
        for gw in gateways:
            try:
                OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0).completions \
                    .create(model="sim-model", prompt="hi", max_tokens=1)
                answers.append(200)
            except openai.APIStatusError as e:
                answers.append(e.status_code)
        assert answers == [200, 503, 200]
        snapshot = gateways[1].call(lambda: gateways[1].gateway.backends.named("tls")
                                    .snapshot(0.0))
        assert "CERTIFICATE_VERIFY_FAILED" in str(snapshot)
    finally:
        for gw in (*gateways, front):
            gw.stop()
