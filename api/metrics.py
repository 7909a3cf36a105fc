"""Prometheus metrics of the API and the workers."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

HTTP_REQUESTS = Counter(
    "cameleer_http_requests_total", "HTTP requests handled", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "cameleer_http_request_duration_seconds", "HTTP request latency", ["method", "route"]
)
OPERATION_STEPS = Counter(
    "cameleer_operation_steps_total", "Operation step attempts by outcome", ["kind", "step", "result"]
)
OPERATIONS_FINISHED = Counter(
    "cameleer_operations_finished_total", "Operations that reached a final state", ["kind", "result"]
)
PROVISIONING_DURATION = Histogram(
    "cameleer_provisioning_duration_seconds",
    "Time from operation creation to its final state",
    ["kind", "result"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600),
)

METERING_LAST_SAMPLE = Gauge(
    "cameleer_metering_last_sample_timestamp_seconds", "When the usage collector last recorded samples"
)
METERING_SILENT = Gauge(
    "cameleer_metering_silent", "1 while tenants run and no usage sample arrived for over an hour (alert on it)"
)
METER_EVENTS_SENT = Counter("cameleer_meter_events_sent_total", "Hourly usage sent to Stripe", ["dimension"])
USAGE_OVERAGE = Counter(
    "cameleer_usage_overage_total", "Committed tenants whose usage went above the commitment", ["tier", "dimension"]
)
BILLING_WEBHOOKS = Counter("cameleer_billing_webhooks_total", "Stripe webhook deliveries", ["type", "result"])

router = APIRouter(tags=["service"])


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
OPERATIONS_AWAITING_CAPACITY = Gauge(
    "cameleer_operations_awaiting_capacity",
    "Signups and moves waiting for a cluster that can take the tenant (alert when above 0 for 15 minutes)",
    ["placement"],
)
