"""`shunter-api`: serve the REST facade with uvicorn (default 0.0.0.0:8000).

HTTPS when SHUNTER_API_TLS_CERTFILE and SHUNTER_API_TLS_KEYFILE name a certificate and
its key (the chart mounts them from `api.tls.secretName`): uvicorn terminates TLS
itself, so the token every request carries never crosses the network in clear text,
with no proxy to run beside the API. The UI is served by the same server and calls
the API relative to its page, so it works over HTTPS unchanged.
"""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from shunter.api.app import create_app
from shunter.api.settings import ApiSettings
from shunter.kube import Kube, connect

STOP_SECONDS = 5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shunter-api", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = ApiSettings()
    app = create_app(settings, Kube(connect()))
    # Open streams (GET /stream, followed logs) would hold a graceful stop forever.
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False,
                timeout_graceful_shutdown=STOP_SECONDS, ssl_certfile=settings.tls_certfile,
                ssl_keyfile=settings.tls_keyfile)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
