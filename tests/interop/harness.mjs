// Shared machinery for the interop suites: the real spanrelay binary as a child process, a fake
// OTLP/HTTP upstream that decodes what the agent forwards with our own .proto files, free
// loopback ports, polling with deadlines, and a canonical form of spans for exact comparison.
//
// Everything is hermetic: 127.0.0.1 only, ephemeral ports, a temp dir removed afterwards, and the
// agent child is SIGKILLed if a test leaves it running (or the test process exits).

import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, get as httpGet } from 'node:http';
import assert from 'node:assert/strict';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import zlib from 'node:zlib';

import protobuf from 'protobufjs';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const PROTO_DIR = path.resolve(HERE, '../../proto');
export const SPANRELAY_BINARY = process.env.SPANRELAY_BINARY
  ? path.resolve(process.env.SPANRELAY_BINARY)
  : path.resolve(HERE, '../../build/spanrelay');

// ---------------------------------------------------------------------------------------------
// Time and polling

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Polls `pred` (sync or async) every `intervalMs` until it returns a truthy value, which is
// returned; throws with `what` once `timeoutMs` has passed. This is the only way the suites wait
// for something: no fixed sleep is used as synchronisation.
export async function waitUntil(pred, { timeoutMs = 10_000, intervalMs = 20, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await pred();
    if (value) return value;
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await sleep(intervalMs);
  }
}

// ---------------------------------------------------------------------------------------------
// Ports and temp dirs

// A loopback port that was free a moment ago (bound to 127.0.0.1:0, then closed).
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export function portAccepts(port, host = '127.0.0.1') {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

export class TempDir {
  constructor(prefix = 'spanrelay-interop-') {
    this.path = mkdtempSync(path.join(os.tmpdir(), prefix));
  }
  file(name) {
    return path.join(this.path, name);
  }
  write(name, content) {
    const p = this.file(name);
    writeFileSync(p, content);
    return p;
  }
  remove() {
    rmSync(this.path, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Our own OTLP schema (proto/ at the repository root), loaded with protobufjs.

let protos;
export function loadProtos() {
  if (protos) return protos;
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (path.isAbsolute(target) ? target : path.join(PROTO_DIR, target));
  root.loadSync(['opentelemetry/proto/collector/trace/v1/trace_service.proto', 'google/rpc/status.proto']);
  root.resolveAll();
  if (!protobuf.util.Long) throw new Error('protobufjs has no Long support: 64-bit fields would lose precision');
  protos = {
    root,
    ExportTraceServiceRequest: root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest'),
    ExportTraceServiceResponse: root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse'),
    ResourceSpans: root.lookupType('opentelemetry.proto.trace.v1.ResourceSpans'),
    Span: root.lookupType('opentelemetry.proto.trace.v1.Span'),
    Status: root.lookupType('google.rpc.Status'),
  };
  return protos;
}

// Decodes keeping unknown fields (protobufjs puts their raw bytes, tag included, in $unknowns).
export function decodeKeepingUnknown(type, bytes) {
  const reader = protobuf.Reader.create(bytes);
  reader.discardUnknown = false;
  return type.decode(reader);
}

// ---------------------------------------------------------------------------------------------
// Minimal protobuf wire helpers (for hand-crafted requests and for looking at raw bytes).

export function varint(value) {
  let v = BigInt(value);
  if (v < 0n) v = BigInt.asUintN(64, v);
  const out = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) byte |= 0x80;
    out.push(byte);
  } while (v !== 0n);
  return Buffer.from(out);
}

export const tag = (field, wireType) => varint((BigInt(field) << 3n) | BigInt(wireType));

// A length-delimited field: tag, length, bytes.
export const lengthDelimited = (field, bytes) =>
  Buffer.concat([tag(field, 2), varint(bytes.length), Buffer.from(bytes)]);

// Top-level fields of one message: { field, wireType, start, end, value } (value: the payload of a
// length-delimited field, or undefined).
export function* wireFields(buf) {
  let pos = 0;
  const readVarint = () => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (pos >= buf.length) throw new Error('truncated varint');
      const b = buf[pos++];
      result |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return result;
      shift += 7n;
    }
  };
  while (pos < buf.length) {
    const start = pos;
    const key = readVarint();
    const field = Number(key >> 3n);
    const wireType = Number(key & 7n);
    let value;
    switch (wireType) {
      case 0: readVarint(); break;
      case 1: pos += 8; break;
      case 2: {
        const len = Number(readVarint());
        value = buf.subarray(pos, pos + len);
        pos += len;
        break;
      }
      case 5: pos += 4; break;
      default: throw new Error(`unsupported wire type ${wireType} at ${start}`);
    }
    if (pos > buf.length) throw new Error('truncated field');
    yield { field, wireType, start, end: pos, value };
  }
}

