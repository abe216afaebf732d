// The admin status page (agent/admin/status_page.html, served at GET /) in Debian's headless
// Chromium, driven by playwright-core (which downloads no browser of its own).
//
//   1. Against a fixture status document served under a proxy-like path prefix: every section
//      renders, text from the agent is escaped, the page asks only its own origin with a relative
//      URL, and a stale banner appears while the agent cannot be reached.
//   2. Against the real binary and a fake OTLP/HTTP upstream: the page shows the version and
//      "ready"; while spans flow the intake and the exporter's sent counters move; while the
//      upstream answers 503 the exporter shows "failing" with the 503 in its last error (and the
//      agent stays ready); once the agent is gone the stale banner shows.
//
// Screenshots of each state are kept in $SPANRELAY_TEST_OUTPUT (default
// <repo>/build/test-output/status-page) and their paths printed.
//
// Runs on Node >= 18.19: `node --test status-page.test.mjs` (or plain `node`). Needs Debian's
// chromium package and `npm ci` in this directory.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '../..');
const PAGE_FILE = path.join(REPO, 'agent/admin/status_page.html');
const BINARY = path.resolve(process.env.SPANRELAY_BINARY || path.join(REPO, 'build/spanrelay'));
const OUTPUT = path.resolve(process.env.SPANRELAY_TEST_OUTPUT || path.join(REPO, 'build/test-output/status-page'));
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
// The page polls every 2 s: every wait on what it shows allows several polls.
const PAGE_DEADLINE_MS = 20_000;

// ---------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitUntil(pred, what, timeoutMs = PAGE_DEADLINE_MS, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await pred();
    if (last) return last;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

// One HTTP request without keep-alive: { status, headers, body }.
function fetchLocal(url, { method = 'GET', headers = {}, body, timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers, agent: false, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

// An http.Server on 127.0.0.1 at an ephemeral port.
async function listen(handler) {
  const server = createServer(handler);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return { server, port: server.address().port, close: () => closeServer(server) };
}

function closeServer(server) {
  server.closeAllConnections?.();
  return new Promise((resolve) => server.close(() => resolve()));
}

// A loopback port that was free a moment ago.
async function freePort() {
  const { port, close } = await listen(() => {});
  await close();
  return port;
}

function screenshotPath(name) {
  mkdirSync(OUTPUT, { recursive: true });
  return path.join(OUTPUT, name);
}

async function screenshot(page, name) {
  const file = screenshotPath(name);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
  return file;
}

// ---------------------------------------------------------------------------------------------
// The browser

let chromium;
let browser;

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: install Debian's chromium package (apt-get install chromium)`);
  }
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    throw new Error(`playwright-core is not installed: run \`npm ci\` in ${HERE} (${e.message})`);
  }
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000 });
  console.log(`browser: ${CHROMIUM} ${browser.version()}; screenshots in ${OUTPUT}`);
});

after(async () => {
  await browser?.close();
});

// A fresh page (own context) that records page errors, console errors and every URL it asks for.
async function openPage() {
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  const requests = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource|ERR_CONNECTION_REFUSED|Failed to fetch/.test(m.text())) {
      problems.push(`console error: ${m.text()}`);
    }
  });
  page.on('request', (r) => requests.push(r.url()));
  return { context, page, problems, requests };
}

