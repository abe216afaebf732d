"""The Celery worker: processes the orders the API enqueues.

Run with `celery --app tasks worker`. The worker forks its pool processes; the SDK's batch
processor thread and the database connections do not survive a fork, so tracing and the
instrumentation are set up in each pool process (worker_process_init), as the OpenTelemetry
Celery instrumentation's documentation asks.
"""

import os
from datetime import datetime, timezone

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown
from opentelemetry import trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from sqlalchemy.exc import OperationalError

from db import Order, Session, engine

celery_app = Celery("tasks", broker=os.environ["CELERY_BROKER_URL"])
celery_app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)

_provider = None


@worker_process_init.connect(weak=False)
def _init_process(**_kwargs):
    global _provider
    from telemetry import setup_tracing

    engine.dispose(close=False)  # connections inherited from the parent belong to it
    _provider = setup_tracing("example-worker")
    SQLAlchemyInstrumentor().instrument(engine=engine)
    CeleryInstrumentor().instrument()


@worker_process_shutdown.connect(weak=False)
def _shutdown_process(**_kwargs):
    if _provider is not None:
        _provider.shutdown()  # flush the last spans to spanrelay before the process exits


@celery_app.task(
    name="tasks.process_order",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def process_order(order_id: int) -> str:
    span = trace.get_current_span()
    span.set_attribute("app.order_id", order_id)
    with Session.begin() as session:
        order = session.get(Order, order_id)
        if order is None:
            span.set_attribute("app.order_found", False)
            return "missing"
        order.status = "processed"
        order.processed_at = datetime.now(timezone.utc)
    return "processed"
