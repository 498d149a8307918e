"""Which HTTP proxy a connection to the API server goes through.

The kubeconfig cluster's `proxy-url` wins when set (it applies to that cluster alone,
NO_PROXY included, as in client-go). Otherwise the environment decides the way Go's
net/http does (golang.org/x/net/http/httpproxy), so Shunter goes where kubectl and
every client-go controller beside it go with the same settings:

- HTTPS_PROXY (then https_proxy) for an https server, HTTP_PROXY (then http_proxy)
  for an http one; no fallback from one to the other; a value without a scheme is
  http://;
- never for `localhost` or a loopback address;
- NO_PROXY (then no_proxy): comma-separated; `*` for everything; an IP address or a
  CIDR range matches a server named by an IP address; `example.com` matches that name
  and its subdomains, `.example.com` and `*.example.com` its subdomains only; any entry
  may carry a `:port`, then only that port matches.

The proxy is reached with HTTP CONNECT, so TLS still runs end to end with the API
server (aiohttp's proxy support); a user and password in its URL are sent as
Proxy-Authorization (basic), as Go sends them. A SOCKS proxy is refused when the
connection is built: aiohttp does not speak SOCKS.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

_SUPPORTED = ("http", "https")
_DEFAULT_PORTS = {"https": "443", "http": "80"}


class ProxyError(ValueError):
    """A proxy setting that cannot be used."""


def proxy_url(value: str) -> str:
    """A proxy setting as a URL: http:// when it names no scheme; SOCKS refused."""
    value = value.strip()
    parts = urlsplit(value)
    if not parts.scheme or not parts.netloc:
        value = f"http://{value}"
        parts = urlsplit(value)
    if parts.scheme not in _SUPPORTED:
        raise ProxyError(f"proxy {value}: only http:// and https:// proxies are supported")
    return value


def proxy_credentials(url: str) -> tuple[str, dict[str, str]]:
    """The proxy URL without its user and password, and the header that carries them."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, {}
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    netloc = parts.netloc.rpartition("@")[2]
    bare = urlunsplit(parts._replace(netloc=netloc))
    return bare, {"Proxy-Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


@dataclass(frozen=True)
class ProxyEnvironment:
    http_proxy: str = ""
    https_proxy: str = ""
    no_proxy: str = ""

    @classmethod
    def read(cls, environ: Mapping[str, str] = os.environ) -> ProxyEnvironment:
        def first(*names: str) -> str:
            return next((environ[n] for n in names if environ.get(n)), "")

        return cls(
            # Under CGI, HTTP_PROXY is a request header a client set: never trusted.
            http_proxy="" if environ.get("REQUEST_METHOD") else first("HTTP_PROXY", "http_proxy"),
            https_proxy=first("HTTPS_PROXY", "https_proxy"),
            no_proxy=first("NO_PROXY", "no_proxy"),
        )

    def proxy_for(self, url: str) -> str | None:
        """The proxy for requests to url (None: connect directly)."""
        parts = urlsplit(url)
        chosen = self.https_proxy if parts.scheme == "https" else self.http_proxy
        if not chosen or not parts.hostname:
            return None
        port = str(parts.port) if parts.port else _DEFAULT_PORTS.get(parts.scheme, "")
        if bypassed(parts.hostname, port, self.no_proxy):
            return None
        return proxy_url(chosen)


def bypassed(host: str, port: str, no_proxy: str) -> bool:
    """Whether host:port is reached directly: loopback, or a NO_PROXY entry matches."""
    host = host.strip().lower()
    if host == "localhost":
        return True
    ip = _ip(host)
    if ip is not None and ip.is_loopback:
        return True
    return any(_matches(entry, host, port, ip) for entry in no_proxy.split(","))


def _matches(
    entry: str, host: str, port: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
) -> bool:
    entry = entry.strip().lower()
    if not entry:
        return False
    if entry == "*":
        return True
    if "/" in entry:  # a CIDR range: only a server named by an IP address is in one
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return False
        return ip is not None and ip in network
    name, wanted_port = _split_port(entry)
    if not name:
        return False  # ":80" and the like: malformed, ignored as Go does
    if wanted_port and wanted_port != port:
        return False
    entry_ip = _ip(name)
    if entry_ip is not None:
        return ip is not None and ip == entry_ip
    # A domain: "example.com" is the name and its subdomains; ".example.com" and
    # "*.example.com" only the subdomains.
    exact = not name.startswith((".", "*."))
    suffix = "." + name.removeprefix("*").lstrip(".")
    return host.endswith(suffix) or (exact and host == suffix[1:])


def _split_port(entry: str) -> tuple[str, str]:
    """("host", "port") of "host:port" or "[v6]:port"; a bare IPv6 address has no port."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, rest.removeprefix(":")
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, port
    return entry, ""


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None