// What the page shows: header values, intake, and every exporter/receiver row by its cells.
function readPage(page) {
  return page.evaluate(() => {
    const value = (id) => {
      const e = document.getElementById(id);
      return e ? { text: e.textContent.trim(), value: e.getAttribute('data-value') } : null;
    };
    const rows = (attr) => Object.fromEntries([...document.querySelectorAll(`tr[${attr}]`)].map((tr) => [
      tr.getAttribute(attr),
      Object.fromEntries([...tr.querySelectorAll('td[data-field]')].map((td) => [
        td.getAttribute('data-field'), { text: td.textContent.trim(), value: td.getAttribute('data-value') },
      ])),
    ]));
    const banner = document.getElementById('banner');
    return {
      updates: Number(document.body.getAttribute('data-updates') || 0),
      stale: document.body.getAttribute('data-stale') === 'true',
      banner: banner && !banner.hidden ? banner.textContent : null,
      title: document.title,
      version: value('version'),
      ready: value('ready'),
      live: value('live'),
      readyReason: value('ready-reason'),
      uptime: value('uptime'),
      config: value('config'),
      intakeAccepted: value('intake-accepted'),
      intakeRequests: value('intake-requests'),
      intakeRate: value('intake-rate'),
      bufferUsed: value('buffer-used'),
      reloadResult: value('reload-result'),
      reloadError: value('reload-error'),
      receivers: rows('data-receiver'),
      exporters: rows('data-exporter'),
      images: document.images.length,
    };
  });
}

// Waits for a render newer than `after` updates that satisfies `pred(view)`; returns the view.
async function waitForView(page, what, pred, { after = 0, timeoutMs = PAGE_DEADLINE_MS } = {}) {
  let view;
  try {
    return await waitUntil(async () => {
      view = await readPage(page);
      return view.updates > after && pred(view) ? view : null;
    }, what, timeoutMs, 200);
  } catch (e) {
    e.message += `\nlast view: ${JSON.stringify(view, null, 1)}`;
    throw e;
  }
}

function assertOnlyOwnOrigin(requests, origin) {
  const foreign = requests.filter((u) => !u.startsWith(`${origin}/`));
  assert.deepEqual(foreign, [], 'the page must load nothing from outside its own origin');
}

// ---------------------------------------------------------------------------------------------
// 1. The page alone, on a fixture

const HOSTILE = '<img src=x onerror="window.__xss=1">&amp;';

function fixtureStatus(now) {
  const iso = (offsetMs) => new Date(now + offsetMs).toISOString();
  return {
    version: '0.1.0',
    config: `/etc/spanrelay/${HOSTILE}.yaml`,
    started_at: iso(-3_723_000),
    uptime_seconds: 3723,
    live: true,
    ready: true,
    ready_reason: 'ready',
    reloads: { succeeded: 2, failed: 1, last_result: 'failure', last_time: iso(-60_000),
      last_error: 'spanrelay.yaml:12:5: exporters.grafana.retry.max_elapsd: unknown key' },
    buffer: { used_bytes: 50_331_648, limit_bytes: 67_108_864 },
    intake: { requests: 123_456, accepted_spans: 9_876_543, refused_spans: 12, rejected_spans: 3,
      bad_requests: 1, accepted_spans_per_second: 1234.5 },
    receivers: [
      { name: 'http', endpoint: '127.0.0.1:4318', state: 'listening', requests: 100_000, requests_per_second: 80.5 },
      { name: 'grpc', endpoint: '127.0.0.1:4317', state: 'draining', requests: 23_456, requests_per_second: 0 },
    ],
    exporters: [
      { name: 'grafana', type: 'otlp_http', endpoint: 'https://otlp-gateway.example/otlp', state: 'ok',
        sent_spans: 9_800_000, failed_spans: 0, retries: 4, sent_spans_per_second: 1200.25,
        queued_batches: 1, queue_bytes: 1_048_576, queue_limit_bytes: 33_554_432,
        spool: { records: 42, bytes: 734_003_200, limit_bytes: 1_073_741_824 }, circuit: 'closed',
        last_error: null, last_success: iso(-400), next_retry: null },
      { name: 'backup', type: 'otlp_grpc', endpoint: 'https://backup.example:4317', state: 'failing',
        sent_spans: 10, failed_spans: 500, retries: 77, sent_spans_per_second: 0,
        queued_batches: 12, queue_bytes: 30_000_000, queue_limit_bytes: 33_554_432, spool: null,
        circuit: 'half_open', last_error: { message: `HTTP 503 ${HOSTILE}`, class: '5xx', time: iso(-5_000) },
        last_success: iso(-600_000), next_retry: iso(1_500) },
      { name: `weird-${HOSTILE}`, type: 'otlp_http', endpoint: 'http://127.0.0.1:9', state: 'circuit_open',
        sent_spans: 0, failed_spans: 0, retries: 0, sent_spans_per_second: 0, queued_batches: 0,
        queue_bytes: 0, queue_limit_bytes: 33_554_432, spool: null, circuit: 'open',
        last_error: { message: 'connection refused', class: 'connection', time: iso(-90_000) },
        last_success: null, next_retry: iso(25_000) },
      { name: 'file', type: 'file', endpoint: './spans.jsonl', state: 'idle', sent_spans: 0, failed_spans: 0,
        retries: 0, sent_spans_per_second: 0, queued_batches: 0, queue_bytes: 0, queue_limit_bytes: 33_554_432,
        spool: null, circuit: null, last_error: null, last_success: null, next_retry: null },
    ],
  };
}

