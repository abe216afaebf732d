"""The example API: orders stored with SQLAlchemy in PostgreSQL, processed by a Celery task.

Every request is traced: the FastAPI server span, the SQL statements, and the Celery publish,
whose trace context travels with the task so the worker's span joins the same trace.
"""

from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from pydantic import BaseModel, Field
from sqlalchemy import select

from db import Base, Order, Session, engine
from tasks import process_order
from telemetry import setup_tracing

provider = setup_tracing("example-api")
SQLAlchemyInstrumentor().instrument(engine=engine)
CeleryInstrumentor().instrument()


@asynccontextmanager
async def lifespan(_app: FastAPI):
    Base.metadata.create_all(engine)
    yield
    provider.shutdown()  # flush the spans still in the SDK to spanrelay


app = FastAPI(title="spanrelay example API", lifespan=lifespan)
FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz")


class OrderIn(BaseModel):
    item: str = Field(min_length=1, max_length=200)
    quantity: int = Field(gt=0, le=1000)


@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@app.post("/orders", status_code=202)
def create_order(body: OrderIn) -> dict:
    with Session.begin() as session:
        order = Order(item=body.item, quantity=body.quantity, status="pending")
        session.add(order)
        session.flush()
        result = order.as_dict()
    # After the commit, so the worker finds the row.
    process_order.delay(result["id"])
    return result


@app.get("/orders/{order_id}")
def get_order(order_id: int) -> dict:
    with Session() as session:
        order = session.get(Order, order_id)
        if order is None:
            raise HTTPException(status_code=404, detail="no such order")
        return order.as_dict()


@app.get("/orders")
def list_orders(limit: int = 20) -> list[dict]:
    with Session() as session:
        rows = session.scalars(select(Order).order_by(Order.id.desc()).limit(min(limit, 100)))
        return [order.as_dict() for order in rows]
