"""`emotune serve`: the REST API through FastAPI's TestClient (one app, one model load per module), the micro-batcher
on its own, and the bad input the issue lists. The real-browser test of the web page is in test_browser.py."""
from __future__ import annotations

import asyncio
import base64
import http.server
import io
import re
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="emotune serve needs the serve extra (pip install 'emotune[serve]')")
from fastapi.testclient import TestClient  # noqa: E402

from emotune.serve import ServeConfig, create_app  # noqa: E402
from emotune.serve.app import Engine  # noqa: E402
from emotune.serve.batcher import MicroBatcher  # noqa: E402


def grace_jpeg() -> bytes:
    import matplotlib.cbook as cbook

    with open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(ServeConfig())


@pytest.fixture(scope="module")
def client(engine):
    with TestClient(create_app(engine.config, engine)) as c:
        yield c


def _check_face_response(body: dict) -> None:
    assert body["image"]["width"] == 512 and body["image"]["height"] == 600
    assert body["model"]["id"] == "default" and len(body["model"]["version"]) == 12
    (face,) = body["faces"]
    assert set(face["box"]) == {"x", "y", "w", "h"} and 150 < face["box"]["x"] < 220 and face["box"]["w"] > 100
    assert len(face["landmarks"]) == 5 and 0.5 < face["score"] <= 1
    assert abs(sum(face["probs"].values()) - 1) < 1e-3 and face["label"] == max(face["probs"], key=face["probs"].get)


# ------------------------------------------------------------------------------------------------ the API
def test_multipart_json_raw_and_data_url_agree(client):
    jpg = grace_jpeg()
    b64 = base64.b64encode(jpg).decode()
    answers = [client.post("/v1/analyze", files={"file": ("grace.jpg", jpg, "image/jpeg")}),
               client.post("/v1/analyze", json={"image": b64}),
               client.post("/v1/analyze", json={"image": "data:image/jpeg;base64," + b64}),
               client.post("/v1/analyze", content=jpg, headers={"content-type": "image/jpeg"})]
    for r in answers:
        assert r.status_code == 200, r.text
        _check_face_response(r.json())
    probs = [r.json()["faces"][0]["probs"] for r in answers]
    assert all(p == probs[0] for p in probs)


