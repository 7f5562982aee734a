"""``elastiq gateway``: serve the HTTP gateway (or write its OpenAPI document).

    ELASTIQ_GATEWAY_TOKENS=$(python -c 'import secrets; print(secrets.token_urlsafe(32))') \\
        elastiq gateway                          # http://127.0.0.1:8000, bearer auth
    elastiq gateway --openapi docs/openapi.json  # regenerate the committed document

Refuses to start without a token unless ``--insecure-no-auth`` on a loopback address.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def parse_args(argv: list[str]) -> argparse.Namespace:
    env = os.environ
    p = argparse.ArgumentParser(prog="elastiq gateway", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default=env.get("ELASTIQ_GATEWAY_HOST", "127.0.0.1"),
                   help="bind address (default 127.0.0.1; anything else needs a token)")
    p.add_argument("--port", type=int, default=None, help="default 8000 (ELASTIQ_GATEWAY_PORT)")
    p.add_argument("--tokens-file", help="bearer tokens, one per line (or ELASTIQ_GATEWAY_TOKENS_FILE)")
    p.add_argument("--insecure-no-auth", action="store_true",
                   help="serve without auth: allowed on a loopback address only")
    p.add_argument("--ssl-certfile", help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--ssl-keyfile", help="... and this key")
    p.add_argument("--log-level", default=env.get("ELASTIQ_GATEWAY_LOG_LEVEL", "warning"))
    p.add_argument("--openapi", metavar="PATH", help="write the OpenAPI document to PATH ('-' = stdout) and exit")
    return p.parse_args(argv)


def openapi_text() -> str:
    from gateway.app import create_app

    return json.dumps(create_app().openapi(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.openapi:
        text = openapi_text()
        if args.openapi == "-":
            sys.stdout.write(text)
        else:
            with open(args.openapi, "w") as f:
                f.write(text)
            print(f"wrote {args.openapi}", file=sys.stderr)
        return 0
    from gateway.config import GatewayConfig, is_loopback

    config = GatewayConfig.from_env(tokens_file=args.tokens_file, host=args.host, port=args.port,
                                    insecure_no_auth=args.insecure_no_auth)
    config.check_startup()               # ConfigError: `elastiq` prints it and exits 1
    import uvicorn

    from gateway.app import create_app

    scheme = "https" if args.ssl_certfile else "http"
    auth = f"bearer ({len(config.tokens)} token(s))" if config.tokens else "NONE (--insecure-no-auth, loopback)"
    print(f"elastiq gateway on {scheme}://{config.host}:{config.port}  auth: {auth}", file=sys.stderr, flush=True)
    if not is_loopback(config.host) and scheme == "http":
        print("warning: listening beyond loopback over plain HTTP: put it behind TLS "
              "(--ssl-certfile/--ssl-keyfile or a proxy)", file=sys.stderr, flush=True)
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level=args.log_level,
                access_log=False, server_header=False, proxy_headers=False, timeout_keep_alive=5,
                ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile, lifespan="on")
    return 0