test('status page renders a status document, escapes it, and shows when the agent is unreachable', async () => {
  const html = readFileSync(PAGE_FILE);
  assert.ok(html.length < 20 * 1024, `status_page.html is ${html.length} bytes; keep it under 20 KB`);
  const prefix = '/proxy/spanrelay';
  let mode = 'ok'; // ok | error
  const fixture = await listen((req, res) => {
    const url = req.url.split('?')[0];
    if (url === `${prefix}/`) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(html);
    } else if (url === `${prefix}/status.json` && mode === 'ok') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(fixtureStatus(Date.now())));
    } else if (url === `${prefix}/status.json`) {
      res.writeHead(502, { 'content-type': 'text/plain' }).end('bad gateway');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    }
  });
  const origin = `http://127.0.0.1:${fixture.port}`;
  const { context, page, problems, requests } = await openPage();
  try {
    const response = await page.goto(`${origin}${prefix}/`);
    assert.equal(response.status(), 200);
    let view = await waitForView(page, 'the fixture rendered', (v) => v.exporters.grafana);
    await screenshot(page, 'status-fixture.png');

    assert.equal(view.version.text, 'v0.1.0');
    assert.equal(view.ready.text, 'ready');
    assert.equal(view.ready.value, 'true');
    assert.equal(view.live.text, 'live');
    assert.equal(view.uptime.text, '1h 2m');
    assert.equal(view.intakeAccepted.value, '9876543');
    assert.equal(view.intakeAccepted.text, '9,876,543');
    assert.equal(view.intakeRate.text, '1,235');
    assert.equal(view.bufferUsed.text, '48.0 MiB of 64.0 MiB (75%)');
    assert.deepEqual(Object.keys(view.receivers), ['http', 'grpc']);
    assert.equal(view.receivers.http.state.text, 'listening');
    assert.equal(view.receivers.grpc.state.text, 'draining');
    assert.equal(view.receivers.http.requests_per_second.text, '80.5');

    const { grafana, backup, file } = view.exporters;
    assert.equal(grafana.state.value, 'ok');
    assert.match(grafana.state.text, /^ok\s*last ok (now|0\.\ds ago)$/);
    assert.equal(grafana.sent_spans.text, '9,800,000');
    assert.equal(grafana.sent_spans.value, '9800000');
    assert.equal(grafana.sent_spans_per_second.text, '1,200');
    assert.match(grafana.spool.text, /^42 records · 700 MiB of 1\.0 GiB \(68%\)$/);
    assert.equal(grafana.circuit.text, 'closed');
    assert.equal(grafana.last_error.text, '—');
    assert.equal(backup.state.value, 'failing');
    assert.equal(backup.circuit.text, 'half open');
    assert.match(backup.last_error.text, /HTTP 503 .*5xx · [4-6]\.\ds ago$/);
    assert.match(backup.next_retry.text, /^in (0\.\d|1\.\d)s$/);
    assert.match(backup.queue.text, /^12 batches · 28\.6 MiB of 32\.0 MiB$/);
    assert.equal(file.state.value, 'idle');
    assert.equal(file.spool.text, '—');
    assert.equal(view.reloadResult.value, 'failure');
    assert.match(view.reloadError.text, /unknown key/);
    assert.match(view.title, /2 failing/);

    // Text from the agent is shown as text: the hostile strings appear literally, nothing ran.
    const weird = view.exporters[`weird-${HOSTILE}`];
    assert.ok(weird, `a row keyed by the literal hostile name; rows: ${Object.keys(view.exporters)}`);
    assert.equal(weird.state.value, 'circuit_open');
    assert.ok(backup.last_error.text.includes(HOSTILE), backup.last_error.text);
    assert.ok(view.config.text.includes(HOSTILE), view.config.text);
    assert.equal(view.images, 0, 'no element was created from the data');
    assert.equal(await page.evaluate(() => window.__xss), undefined);
    const badgeColors = await page.evaluate(() => Object.fromEntries(
      [...document.querySelectorAll('tr[data-exporter] td[data-field="state"] .badge')]
        .map((b) => [b.getAttribute('data-state'), getComputedStyle(b).backgroundColor])));
    assert.notEqual(badgeColors.ok, badgeColors.failing, 'ok and failing badges look different');
    assert.notEqual(badgeColors.idle, badgeColors.failing, 'idle and failing badges look different');

    // The agent goes away (here: the proxy answers 502): a visible banner, then it recovers.
    assert.equal(view.banner, null);
    mode = 'error';
    view = await waitForView(page, 'the stale banner', (v) => v.stale && v.banner, { after: 0 });
    assert.match(view.banner, /Cannot reach the agent \(HTTP 502\)\. Data below is stale/);
    assert.equal(await page.isVisible('#banner'), true);
    await screenshot(page, 'status-stale.png');
    mode = 'ok';
    const before = view.updates;
    view = await waitForView(page, 'the banner to go once the agent answers again', (v) => !v.stale && !v.banner, { after: before });

    assertOnlyOwnOrigin(requests, origin);
    assert.ok(requests.some((u) => u.startsWith(`${origin}${prefix}/status.json`)), 'status.json is fetched relative to the page');
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
    await fixture.close();
  }
});

