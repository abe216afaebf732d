// A trace shaped like our reference application, produced with the official OpenTelemetry JS SDK:
//
//   checkout-api (FastAPI-style)                      checkout-worker (Celery-style)
//   SERVER  POST /api/v1/orders/{order_id}/checkout
//   ├─ INTERNAL  sqlalchemy.session
//   │  ├─ CLIENT  connect
//   │  ├─ CLIENT  SELECT shop
//   │  ├─ CLIENT  UPDATE shop        (ERROR + exception event)
//   │  ├─ CLIENT  UPDATE shop        (retry, OK)
//   │  └─ CLIENT  INSERT shop
//   └─ PRODUCER  apply_async/orders.tasks.fulfil_order ──W3C carrier──► CONSUMER run/orders.tasks.fulfil_order
//                                                                      ├─ CLIENT  SELECT shop
//                                                                      └─ CLIENT  UPDATE shop
//
// The server span continues a remote parent (traceparent + tracestate extracted from incoming
// request headers), carries every attribute value type, non-ASCII text and a 16 KiB string, has
// events and a link to a span of another trace. Times are explicit and nanosecond-precise.

import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, createTraceState, defaultTextMapGetter,
  defaultTextMapSetter, trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, InMemorySpanExporter, SimpleSpanProcessor }
  from '@opentelemetry/sdk-trace-base';
import {
  ATTR_CLIENT_ADDRESS, ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE, ATTR_HTTP_ROUTE, ATTR_NETWORK_PROTOCOL_VERSION, ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT, ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION, ATTR_URL_FULL, ATTR_URL_PATH, ATTR_URL_QUERY,
  ATTR_URL_SCHEME, ATTR_USER_AGENT_ORIGINAL,
} from '@opentelemetry/semantic-conventions';
import {
  ATTR_DB_NAME, ATTR_DB_OPERATION, ATTR_DB_SQL_TABLE, ATTR_DB_STATEMENT, ATTR_DB_SYSTEM, ATTR_DB_USER,
  ATTR_DEPLOYMENT_ENVIRONMENT_NAME, ATTR_HTTP_METHOD, ATTR_HTTP_SCHEME, ATTR_HTTP_STATUS_CODE,
  ATTR_HTTP_TARGET, ATTR_HTTP_URL, ATTR_MESSAGING_DESTINATION_NAME, ATTR_MESSAGING_MESSAGE_ID,
  ATTR_MESSAGING_OPERATION, ATTR_MESSAGING_SYSTEM, ATTR_NET_PEER_NAME, ATTR_NET_PEER_PORT,
  ATTR_SERVICE_INSTANCE_ID, DB_SYSTEM_VALUE_POSTGRESQL,
} from '@opentelemetry/semantic-conventions/incubating';

export const UNICODE_TEXT = 'café ✓ 日本語 😀';

// 16 KiB of text where every 8-character cell is different, so truncation or corruption anywhere
// shows; the first cells carry non-ASCII text too.
export function largeString(bytes = 16 * 1024) {
  let s = `${UNICODE_TEXT}|`;
  for (let i = 0; Buffer.byteLength(s) < bytes; i++) s += `${i.toString(16).padStart(7, '0')};`;
  while (Buffer.byteLength(s) > bytes) s = s.slice(0, -1);
  return s;
}

// Wraps an exporter to record each export result (the SDK only logs failures).
export class RecordingExporter {
  constructor(inner) {
    this.inner = inner;
    this.results = [];
  }
  export(spans, resultCallback) {
    this.inner.export(spans, (result) => {
      this.results.push({ code: result.code, error: result.error, spans: spans.length });
      resultCallback(result);
    });
  }
  shutdown() {
    return this.inner.shutdown();
  }
  forceFlush() {
    return this.inner.forceFlush ? this.inner.forceFlush() : Promise.resolve();
  }
}

// One service: a provider whose spans go both to the OTLP exporter under test (batched, as in an
// application) and to an in-memory exporter that keeps what the SDK produced.
export function makeService({ serviceName, serviceVersion, instanceId, exporter }) {
  const memory = new InMemorySpanExporter();
  const recording = new RecordingExporter(exporter);
  const provider = new BasicTracerProvider({
    resource: defaultResource().merge(resourceFromAttributes({
      [ATTR_SERVICE_NAME]: serviceName,
      [ATTR_SERVICE_VERSION]: serviceVersion,
      [ATTR_SERVICE_INSTANCE_ID]: instanceId,
      [ATTR_DEPLOYMENT_ENVIRONMENT_NAME]: 'interop-test',
      'host.name': 'ci-runner-01',
      'process.pid': 4242,
      'process.runtime.description': `CPython 3.12 on ${UNICODE_TEXT}`,
    })),
    spanProcessors: [
      new BatchSpanProcessor(recording, { scheduledDelayMillis: 50, exportTimeoutMillis: 10_000 }),
      new SimpleSpanProcessor(memory),
    ],
  });
  return { provider, memory, recording };
}

