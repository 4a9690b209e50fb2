"""Prometheus ``/metrics``: this API's own request metrics, and the fleet's.

* **Requests** (counted by each API process): with several gunicorn worker
  processes, prometheus-client's multiprocess mode keeps each process's
  values in files under ``AUDIOQ_METRICS_DIR`` (``ops/gunicorn_conf.py``
  sets it up, and ``PROMETHEUS_MULTIPROC_DIR`` to the same folder, before
  the workers start) and sums them when scraped, so any process answers for
  all of them. Without it (one process: tests, a plain ``flask run``) the
  in-process registry serves.
* **Jobs, queues, workers, storage** (fleet-wide): read from Redis at scrape
  time (``shared/metrics.py`` explains why they are kept there), so every
  API process reports the same numbers whatever the number of worker hosts.

Every metric is listed, with its type, labels and meaning, in
``docs/operations.md``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from flask import Flask, Response, g, request
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from shared import fleet, metrics, operations, queue
from web import services

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REQUESTS = Counter("audioq_http_requests_total", "HTTP requests answered", ["route", "method", "status"])
LATENCY = Histogram(
    "audioq_http_request_seconds",
    "Time to answer an HTTP request (a request waiting on a job included)",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 30, 60),
)
IN_FLIGHT = Gauge("audioq_http_in_flight", "HTTP requests being answered", multiprocess_mode="livesum")
UPLOAD_BYTES = Counter("audioq_upload_bytes_total", "Audio bytes received by uploads (stored or refused)")


def route_label() -> str:
    """The route template (``/v1/jobs/<job_id>``), never the raw path: labels
    stay few and carry no ids."""
    rule = request.url_rule
    return rule.rule if rule is not None else "unmatched"


class FleetCollector(Collector):
    """Job, queue, worker and storage metrics from Redis, at scrape time."""

    def collect(self) -> Iterator:
        svc = services.get()
        r = svc.redis
        ops = sorted(operations.OPERATIONS)
        snap = metrics.snapshot(r, ops)

        jobs = CounterMetricFamily(
            "audioq_jobs",
            "Jobs by operation and outcome (submitted, cache_hit, completed, failed, cancelled)",
            labels=["op", "status"],
        )
        for (op, status), n in sorted(snap.jobs.items()):
            jobs.add_metric([op, status], n)
        yield jobs

        redeliveries = CounterMetricFamily(
            "audioq_job_redeliveries", "Attempts after the first (a process or worker lost)", labels=["op"]
        )
        for op, n in sorted(snap.redeliveries.items()):
            redeliveries.add_metric([op], n)
        yield redeliveries

        for name, field, help_ in (
            ("audioq_credits_charged", "charged", "Credits reserved by accepted jobs"),
            (
                "audioq_credits_refunded",
                "refunded",
                "Credits given back (failures not the caller's, cancels)",
            ),
        ):
            c = CounterMetricFamily(name, help_)
            c.add_metric([], snap.credits.get(field, 0))
            yield c

        for name, hists, help_ in (
            ("audioq_job_run_seconds", snap.run, "Seconds from a job's first start to its end, by operation"),
            (
                "audioq_job_queue_wait_seconds",
                snap.wait,
                "Seconds from submission to first start, by operation",
            ),
        ):
            h = HistogramMetricFamily(name, help_, labels=["op"])
            for op, hist in hists.items():
                if hist.count:
                    buckets = [("+Inf" if b == float("inf") else repr(float(b)), c) for b, c in hist.buckets]
                    h.add_metric([op], buckets, hist.sum)
            yield h

        depth = GaugeMetricFamily("audioq_queue_depth", "Messages waiting in the broker", labels=["queue"])
        oldest = GaugeMetricFamily(
            "audioq_queue_oldest_age_seconds",
            "How long the oldest job waiting on the queue has waited (the autoscaling signal)",
            labels=["queue"],
        )
        waiting = GaugeMetricFamily("audioq_queue_jobs_waiting", "Jobs queued, not started", labels=["queue"])
        online = GaugeMetricFamily("audioq_workers_online", "Workers consuming the queue", labels=["queue"])
        missing = GaugeMetricFamily(
            "audioq_workers_missing_models", "Workers of the queue lacking a model file", labels=["queue"]
        )
        broker = queue.broker_client(svc.settings)
        try:
            stats = queue.stats(r, broker)
        finally:
            broker.close()
        workers = fleet.online(r)
        for st in stats:
            depth.add_metric([st.queue], st.depth)
            oldest.add_metric([st.queue], st.oldest_age_s)
            waiting.add_metric([st.queue], st.jobs_waiting)
            online.add_metric([st.queue], st.workers_online)
            missing.add_metric([st.queue], sum(1 for w in workers if st.queue in w.queues and not w.ready))
        yield from (depth, oldest, waiting, online, missing)

        for name, field, kind, help_ in (
            ("audioq_assets", "assets", "gauge", "Live assets"),
            ("audioq_asset_bytes", "asset_bytes", "gauge", "Bytes of live assets' originals"),
            ("audioq_expiry_sweeps", "expiry_sweeps", "counter", "Expiry sweeps run"),
            ("audioq_expired_objects", "expired_objects", "counter", "Objects deleted by expiry"),
            (
                "audioq_reconcile_orphans",
                "reconcile_orphans",
                "counter",
                "Orphan objects deleted by reconcile",
            ),
        ):
            family = GaugeMetricFamily(name, help_) if kind == "gauge" else CounterMetricFamily(name, help_)
            family.add_metric([], snap.storage.get(field, 0.0))
            yield family

        ready = GaugeMetricFamily("audioq_up", "1 when this API's Redis answers (the scrape itself did)")
        ready.add_metric([], 1.0 if r.ping() else 0.0)
        yield ready


def init_app(app: Flask) -> None:
    fleet_collector = FleetCollector()

    @app.before_request
    def _start() -> None:
        g.metrics_started = time.monotonic()
        IN_FLIGHT.inc()

    @app.after_request
    def _count(resp):
        route = route_label()
        REQUESTS.labels(route, request.method, str(resp.status_code)).inc()
        LATENCY.labels(route).observe(time.monotonic() - g.get("metrics_started", time.monotonic()))
        return resp

    @app.teardown_request
    def _done(_exc: BaseException | None) -> None:
        if "metrics_started" in g:
            IN_FLIGHT.dec()

    @app.get("/metrics")
    def prometheus():
        if services.get().settings.metrics_dir:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=services.get().settings.metrics_dir)
        else:
            registry = CollectorRegistry()
            for collector in (REQUESTS, LATENCY, IN_FLIGHT, UPLOAD_BYTES):
                registry.register(collector)
        registry.register(fleet_collector)
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE)