// ---------------------------------------------------------------------------------------------
// 2. The real agent

// A fake OTLP/HTTP upstream whose answer can be switched (200 or, say, 503).
async function startUpstream() {
  const up = { status: 200, answered: {} };
  const { server, port, close } = await listen((req, res) => {
    req.resume();
    req.on('end', () => {
      const status = req.method === 'POST' && req.url.split('?')[0] === '/v1/traces' ? up.status : 404;
      up.answered[status] = (up.answered[status] || 0) + 1;
      if (status === 200) {
        res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': 0 }).end();
      } else {
        const text = status === 404 ? 'not found' : 'fake upstream unavailable';
        res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text) }).end(text);
      }
    });
  });
  server.keepAliveTimeout = 60_000;
  return Object.assign(up, { port, close });
}

let traceCounter = 0;
function otlpJson(spans) {
  const now = BigInt(Date.now()) * 1_000_000n;
  const hex = (n, width) => n.toString(16).padStart(width, '0');
  const trace = ++traceCounter;
  return JSON.stringify({
    resourceSpans: [{
      resource: { attributes: [{ key: 'service.name', value: { stringValue: 'browser-test' } }] },
      scopeSpans: [{
        scope: { name: 'status-page.test' },
        spans: Array.from({ length: spans }, (_, i) => ({
          traceId: hex(trace, 32),
          spanId: hex(trace * 1000 + i + 1, 16),
          name: `span ${i}`,
          kind: 1,
          startTimeUnixNano: String(now - 1_000_000n),
          endTimeUnixNano: String(now),
        })),
      }],
    }],
  });
}

