"""Bearer tokens on the public and admin APIs, through the real FastAPI app.

The runtime here is a stand-in with no engine: these requests are decided before any
inference, so no model needs to load (the real service is tested in test_service.py).
"""

from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from serving.app import app
from tunegate.params import Params, ServeParams


@pytest.fixture
def client(monkeypatch):
    params = Params(serve=ServeParams(require_api_key=True))
    app.state.runtime = SimpleNamespace(ready=True, params=params, model_names=lambda: ["tunegate"])
    monkeypatch.setenv("TUNEGATE_API_KEY", "public-key")
    monkeypatch.delenv("TUNEGATE_ADMIN_TOKEN", raising=False)
    yield TestClient(app)
    del app.state.runtime


def test_the_public_api_can_require_a_key(client):
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = client.get("/v1/models", headers={"Authorization": "Bearer public-key"})
    assert ok.status_code == 200 and [m["id"] for m in ok.json()["data"]] == ["tunegate"]


def test_admin_is_disabled_without_a_configured_token(client):
    r = client.post("/admin/reload", headers={"Authorization": "Bearer anything"})
    assert r.status_code == 403 and "TUNEGATE_ADMIN_TOKEN" in r.json()["error"]["message"]


def test_not_ready_is_503_not_500():
    app.state.runtime = SimpleNamespace(ready=False)
    try:
        r = TestClient(app).post("/classify", json={"text": "hello"})
        assert r.status_code == 503 and "starting" in r.json()["error"]["message"]
    finally:
        del app.state.runtime


def test_capacity_slots_count_once_and_refuse_past_the_limit():
    from serving.app import ApiError, Slot

    rt = SimpleNamespace(in_flight=0, params=Params(serve=ServeParams(max_concurrency=1)))
    slot = Slot(rt)
    slot.__enter__()  # taken before a stream starts ...
    with slot:  # ... and entered again by the stream's generator: still one
        assert rt.in_flight == 1
        with pytest.raises(ApiError) as refused, Slot(rt):
            pass
        assert refused.value.status == 429
    assert rt.in_flight == 0
