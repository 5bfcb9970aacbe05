"""/metrics speaks the Prometheus text format (and OpenMetrics when asked) with request
counts by status, latency and batch-size histograms and the live queue depth."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ofa.tasks import TASKS


def test_metrics_in_prometheus_text_format(serve, png_b64):
    with serve(max_body_mb=0.05) as live:
        url = live.url
        assert httpx.post(f"{url}/v1/caption", json={"image": png_b64}).status_code == 200
        assert httpx.post(f"{url}/v1/caption", json={"image": png_b64}).status_code == 200
        assert httpx.post(f"{url}/v1/vqa", json={"image": png_b64}).status_code == 422
        assert httpx.post(f"{url}/v1/ground", content=b"x").status_code == 415
        assert httpx.post(f"{url}/v1/ground", content=b"x" * 100_000,
                          headers={"content-type": "application/json"}).status_code == 413
        r = httpx.get(f"{url}/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}

    def value(family: str, sample: str, **labels) -> float:
        for s in families[family].samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        raise AssertionError(f"no {sample} {labels}")

    assert families["ofa_requests"].type == "counter"
    assert value("ofa_requests", "ofa_requests_total", task="caption", status="200") == 2
    assert value("ofa_requests", "ofa_requests_total", task="vqa", status="422") == 1
    assert value("ofa_requests", "ofa_requests_total", task="ground", status="415") == 1
    assert value("ofa_requests", "ofa_requests_total", task="ground", status="413") == 1

    latency = families["ofa_request_latency_seconds"]
    assert latency.type == "histogram"
    assert value(latency.name, "ofa_request_latency_seconds_count", task="caption") == 2
    assert value(latency.name, "ofa_request_latency_seconds_bucket", task="caption",
                 le="+Inf") == 2
    assert value(latency.name, "ofa_request_latency_seconds_sum", task="caption") > 0

    assert families["ofa_batch_size"].type == "histogram"
    assert value("ofa_batch_size", "ofa_batch_size_count", task="caption") == 2
    assert value("ofa_batch_size", "ofa_batch_size_bucket", task="caption", le="1.0") == 2
    assert value("ofa_batch_seconds", "ofa_batch_seconds_count", task="caption") == 2

    queue = families["ofa_queue_depth"]
    assert queue.type == "gauge"
    assert {s.labels["task"]: s.value for s in queue.samples} == {t: 0 for t in TASKS}
    assert value("ofa_requests_in_model", "ofa_requests_in_model") == 0


def test_openmetrics_on_request(shared_server):
    r = httpx.get(f"{shared_server.url}/metrics",
                  headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")