// Posts OTLP/JSON requests to the agent in a loop until stop() (bounded in count and time).
function startFlow(httpPort, { spansPerRequest = 20, intervalMs = 50, maxRequests = 4000, maxMs = 120_000 } = {}) {
  const flow = { sent: 0, accepted: 0, statuses: {}, stopped: false };
  const started = Date.now();
  flow.done = (async () => {
    while (!flow.stopped && flow.sent < maxRequests && Date.now() - started < maxMs) {
      flow.sent++;
      try {
        const res = await fetchLocal(`http://127.0.0.1:${httpPort}/v1/traces`, {
          method: 'POST', headers: { 'content-type': 'application/json' }, body: otlpJson(spansPerRequest),
        });
        flow.statuses[res.status] = (flow.statuses[res.status] || 0) + 1;
        if (res.status === 200) flow.accepted += spansPerRequest;
      } catch (e) {
        flow.statuses[e.code || 'error'] = (flow.statuses[e.code || 'error'] || 0) + 1;
      }
      await sleep(intervalMs);
    }
  })();
  flow.stop = async () => {
    flow.stopped = true;
    await flow.done;
  };
  return flow;
}

function agentConfig({ httpPort, adminPort, upstreamPort }) {
  return [
    '# written by tests/browser/status-page.test.mjs',
    'receivers:',
    `  http: {endpoint: 127.0.0.1:${httpPort}}`,
    'batch: {timeout: 100ms}',
    'exporters:',
    '  fake-upstream:',
    '    type: otlp_http',
    `    endpoint: http://127.0.0.1:${upstreamPort}`,
    '    compression: none',
    '    retry: {initial_interval: 100ms, max_interval: 500ms, max_elapsed: 30s}',
    `admin: {endpoint: 127.0.0.1:${adminPort}}`,
    'log: {level: info, format: text}',
    'shutdown_timeout: 2s',
    '',
  ].join('\n');
}

