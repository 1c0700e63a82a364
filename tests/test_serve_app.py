"""The HTTP app on a fake classifier: routes, limits, error statuses, micro-batching."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from fastapi.testclient import TestClient

from adue.serve import MicroBatcher, ServeConfig, create_app


class FakeClassifier:
    """Label = len(text) % 2; records each batch it was called with."""

    def __init__(self, delay: float = 0.0, fail_on: str | None = None) -> None:
        self.delay, self.fail_on = delay, fail_on
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()

    def predict(self, texts: list[str]) -> list[dict]:
        self.threads.add(threading.current_thread().name)
        self.batches.append(list(texts))
        if self.delay:
            time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError("secret internal detail /home/user/model")
        out = []
        for t in texts:
            k = len(t) % 2
            p = [0.25, 0.75] if k else [0.75, 0.25]
            out.append({"label": ["neg", "pos"][k], "label_id": k, "score": 0.75, "probabilities": p,
                        "uncertainty": len(t) / 100, "abstain": len(t) > 10})
        return out

    def info(self) -> dict:
        return {"model": {"kind": "checkpoint", "path": "/models/fake"}, "method": "sr", "labels": ["neg", "pos"],
                "threshold": 0.1, "target_risk": 0.1, "delta": 0.05}


@pytest.fixture()
def fake():
    return FakeClassifier()


def _client(clf, **cfg) -> TestClient:
    return TestClient(create_app(clf, ServeConfig(**cfg)))


def test_predict_single_and_list_match_the_classifier(fake):
    with _client(fake) as c:
        r1 = c.post("/predict", json={"inputs": "abc"})
        r2 = c.post("/predict", json={"inputs": ["abc", "abcd", "a very long text"]})
    assert r1.status_code == 200 and r2.status_code == 200
    body = r2.json()
    assert body["model"] == "/models/fake" and body["method"] == "sr"
    assert [p["label"] for p in body["predictions"]] == ["pos", "neg", "neg"]
    assert [p["abstain"] for p in body["predictions"]] == [False, False, True]
    assert r1.json()["predictions"] == FakeClassifier().predict(["abc"])


def test_health_info_and_openapi(fake):
    with _client(fake, max_batch=8) as c:
        assert c.get("/health").json() == {"status": "ok"}
        info = c.get("/info").json()
        schema = c.get("/openapi.json").json()
        docs = c.get("/docs")
    assert info["labels"] == ["neg", "pos"] and info["threshold"] == 0.1
    assert info["serving"]["max_batch"] == 8
    assert "/predict" in schema["paths"] and docs.status_code == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ('{"inputs": ["a", ', 422),  # malformed JSON
        ('{"inputs": 5}', 422),  # wrong type
        ('{"inputs": ["a", 3]}', 422),  # wrong element type
        ('{"inputs": []}', 422),  # empty list
        ('{"texts": ["a"]}', 422),  # wrong key
        ('["a"]', 422),  # not an object
    ],
)
def test_bad_requests_get_json_errors_and_the_service_keeps_serving(fake, body, status):
    with _client(fake) as c:
        r = c.post("/predict", content=body, headers={"content-type": "application/json"})
        assert r.status_code == status
        assert "detail" in r.json()
        assert c.post("/predict", json={"inputs": "ok"}).status_code == 200


def test_limits_give_413(fake):
    with _client(fake, max_batch=4, max_chars=10) as c:
        many = c.post("/predict", json={"inputs": ["a"] * 5})
        long = c.post("/predict", json={"inputs": ["a", "b" * 11]})
        big = c.post("/predict", content=b"{" + b" " * (ServeConfig(max_batch=4, max_chars=10).max_body_bytes + 1) + b"}",
                     headers={"content-type": "application/json"})
        assert c.post("/predict", json={"inputs": ["a"] * 4}).status_code == 200
    assert many.status_code == 413 and "At most 4 inputs" in many.json()["detail"]
    assert long.status_code == 413 and "Input 1 has 11 characters" in long.json()["detail"]
    assert big.status_code == 413


def test_internal_error_is_500_without_traceback_and_the_service_recovers():
    clf = FakeClassifier(fail_on="boom")
    with _client(clf) as c:
        r = c.post("/predict", json={"inputs": ["boom"]})
        assert r.status_code == 500
        assert "secret" not in r.text and "Traceback" not in r.text and "/home" not in r.text
        assert c.post("/predict", json={"inputs": ["fine"]}).status_code == 200


def test_model_runs_off_the_event_loop_in_one_thread():
    clf = FakeClassifier(delay=0.05)
    with _client(clf) as c:
        c.post("/predict", json={"inputs": ["x"]})
    assert len(clf.threads) == 1 and next(iter(clf.threads)).startswith("adue-model")


def test_serve_config_validation():
    with pytest.raises(ValueError, match="The 'max_batch' parameter of ServeConfig must be an int >= 1. Got 0 instead."):
        ServeConfig(max_batch=0)
    with pytest.raises(ValueError, match="'max_wait_ms'"):
        ServeConfig(max_wait_ms=-1)


# ----------------------------------------------------------------- micro-batching
def _run_concurrently(batcher: MicroBatcher, requests: list[list[str]], stagger: float = 0.0) -> list:
    async def main() -> list:
        await batcher.start()
        try:
            async def one(i: int, texts: list[str]):
                await asyncio.sleep(stagger * i)
                return await batcher.submit(texts)

            return await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
        finally:
            await batcher.stop()

    return asyncio.run(main())


def test_concurrent_requests_share_batches_and_get_their_own_results():
    clf = FakeClassifier(delay=0.02)
    batcher = MicroBatcher(clf.predict, max_batch=8, max_wait_s=0.01)
    requests = [[f"t{i}" + "x" * i] for i in range(32)]
    results = _run_concurrently(batcher, requests)
    for req, res in zip(requests, results, strict=True):
        assert res == FakeClassifier().predict(req)
    sizes = [len(b) for b in clf.batches]
    assert sum(sizes) == 32 and max(sizes) <= 8
    assert len(clf.batches) <= 6  # 32 texts in batches of 8 (plus at most a couple partial ones)


def test_a_request_that_would_overflow_the_batch_waits_for_the_next():
    clf = FakeClassifier()
    batcher = MicroBatcher(clf.predict, max_batch=5, max_wait_s=0.05)
    results = _run_concurrently(batcher, [["a"] * 3, ["b"] * 3, ["c"] * 2])
    assert [len(r) for r in results] == [3, 3, 2]
    assert all(len(b) <= 5 for b in clf.batches)
    assert clf.batches[0] == ["a"] * 3


def test_batcher_validates_and_refuses_oversized_submissions():
    with pytest.raises(ValueError, match="'max_batch'"):
        MicroBatcher(lambda t: t, max_batch=0)
    batcher = MicroBatcher(FakeClassifier().predict, max_batch=2)
    with pytest.raises(ValueError, match="At most 2 texts"):
        _run_concurrently(batcher, [["a", "b", "c"]])
