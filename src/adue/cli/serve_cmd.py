"""``adue serve BUNDLE``: the bundle as an HTTP service (needs the ``adue[serve]`` extra)."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os

logger = logging.getLogger(__name__)

_MISSING = "adue serve needs FastAPI and uvicorn: pip install 'adue[serve]' (make install includes them)."


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "serve",
        help="serve a bundle over HTTP (POST /predict, GET /health, GET /info)",
        description="Serve a bundle (adue fit) over HTTP. Binds 127.0.0.1 unless --host says otherwise.",
    )
    p.add_argument("bundle", help="bundle folder written by 'adue fit'")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 = any free port)")
    p.add_argument("--max-batch", type=int, default=64, help="most inputs per request and per model batch (default 64)")
    p.add_argument("--max-chars", type=int, default=20_000, help="most characters per text (default 20000)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits for more requests (default 5 ms)")
    p.add_argument("--workers", type=int, default=1, help="worker processes, each with its own copy of the model (default 1)")
    p.set_defaults(func=_run)
    return p


def _check(args: argparse.Namespace) -> None:
    if not 0 <= args.port <= 65535:
        raise ValueError(f"The 'port' parameter of adue serve must be in [0, 65535]. Got {args.port} instead.")
    if args.workers < 1:
        raise ValueError(f"The 'workers' parameter of adue serve must be >= 1. Got {args.workers} instead.")
    if not os.path.isdir(args.bundle):
        raise FileNotFoundError(f"The bundle folder {args.bundle} does not exist (write one with 'adue fit').")
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        logger.warning("Serving on %s: the service is reachable from other machines.", args.host)


def _run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from adue.serve import ServeConfig, create_app
    except ModuleNotFoundError as exc:
        raise ValueError(f"{_MISSING} ({exc.name} is missing)") from exc
    cfg = ServeConfig(max_batch=args.max_batch, max_chars=args.max_chars, max_wait_ms=args.max_wait_ms)
    _check(args)
    common = dict(host=args.host, port=args.port, timeout_graceful_shutdown=30, log_level="info")
    if args.workers > 1:
        from dataclasses import asdict

        from adue.serve.app import ENV_BUNDLE, ENV_CONFIG

        os.environ[ENV_BUNDLE] = os.path.abspath(args.bundle)
        os.environ[ENV_CONFIG] = json.dumps(asdict(cfg))
        uvicorn.run("adue.serve.app:app_from_env", factory=True, workers=args.workers, **common)
        return 0
    from adue.classifier import UncertainClassifier

    app = create_app(UncertainClassifier.load(args.bundle), cfg)
    uvicorn.run(app, **common)
    return 0