function startAgent(configPath) {
  const agent = { output: '', exited: false };
  agent.child = spawn(BINARY, ['--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  const collect = (c) => {
    agent.output = (agent.output + c.toString()).slice(-200_000);
  };
  agent.child.stdout.on('data', collect);
  agent.child.stderr.on('data', collect);
  agent.exit = new Promise((resolve) => {
    agent.child.once('error', (e) => {
      agent.output += `\nspawn error: ${e.message}`;
      agent.exited = true;
      resolve();
    });
    agent.child.once('exit', (code, signal) => {
      agent.exited = true;
      agent.code = code;
      agent.signal = signal;
      resolve();
    });
  });
  agent.stop = async () => {
    if (agent.exited) return;
    agent.child.kill('SIGTERM');
    const timedOut = await Promise.race([agent.exit.then(() => false), sleep(15_000).then(() => true)]);
    if (timedOut) {
      agent.child.kill('SIGKILL');
      await agent.exit;
      throw new Error(`spanrelay did not exit within 15 s of SIGTERM\n${agent.output}`);
    }
  };
  process.once('exit', () => agent.exited || agent.child.kill('SIGKILL'));
  return agent;
}

test('status page follows the real agent: ready, spans flowing, upstream failing, agent gone', async () => {
  assert.ok(existsSync(BINARY), `spanrelay binary not found at ${BINARY} (build it, or set SPANRELAY_BINARY)`);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'spanrelay-browser-'));
  const upstream = await startUpstream();
  const [httpPort, adminPort] = [await freePort(), await freePort()];
  const configPath = path.join(tmp, 'spanrelay.yaml');
  writeFileSync(configPath, agentConfig({ httpPort, adminPort, upstreamPort: upstream.port }));
  const agent = startAgent(configPath);
  const origin = `http://127.0.0.1:${adminPort}`;
  let flow;
  let opened;
  try {
    const status = await waitUntil(async () => {
      if (agent.exited) throw new Error(`spanrelay exited during start-up (code ${agent.code}, signal ${agent.signal})\n${agent.output}`);
      const res = await fetchLocal(`${origin}/readyz`).catch(() => null);
      if (!res || res.status !== 200) return null;
      const doc = await fetchLocal(`${origin}/status.json`);
      assert.equal(doc.status, 200, `GET /status.json: HTTP ${doc.status}: ${doc.body}`);
      return JSON.parse(doc.body);
    }, 'the agent to be ready (GET /readyz 200)', 20_000);
    assert.match(status.version, /^\d+\.\d+\.\d+/);

    const root = await fetchLocal(`${origin}/`);
    assert.equal(root.status, 200);
    assert.match(root.headers['content-type'], /^text\/html/);
    assert.ok(root.body === readFileSync(PAGE_FILE, 'utf8'),
      `GET / must serve agent/admin/status_page.html as it is now (${root.body.length} bytes served): rebuild spanrelay`);

    opened = await openPage();
    const { page } = opened;
    await page.goto(`${origin}/`);

    // (a) Loaded: version, ready, the exporter idle (nothing sent yet).
    let view = await waitForView(page, 'the page to show the agent ready',
      (v) => v.ready.value === 'true' && v.exporters['fake-upstream']);
    assert.equal(view.version.text, `v${status.version}`);
    assert.equal(view.ready.text, 'ready');
    assert.equal(view.live.text, 'live');
    assert.equal(view.config.text, configPath);
    assert.equal(view.receivers.http.state.text, 'listening');
    assert.equal(view.exporters['fake-upstream'].state.value, 'idle');
    assert.equal(view.banner, null);
    await screenshot(page, 'status-ok-idle.png');

    // (b) Spans flow: the intake and the exporter's sent counters move between two observations.
    flow = startFlow(httpPort);
    const first = await waitForView(page, 'spans to be accepted and sent',
      (v) => Number(v.intakeAccepted.value) > 0 && Number(v.exporters['fake-upstream'].sent_spans.value) > 0,
      { after: view.updates });
    view = await waitForView(page, 'the intake and sent counters to increase',
      (v) => Number(v.intakeAccepted.value) > Number(first.intakeAccepted.value)
        && Number(v.exporters['fake-upstream'].sent_spans.value) > Number(first.exporters['fake-upstream'].sent_spans.value)
        && Number(v.intakeRate.value) > 0,
      { after: first.updates });
    assert.equal(view.exporters['fake-upstream'].state.value, 'ok');
    assert.ok(Number(view.exporters['fake-upstream'].sent_spans_per_second.value) > 0, 'a sending rate is shown');
    assert.ok(upstream.answered[200] > 0);
    await screenshot(page, 'status-flowing.png');

    // (c) The upstream answers 503: the exporter shows failing, with the 503 in its last error
    // (its circuit, reported on its own, opens after a few failed attempts); the agent stays
    // ready (upstream health is never part of readiness).
    upstream.status = 503;
    view = await waitForView(page, 'the exporter to show failing with a 503',
      (v) => v.exporters['fake-upstream'].state.value === 'failing'
        && /503/.test(v.exporters['fake-upstream'].last_error.text),
      { after: view.updates });
    assert.match(view.exporters['fake-upstream'].state.text, /^failing/);
    assert.equal(await page.getAttribute('tr[data-exporter="fake-upstream"] td[data-field="state"] .badge', 'class')
      .then((c) => c.split(' ').includes('bad')), true, 'the failing state badge is red');
    assert.equal(view.ready.text, 'ready');
    assert.ok(upstream.answered[503] > 0);
    assert.equal(view.banner, null);
    await screenshot(page, 'status-failing.png');

    // (d) The agent stops: the page says it cannot reach it.
    await flow.stop();
    upstream.status = 200;
    await agent.stop();
    view = await waitForView(page, 'the stale banner once the agent is gone', (v) => v.stale && v.banner);
    assert.match(view.banner, /Cannot reach the agent/);
    await screenshot(page, 'status-unreachable.png');

    assertOnlyOwnOrigin(opened.requests, origin);
    assert.deepEqual(opened.problems, []);
    console.log(`flow: ${flow.sent} requests, ${flow.accepted} spans accepted, answers ${JSON.stringify(flow.statuses)}; ` +
      `upstream answers ${JSON.stringify(upstream.answered)}`);
  } catch (e) {
    e.message += `\n--- spanrelay output (tail) ---\n${agent.output.slice(-4000)}`;
    throw e;
  } finally {
    await flow?.stop();
    await opened?.context.close();
    await agent.stop().catch(() => {});
    await upstream.close();
    rmSync(tmp, { recursive: true, force: true });
  }
});