def test_same_probabilities_as_recognizer(client, engine):
    import matplotlib.cbook as cbook

    (expected,) = engine.rec.predict(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    face = client.post("/v1/analyze", files={"file": ("g.jpg", grace_jpeg(), "image/jpeg")}).json()["faces"][0]
    assert face["label"] == expected.label
    assert all(abs(face["probs"][c] - expected.probs[c]) < 1e-4 for c in expected.probs)


def test_options_tta_scene_and_unknown_detector(client):
    jpg = grace_jpeg()
    r = client.post("/v1/analyze", files={"file": ("g.jpg", jpg, "image/jpeg")}, data={"tta": "true", "detector": "haar"})
    assert r.status_code == 200 and r.json()["tta"] is True and r.json()["detector"] == "haar"
    assert len(r.json()["faces"]) == 1 and r.json()["faces"][0]["landmarks"] is None  # Haar gives no landmarks
    scene = client.post("/v1/analyze", json={"image": base64.b64encode(jpg).decode(), "scene": True})  # a face model
    assert scene.status_code == 400 and "no scene model" in scene.json()["error"]  # scene fields: test_scene_predict.py
    r = client.post("/v1/analyze", json={"image": base64.b64encode(jpg).decode(), "detector": "retina"})
    assert r.status_code == 400 and "retina" in r.json()["error"] and "yunet" in r.json()["error"]
    r = client.post("/v1/analyze", json={"image": base64.b64encode(jpg).decode(), "tta": "maybe"})
    assert r.status_code == 400 and "tta" in r.json()["error"]


def test_batch_keeps_order_and_reports_a_bad_image(client):
    jpg = grace_jpeg()
    r = client.post("/v1/analyze/batch", files=[("files", ("a.jpg", jpg, "image/jpeg")), ("files", ("bad.jpg", b"nope", "image/jpeg")),
                                                ("files", ("c.jpg", jpg, "image/jpeg"))])
    assert r.status_code == 200
    a, bad, c = r.json()["results"]
    assert a["image"]["name"] == "a.jpg" and len(a["faces"]) == 1 and c["image"]["name"] == "c.jpg"
    assert bad["status"] == 415 and "bad.jpg" in bad["error"]
    r = client.post("/v1/analyze/batch", json={"images": [base64.b64encode(jpg).decode()] * 2})
    assert [len(x["faces"]) for x in r.json()["results"]] == [1, 1]


def test_deepface_compatible_analyze(client):
    img = "data:image/jpeg;base64," + base64.b64encode(grace_jpeg()).decode()
    r = client.post("/analyze", json={"img": img, "actions": ["emotion"], "detector_backend": "opencv"})
    assert r.status_code == 200, r.text
    (res,) = r.json()["results"]
    assert set(res["region"]) >= {"x", "y", "w", "h"} and isinstance(res["region"]["x"], int)
    assert abs(sum(res["emotion"].values()) - 100) < 0.1  # deepface reports percentages
    assert res["dominant_emotion"] == max(res["emotion"], key=res["emotion"].get)
    r = client.post("/analyze", json={"img": img, "actions": ["age", "gender", "emotion"]})
    assert r.status_code == 200 and "age" in r.json()["warnings"][0]
    r = client.post("/analyze", files={"img": ("g.jpg", grace_jpeg(), "image/jpeg")})  # an upload under `img` works too
    assert r.status_code == 200 and len(r.json()["results"]) == 1
    assert client.post("/analyze", json={"img": img, "actions": ["age"]}).status_code == 400
    blank = io.BytesIO()
    Image.new("RGB", (200, 200), "white").save(blank, "PNG")
    b = base64.b64encode(blank.getvalue()).decode()
    r = client.post("/analyze", json={"img": b})  # enforce_detection defaults to True, as in deepface
    assert r.status_code == 400 and "Face could not be detected" in r.json()["error"]
    r = client.post("/analyze", json={"img": b, "enforce_detection": False})
    assert r.status_code == 200 and r.json()["results"][0]["dominant_emotion"] is None


def test_models_health_pages_and_openapi(client):
    m = client.get("/v1/models").json()
    assert m["models"][0]["labels"][0] == "angry" and "yunet" in m["detectors"]
    # on CPU the bundled default runs its shipped int8 companion (docs/faces.md, "int8 models")
    assert m["models"][0]["precision"] == ("int8" if client.app.state.engine.rec.device == "cpu" else "fp32")
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["batching"]["enabled"] and h["limits"]["max_upload_bytes"] == 20 * 1024 * 1024
    spec = client.get("/openapi.json").json()
    assert {"/v1/analyze", "/v1/analyze/batch", "/analyze", "/v1/models", "/health"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/v1/analyze"]["post"]["requestBody"]["content"]
    for page in ("/", "/docs", "/static/app.js", "/static/api.js", "/static/style.css"):
        r = client.get(page)
        assert r.status_code == 200
        # every asset comes from emotune itself: no CDN, no external script, style or font
        assert not re.search(r"https?://(?!127\.0\.0\.1)|//cdn|(src|href)=[\"']//", r.text), page
    assert client.get("/missing").json() == {"error": "Not Found"}


# ------------------------------------------------------------------------------------------------ bad input
def test_empty_truncated_and_not_an_image(client):
    jpg = grace_jpeg()
    r = client.post("/v1/analyze", files={"file": ("empty.jpg", b"", "image/jpeg")})
    assert r.status_code == 400 and "empty" in r.json()["error"]
    r = client.post("/v1/analyze", files={"file": ("cut.jpg", jpg[: len(jpg) // 3], "image/jpeg")})
    assert r.status_code == 400 and "truncated" in r.json()["error"] and "cut.jpg" in r.json()["error"]
    r = client.post("/v1/analyze", files={"file": ("notes.jpg", b"just some text", "image/jpeg")})
    assert r.status_code == 415 and "not an image" in r.json()["error"]
    r = client.post("/v1/analyze", json={"image": ""})
    assert r.status_code == 400 and "empty" in r.json()["error"]


def test_wrong_content_types_are_415(client):
    r = client.post("/v1/analyze", content=b"hello", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "text/plain" in r.json()["error"]
    r = client.post("/v1/analyze", files={"file": ("a.txt", b"hello", "text/plain")})
    assert r.status_code == 415 and "text/plain" in r.json()["error"]
    r = client.post("/v1/analyze", content=b"x", headers={"content-type": ""})
    assert r.status_code == 415


def test_bad_base64_and_json(client):
    for bad in ("not base64 at all!", "QUJD$$$", "data:image/jpeg,plain"):
        r = client.post("/v1/analyze", json={"image": bad})
        assert r.status_code == 400 and "image" in r.json()["error"], bad
    r = client.post("/v1/analyze", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    r = client.post("/v1/analyze", json={"detector": "yunet"})
    assert r.status_code == 400 and "no image" in r.json()["error"]


def test_url_refused_and_never_fetched(client):
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(grace_jpeg())

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/grace.jpg"
    try:
        for kwargs, path in [({"json": {"image": url}}, "/v1/analyze"), ({"json": {"img": url}}, "/analyze"),
                             ({"data": {"file": url}}, "/v1/analyze"),
                             ({"files": {"file": (None, url)}}, "/v1/analyze")]:
            r = client.post(path, **kwargs)
            assert r.status_code == 400 and "URLs are not accepted" in r.json()["error"], r.text
        time.sleep(0.2)
        assert hits == []  # the server fetched nothing
    finally:
        srv.shutdown()


def test_pixel_limit_is_413(client):
    big = io.BytesIO()
    Image.new("1", (7000, 7000)).save(big, "PNG")  # 49 MP in a few kB: a decompression bomb to the default 40 MP limit
    r = client.post("/v1/analyze", files={"file": ("bomb.png", big.getvalue(), "image/png")})
    assert r.status_code == 413 and "too large" in r.json()["error"] and "--max-pixels" in r.json()["error"]


def test_upload_size_limit_is_413(engine):
    small = ServeConfig(max_upload_mb=0.05)  # 51 kB; the photo is larger
    with TestClient(create_app(small, engine)) as c:
        r = c.post("/v1/analyze", files={"file": ("g.jpg", grace_jpeg(), "image/jpeg")})
        assert r.status_code == 413 and "limit" in r.json()["error"]
        r = c.post("/v1/analyze", json={"image": base64.b64encode(grace_jpeg()).decode()})
        assert r.status_code == 413


def test_timeout_is_504_json(engine, monkeypatch):
    slow = ServeConfig(timeout_s=0.05)
    real = engine.prepare
    monkeypatch.setattr(engine, "prepare", lambda *a: (time.sleep(0.5), real(*a))[1])
    with TestClient(create_app(slow, engine)) as c:
        r = c.post("/v1/analyze", files={"file": ("g.jpg", grace_jpeg(), "image/jpeg")})
    assert r.status_code == 504 and "0.05 s" in r.json()["error"]


def test_no_upload_is_written_to_disk(client, monkeypatch):
    import tempfile

    def refuse(*a, **k):
        raise AssertionError("an upload went to a temporary file")

    for name in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    noise = np.random.default_rng(0).integers(0, 255, (900, 900, 3), dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(noise).save(png, "PNG")
    assert len(png.getvalue()) > 2 * 1024 * 1024  # over Starlette's 1 MB spooling threshold
    r = client.post("/v1/analyze", files={"file": ("noise.png", png.getvalue(), "image/png")})
    assert r.status_code == 200 and r.json()["image"]["width"] == 900


# ------------------------------------------------------------------------------------------------ micro-batching
def test_microbatcher_batches_concurrent_requests():
    sizes = []

    def classify(crops, tta):
        sizes.append(len(crops))
        return np.array([[float(c[0, 0, 0]), 1.0 if tta else 0.0] for c in crops])

    async def main(enabled: bool):
        b = MicroBatcher(classify, enabled=enabled, max_batch=64, max_wait_ms=50)
        await b.start()
        crops = [[np.full((2, 2, 3), i, np.uint8)] * (1 + i % 2) for i in range(10)]
        outs = await asyncio.gather(*(b.classify(c, tta=False) for c in crops), b.classify(crops[0], tta=True))
        await b.stop()
        return crops, outs, b.stats

    crops, outs, stats = asyncio.run(main(True))
    assert sizes == [15, 1]  # ten requests (15 crops) in one pass; the TTA request in its own
    for c, o in zip(crops, outs):  # each caller gets its own rows, in order
        assert o.shape == (len(c), 2) and (o[:, 0] == c[0][0, 0, 0]).all() and (o[:, 1] == 0).all()
    assert outs[-1][0, 1] == 1.0 and stats.batches == 2 and stats.largest == 15
    sizes.clear()
    asyncio.run(main(False))
    assert sorted(sizes) == sorted([1 + i % 2 for i in range(10)] + [1])  # off: every request alone


def test_concurrent_requests_share_a_batch(engine):
    """Through the app: 8 requests at once are classified in fewer forward passes than 8."""
    from concurrent.futures import ThreadPoolExecutor

    config = ServeConfig(max_wait_ms=200)
    eng = Engine.__new__(Engine)
    eng.__dict__.update(engine.__dict__)
    eng.batcher = MicroBatcher(engine.classify, True, 32, 200)
    jpg = grace_jpeg()
    with TestClient(create_app(config, eng)) as c, ThreadPoolExecutor(8) as pool:
        rs = list(pool.map(lambda _: c.post("/v1/analyze", files={"file": ("g.jpg", jpg, "image/jpeg")}), range(8)))
        stats = c.get("/health").json()["batching"]
    assert all(r.status_code == 200 for r in rs)
    assert stats["crops"] == 8 and stats["batches"] < 8 and stats["largest"] >= 2


# ------------------------------------------------------------------------------------------------ command line
def test_serve_defaults_to_loopback_and_checks_options(capsys):
    from emotune.cli import build_parser, main
    from emotune.commands.serve import config_from_args

    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.port == 8000
    cfg = config_from_args(args)
    assert cfg.max_upload_mb == 20 and cfg.batching and cfg.timeout_s == 30
    assert main(["serve", "--max-batch", "0"]) == 2
    assert main(["serve", "--model", "/nonexistent/model.json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("emotune: error: --max-batch 0") and err[-1].startswith("emotune: error:")
    assert "/nonexistent/model.json" in err[-1]


def test_microbatcher_waits_only_for_requests_on_the_way():
    def classify(crops, tta):
        return np.zeros((len(crops), 2))

    async def main():
        b = MicroBatcher(classify, max_batch=32, max_wait_ms=400)
        await b.start()
        t = time.perf_counter()
        await b.classify([np.zeros((2, 2, 3), np.uint8)])
        alone = time.perf_counter() - t
        with b.upstream():  # another request is being detected: the batch waits (up to 400 ms) for its crops
            t = time.perf_counter()
            first = asyncio.ensure_future(b.classify([np.zeros((2, 2, 3), np.uint8)]))
            await asyncio.sleep(0.1)
            await b.classify([np.zeros((2, 2, 3), np.uint8)])
            await first
            together = time.perf_counter() - t
        await b.stop()
        return alone, together, b.stats

    alone, together, stats = asyncio.run(main())
    assert alone < 0.2 and together >= 0.1  # a lone request does not pay the 400 ms wait
    assert stats.batches == 2 and stats.largest == 2
