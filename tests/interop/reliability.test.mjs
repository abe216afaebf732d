// Reliability with the official OpenTelemetry JavaScript SDK: spans the SDK exported to spanrelay
// (and that spanrelay acknowledged) while its upstream was failing must all reach the upstream,
// once and unaltered, when it recovers: through an outage of the upstream, and through a SIGKILL
// and restart of the agent. Both use the disk spool (`fsync: always`), as docs/reliability.md
// promises for it.
//
// Run: `npm ci` in this directory once, then `node --test reliability.test.mjs` here (or
// `ctest -R interop`). SPANRELAY_BINARY overrides the binary (default ../../build/spanrelay).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';

import { ExportResultCode } from '@opentelemetry/core';
import { OTLPTraceExporter as OTLPGrpcExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as OTLPHttpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OTLPProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';

import {
  Agent, FakeUpstream, TempDir, agentConfigYaml, assertSameSpan, canonReadableSpan,
  canonWireRecord, fetchMetrics, freePort, grpcReceiverSkipReason, metricValue, portAccepts, scrubOtelEnv,
  waitUntil,
} from './harness.mjs';
import { EXPECTED_SPAN_COUNT, emitReferenceTrace, makeService } from './reference-trace.mjs';

scrubOtelEnv(); // the SDK must not pick up OTEL_* settings from the machine

const VARIANTS = [
  { name: 'http/protobuf', transport: 'http', make: (url) => new OTLPProtoExporter({ url, timeoutMillis: 5000 }) },
  { name: 'http/json', transport: 'http', make: (url) => new OTLPHttpJsonExporter({ url, timeoutMillis: 5000 }) },
  { name: 'grpc + gzip', transport: 'grpc', make: (url) => new OTLPGrpcExporter({ url, compression: 'gzip', timeoutMillis: 5000 }) },
];
const TRACES_PER_VARIANT = 2;
const OUTAGE_STATUS = 503;

const ids = {
  traceId: () => randomBytes(16).toString('hex'),
  spanId: () => randomBytes(8).toString('hex'),
};

const UP = { exporter: 'up' }; // the exporter's name in agentConfigYaml

let grpcSkipReason = null;

// One describe() holds every hook and test of this file: run.mjs takes the file's single
// top-level result as the end of its tests (see README.md).
describe('reliability: the SDK through outages and a SIGKILL, with the disk spool', () => {
  before(async () => {
    // Does this binary have the gRPC receiver yet? A loader without it rejects the key `grpc`.
    const tmp = new TempDir();
    try {
      const probe = tmp.write('probe-grpc.yaml', agentConfigYaml({
        httpPort: await freePort(), grpcPort: await freePort(), upstream: 'http://127.0.0.1:9',
        spoolPath: tmp.file('spool'), spoolFsync: 'always', adminPort: await freePort(),
      }));
      grpcSkipReason = await grpcReceiverSkipReason(probe);
    } finally {
      tmp.remove();
    }
  }, { timeout: 20_000 });

  // The variants this binary can run; the gRPC one is left out (with a diagnostic) without a gRPC receiver.
  function variantsFor(t) {
    if (!grpcSkipReason) return VARIANTS;
    t.diagnostic(`grpc variant left out: ${grpcSkipReason}`);
    return VARIANTS.filter((v) => v.transport !== 'grpc');
  }

  // Starts an agent with a spool in `spoolPath` and an admin endpoint, on fresh ports (retried on
  // the rare collision). Resolves { agent, httpPort, grpcPort, adminPort } once every port accepts.
  async function startAgent({ tmp, name, upstream, spoolPath }) {
    for (let attempt = 1; ; attempt++) {
      const httpPort = await freePort();
      const grpcPort = grpcSkipReason ? undefined : await freePort();
      const adminPort = await freePort();
      const configPath = tmp.write(`${name}.yaml`, agentConfigYaml({
        httpPort, grpcPort, adminPort, upstream: upstream.endpoint, spoolPath, spoolFsync: 'always',
      }));
      let agent;
      try {
        agent = await Agent.start({ configPath, port: httpPort });
        for (const [port, what] of [[grpcPort, 'gRPC receiver'], [adminPort, 'admin endpoint']]) {
          if (port) await waitUntil(() => portAccepts(port), { timeoutMs: 10_000, what: `the ${what} on ${port}` });
        }
        return { agent, httpPort, grpcPort, adminPort };
      } catch (e) {
        agent?.kill();
        await agent?.exitPromise; // the spool lock goes with the process
        if (attempt >= 3) throw e;
      }
    }
  }

  // The value of `name{exporter="up"}` on the agent's /metrics (0 when absent).
  async function upMetric(ctx, name) {
    return metricValue(await fetchMetrics(ctx.adminPort), name, UP) ?? 0;
  }

  async function shutdownService(service) {
    try {
      await service.provider.shutdown();
    } catch { /* best effort: the test already has its verdict */ }
  }

  // Every variant, as an application would: two services (api, worker) with the SDK exporter
  // pointed at the agent, `TRACES_PER_VARIANT` reference traces each, then forceFlush(). Asserts
  // that every SDK export succeeded (the agent acknowledged it). Returns what the SDK recorded:
  // { expected: Map "traceId/spanId" -> canonical record, traceIds, exports (SDK export calls) }.
  async function emitThroughSdk(t, ctx, { baseSec }) {
    const expected = new Map();
    const traceIds = [];
    let exports = 0;
    for (const [index, variant] of variantsFor(t).entries()) {
      const url = variant.transport === 'grpc'
        ? `http://127.0.0.1:${ctx.grpcPort}`
        : `http://127.0.0.1:${ctx.httpPort}/v1/traces`;
      const instance = `${variant.name.replace(/\W+/g, '-')}-${index}`;
      const api = makeService({ serviceName: 'checkout-api', serviceVersion: '2.3.1', instanceId: `api-${instance}`,
        exporter: variant.make(url) });
      const worker = makeService({ serviceName: 'checkout-worker', serviceVersion: '2.3.1', instanceId: `worker-${instance}`,
        exporter: variant.make(url) });
      try {
        const variantTraceIds = [];
        for (let i = 0; i < TRACES_PER_VARIANT; i++) {
          const { traceId } = emitReferenceTrace({ api, worker, baseSec: baseSec + (index * TRACES_PER_VARIANT + i) * 60, ids });
          variantTraceIds.push(traceId);
        }
        await Promise.all([api.provider.forceFlush(), worker.provider.forceFlush()]).catch((e) => {
          const why = [].concat(e).map((x) => `${x?.message ?? x}${x?.data ? ` (${x.data})` : ''}`).join('; ');
          throw new Error(`${variant.name}: the SDK exporter could not export to spanrelay: ${why}\n--- agent ---\n${ctx.agent.tail()}`);
        });

        const finished = [...api.memory.getFinishedSpans(), ...worker.memory.getFinishedSpans()];
        assert.equal(finished.length, EXPECTED_SPAN_COUNT * TRACES_PER_VARIANT, `${variant.name}: the SDK finished every span`);
        for (const rs of finished) {
          const c = canonReadableSpan(rs);
          const key = `${c.span.traceId}/${c.span.spanId}`;
          assert.ok(!expected.has(key), `span ids are unique (${key})`);
          assert.ok(variantTraceIds.includes(c.span.traceId), `${variant.name}: span ${c.span.name} belongs to a reference trace`);
          expected.set(key, c);
        }

        // The agent, its upstream failing, still acknowledged every export: the spool took it.
        const results = [...api.recording.results, ...worker.recording.results];
        for (const r of results) {
          assert.equal(r.code, ExportResultCode.SUCCESS,
            `${variant.name} export failed: ${r.error?.message ?? r.error}\n--- agent ---\n${ctx.agent.tail()}`);
        }
        assert.equal(results.reduce((n, r) => n + r.spans, 0), finished.length, `${variant.name}: every span was exported once`);
        exports += results.length;
        traceIds.push(...variantTraceIds);
      } finally {
        await Promise.all([shutdownService(api), shutdownService(worker)]);
      }
    }
    return { expected, traceIds, exports };
  }

  // So far the upstream answered every request OUTAGE_STATUS: nothing was delivered, and what the
  // agent tried to deliver was (among others) our spans.
  function assertOnlyFailedAttempts(upstream, sent, agent) {
    const statuses = upstream.requests.map((r) => r.status ?? r.error);
    assert.ok(statuses.length > 0, 'the agent tried to deliver during the outage');
    assert.deepEqual(statuses.filter((s) => s !== OUTAGE_STATUS), [],
      `the upstream answered only ${OUTAGE_STATUS} so far\n--- agent ---\n${agent.tail()}`);
    assert.equal(upstream.spansByKey(sent.traceIds).size, 0, 'no span was delivered during the outage');
    const attempted = upstream.spansByKey(sent.traceIds, { includeRefused: true });
    assert.ok(attempted.size > 0, 'the refused attempts carried spans of the SDK');
    assert.deepEqual([...attempted.keys()].filter((k) => !sent.expected.has(k)), [], 'no unexpected span was attempted');
  }

  // Awaits every span the SDK finished upstream (in a 200 answer), then checks each arrived exactly
  // once and unaltered.
  async function assertDeliveredOnce(upstream, sent, agent, { timeoutMs = 30_000 } = {}) {
    const byKey = await waitUntil(() => {
      const got = upstream.spansByKey(sent.traceIds);
      return [...sent.expected.keys()].every((k) => got.has(k)) ? got : null;
    }, { timeoutMs, intervalMs: 50, what: `all ${sent.expected.size} spans upstream` }).catch((e) => {
      const got = upstream.spansByKey(sent.traceIds);
      e.message += `: got ${got.size}/${sent.expected.size}; upstream errors: ${JSON.stringify(upstream.errors().map((r) => r.error))}\n--- agent ---\n${agent.tail()}`;
      throw e;
    });
    assertExactlyOnce(upstream, sent, byKey);
  }

  function assertExactlyOnce(upstream, sent, byKey = upstream.spansByKey(sent.traceIds)) {
    assert.deepEqual([...byKey.keys()].filter((k) => !sent.expected.has(k)), [], 'no unexpected span with these trace ids');
    assert.equal(byKey.size, sent.expected.size, 'every span the SDK finished was delivered');
    for (const [key, want] of sent.expected) {
      const copies = byKey.get(key);
      assert.equal(copies.length, 1, `span ${want.span.name} (${key}) arrived ${copies.length} times`);
      assertSameSpan(canonWireRecord(copies[0]), want, `${want.span.name} (${key})`);
    }
  }

  // SIGTERM: exit 0, and nothing arrived twice while draining.
  async function terminateCleanly(agent, upstream, sent) {
    const { code, signal } = await agent.terminate(15_000);
    assert.equal(signal, null, `terminated by signal ${signal}\n${agent.tail()}`);
    assert.equal(code, 0, `exit code ${code}\n${agent.tail()}`);
    assertExactlyOnce(upstream, sent);
    assert.deepEqual(upstream.errors().map((r) => r.error), [], 'every forwarded request was a valid OTLP export');
  }

  test('SDK through a 503 outage with a spool: every span arrives once', { timeout: 90_000 }, async (t) => {
    const tmp = new TempDir();
    const upstream = await FakeUpstream.start();
    upstream.status = OUTAGE_STATUS;
    let ctx;
    try {
      const spoolPath = tmp.file('spool');
      ctx = await startAgent({ tmp, name: 'outage', upstream, spoolPath });

      const sent = await emitThroughSdk(t, ctx, { baseSec: 1_767_225_600 }); // 2026-01-01T00:00:00Z
      assert.ok(existsSync(path.join(spoolPath, 'up')), 'the exporter keeps its queue under <spool>/up');
      assert.equal(await upMetric(ctx, 'spanrelay_spool_appended_records_total'), sent.exports,
        'every acknowledged SDK export was written to the spool');

      // Let the outage bite: the exporter fails until its circuit opens.
      await waitUntil(async () => (await upMetric(ctx, 'spanrelay_exporter_circuit_opened_total')) >= 1,
        { timeoutMs: 20_000, intervalMs: 100, what: 'the exporter circuit to open' });
      assertOnlyFailedAttempts(upstream, sent, ctx.agent);
      assert.equal(await upMetric(ctx, 'spanrelay_spool_records'), sent.exports, 'every record is still in the spool');
      const failedAttempts = upstream.requests.length;

      // Recovery.
      upstream.status = 200;
      const recoveredAt = Date.now();
      await assertDeliveredOnce(upstream, sent, ctx.agent);
      t.diagnostic(`${sent.expected.size} spans in ${sent.exports} SDK exports; ${failedAttempts} failed attempts; delivered ${Date.now() - recoveredAt} ms after recovery`);
      await waitUntil(async () => (await upMetric(ctx, 'spanrelay_spool_records')) === 0,
        { timeoutMs: 10_000, intervalMs: 50, what: 'the spool to be empty' });
      assert.ok(!ctx.agent.exited, `the agent died: ${ctx.agent.describeExit()}\n${ctx.agent.tail()}`);
      await terminateCleanly(ctx.agent, upstream, sent);
    } finally {
      ctx?.agent.kill();
      await upstream.close();
      tmp.remove();
    }
  });

  test('SDK spans spooled, agent killed with SIGKILL, restarted: every span arrives', { timeout: 90_000 }, async (t) => {
    const tmp = new TempDir();
    const upstream = await FakeUpstream.start();
    upstream.status = OUTAGE_STATUS;
    let first;
    let second;
    try {
      const spoolPath = tmp.file('spool');
      first = await startAgent({ tmp, name: 'before-kill', upstream, spoolPath });

      const sent = await emitThroughSdk(t, first, { baseSec: 1_767_225_600 + 86_400 }); // a day later
      assert.equal(await upMetric(first, 'spanrelay_spool_appended_records_total'), sent.exports,
        'every acknowledged SDK export was written to the spool');
      // The exporter has records out of the spool and in flight (failing) when the agent dies.
      await waitUntil(() => upstream.spansByKey(sent.traceIds, { includeRefused: true }).size > 0,
        { timeoutMs: 10_000, what: 'a delivery attempt carrying spans of the SDK' });
      assertOnlyFailedAttempts(upstream, sent, first.agent);

      first.agent.kill();
      await first.agent.exitPromise;
      assert.equal(first.agent.exitSignal, 'SIGKILL', `the first agent ended with ${first.agent.describeExit()}`);
      const failedAttempts = upstream.requests.length;

      upstream.status = 200;
      second = await startAgent({ tmp, name: 'after-kill', upstream, spoolPath });
      const restartedAt = Date.now();
      await assertDeliveredOnce(upstream, sent, second.agent);
      t.diagnostic(`${sent.expected.size} spans in ${sent.exports} SDK exports; ${failedAttempts} failed attempts before the kill; delivered ${Date.now() - restartedAt} ms after the restart`);
      assert.equal(await upMetric(second, 'spanrelay_spool_replayed_records_total'), sent.exports,
        'the restarted agent found every record in the spool');
      await waitUntil(async () => (await upMetric(second, 'spanrelay_spool_records')) === 0,
        { timeoutMs: 10_000, intervalMs: 50, what: 'the spool to be empty' });
      assert.ok(!second.agent.exited, `the restarted agent died: ${second.agent.describeExit()}\n${second.agent.tail()}`);
      await terminateCleanly(second.agent, upstream, sent);
    } finally {
      first?.agent.kill();
      second?.agent.kill();
      await upstream.close();
      tmp.remove();
    }
  });
});