// The raw bytes of every Span in an ExportTraceServiceRequest body, in order.
export function rawSpans(body) {
  const out = [];
  for (const rs of wireFields(body)) {
    if (rs.field !== 1 || rs.wireType !== 2) continue;
    for (const ss of wireFields(rs.value)) {
      if (ss.field !== 2 || ss.wireType !== 2) continue;
      for (const sp of wireFields(ss.value)) {
        if (sp.field === 2 && sp.wireType === 2) out.push(Buffer.from(sp.value));
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Fake upstream: an OTLP/HTTP endpoint that records everything the agent forwards.

export class FakeUpstream {
  static async start() {
    const up = new FakeUpstream();
    await new Promise((resolve, reject) => {
      up.server.once('error', reject);
      up.server.listen(0, '127.0.0.1', resolve);
    });
    up.port = up.server.address().port;
    return up;
  }

  constructor() {
    const { ExportTraceServiceRequest } = loadProtos();
    this.requests = []; // every request, decodable or not; `status` is what it was answered
    // What a valid export is answered: 200, or (say) 503 to play an outage. A refused request is
    // still decoded and recorded, but spans() leaves it out unless asked.
    this.status = 200;
    this.server = createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const wire = Buffer.concat(chunks);
        const rec = {
          method: req.method,
          url: req.url,
          headers: req.headers,
          wireBytes: wire.length,
        };
        this.requests.push(rec);
        const pathname = (req.url || '').split('?')[0];
        if (req.method !== 'POST' || !pathname.endsWith('/v1/traces')) {
          rec.error = `unexpected ${req.method} ${req.url}`;
          rec.status = 404;
          res.writeHead(404, { 'content-type': 'text/plain' }).end(rec.error);
          return;
        }
        try {
          const enc = (req.headers['content-encoding'] || 'identity').toLowerCase();
          let body;
          if (enc === 'gzip' || enc === 'x-gzip') body = zlib.gunzipSync(wire);
          else if (enc === 'identity') body = wire;
          else throw new Error(`unexpected content-encoding ${enc}`);
          rec.body = body;
          rec.decoded = decodeKeepingUnknown(ExportTraceServiceRequest, body);
        } catch (e) {
          rec.error = `undecodable request: ${e.message}`;
          rec.status = 400;
          res.writeHead(400, { 'content-type': 'text/plain' }).end(rec.error);
          return;
        }
        rec.status = this.status;
        if (this.status !== 200) {
          const text = `fake upstream answers ${this.status}`;
          res.writeHead(this.status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text) }).end(text);
          return;
        }
        // An empty ExportTraceServiceResponse is zero bytes of protobuf.
        res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': 0 }).end();
      });
      req.on('error', (e) => {
        this.requests.push({ method: req.method, url: req.url, headers: req.headers, error: `request error: ${e.message}` });
      });
    });
    this.server.keepAliveTimeout = 60_000;
  }

  get endpoint() {
    return `http://127.0.0.1:${this.port}`;
  }

  errors() {
    return this.requests.filter((r) => r.error);
  }

  // Every span received so far with its resource and scope:
  // { span, resourceSpans, scopeSpans, request, trace_id hex, span_id hex }. Only spans of
  // requests answered 200 (delivered), unless `includeRefused`.
  spans({ includeRefused = false } = {}) {
    const out = [];
    for (const request of this.requests) {
      if (!request.decoded) continue;
      if (!includeRefused && request.status !== 200) continue;
      for (const resourceSpans of request.decoded.resourceSpans || []) {
        for (const scopeSpans of resourceSpans.scopeSpans || []) {
          for (const span of scopeSpans.spans || []) {
            out.push({
              span,
              resourceSpans,
              scopeSpans,
              request,
              traceId: hex(span.traceId),
              spanId: hex(span.spanId),
            });
          }
        }
      }
    }
    return out;
  }

  // Received spans whose trace id is in `traceIds`, grouped by "traceId/spanId".
  spansByKey(traceIds, { includeRefused = false } = {}) {
    const wanted = new Set(traceIds);
    const byKey = new Map();
    for (const s of this.spans({ includeRefused })) {
      if (!wanted.has(s.traceId)) continue;
      const key = `${s.traceId}/${s.spanId}`;
      if (!byKey.has(key)) byKey.set(key, []);
      byKey.get(key).push(s);
    }
    return byKey;
  }

  async close() {
    this.server.closeAllConnections?.();
    await new Promise((resolve) => this.server.close(() => resolve()));
  }
}

