"""Which proxy a request goes through: NO_PROXY as Go's httpproxy reads it (pure).

The proxy in front of a real API server is in test_connection_cluster.py."""

from __future__ import annotations

import pytest

from shunter.kube.proxies import (
    ProxyEnvironment,
    ProxyError,
    bypassed,
    proxy_credentials,
    proxy_url,
)


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "direct"),
    [
        ("", "api.example.com", "443", False),
        ("*", "api.example.com", "443", True),
        # A domain is itself and its subdomains; a leading dot or "*." only subdomains.
        ("example.com", "example.com", "443", True),
        ("example.com", "api.example.com", "443", True),
        ("example.com", "notexample.com", "443", False),
        (".example.com", "example.com", "443", False),
        (".example.com", "api.example.com", "443", True),
        ("*.example.com", "example.com", "443", False),
        ("*.example.com", "a.b.example.com", "443", True),
        (" Example.COM ", "api.example.com", "443", True),
        # A port narrows an entry to that port.
        ("example.com:6443", "api.example.com", "6443", True),
        ("example.com:6443", "api.example.com", "443", False),
        # CIDR ranges and addresses match servers named by an address only.
        ("10.0.0.0/8", "10.96.0.1", "443", True),
        ("10.0.0.0/8", "11.0.0.1", "443", False),
        ("10.0.0.0/8", "ten.example.com", "443", False),
        ("fd00::/8", "fd00::1", "443", True),
        ("192.168.1.5", "192.168.1.5", "443", True),
        ("192.168.1.5:6443", "192.168.1.5", "443", False),
        ("[fd00::1]:443", "fd00::1", "443", True),
        ("fd00::1", "fd00::1", "6443", True),
        # Several entries, blanks and malformed ones ignored.
        ("a.com, ,:80,b.com", "x.b.com", "443", True),
        # Loopback is never proxied, whatever NO_PROXY says.
        ("", "localhost", "443", True),
        ("", "127.0.0.1", "443", True),
        ("", "::1", "443", True),
    ],
)
def test_no_proxy_matching(no_proxy: str, host: str, port: str, direct: bool):
    assert bypassed(host, port, no_proxy) is direct


def test_the_scheme_picks_the_variable_uppercase_first_and_no_fallback():
    env = ProxyEnvironment.read(
        {"HTTPS_PROXY": "proxy.corp:3128", "https_proxy": "http://lower:1", "NO_PROXY": ""}
    )
    assert env.proxy_for("https://api.example.com:6443") == "http://proxy.corp:3128"
    assert env.proxy_for("http://api.example.com") is None  # HTTP_PROXY unset: direct
    lower = ProxyEnvironment.read({"https_proxy": "http://lower:1", "no_proxy": "example.com"})
    assert lower.proxy_for("https://other.org") == "http://lower:1"
    assert lower.proxy_for("https://api.example.com") is None
    # The default port takes part in a NO_PROXY entry with a port.
    ported = ProxyEnvironment.read({"HTTPS_PROXY": "p:1", "NO_PROXY": "example.com:443"})
    assert ported.proxy_for("https://example.com") is None
    assert ported.proxy_for("https://example.com:6443") == "http://p:1"


def test_http_proxy_is_ignored_under_cgi():
    env = ProxyEnvironment.read({"HTTP_PROXY": "http://evil:1", "REQUEST_METHOD": "GET"})
    assert env.proxy_for("http://api.example.com") is None


def test_socks_proxies_are_refused_with_a_reason():
    with pytest.raises(ProxyError, match="only http"):
        proxy_url("socks5://proxy:1080")
    assert proxy_url("https://proxy:443") == "https://proxy:443"


def test_a_proxys_credentials_move_from_its_url_to_a_header():
    assert proxy_credentials("http://proxy:3128") == ("http://proxy:3128", {})
    bare, headers = proxy_credentials("http://me:s%3Acret@proxy:3128/")
    assert bare == "http://proxy:3128/"
    assert headers == {"Proxy-Authorization": "Basic bWU6czpjcmV0"}  # me:s:cret
