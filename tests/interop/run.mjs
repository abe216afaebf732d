// Runs the interop test files one after another, each as its own `node <file>` process (a
// node:test file runs standalone and reports TAP), so that the suite needs nothing newer than
// Node.js 18.19 (Debian 12's nodejs is 18.20): `node --test` would need 20.10 for
// --test-force-exit and --test-concurrency.
//
//   node run.mjs [file.test.mjs ...]     (default: every suite, in a fixed order)
//
// Exit status 0 only when every file ran and passed. Each file runs in its own process group,
// with the agents it starts, and the whole group is SIGKILLed when:
//   - the file is still running SPANRELAY_INTEROP_FILE_TIMEOUT_MS (default 240 s) after it
//     started: the file fails;
//   - its tests have all reported but the process has not exited 10 s later (a handle or a
//     timer left behind): the verdict is the one its tests reported, with a note.
// A file holds one describe() with every hook and test in it: its one top-level TAP result marks
// the end of its tests (a file with more fails, so that this stays true).
// Anything missing (Node.js too old, `npm ci` not run, no spanrelay binary) fails with what to do.

import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DEFAULT_FILES = ['interop.test.mjs', 'conformance.test.mjs', 'reliability.test.mjs'];
const MIN_NODE = [18, 19];
const INSTALL_HINT = 'install nodejs (>= 18.19) and npm: deploy/install-deps.sh';
const FILE_TIMEOUT_MS = Number(process.env.SPANRELAY_INTEROP_FILE_TIMEOUT_MS) || 240_000;
const EXIT_GRACE_MS = 10_000;

function fail(message) {
  console.error(`interop: ${message}`);
  process.exit(1);
}

// ---------------------------------------------------------------------------------------------
// Preconditions

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < MIN_NODE[0] || (major === MIN_NODE[0] && minor < MIN_NODE[1])) {
  fail(`Node.js ${process.versions.node} is too old: ${INSTALL_HINT}`);
}

// Every pinned package installed at its pinned version (`npm ci` here, which install-deps does).
const pkg = JSON.parse(readFileSync(path.join(HERE, 'package.json'), 'utf8'));
for (const [name, version] of Object.entries(pkg.devDependencies || {})) {
  const manifest = path.join(HERE, 'node_modules', name, 'package.json');
  let installed;
  try {
    installed = JSON.parse(readFileSync(manifest, 'utf8')).version;
  } catch {
    fail(`${name} is not installed: run \`npm ci\` in ${HERE} (deploy/install-deps.sh and make test do it)`);
  }
  if (installed !== version) {
    fail(`${name} ${installed} is installed, package.json pins ${version}: run \`npm ci\` in ${HERE}`);
  }
}

const binary = process.env.SPANRELAY_BINARY
  ? path.resolve(process.env.SPANRELAY_BINARY)
  : path.resolve(HERE, '../../build/spanrelay');
try {
  accessSync(binary, constants.X_OK);
} catch {
  fail(`no spanrelay binary at ${binary}: build it (cmake --build build --target spanrelay) or set SPANRELAY_BINARY`);
}

const files = process.argv.length > 2 ? process.argv.slice(2) : DEFAULT_FILES;
for (const f of files) {
  if (!existsSync(path.resolve(HERE, f))) fail(`no test file ${f} in ${HERE}`);
}

// ---------------------------------------------------------------------------------------------
// Running one file

let current = null; // the running child, killed with its group if this runner is stopped

function killGroup(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL'); // the file's process and the agents it started
  } catch {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    killGroup(current);
    console.error(`interop: stopped by ${sig}`);
    process.exit(1);
  });
}
process.on('exit', () => killGroup(current));

// A top-level TAP result line ("ok 3 - name", "not ok 1 - name # SKIP ..."); nested results are
// indented.
const TOP_RESULT = /^(not )?ok \d+ - /;

// Resolves { ok, note }.
function runFile(file) {
  return new Promise((resolve) => {
    const started = Date.now();
    // The TAP reporter explicitly (newer Node.js defaults to spec): its top-level result lines
    // are how this runner knows the tests have ended.
    const child = spawn(process.execPath, ['--test-reporter=tap', file], {
      cwd: HERE,
      env: { ...process.env, SPANRELAY_BINARY: binary },
      stdio: ['ignore', 'pipe', 'inherit'],
      detached: true, // its own process group, so that a kill reaches the agents too
    });
    current = child;

    let topPassed = 0;
    let topFailed = 0;
    let pending = '';
    let graceTimer = null;
    let verdict = null; // set when the runner ends the file itself

    const finish = (result) => {
      clearTimeout(hardTimer);
      clearTimeout(graceTimer);
      current = null;
      resolve(result);
    };

    const hardTimer = setTimeout(() => {
      verdict = { ok: false, note: `still running after ${FILE_TIMEOUT_MS / 1000} s: killed` };
      killGroup(child);
    }, FILE_TIMEOUT_MS);

    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop();
      for (const line of lines) {
        const m = TOP_RESULT.exec(line);
        if (!m) continue;
        if (m[1]) topFailed++;
        else topPassed++;
        // The tests have reported: the process should now exit on its own.
        clearTimeout(graceTimer);
        graceTimer = setTimeout(() => {
          verdict = {
            ok: topFailed === 0 && topPassed > 0,
            note: `its tests ended but the process had not exited ${EXIT_GRACE_MS / 1000} s later (a handle or timer left behind): killed`,
          };
          killGroup(child);
        }, EXIT_GRACE_MS);
      }
    });

    child.on('error', (e) => finish({ ok: false, note: `cannot start: ${e.message}` }));
    child.on('close', (code, signal) => {
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      if (verdict) {
        finish({ ...verdict, note: `${verdict.note} (${seconds} s)` });
      } else if (code === 0 && topFailed === 0 && topPassed === 1) {
        finish({ ok: true, note: `passed (${seconds} s)` });
      } else if (code === 0 && topPassed > 1) {
        // The end of the tests is known from the file's one top-level result (see the top).
        finish({ ok: false, note: `${topPassed} top-level tests: put every hook and test of the file in one describe() (${seconds} s)` });
      } else if (code === 0) {
        finish({ ok: false, note: `exited 0 but reported ${topPassed} passed, ${topFailed} failed (${seconds} s)` });
      } else {
        const how = signal ? `signal ${signal}` : `exit code ${code}`;
        finish({ ok: false, note: `${topFailed} failed, ${topPassed} passed, ${how} (${seconds} s)` });
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------

const results = [];
for (const file of files) {
  console.log(`# interop: ${file} (node ${process.versions.node}, ${binary})`);
  const result = await runFile(file);
  results.push({ file, ...result });
  console.log(`# interop: ${file}: ${result.ok ? 'PASS' : 'FAIL'}: ${result.note}`);
}

console.log('# interop summary');
for (const r of results) console.log(`#   ${r.ok ? 'PASS' : 'FAIL'}  ${r.file}: ${r.note}`);
const failed = results.filter((r) => !r.ok);
if (failed.length) {
  console.error(`interop: ${failed.length} of ${results.length} file(s) failed: ${failed.map((r) => r.file).join(', ')}`);
  process.exit(1);
}
