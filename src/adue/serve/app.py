"""The HTTP service: ``POST /predict``, ``GET /health``, ``GET /info`` over one classifier.

The classifier is anything with ``predict(texts) -> list[dict]`` (one record per text: label,
label_id, score, probabilities, uncertainty, abstain) and ``info() -> dict``, in practice an
:class:`adue.classifier.UncertainClassifier` loaded from a bundle. Requests never name files or
models: the service serves the one classifier it was started with.

Status codes: 200; 411 for a POST without Content-Length; 413 when a request has more than ``max_batch`` inputs, a text longer than
``max_chars`` characters or a body over the byte limit; 422 for malformed JSON, wrong types or
an empty list; 500 for an internal error (logged; the body carries no traceback). The service
keeps serving after each.
"""

from __future__ import annotations

import json
import logging
import math
import os
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, StrictStr, field_validator

from adue.serve.batcher import MicroBatcher

__all__ = ["ServeConfig", "create_app", "app_from_env"]

logger = logging.getLogger(__name__)

#: Environment variables read by :func:`app_from_env` (used for ``--workers`` > 1).
ENV_BUNDLE = "ADUE_SERVE_BUNDLE"
ENV_CONFIG = "ADUE_SERVE_CONFIG"


class Classifier(Protocol):
    def predict(self, texts: list[str]) -> list[dict[str, Any]]: ...

    def info(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ServeConfig:
    """Limits of the service: inputs per request (and per model batch), characters per text,
    milliseconds a batch waits for more requests."""

    max_batch: int = 64
    max_chars: int = 20_000
    max_wait_ms: float = 5.0

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_chars"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"The '{name}' parameter of ServeConfig must be an int >= 1. Got {v!r} instead.")
        w = self.max_wait_ms
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 1000:
            raise ValueError(f"The 'max_wait_ms' parameter of ServeConfig must be a number in [0, 1000]. Got {w!r} instead.")

    @property
    def max_body_bytes(self) -> int:
        """Largest accepted body: every text at full length, each character JSON-escaped (6 bytes)."""
        return self.max_batch * (self.max_chars * 6 + 16) + 4096


class PredictRequest(BaseModel):
    """``{"inputs": "text"}`` or ``{"inputs": ["text", ...]}``."""

    model_config = ConfigDict(extra="forbid")
    inputs: StrictStr | list[StrictStr]

    @field_validator("inputs")
    @classmethod
    def _not_empty(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and not v:
            raise ValueError("'inputs' must hold at least one text")
        return v


def _plain(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars and arrays become Python numbers and lists."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _plain(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _name(entry: Any, *keys: str) -> Any:
    """A short name for a bundle entry that may be a string or a dict (first key present)."""
    if isinstance(entry, dict):
        return next((entry[k] for k in keys if entry.get(k)), None)
    return entry


def _json(content: Any, status_code: int = 200) -> Response:
    body = json.dumps(_plain(content), ensure_ascii=False, allow_nan=False)
    return Response(body, status_code=status_code, media_type="application/json")


def _check_limits(texts: list[str], cfg: ServeConfig) -> None:
    if len(texts) > cfg.max_batch:
        raise HTTPException(413, f"At most {cfg.max_batch} inputs per request; got {len(texts)}.")
    for i, t in enumerate(texts):
        if len(t) > cfg.max_chars:
            raise HTTPException(413, f"Input {i} has {len(t)} characters; the limit is {cfg.max_chars}.")


def _add_body_limit(app: FastAPI, cfg: ServeConfig) -> None:
    @app.middleware("http")
    async def _limit(request: Request, call_next: Any) -> Response:
        if request.method == "POST":
            size = request.headers.get("content-length")
            if size is None or not size.isdigit():
                return JSONResponse({"detail": "A Content-Length header is required."}, status_code=411)
            if int(size) > cfg.max_body_bytes:
                return JSONResponse({"detail": f"Request body over {cfg.max_body_bytes} bytes."}, status_code=413)
        return await call_next(request)


def _add_routes(app: FastAPI, classifier: Classifier, batcher: MicroBatcher, cfg: ServeConfig) -> None:
    info = _plain(classifier.info())
    model = _name(info.get("model"), "name", "id", "path")
    method = _name(info.get("method"), "name")

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness: 200 with ``{"status": "ok"}`` while the service runs."""
        return {"status": "ok"}

    @app.get("/info")
    async def get_info() -> Response:
        """The bundle: model and hashes, method, labels, threshold, target risk, bound, coverage."""
        stats = {"batches": batcher.batches_run, "texts": batcher.texts_run}
        return _json({**info, "serving": {**asdict(cfg), **stats}})

    @app.post("/predict")
    async def predict(req: PredictRequest) -> Response:
        """One record per input: label, label_id, score, probabilities, uncertainty, abstain."""
        texts = [req.inputs] if isinstance(req.inputs, str) else list(req.inputs)
        _check_limits(texts, cfg)
        try:
            preds = await batcher.submit(texts)
        except Exception:  # noqa: BLE001 - logged by the batcher; no traceback to the client
            return _json({"detail": "Internal error while predicting; see the service log."}, 500)
        return _json({"predictions": preds, "model": model, "method": method})


def create_app(classifier: Classifier, config: ServeConfig | None = None) -> FastAPI:
    """A FastAPI app serving ``classifier`` with micro-batching (see :class:`MicroBatcher`)."""
    cfg = config or ServeConfig()
    batcher = MicroBatcher(classifier.predict, max_batch=cfg.max_batch, max_wait_s=cfg.max_wait_ms / 1000)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202 - FastAPI's lifespan protocol
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(
        title="adue",
        summary="Predictions that say when they are likely wrong (abstain).",
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    _add_body_limit(app, cfg)
    _add_routes(app, classifier, batcher, cfg)
    return app


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` (each worker process loads the bundle itself)."""
    from adue.classifier import UncertainClassifier

    bundle = os.environ.get(ENV_BUNDLE)
    if not bundle:
        raise RuntimeError(f"Set {ENV_BUNDLE} to the bundle folder to serve.")
    cfg = ServeConfig(**json.loads(os.environ.get(ENV_CONFIG, "{}")))
    return create_app(UncertainClassifier.load(bundle), cfg)