// ---------------------------------------------------------------------------------------------
// The agent

export function agentConfigYaml({
  httpPort,
  grpcPort,
  upstream,
  compression = 'gzip',
  batchTimeout = '100ms',
  maxSpans = 8192,
  maxBytes = '4MiB',
  logLevel = 'info',
  spoolPath, // optional: a `spool:` section on this directory
  spoolFsync, // optional, with spoolPath: always | interval | never
  adminPort, // optional: an `admin:` section (GET /metrics) on this port
}) {
  const spool = spoolPath ? [`path: ${JSON.stringify(spoolPath)}`, ...(spoolFsync ? [`fsync: ${spoolFsync}`] : [])] : [];
  return [
    '# written by tests/interop (spanrelay interop suite)',
    'receivers:',
    `  http: {endpoint: 127.0.0.1:${httpPort}}`,
    ...(grpcPort ? [`  grpc: {endpoint: 127.0.0.1:${grpcPort}}`] : []),
    `batch: {max_spans: ${maxSpans}, max_bytes: ${maxBytes}, timeout: ${batchTimeout}}`,
    'exporters:',
    '  up:',
    '    type: otlp_http',
    `    endpoint: ${upstream}`,
    `    compression: ${compression}`,
    '    retry: {initial_interval: 100ms, max_interval: 1s, max_elapsed: 30s}',
    ...(spoolPath ? [`spool: {${spool.join(', ')}}`] : []),
    ...(adminPort ? [`admin: {endpoint: 127.0.0.1:${adminPort}}`] : []),
    `log: {level: ${logLevel}, format: text}`,
    'shutdown_timeout: 5s',
    '',
  ].join('\n');
}

// GET /metrics from the agent's admin endpoint: the Prometheus text.
// (node:http without keep-alive, so that no idle socket keeps the test process alive.)
export function fetchMetrics(adminPort, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const req = httpGet({ host: '127.0.0.1', port: adminPort, path: '/metrics', agent: false, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`GET /metrics: HTTP ${res.statusCode}`));
        else resolve(Buffer.concat(chunks).toString());
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET /metrics: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

// The value of the series `name{labels}` (labels exactly as given, e.g. {exporter: 'up'}) in a
// Prometheus text exposition, or undefined if absent.
export function metricValue(text, name, labels = {}) {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(',');
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = (m[2] || '').split(',').filter(Boolean).map((l) => l.trim()).sort().join(',');
    if (have === wanted) return Number(m[3]);
  }
  return undefined;
}

// Validates a config that enables receivers.grpc: null when the binary accepts it. Throws when
// it does not (the gRPC cases must run: a binary without the gRPC receiver fails the suite, it
// is never a skip), and on any other failure.
export async function grpcReceiverSkipReason(configPath) {
  const validation = await validateConfig(configPath);
  if (validation.error) throw new Error(`cannot run ${SPANRELAY_BINARY}: ${validation.error.message}`);
  if (rejectsUnknownKey(validation, 'receivers.grpc')) {
    throw new Error(`${SPANRELAY_BINARY} has no gRPC receiver (config loader: unknown key "grpc"): `
      + 'the gRPC cases cannot run; build spanrelay from this tree');
  }
  if (validation.code !== 0) {
    throw new Error(`spanrelay --validate failed (exit ${validation.code}):\n${validation.stdout}${validation.stderr}`);
  }
  return null;
}