// HrTime at `offsetNs` nanoseconds after `baseSec` (a whole second).
const at = (baseSec, offsetNs) => [baseSec + Math.floor(offsetNs / 1e9), offsetNs % 1e9];

// Emits the trace; returns { traceId, incomingParentSpanId, linkedTraceId }. `ids` supplies random
// hex ids, `baseSec` the start second.
export function emitReferenceTrace({ api, worker, baseSec, ids }) {
  const t = (offsetNs) => at(baseSec, offsetNs);
  const propagator = new W3CTraceContextPropagator();

  const fastapi = api.provider.getTracer('opentelemetry.instrumentation.fastapi', '0.48b0',
    { schemaUrl: 'https://opentelemetry.io/schemas/1.11.0' });
  const sqlalchemyApi = api.provider.getTracer('opentelemetry.instrumentation.sqlalchemy', '0.48b0');
  const celeryApi = api.provider.getTracer('opentelemetry.instrumentation.celery', '0.48b0');
  const celeryWorker = worker.provider.getTracer('opentelemetry.instrumentation.celery', '0.48b0');
  const sqlalchemyWorker = worker.provider.getTracer('opentelemetry.instrumentation.sqlalchemy', '0.48b0');

  // The incoming HTTP request carries a W3C context from the browser/front end.
  const traceId = ids.traceId();
  const incomingParentSpanId = ids.spanId();
  const incomingHeaders = {
    traceparent: `00-${traceId}-${incomingParentSpanId}-01`,
    tracestate: 'shop=checkout-web,congo=t61rcWkgMzE',
  };
  const requestContext = propagator.extract(ROOT_CONTEXT, incomingHeaders, defaultTextMapGetter);

  const linkedTraceId = ids.traceId();
  const largeText = largeString();

  // ---- api: FastAPI server span
  const server = fastapi.startSpan('POST /api/v1/orders/{order_id}/checkout', {
    kind: SpanKind.SERVER,
    startTime: t(1_000_001),
    attributes: {
      [ATTR_HTTP_METHOD]: 'POST',
      [ATTR_HTTP_REQUEST_METHOD]: 'POST',
      [ATTR_HTTP_ROUTE]: '/api/v1/orders/{order_id}/checkout',
      [ATTR_HTTP_SCHEME]: 'http',
      [ATTR_HTTP_TARGET]: '/api/v1/orders/8412/checkout?coupon=CAF%C3%89&dry_run=false',
      [ATTR_HTTP_URL]: 'http://shop.internal:8000/api/v1/orders/8412/checkout?coupon=CAF%C3%89&dry_run=false',
      [ATTR_URL_SCHEME]: 'http',
      [ATTR_URL_PATH]: '/api/v1/orders/8412/checkout',
      [ATTR_URL_QUERY]: 'coupon=CAF%C3%89&dry_run=false',
      [ATTR_URL_FULL]: 'http://shop.internal:8000/api/v1/orders/8412/checkout?coupon=CAF%C3%89&dry_run=false',
      [ATTR_SERVER_ADDRESS]: 'shop.internal',
      [ATTR_SERVER_PORT]: 8000,
      [ATTR_CLIENT_ADDRESS]: '10.20.30.40',
      [ATTR_NETWORK_PROTOCOL_VERSION]: '1.1',
      [ATTR_USER_AGENT_ORIGINAL]: `Mozilla/5.0 (X11; Linux x86_64) ShopApp/7.1 (${UNICODE_TEXT})`,
    },
    links: [{
      context: {
        traceId: linkedTraceId,
        spanId: ids.spanId(),
        traceFlags: TraceFlags.SAMPLED,
        isRemote: true,
        traceState: createTraceState('vendor=retry,other=1'),
      },
      attributes: { 'link.reason': 'retry-of', 'retry.attempt': 2, 'retry.backoff_s': 0.25, 'retry.tags': ['idempotent', 'client'] },
    }],
  }, requestContext);
  // Every attribute value type, with edge values. Integers stay within +-(2^53 - 1) and doubles
  // below 2^53 (every double above is integral): the SDK sends integral numbers as intValue, and
  // its http/json exporter writes them as JSON numbers in JavaScript's shortest form (2^62 becomes
  // 4611686018427388000) or past the int64 range. Full 64-bit integers are covered in
  // conformance.test.mjs.
  server.setAttributes({
    'test.string': 'plain ascii',
    'test.string.empty': '',
    'test.string.unicode': UNICODE_TEXT,
    'test.string.escapes': 'quote " backslash \\ newline \n tab \t nul \u0000 end',
    'test.string.large': largeText,
    'test.bool.true': true,
    'test.bool.false': false,
    'test.int': 42,
    'test.int.zero': 0,
    'test.int.negative': -7,
    'test.int.max_safe': Number.MAX_SAFE_INTEGER,
    'test.int.min_safe': Number.MIN_SAFE_INTEGER,
    'test.double': Math.PI,
    'test.double.tenth': 0.1,
    'test.double.sum': 0.1 + 0.2,
    'test.double.negative': -1234.5678,
    'test.double.tiny': 5e-324,
    'test.double.large': 4503599627370495.5, // the largest doubles are integral: see below
    'test.double.exp': 6.02214076e-23,
    'test.array.string': ['alpha', '', UNICODE_TEXT, 'ω'],
    'test.array.bool': [true, false, true],
    'test.array.int': [1, -2, 0, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER],
    'test.array.double': [1.5, -2.25, 0.1, 1e-300, 2.5e15 + 0.5],
  });
  server.addEvent('request.body.parsed', { 'body.bytes': 1834, 'body.content_type': 'application/json', 'body.valid': true,
    'body.fields': ['items', 'coupon', 'note'], 'body.note': UNICODE_TEXT }, t(1_250_003));
  server.addEvent('handler.start', t(1_300_007)); // an event without attributes
  const serverContext = trace.setSpan(requestContext, server);

  // ---- api: SQLAlchemy session with nested statements
  const session = sqlalchemyApi.startSpan('sqlalchemy.session', { kind: SpanKind.INTERNAL, startTime: t(1_400_011),
    attributes: { 'db.session.autoflush': true, 'db.session.isolation_level': 'REPEATABLE READ' } }, serverContext);
  const sessionContext = trace.setSpan(serverContext, session);

  const dbAttrs = (operation, table, statement) => ({
    [ATTR_DB_SYSTEM]: DB_SYSTEM_VALUE_POSTGRESQL,
    [ATTR_DB_NAME]: 'shop',
    [ATTR_DB_USER]: 'shop_app',
    [ATTR_DB_OPERATION]: operation,
    [ATTR_DB_SQL_TABLE]: table,
    [ATTR_DB_STATEMENT]: statement,
    [ATTR_NET_PEER_NAME]: 'pg-primary.shop.internal',
    [ATTR_NET_PEER_PORT]: 5432,
  });

  const connect = sqlalchemyApi.startSpan('connect', { kind: SpanKind.CLIENT, startTime: t(1_500_013),
    attributes: { [ATTR_DB_SYSTEM]: DB_SYSTEM_VALUE_POSTGRESQL, [ATTR_DB_NAME]: 'shop', [ATTR_NET_PEER_NAME]: 'pg-primary.shop.internal', [ATTR_NET_PEER_PORT]: 5432 } },
  sessionContext);
  connect.end(t(2_750_017));

  const select = sqlalchemyApi.startSpan('SELECT shop', { kind: SpanKind.CLIENT, startTime: t(2_800_019),
    attributes: dbAttrs('SELECT', 'orders',
      'SELECT orders.id, orders.customer_id, orders.status, orders.total_cents, orders.currency, order_items.sku, '
      + 'order_items.quantity \nFROM orders JOIN order_items ON order_items.order_id = orders.id \n'
      + 'WHERE orders.id = %(id_1)s AND orders.status IN (%(status_1_1)s, %(status_1_2)s) FOR UPDATE OF orders') },
  sessionContext);
  select.addEvent('db.rows', { 'db.rows.returned': 3 }, t(3_900_023));
  select.end(t(4_100_029));

  const update1 = sqlalchemyApi.startSpan('UPDATE shop', { kind: SpanKind.CLIENT, startTime: t(4_200_031),
    attributes: dbAttrs('UPDATE', 'orders',
      "UPDATE orders SET status=%(status)s, updated_at=now() WHERE orders.id = %(id_1)s AND orders.status = 'pending'") },
  sessionContext);
  const failure = new Error('could not serialize access due to concurrent update');
  failure.name = 'psycopg2.errors.SerializationFailure';
  update1.recordException(failure, t(5_300_037));
  update1.setStatus({ code: SpanStatusCode.ERROR, message: `SerializationFailure: could not serialize access due to concurrent update (${UNICODE_TEXT})` });
  update1.setAttribute('db.retry', true);
  update1.end(t(5_400_041));

  const update2 = sqlalchemyApi.startSpan('UPDATE shop', { kind: SpanKind.CLIENT, startTime: t(5_500_043),
    attributes: { ...dbAttrs('UPDATE', 'orders',
      "UPDATE orders SET status=%(status)s, updated_at=now() WHERE orders.id = %(id_1)s AND orders.status = 'pending'"),
    'db.retry.attempt': 2 } }, sessionContext);
  update2.setStatus({ code: SpanStatusCode.OK });
  update2.end(t(6_700_047));

  const insert = sqlalchemyApi.startSpan('INSERT shop', { kind: SpanKind.CLIENT, startTime: t(6_800_053),
    attributes: dbAttrs('INSERT', 'outbox',
      'INSERT INTO outbox (id, topic, payload, created_at) VALUES (%(id)s, %(topic)s, %(payload)s::jsonb, now()) '
      + `RETURNING outbox.seq -- note: '${UNICODE_TEXT}'`) },
  sessionContext);
  insert.end(t(7_900_059));
  session.end(t(8_000_061));

  // ---- api: Celery apply_async (PRODUCER), context injected into the message headers
  const taskId = '4f2c9a7e-1b3d-4e5f-8a6b-7c8d9e0f1a2b';
  const producer = celeryApi.startSpan('apply_async/orders.tasks.fulfil_order', { kind: SpanKind.PRODUCER,
    startTime: t(8_100_067),
    attributes: {
      [ATTR_MESSAGING_SYSTEM]: 'rabbitmq',
      [ATTR_MESSAGING_DESTINATION_NAME]: 'celery',
      [ATTR_MESSAGING_OPERATION]: 'publish',
      [ATTR_MESSAGING_MESSAGE_ID]: taskId,
      'celery.action': 'apply_async',
      'celery.task_name': 'orders.tasks.fulfil_order',
    } }, serverContext);
  const messageHeaders = {};
  propagator.inject(trace.setSpan(serverContext, producer), messageHeaders, defaultTextMapSetter);
  producer.end(t(9_200_071));

  server.setAttributes({ [ATTR_HTTP_STATUS_CODE]: 201, [ATTR_HTTP_RESPONSE_STATUS_CODE]: 201 });
  server.setStatus({ code: SpanStatusCode.OK });
  server.addEvent('response.sent', { 'response.bytes': 512 }, t(9_800_073));
  server.end(t(9_900_079));

  // ---- worker: Celery task run (CONSUMER), context extracted from the message headers
  const taskContext = propagator.extract(ROOT_CONTEXT, messageHeaders, defaultTextMapGetter);
  const consumer = celeryWorker.startSpan('run/orders.tasks.fulfil_order', { kind: SpanKind.CONSUMER,
    startTime: t(1_000_000_083),
    attributes: {
      [ATTR_MESSAGING_SYSTEM]: 'rabbitmq',
      [ATTR_MESSAGING_DESTINATION_NAME]: 'celery',
      [ATTR_MESSAGING_OPERATION]: 'process',
      [ATTR_MESSAGING_MESSAGE_ID]: taskId,
      'celery.action': 'run',
      'celery.state': 'SUCCESS',
      'celery.task_name': 'orders.tasks.fulfil_order',
      'celery.retries': 0,
      'celery.hostname': `celery@worker-1 (${UNICODE_TEXT})`,
    },
    links: [{ context: trace.getSpanContext(taskContext), attributes: { 'messaging.link': 'publisher' } }],
  }, taskContext);
  consumer.addEvent('celery.task.received', { 'celery.eta': '2026-01-01T00:00:01+00:00', 'celery.countdown_s': 0.5 },
    t(1_000_100_089));
  const consumerContext = trace.setSpan(taskContext, consumer);
  const wSelect = sqlalchemyWorker.startSpan('SELECT shop', { kind: SpanKind.CLIENT, startTime: t(1_001_000_097),
    attributes: dbAttrs('SELECT', 'order_items',
      'SELECT order_items.sku, order_items.quantity, stock.available FROM order_items '
      + 'JOIN stock ON stock.sku = order_items.sku WHERE order_items.order_id = %(order_id_1)s') },
  consumerContext);
  wSelect.end(t(1_002_000_101));
  const wUpdate = sqlalchemyWorker.startSpan('UPDATE shop', { kind: SpanKind.CLIENT, startTime: t(1_002_100_103),
    attributes: dbAttrs('UPDATE', 'stock',
      'UPDATE stock SET available=(stock.available - %(available_1)s) WHERE stock.sku = %(sku_1)s') },
  consumerContext);
  wUpdate.end(t(1_003_000_107));
  consumer.setStatus({ code: SpanStatusCode.OK });
  consumer.end(t(1_004_000_109));

  return { traceId, incomingParentSpanId, linkedTraceId, messageHeaders };
}

export const EXPECTED_SPAN_COUNT = 11;
