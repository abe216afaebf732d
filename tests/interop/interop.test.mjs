// Interop: spans produced by the official OpenTelemetry JavaScript SDK, sent with each of its OTLP
// trace exporters (http/protobuf, http/json, grpc; each with and without gzip) through the real
// spanrelay binary, must reach the upstream unaltered and exactly once.
//
// Run: `npm ci` in this directory once, then `node --test` here (or `ctest -R interop`).
// SPANRELAY_BINARY overrides the binary (default ../../build/spanrelay).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { ExportResultCode } from '@opentelemetry/core';
import { OTLPTraceExporter as OTLPGrpcExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as OTLPHttpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OTLPProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';

import {
  Agent, FakeUpstream, TempDir, agentConfigYaml, assertSameSpan, canonReadableSpan,
  canonWireRecord, freePort, grpcReceiverSkipReason, portAccepts, scrubOtelEnv, waitUntil,
} from './harness.mjs';
import { EXPECTED_SPAN_COUNT, emitReferenceTrace, makeService } from './reference-trace.mjs';

scrubOtelEnv(); // the SDK must not pick up OTEL_* settings from the machine

const VARIANTS = [
  { name: 'http/protobuf', transport: 'http', make: (url, compression) => new OTLPProtoExporter({ url, compression, timeoutMillis: 5000 }) },
  { name: 'http/protobuf + gzip', transport: 'http', gzip: true, make: (url, compression) => new OTLPProtoExporter({ url, compression, timeoutMillis: 5000 }) },
  { name: 'http/json', transport: 'http', make: (url, compression) => new OTLPHttpJsonExporter({ url, compression, timeoutMillis: 5000 }) },
  { name: 'http/json + gzip', transport: 'http', gzip: true, make: (url, compression) => new OTLPHttpJsonExporter({ url, compression, timeoutMillis: 5000 }) },
  { name: 'grpc', transport: 'grpc', make: (url, compression) => new OTLPGrpcExporter({ url, compression, timeoutMillis: 5000 }) },
  { name: 'grpc + gzip', transport: 'grpc', gzip: true, make: (url, compression) => new OTLPGrpcExporter({ url, compression, timeoutMillis: 5000 }) },
];

const ids = {
  traceId: () => randomBytes(16).toString('hex'),
  spanId: () => randomBytes(8).toString('hex'),
};

let tmp;
let upstream;
let agent;
let httpPort;
let grpcPort;
let grpcSkipReason = null;
const sent = []; // { variant, traceIds, expected: Map key -> canonical record }

// One describe() holds every hook and test of this file: run.mjs takes the file's single
// top-level result as the end of its tests (see README.md).
describe('the OpenTelemetry JS SDK exporters through the real binary', () => {
  before(async () => {
    tmp = new TempDir();
    upstream = await FakeUpstream.start();

    // Does this binary have the gRPC receiver yet? A loader without it rejects the key `grpc`.
    const probe = tmp.write('probe-grpc.yaml', agentConfigYaml({
      httpPort: await freePort(), grpcPort: await freePort(), upstream: upstream.endpoint,
    }));
    grpcSkipReason = await grpcReceiverSkipReason(probe);

    // Ports are chosen free, then bound by the agent: retry on the rare collision.
    for (let attempt = 1; ; attempt++) {
      httpPort = await freePort();
      grpcPort = grpcSkipReason ? undefined : await freePort();
      const configPath = tmp.write('spanrelay.yaml', agentConfigYaml({ httpPort, grpcPort, upstream: upstream.endpoint }));
      try {
        agent = await Agent.start({ configPath, port: httpPort });
        if (grpcPort) await waitUntil(() => portAccepts(grpcPort),
          { timeoutMs: 10_000, what: `the gRPC receiver on ${grpcPort}` });
        break;
      } catch (e) {
        agent?.kill();
        if (attempt >= 3) throw e;
      }
    }
  }, { timeout: 40_000 });

  after(async () => {
    agent?.kill();
    await upstream?.close();
    tmp?.remove();
  });

  async function shutdownService(service) {
    try {
      await service.provider.shutdown();
    } catch { /* best effort: the test already has its verdict */ }
  }

  for (const [index, variant] of VARIANTS.entries()) {
    test(`SDK exporter ${variant.name}: every span arrives upstream once, unaltered`, { timeout: 30_000 }, async (t) => {
      if (variant.transport === 'grpc' && grpcSkipReason) {
        t.skip(grpcSkipReason);
        return;
      }
      const url = variant.transport === 'grpc'
        ? `http://127.0.0.1:${grpcPort}`
        : `http://127.0.0.1:${httpPort}/v1/traces`;
      const compression = variant.gzip ? 'gzip' : 'none';
      const instance = `${variant.name.replace(/\W+/g, '-')}-${index}`;
      const api = makeService({ serviceName: 'checkout-api', serviceVersion: '2.3.1', instanceId: `api-${instance}`,
        exporter: variant.make(url, compression) });
      const worker = makeService({ serviceName: 'checkout-worker', serviceVersion: '2.3.1', instanceId: `worker-${instance}`,
        exporter: variant.make(url, compression) });
      try {
        const baseSec = 1_767_225_600 + index * 60; // 2026-01-01T00:00:00Z + one minute per variant
        const { traceId } = emitReferenceTrace({ api, worker, baseSec, ids });
        await Promise.all([api.provider.forceFlush(), worker.provider.forceFlush()]).catch((e) => {
          const why = [].concat(e).map((x) => `${x?.message ?? x}${x?.data ? ` (${x.data})` : ''}`).join('; ');
          throw new Error(`${variant.name}: the SDK exporter could not export to spanrelay: ${why}\n--- agent ---\n${agent.tail()}`);
        });

        // What the SDK produced.
        const finished = [...api.memory.getFinishedSpans(), ...worker.memory.getFinishedSpans()];
        assert.equal(finished.length, EXPECTED_SPAN_COUNT, 'the SDK finished every span of the reference trace');
        const expected = new Map();
        for (const rs of finished) {
          const c = canonReadableSpan(rs);
          expected.set(`${c.span.traceId}/${c.span.spanId}`, c);
        }
        assert.equal(expected.size, EXPECTED_SPAN_COUNT, 'span ids are unique');
        assert.ok([...expected.values()].every((c) => c.span.traceId === traceId), 'api and worker share the trace id');
        assert.equal(new Set([...expected.values()].map((c) => c.resource.attributes.find(([k]) => k === 'service.name')[1][1])).size, 2);

        // The exporter must have succeeded: the agent accepted the spans.
        const results = [...api.recording.results, ...worker.recording.results];
        for (const r of results) {
          assert.equal(r.code, ExportResultCode.SUCCESS,
            `${variant.name} export failed: ${r.error?.message ?? r.error}\n--- agent ---\n${agent.tail()}`);
        }
        assert.equal(results.reduce((n, r) => n + r.spans, 0), EXPECTED_SPAN_COUNT, 'every span was exported once');
        sent.push({ variant: variant.name, traceIds: [traceId], expected });

        // What the upstream got.
        const byKey = await waitUntil(() => {
          const got = upstream.spansByKey([traceId]);
          return [...expected.keys()].every((k) => got.has(k)) ? got : null;
        }, { timeoutMs: 15_000, what: `all ${EXPECTED_SPAN_COUNT} spans of trace ${traceId} upstream` }).catch((e) => {
          const got = upstream.spansByKey([traceId]);
          e.message += `: got ${got.size}/${EXPECTED_SPAN_COUNT}; upstream errors: ${JSON.stringify(upstream.errors().map((r) => r.error))}\n--- agent ---\n${agent.tail()}`;
          throw e;
        });
        assert.deepEqual([...byKey.keys()].filter((k) => !expected.has(k)), [], 'no unexpected span with this trace id');
        for (const [key, want] of expected) {
          const copies = byKey.get(key);
          assert.equal(copies.length, 1, `span ${want.span.name} (${key}) arrived ${copies.length} times`);
          assertSameSpan(canonWireRecord(copies[0]), want, `${variant.name}: ${want.span.name} (${key})`);
          const headers = copies[0].request.headers;
          assert.match(headers['content-type'] ?? '', /^application\/x-protobuf/, 'the agent forwards OTLP protobuf');
          assert.equal(headers['content-encoding'], 'gzip', 'the agent compresses as configured');
        }
      } finally {
        await Promise.all([shutdownService(api), shutdownService(worker)]);
      }
    });
  }

  test('SIGTERM: the agent exits 0 and nothing was delivered twice or altered while draining', { timeout: 20_000 }, async () => {
    assert.ok(!agent.exited, `the agent died during the suite: ${agent.describeExit()}\n${agent.tail()}`);
    const { code, signal } = await agent.terminate(15_000);
    assert.equal(signal, null, `terminated by signal ${signal}\n${agent.tail()}`);
    assert.equal(code, 0, `exit code ${code}\n${agent.tail()}`);
    // After a clean shutdown the upstream holds everything it will ever get: count once more.
    for (const { variant, traceIds, expected } of sent) {
      const byKey = upstream.spansByKey(traceIds);
      assert.equal(byKey.size, expected.size, `${variant}: distinct spans upstream`);
      for (const [key, copies] of byKey) {
        assert.equal(copies.length, 1, `${variant}: span ${key} arrived ${copies.length} times`);
      }
    }
    assert.deepEqual(upstream.errors().map((r) => r.error), [], 'every forwarded request was a valid OTLP export');
  });
});