// Runs `spanrelay --validate --config FILE`: { code, stdout, stderr }.
export function validateConfig(configPath, { binary = SPANRELAY_BINARY, timeoutMs = 10_000 } = {}) {
  return new Promise((resolve) => {
    execFile(binary, ['--validate', '--config', configPath], { timeout: timeoutMs, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr), error: err && typeof err.code !== 'number' ? err : undefined });
      });
  });
}

// True if `spanrelay --validate` refused the config because it does not know the key `key`
// itself (say "receivers.grpc: unknown key"), not because of a key inside it
// ("receivers.grpc.bogus: unknown key" means the binary does know `key`).
export function rejectsUnknownKey(result, key) {
  if (result.code !== 2 || !/unknown key/.test(result.stderr)) return false;
  const last = key.split('.').pop();
  const escaped = (k) => k.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const inside = new RegExp(`\\b${escaped(last)}\\.[\\w.]+: unknown key`);
  return result.stderr.includes(last) && !inside.test(result.stderr);
}

const liveChildren = new Set();
process.on('exit', () => {
  for (const child of liveChildren) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

export class Agent {
  // Starts the binary on `configPath` and resolves once `port` accepts connections. Rejects
  // (with the agent's output) if it exits first or the deadline passes.
  static async start({ configPath, port, binary = SPANRELAY_BINARY, timeoutMs = 15_000, env = {} }) {
    const agent = new Agent(binary, configPath, env);
    try {
      await waitUntil(async () => {
        if (agent.exited) {
          throw new Error(`spanrelay exited during start-up with ${agent.describeExit()}\n${agent.output}`);
        }
        return portAccepts(port);
      }, { timeoutMs, intervalMs: 25, what: `spanrelay to accept connections on 127.0.0.1:${port}` });
    } catch (e) {
      agent.kill();
      if (!agent.exited) e.message += `\n--- spanrelay output ---\n${agent.output}`;
      throw e;
    }
    return agent;
  }

  constructor(binary, configPath, env) {
    this.output = '';
    this.exited = false;
    this.exitCode = null;
    this.exitSignal = null;
    this.child = spawn(binary, ['--config', configPath], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    liveChildren.add(this.child);
    const collect = (chunk) => {
      this.output += chunk.toString();
      if (this.output.length > 1 << 20) this.output = this.output.slice(-(1 << 19)); // keep the tail
    };
    this.child.stdout.on('data', collect);
    this.child.stderr.on('data', collect);
    this.exitPromise = new Promise((resolve) => {
      this.child.once('error', (e) => {
        this.output += `\nspawn error: ${e.message}`;
        this.exited = true;
        liveChildren.delete(this.child);
        resolve();
      });
      this.child.once('exit', (code, signal) => {
        this.exited = true;
        this.exitCode = code;
        this.exitSignal = signal;
        liveChildren.delete(this.child);
        resolve();
      });
    });
  }

  get pid() {
    return this.child.pid;
  }

  describeExit() {
    return this.exitSignal ? `signal ${this.exitSignal}` : `exit code ${this.exitCode}`;
  }

  // SIGTERM, then the exit status (SIGKILL and a throw if it takes longer than timeoutMs).
  async terminate(timeoutMs = 10_000) {
    if (!this.exited) this.child.kill('SIGTERM');
    // The deadline's timer is cleared once the agent exits: a pending one would keep this test
    // process alive for the rest of timeoutMs after its tests have ended.
    let timer;
    const deadline = new Promise((resolve) => { timer = setTimeout(() => resolve(true), timeoutMs); });
    const timedOut = await Promise.race([this.exitPromise.then(() => false), deadline]);
    clearTimeout(timer);
    if (timedOut) {
      this.kill();
      await this.exitPromise;
      throw new Error(`spanrelay did not exit within ${timeoutMs} ms of SIGTERM\n${this.output}`);
    }
    return { code: this.exitCode, signal: this.exitSignal };
  }

  kill() {
    if (!this.exited) {
      try { this.child.kill('SIGKILL'); } catch { /* already gone */ }
    }
  }

  // The last `n` lines of output, for assertion messages.
  tail(n = 40) {
    return this.output.split('\n').slice(-n).join('\n');
  }
}

// ---------------------------------------------------------------------------------------------
// Canonical span form. Both sides (what the SDK recorded, what the upstream decoded) are turned
// into plain objects with ids in hex, 64-bit numbers as decimal strings and attribute values as
// tagged tuples, so that assert.deepStrictEqual compares them exactly (doubles with Object.is).

export function hex(bytes) {
  return bytes && bytes.length ? Buffer.from(bytes).toString('hex') : '';
}

const INT64_MIN = -(2 ** 63);
const INT64_LIMIT = 2 ** 63;

// --- from protobufjs messages (the upstream side)

const str64 = (v) => (v == null ? '0' : typeof v === 'object' ? v.toString() : String(v));

export function canonAnyValue(v) {
  if (v == null) return ['empty'];
  switch (v.value) { // protobufjs: the name of the oneof member that is set
    case 'stringValue': return ['string', v.stringValue];
    case 'boolValue': return ['bool', v.boolValue];
    case 'intValue': return ['int', str64(v.intValue)];
    case 'doubleValue': return ['double', v.doubleValue];
    case 'arrayValue': return ['array', (v.arrayValue.values || []).map(canonAnyValue)];
    case 'kvlistValue': return ['kvlist', canonKeyValues(v.kvlistValue.values)];
    case 'bytesValue': return ['bytes', hex(v.bytesValue)];
    default: return ['empty'];
  }
}

export const canonKeyValues = (kvs) => (kvs || []).map((kv) => [kv.key, canonAnyValue(kv.value)]);

export function canonWireSpan(s) {
  return {
    traceId: hex(s.traceId),
    spanId: hex(s.spanId),
    traceState: s.traceState || '',
    parentSpanId: hex(s.parentSpanId),
    flags: s.flags || 0,
    name: s.name,
    kind: s.kind || 0,
    startTimeUnixNano: str64(s.startTimeUnixNano),
    endTimeUnixNano: str64(s.endTimeUnixNano),
    attributes: canonKeyValues(s.attributes),
    droppedAttributesCount: s.droppedAttributesCount || 0,
    events: (s.events || []).map((e) => ({
      timeUnixNano: str64(e.timeUnixNano),
      name: e.name,
      attributes: canonKeyValues(e.attributes),
      droppedAttributesCount: e.droppedAttributesCount || 0,
    })),
    droppedEventsCount: s.droppedEventsCount || 0,
    links: (s.links || []).map((l) => ({
      traceId: hex(l.traceId),
      spanId: hex(l.spanId),
      traceState: l.traceState || '',
      attributes: canonKeyValues(l.attributes),
      droppedAttributesCount: l.droppedAttributesCount || 0,
      flags: l.flags || 0,
    })),
    droppedLinksCount: s.droppedLinksCount || 0,
    status: { code: s.status?.code || 0, message: s.status?.message || '' },
  };
}

// The span together with its resource and instrumentation scope, from an upstream record.
export function canonWireRecord({ span, resourceSpans, scopeSpans }) {
  return {
    resource: {
      attributes: canonKeyValues(resourceSpans.resource?.attributes),
      droppedAttributesCount: resourceSpans.resource?.droppedAttributesCount || 0,
      schemaUrl: resourceSpans.schemaUrl || '',
    },
    scope: {
      name: scopeSpans.scope?.name || '',
      version: scopeSpans.scope?.version || '',
      attributes: canonKeyValues(scopeSpans.scope?.attributes),
      schemaUrl: scopeSpans.schemaUrl || '',
    },
    span: canonWireSpan(span),
  };
}

// --- from the SDK's ReadableSpan (the expected side), following the OTLP data model

export function canonJsValue(v) {
  if (typeof v === 'string') return ['string', v];
  if (typeof v === 'boolean') return ['bool', v];
  if (typeof v === 'number') {
    if (Number.isInteger(v) && v >= INT64_MIN && v < INT64_LIMIT) return ['int', BigInt(v).toString()];
    return ['double', v];
  }
  if (v instanceof Uint8Array) return ['bytes', hex(v)];
  if (Array.isArray(v)) return ['array', v.map(canonJsValue)];
  if (v != null && typeof v === 'object') return ['kvlist', canonJsAttributes(v)];
  return ['empty'];
}

export const canonJsAttributes = (attrs) => Object.entries(attrs || {}).map(([k, v]) => [k, canonJsValue(v)]);

export const hrTimeToNanos = ([sec, nanos]) => (BigInt(sec) * 1_000_000_000n + BigInt(nanos)).toString();

// OTLP span flags: W3C trace flags in the low byte, plus "has is_remote" (0x100) and
// "is_remote" (0x200) for the parent (span) or the linked context (link).
const otlpFlags = (traceFlags, isRemote) => ((traceFlags & 0xff) | 0x100 | (isRemote ? 0x200 : 0)) >>> 0;

export function canonReadableSpan(rs) {
  const ctx = rs.spanContext();
  return {
    resource: {
      attributes: canonJsAttributes(rs.resource.attributes),
      droppedAttributesCount: 0,
      schemaUrl: rs.resource.schemaUrl || '',
    },
    scope: {
      name: rs.instrumentationScope.name,
      version: rs.instrumentationScope.version || '',
      attributes: canonJsAttributes(rs.instrumentationScope.attributes),
      schemaUrl: rs.instrumentationScope.schemaUrl || '',
    },
    span: {
      traceId: ctx.traceId,
      spanId: ctx.spanId,
      traceState: ctx.traceState?.serialize() || '',
      parentSpanId: rs.parentSpanContext?.spanId || '',
      flags: otlpFlags(ctx.traceFlags, rs.parentSpanContext?.isRemote),
      name: rs.name,
      kind: rs.kind + 1, // the API has no UNSPECIFIED
      startTimeUnixNano: hrTimeToNanos(rs.startTime),
      endTimeUnixNano: hrTimeToNanos(rs.endTime),
      attributes: canonJsAttributes(rs.attributes),
      droppedAttributesCount: rs.droppedAttributesCount,
      events: rs.events.map((e) => ({
        timeUnixNano: hrTimeToNanos(e.time),
        name: e.name,
        attributes: canonJsAttributes(e.attributes),
        droppedAttributesCount: e.droppedAttributesCount || 0,
      })),
      droppedEventsCount: rs.droppedEventsCount,
      links: rs.links.map((l) => ({
        traceId: l.context.traceId,
        spanId: l.context.spanId,
        traceState: l.context.traceState?.serialize() || '',
        attributes: canonJsAttributes(l.attributes),
        droppedAttributesCount: l.droppedAttributesCount || 0,
        flags: otlpFlags(l.context.traceFlags, l.context.isRemote),
      })),
      droppedLinksCount: rs.droppedLinksCount,
      status: { code: rs.status.code, message: rs.status.message || '' },
    },
  };
}

// Shortens long strings in a canonical structure for readable assertion diffs.
export function abbreviate(value, max = 200) {
  if (typeof value === 'string') {
    return value.length > max ? `${value.slice(0, max)}…(${value.length} chars)` : value;
  }
  if (Array.isArray(value)) return value.map((v) => abbreviate(v, max));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, abbreviate(v, max)]));
  }
  return value;
}

// Removes every OTEL_* variable so that the SDK in this process ignores the environment.
export function scrubOtelEnv() {
  for (const k of Object.keys(process.env)) {
    if (k.startsWith('OTEL_')) delete process.env[k];
  }
}

// Compares one upstream span with what the SDK recorded; long strings are shortened in the diff.
export function assertSameSpan(actual, expected, label) {
  if (isDeepStrictEqual(actual, expected)) return;
  const short = (x) => abbreviate(x);
  if (!isDeepStrictEqual(short(actual), short(expected))) {
    assert.deepStrictEqual(short(actual), short(expected), `${label}: span differs upstream`);
  }
  assert.deepStrictEqual(actual, expected, `${label}: span differs upstream (in a long string)`);
}
