// Conformance: the OTLP/HTTP receiver of the real spanrelay binary, driven directly with node's
// http/net (no SDK), against a fake upstream that decodes what is forwarded.
//
// Run: `npm ci` in this directory once, then `node --test` here (or `ctest -R interop`).
// SPANRELAY_BINARY overrides the binary (default ../../build/spanrelay).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import zlib from 'node:zlib';

import {
  Agent, FakeUpstream, TempDir, agentConfigYaml, canonKeyValues, canonWireSpan, decodeKeepingUnknown,
  freePort, hex, lengthDelimited, loadProtos, rawSpans, sleep, tag, varint, waitUntil, wireFields,
} from './harness.mjs';

const pb = loadProtos();
const newTraceId = () => randomBytes(16).toString('hex');
const newSpanId = () => randomBytes(8).toString('hex');

let tmp;
let upstream;
let agent;
let port;
const neverForwarded = new Set(); // span names that must never reach the upstream

// One describe() holds every hook and test of this file: run.mjs takes the file's single
// top-level result as the end of its tests (see README.md).
describe('receiver conformance (raw HTTP through the real binary)', () => {
  before(async () => {
    tmp = new TempDir();
    upstream = await FakeUpstream.start();
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      const configPath = tmp.write('spanrelay.yaml', agentConfigYaml({ httpPort: port, upstream: upstream.endpoint }));
      try {
        agent = await Agent.start({ configPath, port });
        break;
      } catch (e) {
        if (attempt >= 3) throw e;
      }
    }
  }, { timeout: 30_000 });

  after(async () => {
    agent?.kill();
    await upstream?.close();
    tmp?.remove();
  });

  // ---------------------------------------------------------------------------------------------
  // Clients

  // One POST /v1/traces; resolves { status, headers, body (Buffer) }.
  function post(body, { contentType = 'application/x-protobuf', gzip = false, agent: httpAgent, headers = {},
    path = '/v1/traces', timeoutMs = 10_000 } = {}) {
    let payload = typeof body === 'string' ? Buffer.from(body) : Buffer.from(body);
    const h = { 'content-type': contentType, ...headers };
    if (gzip) {
      payload = zlib.gzipSync(payload);
      h['content-encoding'] = 'gzip';
    }
    h['content-length'] = payload.length;
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path, headers: h, agent: httpAgent ?? false },
        (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
          res.on('error', reject);
        });
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  const postJson = (obj, options = {}) =>
    post(typeof obj === 'string' ? obj : JSON.stringify(obj), { ...options, contentType: 'application/json' });

  function assertStatus(res, want, what) {
    assert.equal(res.status, want, `${what}: HTTP ${res.status}, body ${res.body.toString().slice(0, 300)}\n--- agent ---\n${agent.tail(20)}`);
  }

  // ---------------------------------------------------------------------------------------------
  // Requests

  function protoSpan({ traceId = newTraceId(), spanId = newSpanId(), name, attributes = [] }) {
    return {
      traceId: Buffer.from(traceId, 'hex'),
      spanId: Buffer.from(spanId, 'hex'),
      name,
      kind: 2,
      startTimeUnixNano: '1767225600000000001',
      endTimeUnixNano: '1767225600999999999',
      attributes,
    };
  }

  function protoRequest(spans, { resource = { attributes: [{ key: 'service.name', value: { stringValue: 'conformance' } }] } } = {}) {
    const rs = { scopeSpans: [{ scope: { name: 'conformance', version: '1.0' }, spans }] };
    if (resource) rs.resource = resource;
    const msg = pb.ExportTraceServiceRequest.fromObject({ resourceSpans: [rs] });
    return Buffer.from(pb.ExportTraceServiceRequest.encode(msg).finish());
  }

  function jsonSpan({ traceId = newTraceId(), spanId = newSpanId(), name, attributes = [] }) {
    return { traceId, spanId, name, kind: 2, startTimeUnixNano: '1767225600000000001',
      endTimeUnixNano: '1767225600999999999', attributes };
  }

  const jsonRequest = (spans, { resource = { attributes: [{ key: 'service.name', value: { stringValue: 'conformance' } }] } } = {}) => ({
    resourceSpans: [{ ...(resource ? { resource } : {}), scopeSpans: [{ scope: { name: 'conformance', version: '1.0' }, spans }] }],
  });

  // Waits until every span id in `spanIds` has arrived upstream; returns Map spanId -> [records].
  async function waitForSpans(spanIds, what, timeoutMs = 15_000) {
    const wanted = new Set(spanIds);
    const collect = () => {
      const m = new Map();
      for (const s of upstream.spans()) {
        if (!wanted.has(s.spanId)) continue;
        if (!m.has(s.spanId)) m.set(s.spanId, []);
        m.get(s.spanId).push(s);
      }
      return m;
    };
    try {
      return await waitUntil(() => { const m = collect(); return m.size === wanted.size ? m : null; },
        { timeoutMs, what });
    } catch (e) {
      e.message += `: ${collect().size}/${wanted.size} arrived; upstream errors ${JSON.stringify(upstream.errors().map((r) => r.error))}\n--- agent ---\n${agent.tail(20)}`;
      throw e;
    }
  }

  function assertOnce(bySpanId) {
    for (const [id, copies] of bySpanId) assert.equal(copies.length, 1, `span ${id} arrived ${copies.length} times`);
  }

  // ---------------------------------------------------------------------------------------------

  test('empty requests: JSON {} and an empty protobuf body are accepted with 200', { timeout: 10_000 }, async () => {
    const json = await postJson('{}');
    assertStatus(json, 200, 'JSON {}');
    assert.match(json.headers['content-type'] ?? '', /^application\/json/);
    const answer = JSON.parse(json.body.toString() || '{}');
    assert.equal(answer.partialSuccess?.rejectedSpans ?? 0, 0, `JSON answer ${json.body}`);

    const proto = await post(Buffer.alloc(0));
    assertStatus(proto, 200, 'empty protobuf body');
    assert.match(proto.headers['content-type'] ?? '', /^application\/x-protobuf/);
    const decoded = pb.ExportTraceServiceResponse.decode(proto.body);
    assert.equal(Number(decoded.partialSuccess?.rejectedSpans ?? 0), 0);

    const gz = await post(Buffer.alloc(0), { gzip: true });
    assertStatus(gz, 200, 'gzip of an empty protobuf body');
  });

  test('resourceSpans without a resource: 200 and forwarded (JSON and protobuf)', { timeout: 20_000 }, async () => {
    const jsonId = newSpanId();
    const protoId = newSpanId();
    assertStatus(await postJson(jsonRequest([jsonSpan({ spanId: jsonId, name: 'no-resource-json' })], { resource: null })), 200, 'JSON');
    assertStatus(await post(protoRequest([protoSpan({ spanId: protoId, name: 'no-resource-proto' })], { resource: null })), 200, 'protobuf');
    const got = await waitForSpans([jsonId, protoId], 'the spans without a resource');
    assertOnce(got);
    for (const [id, [rec]] of got) {
      assert.deepEqual(canonKeyValues(rec.resourceSpans.resource?.attributes), [], `span ${id}: no resource attributes appear`);
      assert.equal(rec.scopeSpans.scope?.name, 'conformance');
      assert.equal(rec.span.name, id === jsonId ? 'no-resource-json' : 'no-resource-proto');
    }
  });

  test('one huge span (3 MiB attribute) is delivered intact', { timeout: 30_000 }, async () => {
    const big = randomBytes(3 * 1024 * 1024 / 2).toString('hex'); // 3 MiB of text
    const spanId = newSpanId();
    const body = protoRequest([protoSpan({ spanId, name: 'huge', attributes: [
      { key: 'payload', value: { stringValue: big } }, { key: 'after', value: { intValue: 7 } }] })]);
    assert.ok(body.length > 3 * 1024 * 1024);
    assertStatus(await post(body, { gzip: true }), 200, 'huge span');
    const got = await waitForSpans([spanId], 'the huge span', 20_000);
    assertOnce(got);
    const attrs = canonKeyValues(got.get(spanId)[0].span.attributes);
    assert.equal(attrs.length, 2);
    assert.equal(attrs[0][0], 'payload');
    assert.equal(attrs[0][1][1].length, big.length, 'attribute length');
    assert.ok(attrs[0][1][1] === big, 'attribute content identical');
    assert.deepEqual(attrs[1], ['after', ['int', '7']]);
  });

  test('64-bit integers in JSON: as strings and as numbers, both accepted and equal upstream', { timeout: 20_000 }, async () => {
    const traceId = newTraceId();
    const asStrings = newSpanId();
    const asNumbers = newSpanId();
    // Written by hand: JavaScript numbers cannot hold these values.
    const span = (spanId, q) => `{"traceId":"${traceId}","spanId":"${spanId}","name":"int64","kind":1,`
      + `"startTimeUnixNano":${q('1767225600123456789')},"endTimeUnixNano":${q('18446744073709551615')},`
      + `"droppedAttributesCount":${q('4294967295')},`
      + '"attributes":['
      + `{"key":"max","value":{"intValue":${q('9223372036854775807')}}},`
      + `{"key":"min","value":{"intValue":${q('-9223372036854775808')}}},`
      + `{"key":"2^53+1","value":{"intValue":${q('9007199254740993')}}},`
      + `{"key":"minus one","value":{"intValue":${q('-1')}}},`
      + `{"key":"zero","value":{"intValue":${q('0')}}},`
      + `{"key":"array","value":{"arrayValue":{"values":[{"intValue":${q('-9007199254740993')}},{"intValue":${q('1234567890123456789')}}]}}}],`
      + `"events":[{"timeUnixNano":${q('1767225600500000001')},"name":"e","attributes":[{"key":"n","value":{"intValue":${q('-4611686018427387904')}}}]}]}`;
    const body = `{"resourceSpans":[{"scopeSpans":[{"spans":[${span(asStrings, (v) => `"${v}"`)},${span(asNumbers, (v) => v)}]}]}]}`;
    const res = await postJson(body);
    assertStatus(res, 200, '64-bit integers');
    assert.equal(JSON.parse(res.body.toString() || '{}').partialSuccess?.rejectedSpans ?? 0, 0);
    const got = await waitForSpans([asStrings, asNumbers], 'the int64 spans');
    assertOnce(got);
    const a = canonWireSpan(got.get(asStrings)[0].span);
    const b = canonWireSpan(got.get(asNumbers)[0].span);
    assert.deepEqual({ ...b, spanId: '' }, { ...a, spanId: '' }, 'strings and numbers decode to the same span');
    assert.equal(a.startTimeUnixNano, '1767225600123456789');
    assert.equal(a.endTimeUnixNano, '18446744073709551615');
    assert.equal(a.droppedAttributesCount, 4294967295);
    assert.deepEqual(a.attributes, [
      ['max', ['int', '9223372036854775807']],
      ['min', ['int', '-9223372036854775808']],
      ['2^53+1', ['int', '9007199254740993']],
      ['minus one', ['int', '-1']],
      ['zero', ['int', '0']],
      ['array', ['array', [['int', '-9007199254740993'], ['int', '1234567890123456789']]]],
    ]);
    assert.deepEqual(a.events, [{ timeUnixNano: '1767225600500000001', name: 'e',
      attributes: [['n', ['int', '-4611686018427387904']]], droppedAttributesCount: 0 }]);
  });

  test('bad hex ids in JSON are refused with 400 and not forwarded', { timeout: 20_000 }, async () => {
    const good = { traceId: newTraceId(), spanId: newSpanId() };
    const cases = {
      'traceId not hex': { traceId: `zz${good.traceId.slice(2)}` },
      'traceId too short': { traceId: good.traceId.slice(0, 30) },
      'traceId too long': { traceId: `${good.traceId}00` },
      'traceId all zero': { traceId: '0'.repeat(32) },
      'spanId not hex': { spanId: 'g123456789abcdef' },
      'spanId too short': { spanId: good.spanId.slice(0, 14) },
      'spanId all zero': { spanId: '0'.repeat(16) },
      'spanId base64 instead of hex': { spanId: Buffer.from(good.spanId, 'hex').toString('base64') },
      'parentSpanId not hex': { parentSpanId: 'xyz456789abcdef0' },
    };
    for (const [what, ids] of Object.entries(cases)) {
      const name = `bad-id ${what}`;
      neverForwarded.add(name);
      // One valid span next to the bad one: the whole request must be refused.
      const body = jsonRequest([jsonSpan({ name: `${name} (valid neighbour)` }), { ...jsonSpan({ name }), ...good, ...ids }]);
      neverForwarded.add(`${name} (valid neighbour)`);
      const res = await postJson(body);
      assertStatus(res, 400, what);
      assert.match(res.headers['content-type'] ?? '', /^application\/json/, `${what}: JSON in, JSON out`);
      const status = JSON.parse(res.body.toString());
      assert.equal(typeof status.message, 'string', `${what}: a google.rpc.Status with a message`);
      assert.ok(status.message.length > 0);
    }
    // The agent still serves well-formed requests.
    const okId = newSpanId();
    assertStatus(await postJson(jsonRequest([jsonSpan({ spanId: okId, name: 'after bad ids' })])), 200, 'valid request');
    await waitForSpans([okId], 'the valid span sent after the bad ones');
    const leaked = upstream.spans().filter((s) => neverForwarded.has(s.span.name)).map((s) => s.span.name);
    assert.deepEqual(leaked, [], 'no span of a refused request is forwarded');
  });

  test('clients that disconnect mid-request do not disturb the agent', { timeout: 30_000 }, async () => {
    const full = protoRequest([protoSpan({ name: 'truncated-by-client', attributes: [
      { key: 'pad', value: { stringValue: 'x'.repeat(120_000) } }] })]);
    neverForwarded.add('truncated-by-client');
    for (let i = 0; i < 10; i++) {
      const socket = net.connect({ host: '127.0.0.1', port });
      await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
      const head = `POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/x-protobuf\r\n`
        + `${i % 2 ? 'Content-Encoding: identity\r\n' : ''}Content-Length: 100000\r\n\r\n`;
      await new Promise((resolve) => socket.write(Buffer.concat([Buffer.from(head), full.subarray(0, 50_000)]), resolve));
      socket.destroy();
    }
    // Also one that sends only part of the headers.
    const partial = net.connect({ host: '127.0.0.1', port });
    await new Promise((resolve, reject) => { partial.once('connect', resolve); partial.once('error', reject); });
    await new Promise((resolve) => partial.write('POST /v1/traces HTTP/1.1\r\nContent-Le', resolve));
    partial.destroy();

    const spanIds = [];
    for (let i = 0; i < 5; i++) {
      const spanId = newSpanId();
      spanIds.push(spanId);
      assertStatus(await post(protoRequest([protoSpan({ spanId, name: `after-disconnect-${i}` })])), 200, 'request after disconnects');
    }
    assertOnce(await waitForSpans(spanIds, 'the spans sent after the disconnects'));
    assert.ok(!agent.exited, `the agent exited: ${agent.describeExit()}\n${agent.tail()}`);
  });

  test('50 connections x 20 requests concurrently: every span arrives exactly once', { timeout: 60_000 }, async () => {
    const CONNECTIONS = 50;
    const REQUESTS = 20;
    const traceId = newTraceId();
    const expected = new Map(); // spanId -> span name
    let retried = 0;
    const connection = async (c) => {
      const httpAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        for (let r = 0; r < REQUESTS; r++) {
          const spanId = newSpanId();
          const name = `concurrent ${c}/${r}`;
          expected.set(spanId, name);
          const mode = (c + r) % 4; // protobuf, protobuf+gzip, JSON, JSON+gzip
          const attributes = [{ key: 'conn', value: { intValue: c } }, { key: 'req', value: { intValue: r } }];
          const send = () => (mode < 2
            ? post(protoRequest([protoSpan({ traceId, spanId, name, attributes })]), { gzip: mode === 1, agent: httpAgent })
            : postJson(jsonRequest([jsonSpan({ traceId, spanId, name, attributes })]), { gzip: mode === 3, agent: httpAgent }));
          let res = await send();
          // 429/503 are the agent's back-pressure: a real client retries.
          for (let tries = 0; (res.status === 429 || res.status === 503) && tries < 20; tries++) {
            retried++;
            await sleep(100); // client back-off, as an SDK would do
            res = await send();
          }
          assertStatus(res, 200, name);
        }
      } finally {
        httpAgent.destroy();
      }
    };
    await Promise.all(Array.from({ length: CONNECTIONS }, (_, c) => connection(c)));
    const got = await waitForSpans([...expected.keys()], `all ${expected.size} concurrent spans`, 30_000);
    assert.equal(got.size, CONNECTIONS * REQUESTS);
    assertOnce(got);
    for (const [spanId, [rec]] of got) {
      assert.equal(rec.span.name, expected.get(spanId));
      assert.equal(hex(rec.span.traceId), traceId);
    }
    if (retried) console.log(`# concurrency: ${retried} request(s) retried after 429/503`);
  });

  test('unknown protobuf fields inside a Span are forwarded byte for byte', { timeout: 20_000 }, async () => {
    const spanId = newSpanId();
    const known = Buffer.from(pb.Span.encode(pb.Span.fromObject(protoSpan({ spanId, name: 'unknown-fields',
      attributes: [{ key: 'k', value: { stringValue: 'v' } }] }))).finish());
    const unknownPayload = Buffer.concat([Buffer.from('opaque \u00ff\u0000 bytes ', 'latin1'), randomBytes(64)]);
    const unknown1000 = lengthDelimited(1000, unknownPayload);   // field 1000, wire type 2
    const unknown1001 = Buffer.concat([tag(1001, 0), varint(150)]); // field 1001, wire type 0
    const unknown2047 = Buffer.concat([tag(2047, 5), Buffer.from([1, 2, 3, 4])]); // fixed32
    const unknownBytes = Buffer.concat([unknown1000, unknown1001, unknown2047]);
    const spanBytes = Buffer.concat([known, unknownBytes]);
    const scopeSpans = lengthDelimited(2, spanBytes);
    const resourceSpans = lengthDelimited(2, scopeSpans);
    const body = lengthDelimited(1, resourceSpans);
    assertStatus(await post(body), 200, 'span with unknown fields');

    const got = await waitForSpans([spanId], 'the span with unknown fields');
    assertOnce(got);
    const rec = got.get(spanId)[0];
    // 1. protobufjs (unknown fields preserved) sees exactly our three fields, in order.
    const unknowns = (rec.span.$unknowns || []).map((u) => Buffer.from(u).toString('hex'));
    assert.deepEqual(unknowns, [unknown1000, unknown1001, unknown2047].map((b) => b.toString('hex')),
      'the unknown fields of the upstream span');
    // 2. In the raw upstream body, the span's bytes are exactly the ones sent.
    const raw = rawSpans(rec.request.body).find((s) => {
      for (const f of wireFields(s)) if (f.field === 2 && f.wireType === 2) return hex(f.value) === spanId;
      return false;
    });
    assert.ok(raw, 'the span is found in the raw upstream body');
    assert.ok(raw.includes(unknownBytes), 'the unknown field bytes are in the upstream span, contiguous and unchanged');
    assert.equal(raw.toString('hex'), spanBytes.toString('hex'), 'the whole span is forwarded byte for byte');
    // 3. The known fields still decode to the same span.
    const sent = canonWireSpan(decodeKeepingUnknown(pb.Span, spanBytes));
    assert.deepEqual(canonWireSpan(rec.span), sent);
  });

  test('SIGTERM: exit 0, and nothing refused or truncated ever reached the upstream', { timeout: 20_000 }, async () => {
    assert.ok(!agent.exited, `the agent died during the suite: ${agent.describeExit()}\n${agent.tail()}`);
    const { code, signal } = await agent.terminate(15_000);
    assert.equal(signal, null, `terminated by signal ${signal}\n${agent.tail()}`);
    assert.equal(code, 0, `exit code ${code}\n${agent.tail()}`);
    const leaked = upstream.spans().filter((s) => neverForwarded.has(s.span.name)).map((s) => s.span.name);
    assert.deepEqual(leaked, [], 'spans of refused or truncated requests');
    const seen = new Map();
    for (const s of upstream.spans()) {
      const key = `${s.traceId}/${s.spanId}`;
      seen.set(key, (seen.get(key) ?? 0) + 1);
    }
    const duplicates = [...seen].filter(([, n]) => n > 1);
    assert.deepEqual(duplicates, [], 'spans delivered more than once');
    assert.deepEqual(upstream.errors().map((r) => r.error), [], 'every forwarded request was a valid OTLP export');
  });
});
