"""OpenTelemetry tracing for the API and the worker: traces only, OTLP/HTTP to spanrelay.

The exporter takes its destination from the standard variables, set in compose.yaml:
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the full URL, .../v1/traces) and OTEL_SERVICE_NAME /
OTEL_RESOURCE_ATTRIBUTES for the resource. No token here: spanrelay adds the credentials.
"""

import os

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def setup_tracing(default_service_name: str) -> TracerProvider:
    """Installs the global tracer provider; call once per process (after a fork, in the child)."""
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: default_service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider
