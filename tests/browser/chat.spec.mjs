// Browser test of the web UI against the three real binaries, in Debian's chromium.
//
//   BUILD_DIR=build node tests/browser/chat.spec.mjs      (or tests/browser/run.sh)
//
// It starts connection-service, message-service and edge on free loopback ports (their stores in
// a fresh temporary directory), opens the page as several users and checks what a person would:
// messages both ways with their sent state, unread counts, online-first contacts, presence going
// grey, HTML arriving as text, the page reconnecting by itself after the edge restarts, a
// message to an offline user reaching them when they sign in again, ticks going from sent to
// delivered to read, history and unread counts after a reload, and older messages paged in by
// scrolling up. A second edge in `jwt` mode (HS256 tokens
// minted here) checks the token sign-in, the user taken from the token, the page going back to
// sign-in when the token expires, and what a refused token looks like. Screenshots go to
// $BUILD_DIR/screenshots.
// Exit code 0 only when every check passed; each failure says what was expected and what was
// seen.

import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const buildDir = path.resolve(repo, process.env.BUILD_DIR || 'build');
const webRoot = path.join(repo, 'edge', 'web');
const screenshots = path.join(buildDir, 'screenshots');
// The services run in here and keep their stores here: every run starts empty, and nothing is
// written next to the sources.
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-browser-'));

const START_DEADLINE_MS = 20000;
const STOP_DEADLINE_MS = 10000;
const UI_TIMEOUT_MS = 15000;
// New users reach a page through its periodic `users` refresh (10 s) at worst.
const NEW_CONTACT_TIMEOUT_MS = 25000;
const RECONNECT_TIMEOUT_MS = 40000;

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

let passed = 0;
let failed = 0;

function ok(what) {
  passed += 1;
  console.log(`ok ${passed} - ${what}`);
}

class CheckFailure extends Error {}

function fail(what, expected, seen) {
  throw new CheckFailure(`${what}\n  expected: ${expected}\n  saw:      ${seen}`);
}

function check(condition, what, expected, seen) {
  if (!condition) fail(what, expected, seen);
  ok(what);
}

// ---------------------------------------------------------------------------------------------
// Processes.

const children = new Set();

function startProcess(name, binary, args) {
  if (!fs.existsSync(binary)) {
    fail(
      `start ${name}`,
      `an executable at ${binary} (build the project first, or set BUILD_DIR)`,
      'no such file',
    );
  }
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: dataDir });
  children.add(child);
  const proc = { name, child, stderr: '', stdout: '', port: null };
  const log = fs.createWriteStream(path.join(dataDir, `${name}.log`), { flags: 'a' });
  child.stderr.on('data', (d) => {
    proc.stderr = (proc.stderr + d).slice(-4000);
    log.write(d);
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(
        new CheckFailure(
          `start ${name}\n  expected: one line 'listening on 127.0.0.1:<port>' on stdout within ${START_DEADLINE_MS} ms\n` +
            `  saw:      stdout ${JSON.stringify(proc.stdout.slice(-500))}; stderr tail:\n${proc.stderr}`,
        ),
      );
    }, START_DEADLINE_MS);
    child.stdout.on('data', (d) => {
      proc.stdout += d;
      const match = /listening on 127\.0\.0\.1:(\d+)/.exec(proc.stdout);
      if (match && proc.port === null) {
        proc.port = Number(match[1]);
        clearTimeout(timer);
        resolve(proc);
      }
    });
    child.on('exit', (code, signal) => {
      children.delete(child);
      proc.exited = { code, signal };
      if (proc.port === null) {
        clearTimeout(timer);
        reject(
          new CheckFailure(
            `start ${name} ${args.join(' ')}\n  expected: it to keep running and print 'listening on 127.0.0.1:<port>'\n` +
              `  saw:      exit code ${code} signal ${signal}; stderr tail:\n${proc.stderr}`,
          ),
        );
      }
    });
  });
}

function stopProcess(proc, signal = 'SIGTERM') {
  const child = proc.child;
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_DEADLINE_MS);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill(signal);
  });
}

// CHAT_BROWSER_KEEP=1 keeps the services' stores and logs (<name>.log) for a look afterwards.
function killAll() {
  for (const child of children) child.kill('SIGKILL');
  if (process.env.CHAT_BROWSER_KEEP) console.log(`# stores and logs kept in ${dataDir}`);
  else fs.rmSync(dataDir, { recursive: true, force: true });
}
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    killAll();
    process.exit(130);
  });
}

// Flags for a backend service, when its --help lists them: its store in the temporary
// directory (`--store=sqlite:<dataDir>/<file>`), and no metrics listener (its default port is
// fixed, and another test or a running stack may hold it).
const helpTexts = new Map();
function serviceArgs(binary, file) {
  if (!fs.existsSync(binary)) return [];
  if (!helpTexts.has(binary)) {
    const help = spawnSync(binary, ['--help'], { cwd: dataDir, encoding: 'utf8', timeout: 10000 });
    helpTexts.set(binary, `${help.stdout || ''}${help.stderr || ''}`);
  }
  const help = helpTexts.get(binary);
  const args = [];
  if (/--store\b/.test(help)) args.push(`--store=sqlite:${path.join(dataDir, file)}`);
  if (/--metrics_listen\b/.test(help)) args.push('--metrics_listen=');
  return args;
}

async function startConnectionService() {
  const binary = path.join(buildDir, 'connection-service', 'connection-service');
  return startProcess('connection-service', binary, [
    '--listen=127.0.0.1:0',
    '--metrics_listen=127.0.0.1:0',  // tests run side by side: no fixed port
    ...serviceArgs(binary, 'users.db'),
  ]);
}

// Restarted on the same port and the same store: what it stored before is still there.
async function startMessageService(cs, port = 0) {
  const binary = path.join(buildDir, 'message-service', 'message-service');
  return startProcess('message-service', binary, [
    `--listen=127.0.0.1:${port}`,
    `--connection_service=127.0.0.1:${cs.port}`,
    '--metrics_listen=127.0.0.1:0',
    ...serviceArgs(binary, 'messages.db'),
  ]);
}

// Polls the edge's /readyz (both backends reachable) until it answers 200.
async function waitEdgeReady(port, what) {
  const deadline = Date.now() + RECONNECT_TIMEOUT_MS;
  let last = 'no answer';
  while (Date.now() < deadline) {
    try {
      const response = await rawGet(port, '/readyz');
      if (response.status === 200) return ok(what);
      last = `${response.status} ${response.body.trim()}`;
    } catch (e) {
      last = e.message;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  fail(what, `GET /readyz answering 200 within ${RECONNECT_TIMEOUT_MS} ms`, last);
}

async function startEdge(cs, ms, port = 0, args = []) {
  return startProcess('edge', path.join(buildDir, 'edge', 'edge'), [
    `--listen=127.0.0.1:${port}`,
    `--connection_service=127.0.0.1:${cs.port}`,
    `--message_service=127.0.0.1:${ms.port}`,
    `--web_root=${webRoot}`,
    ...args,
  ]);
}

// An HS256 JWT (RFC 7519) for `sub`, expiring `ttlS` to `ttlS` + 1 seconds from now.
function mintJwt(secret, sub, ttlS) {
  const nowS = Date.now() / 1000;
  const claims = { sub, exp: Math.ceil(nowS) + ttlS, iat: Math.floor(nowS) };
  const segment = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const signed = `${segment({ alg: 'HS256', typ: 'JWT' })}.${segment(claims)}`;
  const signature = crypto.createHmac('sha256', secret).update(signed).digest('base64url');
  return `${signed}.${signature}`;
}

// A raw GET, so that targets like "/%2e%2e/x" reach the server exactly as written.
function rawGet(port, target, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: target, headers, agent: false },
      (res) => {
        let body = '';
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error(`GET ${target} timed out`)));
    req.end();
  });
}

// ---------------------------------------------------------------------------------------------
// Pages.

// What the page shows, for failure messages.
async function snapshot(page) {
  if (page.isClosed()) return '(page closed)';
  try {
    return await page.evaluate(() => {
      const conn = document.getElementById('conn');
      const me = document.getElementById('me');
      const contacts = [...document.querySelectorAll('.contact')].map(
        (li) =>
          `${li.dataset.name}(${li.dataset.status}${li.querySelector('.badge') ? `,unread ${li.querySelector('.badge').textContent}` : ''})`,
      );
      const messages = [...document.querySelectorAll('#messages .message')].slice(-6).map((li) => {
        const failure = li.querySelector('.failure');
        return `[${li.dataset.state}${li.dataset.id ? ` id=${li.dataset.id}` : ''}] ${li.querySelector('.sender')?.textContent}: ${JSON.stringify(
          li.querySelector('.text')?.textContent,
        )}${failure ? ` failure=${JSON.stringify(failure.textContent)}` : ''}`;
      });
      return (
        `connection=${conn?.dataset.state} "${document.getElementById('conn-text')?.textContent}"; ` +
        `view=${document.getElementById('chat-view')?.hidden ? 'sign-in' : 'chat'}; ` +
        `header user=${!me || me.hidden ? '-' : JSON.stringify(me.querySelector('#me-name').textContent)}; ` +
        `signin error="${document.getElementById('signin-error')?.textContent}"; ` +
        `contacts=[${contacts.join(' ')}]; open conversation=${document.getElementById('peer-name')?.textContent || '-'}; ` +
        `last messages=${messages.length ? `\n    ${messages.join('\n    ')}` : '[]'}`
      );
    });
  } catch (e) {
    return `(could not read the page: ${e.message})`;
  }
}

// Waits until `predicate(arg)` holds in the page, or fails naming what was expected and what
// the page showed instead.
async function waitUntil(page, what, expected, predicate, arg, timeout = UI_TIMEOUT_MS) {
  try {
    await page.waitForFunction(predicate, arg, { timeout, polling: 100 });
  } catch (e) {
    fail(`${what} [${page.chatUser}]`, `${expected} within ${timeout} ms`, await snapshot(page));
  }
  ok(`${what} [${page.chatUser}]`);
}

const consoleProblems = [];

// A page in a fresh context (its own sessionStorage), loaded from `url`, with its console watched.
async function openPage(browser, name, url, viewport = { width: 1100, height: 720 }) {
  const context = await browser.newContext({ viewport, reducedMotion: 'reduce' });
  const page = await context.newPage();
  page.chatUser = name;
  page.on('console', (message) => {
    const url = message.location()?.url || '';
    // Name mode has no /config.json; that 404 is the page finding out which mode it is in.
    // Failed WebSocket handshakes are expected while the edge restarts.
    const expected =
      url.endsWith('/config.json') || /^WebSocket connection to .* failed/.test(message.text());
    if (message.type() === 'error' && !expected) {
      consoleProblems.push(`${name}: ${message.text()} (${url})`);
    }
  });
  page.on('pageerror', (error) => consoleProblems.push(`${name}: uncaught ${error.message}`));
  await page.goto(url);
  return page;
}

async function openAs(browser, name, viewport = { width: 1100, height: 720 }) {
  const page = await openPage(browser, name, baseUrl, viewport);
  await page.getByLabel('Your name').fill(name);
  await page.getByLabel('Your name').press('Enter');
  await waitUntil(
    page,
    `${name} signs in and is connected`,
    'connection state "open" with the chat view shown',
    () =>
      document.getElementById('conn').dataset.state === 'open' &&
      !document.getElementById('chat-view').hidden,
  );
  return page;
}

function contactSelector(name) {
  return `.contact[data-name="${name}"]`;
}

async function waitContact(page, name, status, what, timeout = UI_TIMEOUT_MS) {
  await waitUntil(
    page,
    what,
    `contact ${name} listed as ${status}`,
    ([n, s]) => document.querySelector(`.contact[data-name="${n}"]`)?.dataset.status === s,
    [name, status],
    timeout,
  );
}

async function openConversation(page, name) {
  await page.locator(`${contactSelector(name)} button`).click();
  await waitUntil(
    page,
    `conversation with ${name} opens`,
    `the conversation header naming ${name}`,
    (n) =>
      document.getElementById('peer-name').textContent === n &&
      !document.getElementById('peer-pane').hidden,
    name,
  );
}

// Types `text` (with "\n" as Shift+Enter) and sends it with Enter.
async function typeAndSend(page, text) {
  const input = page.locator('#composer-input');
  await input.click();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (i > 0) await input.press('Shift+Enter');
    await input.pressSequentially(lines[i]);
  }
  await input.press('Enter');
}

async function waitOwnMessage(page, text, states, what) {
  await waitUntil(
    page,
    what,
    `own message ${JSON.stringify(text)} in state ${states.join(' or ')}`,
    ([t, s]) =>
      [...document.querySelectorAll('#messages .message.mine')].some(
        (li) =>
          li.querySelector('.text').textContent === t &&
          s.includes(li.dataset.state) &&
          (li.dataset.state !== 'sent' || li.dataset.id),
      ),
    [text, states],
  );
}

async function waitReceived(page, from, text, what) {
  await waitUntil(
    page,
    what,
    `a message from ${from} reading ${JSON.stringify(text)} in the open conversation`,
    ([f, t]) =>
      [...document.querySelectorAll('#messages .message.theirs')].some(
        (li) =>
          li.querySelector('.text').textContent === t &&
          li.closest('#messages') &&
          document.getElementById('peer-name').textContent === f,
      ),
    [from, text],
  );
}

// The tick of the last own message reading `text`: sending, sent, delivered, read or failed.
async function ownTick(page, text) {
  return page.evaluate((t) => {
    const mine = [...document.querySelectorAll('#messages .message.mine')].filter(
      (li) => li.querySelector('.text').textContent === t,
    );
    return mine.length ? mine[mine.length - 1].dataset.tick || null : null;
  }, text);
}

async function waitOwnTick(page, text, tick, what) {
  await waitUntil(
    page,
    what,
    `own message ${JSON.stringify(text)} showing the tick "${tick}"`,
    ([t, k]) => {
      const mine = [...document.querySelectorAll('#messages .message.mine')].filter(
        (li) => li.querySelector('.text').textContent === t,
      );
      return mine.length > 0 && mine[mine.length - 1].dataset.tick === k;
    },
    [text, tick],
  );
}

// The texts of the open conversation's messages, top to bottom.
async function shownTexts(page) {
  return page.$$eval('#messages .message .text', (nodes) => nodes.map((n) => n.textContent));
}

// Sends `texts` from `from` to `to` through a plain WebSocket (a second client, not the page's
// UI), one at a time, each with a request_id and an idempotency key, paced under the edge's rate
// limit. Returns the hello's protocol and, per message, 'sent' or the error code.
async function sendRaw(browser, from, to, texts, url = baseUrl) {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    return await page.evaluate(
      async ([url, peer, all, keyPrefix, timeoutMs]) => {
        const ws = new WebSocket(url);
        const waiting = new Map();
        let hello;
        const deadline = new Promise((_, reject) =>
          setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs),
        );
        await Promise.race([
          deadline,
          new Promise((resolve, reject) => {
            ws.onmessage = (event) => {
              const frame = JSON.parse(event.data);
              if (frame.action === 'hello') {
                hello = frame;
                resolve();
              } else if (frame.request_id !== undefined) {
                waiting.get(frame.request_id)?.(frame);
              }
            };
            ws.onerror = () => reject(new Error('WebSocket error'));
          }),
        ]);
        const results = [];
        for (let i = 0; i < all.length; i++) {
          const reply = await Promise.race([
            deadline,
            new Promise((resolve) => {
              waiting.set(i, resolve);
              ws.send(
                JSON.stringify({
                  action: 'send',
                  send_to: peer,
                  message: all[i],
                  request_id: i,
                  idempotency_key: `${keyPrefix}-${i}`,
                }),
              );
            }),
          ]);
          results.push(reply.action === 'sent' ? 'sent' : String(reply.code));
          await new Promise((resolve) => setTimeout(resolve, 30));
        }
        ws.close();
        return { protocol: hello.protocol, results };
      },
      [
        `${url.replace(/^http/, 'ws')}?name=${encodeURIComponent(from)}`,
        to,
        texts,
        crypto.randomBytes(8).toString('hex'), // keys are per user: new ones for every batch
        30000,
      ],
    );
  } finally {
    await context.close();
  }
}

// A second client that stays connected as `name`: a plain WebSocket in a page of its own, which
// keeps every frame it receives.
async function rawConnect(browser, url, name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.chatUser = `${name} (second client)`;
  await page.evaluate((wsUrl) => {
    window.received = [];
    window.socket = new WebSocket(wsUrl);
    window.socket.onmessage = (event) => window.received.push(JSON.parse(event.data));
  }, `${url.replace(/^http/, 'ws')}?name=${encodeURIComponent(name)}`);
  await waitUntil(page, `${name} connects a second client`, 'its hello', () =>
    window.received.some((f) => f.action === 'hello'),
  );
  return page;
}

// Stored conversations: a message sent while bob was away reaches him when he signs in again
// on a new device, with the history before it; alice's ticks go delivered then read; a reload
// brings back the history and the unread counts from the server; scrolling up pages older
// messages; a message that reached alice's other device while her page was reconnecting comes
// in with the sync after the reconnect. Returns the edge (restarted on the same port).
async function durableChecks(browser, alice, whileAway, { cs, ms, edge }) {
  const bob = await openAs(browser, 'bob');
  try {
    await waitUntil(
      bob,
      'the message sent while bob was away waits for him: unread badge "1" on alice',
      'a badge "1" on alice',
      () => document.querySelector('.contact[data-name="alice"] .badge')?.textContent === '1',
    );
    await waitOwnTick(
      alice,
      whileAway,
      'delivered',
      "alice's tick moves to delivered once bob's page has the message",
    );
    await openConversation(bob, 'alice');
    await waitReceived(bob, 'alice', whileAway, 'bob sees the message sent while he was offline');
    const first = 'Hi Bob! Are we still on for lunch tomorrow?';
    await waitReceived(
      bob,
      'alice',
      first,
      "bob's new page shows the conversation's earlier messages, from the server",
    );
    const bobTexts = await shownTexts(bob);
    check(
      bobTexts.indexOf(first) >= 0 &&
        bobTexts.indexOf(first) < bobTexts.indexOf(whileAway) &&
        new Set(bobTexts).size === bobTexts.length,
      "bob's history is in order, each message once",
      `"${first}" before "${whileAway}", no text twice`,
      JSON.stringify(bobTexts),
    );
    await waitOwnTick(
      alice,
      whileAway,
      'read',
      "alice's tick moves to read when bob opens the chat",
    );
    const ticks = await alice.$$eval('#messages .message.mine[data-state="sent"]', (rows) =>
      rows.map((li) => li.dataset.tick),
    );
    check(
      ticks.length > 0 && ticks.every((t) => t === 'read'),
      "all of alice's messages to bob show read",
      'every sent message with the tick "read"',
      JSON.stringify(ticks),
    );
    await alice.screenshot({ path: path.join(screenshots, 'ticks-read.png') });
    ok(`screenshot ${path.join(screenshots, 'ticks-read.png')}`);

    // carol, new, writes 60 messages to alice from another client.
    const texts = Array.from({ length: 60 }, (_, i) => `carol #${String(i + 1).padStart(2, '0')}`);
    const sent = await sendRaw(browser, 'carol', 'alice', texts);
    check(
      sent.protocol === 2 && sent.results.every((r) => r === 'sent'),
      'a second client (carol) sends 60 messages to alice, each acknowledged',
      'hello with protocol 2, then 60 sent replies',
      JSON.stringify(sent),
    );
    await waitUntil(
      alice,
      "alice gets carol's messages live: badge 60",
      'a badge "60" on carol',
      () => document.querySelector('.contact[data-name="carol"] .badge')?.textContent === '60',
      undefined,
      NEW_CONTACT_TIMEOUT_MS,
    );

    // A reload: the page holds nothing, the server has it all.
    await alice.reload();
    await waitUntil(
      alice,
      'after a reload alice is signed in again',
      'connection state "open" with the chat view shown',
      () =>
        document.getElementById('conn').dataset.state === 'open' &&
        !document.getElementById('chat-view').hidden,
    );
    await waitReceived(
      alice,
      'bob',
      'Yes! 12:30 at the usual place?\nI will bring the slides.',
      "after a reload the open conversation shows bob's earlier message",
    );
    await waitOwnMessage(alice, first, ['sent'], "and alice's own first message");
    await waitOwnTick(
      alice,
      whileAway,
      'read',
      'after a reload the ticks come from the marks the server keeps: read',
    );
    await waitUntil(
      alice,
      'after a reload the conversations list shows carol with 60 unread and her last message',
      'a badge "60" on carol and the preview "carol #60"',
      () => {
        const row = document.querySelector('.contact[data-name="carol"]');
        return (
          row?.querySelector('.badge')?.textContent === '60' &&
          row.querySelector('.contact-preview')?.textContent === 'carol #60'
        );
      },
    );
    await alice.screenshot({ path: path.join(screenshots, 'history-after-reload.png') });
    ok(`screenshot ${path.join(screenshots, 'history-after-reload.png')}`);

    // The newest page first; scrolling up brings the older ones above, in order.
    await openConversation(alice, 'carol');
    await waitUntil(
      alice,
      "opening carol's conversation shows her newest 50 messages",
      'carol #11 … carol #60 in the pane',
      () => {
        const shown = [...document.querySelectorAll('#messages .message .text')].map(
          (n) => n.textContent,
        );
        return shown.length === 50 && shown[0] === 'carol #11' && shown[49] === 'carol #60';
      },
    );
    await waitUntil(
      alice,
      'opening it clears the unread count',
      'no badge on carol',
      () => !document.querySelector('.contact[data-name="carol"] .badge'),
    );
    await alice.evaluate(() => {
      document.getElementById('messages').scrollTop = 0;
    });
    await waitUntil(
      alice,
      'scrolling up loads the older messages above, and says where the conversation starts',
      'carol #01 … carol #60 in order, with the start of the conversation shown',
      () => {
        const shown = [...document.querySelectorAll('#messages .message .text')].map(
          (n) => n.textContent,
        );
        return (
          shown.length === 60 &&
          shown.every((t, i) => t === `carol #${String(i + 1).padStart(2, '0')}`) &&
          /starts/.test(document.querySelector('#messages .history-edge')?.textContent || '')
        );
      },
    );
    const top = await alice.evaluate(() => document.getElementById('messages').scrollTop);
    check(
      top > 0,
      'the view stays on what was read (older messages appear above it)',
      'a scroll position below the top after the older page came in',
      `scrollTop ${top}`,
    );
    await alice.evaluate(() => {
      document.getElementById('messages').scrollTop = 0;
    });
    await alice.screenshot({ path: path.join(screenshots, 'history-top.png') });
    ok(`screenshot ${path.join(screenshots, 'history-top.png')}`);

    // alice's page loses its edge; meanwhile carol writes, and the message reaches alice's other
    // client on a second edge, so nothing is pushed to the page when it returns: only its sync
    // after the reconnect brings it.
    const other = await startEdge(cs, ms);
    const otherUrl = `http://127.0.0.1:${other.port}/`;
    const aliceElsewhere = await rawConnect(browser, otherUrl, 'alice');
    try {
      const port = edge.port;
      await stopProcess(edge);
      await waitUntil(
        alice,
        "alice's page sees its edge go away",
        'connection state other than "open"',
        () => document.getElementById('conn').dataset.state !== 'open',
      );
      const meanwhile = 'carol #61, written while your page was reconnecting';
      const late = await sendRaw(browser, 'carol', 'alice', [meanwhile], otherUrl);
      check(
        late.results[0] === 'sent',
        'carol sends one more message through the second edge',
        'a sent reply',
        JSON.stringify(late),
      );
      try {
        await aliceElsewhere.waitForFunction(
          (t) => window.received.some((f) => f.action === 'send' && f.message === t),
          meanwhile,
          { timeout: UI_TIMEOUT_MS, polling: 100 },
        );
      } catch {
        fail(
          "alice's other client receives it live",
          `a send frame reading ${JSON.stringify(meanwhile)} within ${UI_TIMEOUT_MS} ms`,
          `frames ${JSON.stringify(await aliceElsewhere.evaluate(() => window.received))}`,
        );
      }
      ok("alice's other client receives it live");
      edge = await startEdge(cs, ms, port);
      ok(`the edge restarted on port ${port}`);
      await waitReceived(
        alice,
        'carol',
        meanwhile,
        'after reconnecting, the page syncs and shows the message it missed',
      );
      const texts = await shownTexts(alice);
      check(
        texts.length === 61 && texts[60] === meanwhile,
        'it comes last, once',
        '61 messages ending with it',
        `${texts.length} messages ending with ${JSON.stringify(texts[texts.length - 1])}`,
      );

      // What alice writes on her other client shows on the page too, as her own message.
      const fromElsewhere = 'Answering from my other device';
      await aliceElsewhere.evaluate(
        (t) =>
          window.socket.send(
            JSON.stringify({ action: 'send', send_to: 'carol', message: t, request_id: 'o1' }),
          ),
        fromElsewhere,
      );
      await waitOwnMessage(
        alice,
        fromElsewhere,
        ['sent'],
        "a message alice sent from her other client appears on her page as hers",
      );
    } finally {
      await aliceElsewhere.context().close();
      await stopProcess(other);
    }
  } finally {
    await bob.context().close();
  }
  return edge;
}

// message-service comes back on another database (as after a restore) while alice's page stays
// connected: the first message from the new store makes the page sync with its old epoch, get
// reset, and rebuild from what the new store holds. Returns the new message-service.
async function storeReplacedChecks(browser, alice, cs, ms) {
  const port = ms.port;
  await stopProcess(ms);
  // dave signs in while there is no store to read: his page catches up once there is one.
  const dave = await openAs(browser, 'dave');
  const binary = path.join(buildDir, 'message-service', 'message-service');
  const args = serviceArgs(binary, 'messages-restored.db');
  const replaced = await startProcess('message-service', binary, [
    `--listen=127.0.0.1:${port}`,
    `--connection_service=127.0.0.1:${cs.port}`,
    ...args,
  ]);
  await waitEdgeReady(edgePortOf(baseUrl), 'the edge is ready with message-service on a new store');
  await waitUntil(
    dave,
    'a page that signed in while the store was down catches up once it is back',
    'a stream position and an epoch from its first successful sync',
    () => window.chatDebug.state.stream.held !== null && !!window.chatDebug.state.stream.epoch,
    undefined,
    RECONNECT_TIMEOUT_MS,
  );
  await dave.context().close();
  const text = 'Written after the restore';
  const sent = await sendRaw(browser, 'bob', 'alice', [text]);
  check(
    sent.results[0] === 'sent',
    'bob writes to alice through the new store',
    'a sent reply',
    JSON.stringify(sent),
  );
  await waitUntil(
    alice,
    "alice's page notices the new store and rebuilds: bob's conversation holds only the new message",
    `bob's preview ${JSON.stringify(text)}, an unread badge "1", and no earlier message kept`,
    (t) => {
      const row = document.querySelector('.contact[data-name="bob"]');
      const bob = window.chatDebug.state.contacts.get('bob');
      return (
        row?.querySelector('.contact-preview')?.textContent === t &&
        row.querySelector('.badge')?.textContent === '1' &&
        bob.messages.every((m) => m.text === t)
      );
    },
    text,
  );
  await openConversation(alice, 'bob');
  await waitReceived(alice, 'bob', text, 'the conversation shows the message from the new store');
  const shown = await shownTexts(alice);
  check(
    shown.length === 1 && shown[0] === text,
    'and nothing from the replaced store',
    `only ${JSON.stringify(text)}`,
    JSON.stringify(shown),
  );
  return replaced;
}

function edgePortOf(url) {
  return Number(new URL(url).port);
}

// ---------------------------------------------------------------------------------------------
// The scenario.

let baseUrl;

async function httpChecks(port) {
  const index = await rawGet(port, '/');
  check(index.status === 200, 'GET / answers 200', '200', `${index.status}`);
  check(
    /^text\/html/.test(index.headers['content-type'] || ''),
    'GET / is text/html',
    'text/html…',
    index.headers['content-type'],
  );
  const csp = index.headers['content-security-policy'] || '';
  check(
    /script-src 'self'/.test(csp) && !/unsafe-inline/.test(csp),
    "the page's CSP forbids inline script",
    "a Content-Security-Policy with script-src 'self' and no 'unsafe-inline'",
    JSON.stringify(csp),
  );
  check(
    index.headers['x-content-type-options'] === 'nosniff',
    'GET / sends X-Content-Type-Options: nosniff',
    'nosniff',
    index.headers['x-content-type-options'],
  );

  const js = await rawGet(port, '/app.js');
  check(
    js.status === 200 && /^text\/javascript/.test(js.headers['content-type'] || ''),
    'GET /app.js is text/javascript',
    '200 text/javascript',
    `${js.status} ${js.headers['content-type']}`,
  );
  const etag = js.headers.etag;
  check(
    typeof etag === 'string' && etag.startsWith('"'),
    'GET /app.js has a strong ETag',
    'an ETag header "…"',
    etag,
  );
  const revalidated = await rawGet(port, '/app.js', { 'If-None-Match': etag });
  check(
    revalidated.status === 304 && revalidated.body === '',
    'If-None-Match with the ETag answers 304',
    '304 with no body',
    `${revalidated.status} body ${JSON.stringify(revalidated.body.slice(0, 40))}`,
  );

  for (const target of [
    '/../CMakeLists.txt',
    '/%2e%2e/CMakeLists.txt',
    '/..%2fCMakeLists.txt',
    '/%252e%252e/CMakeLists.txt',
    '/..\\CMakeLists.txt',
    '/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
  ]) {
    const response = await rawGet(port, target);
    check(
      response.status === 404,
      `GET ${target} is refused`,
      '404',
      `${response.status} ${JSON.stringify(response.body.slice(0, 60))}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// jwt mode: a second edge on the same services; the page signs in with HS256 tokens minted here.

const JWT_SECRET = crypto.randomBytes(32).toString('hex'); // 64 bytes; the edge wants 32 or more
const TOKEN_EXPIRED_TEXT = 'Your token expired. Paste a new token to continue.';

// Opens the jwt edge's page and waits for its sign-in screen, which asks for a token once the
// page has read /config.json.
async function openTokenSignin(browser, name, url) {
  const page = await openPage(browser, name, url);
  await waitUntil(
    page,
    'the sign-in screen asks for a token, not a name',
    'the sign-in view with the token field shown and the name field hidden',
    () =>
      !document.getElementById('signin-view').hidden &&
      !document.getElementById('token-field').hidden &&
      document.getElementById('name-field').hidden,
  );
  return page;
}

async function signInWithToken(page, token, user) {
  await page.getByLabel('Access token').fill(token);
  await page.getByLabel('Access token').press('Enter');
  await waitUntil(
    page,
    `${user} signs in with a token and the header names the token's user`,
    `connection state "open", the chat view shown and "${user}" in the header`,
    (u) =>
      document.getElementById('conn').dataset.state === 'open' &&
      !document.getElementById('chat-view').hidden &&
      !document.getElementById('me').hidden &&
      document.getElementById('me-name').textContent === u,
    user,
  );
}

async function jwtChecks(browser, cs, ms) {
  const edge = await startEdge(cs, ms, 0, [
    '--auth=jwt',
    `--jwt_secret=${JWT_SECRET}`,
    '--jwt_clock_skew_s=0',
  ]);
  const url = `http://127.0.0.1:${edge.port}/`;
  const pages = [];
  try {
    ok(`a second edge in jwt mode is listening on ${edge.port}`);
    const config = await rawGet(edge.port, '/config.json');
    check(
      config.status === 200 && JSON.parse(config.body).auth === 'jwt',
      'the jwt edge announces its mode in /config.json',
      '200 {"auth":"jwt",…}',
      `${config.status} ${config.body.trim()}`,
    );

    // A token that runs out in about 8 s: signed in first, so that it expires while ann and ben
    // talk. ann writes to cat before that (3 s was too tight on a loaded machine: ann's typed
    // message sometimes came after the expiry).
    const cat = await openTokenSignin(browser, 'jwt-cat', url);
    pages.push(cat);
    check(
      (await cat.getByLabel('Access token').isVisible()) &&
        !(await cat.getByLabel('Your name').isVisible()),
      'in jwt mode a user sees the token box and no name box',
      '"Access token" visible, "Your name" hidden',
      await snapshot(cat),
    );
    const shortLived = mintJwt(JWT_SECRET, 'jwt-cat', 8);
    await signInWithToken(cat, shortLived, 'jwt-cat');

    const ann = await openTokenSignin(browser, 'jwt-ann', url);
    pages.push(ann);
    await signInWithToken(ann, mintJwt(JWT_SECRET, 'jwt-ann', 600), 'jwt-ann');
    const toCat = 'Cat, your token is about to run out.';
    await waitContact(ann, 'jwt-cat', 'online', 'jwt-ann sees jwt-cat online');
    await openConversation(ann, 'jwt-cat');
    await typeAndSend(ann, toCat);
    await waitOwnMessage(ann, toCat, ['sent'], "jwt-ann's message to jwt-cat is sent");
    await waitUntil(
      cat,
      'jwt-cat gets an unread count from jwt-ann',
      'a badge "1" on jwt-ann',
      () => document.querySelector('.contact[data-name="jwt-ann"] .badge')?.textContent === '1',
    );

    // ben pastes his token the way it is often copied: after "Bearer ", wrapped onto two lines.
    const ben = await openTokenSignin(browser, 'jwt-ben', url);
    pages.push(ben);
    const benToken = mintJwt(JWT_SECRET, 'jwt-ben', 600);
    const wrapped = `Bearer ${benToken.slice(0, 40)}\n${benToken.slice(40)}`;
    await signInWithToken(ben, wrapped, 'jwt-ben');

    // ben -> ann (ann is in ben's first `users`), then ann answers from the unread conversation.
    await waitContact(ben, 'jwt-ann', 'online', 'jwt-ben sees jwt-ann online');
    await openConversation(ben, 'jwt-ann');
    const fromBen = 'Hello Ann, signed in with a token.';
    await typeAndSend(ben, fromBen);
    await waitOwnMessage(ben, fromBen, ['sent'], "jwt-ben's message reaches the sent state");
    await waitUntil(
      ann,
      'jwt-ann gets an unread count from jwt-ben',
      'a badge "1" on jwt-ben',
      () => document.querySelector('.contact[data-name="jwt-ben"] .badge')?.textContent === '1',
    );
    await openConversation(ann, 'jwt-ben');
    await waitReceived(ann, 'jwt-ben', fromBen, "jwt-ann sees jwt-ben's message");
    const fromAnn = 'Hi Ben! Tokens work here too.';
    await typeAndSend(ann, fromAnn);
    await waitOwnMessage(ann, fromAnn, ['sent'], "jwt-ann's reply reaches the sent state");
    await waitReceived(ben, 'jwt-ann', fromAnn, "jwt-ben sees jwt-ann's reply");
    await ann.screenshot({ path: path.join(screenshots, 'jwt-conversation.png') });
    ok(`screenshot ${path.join(screenshots, 'jwt-conversation.png')}`);

    // cat's token expires: the edge closes with 1008 "token expired" and the page asks for a
    // new token instead of retrying the dead one.
    await waitUntil(
      cat,
      'an expired token brings the page back to sign-in',
      `the sign-in view with the token field and the message ${JSON.stringify(TOKEN_EXPIRED_TEXT)}`,
      (text) =>
        !document.getElementById('signin-view').hidden &&
        document.getElementById('chat-view').hidden &&
        !document.getElementById('token-field').hidden &&
        document.getElementById('signin-error').textContent === text,
      TOKEN_EXPIRED_TEXT,
    );
    check(
      (await cat.getByText(TOKEN_EXPIRED_TEXT).isVisible()) &&
        (await cat.getByLabel('Access token').inputValue()) === '',
      'the expiry message is visible and the token box is empty for a new one',
      `"${TOKEN_EXPIRED_TEXT}" visible, an empty "Access token" box`,
      await snapshot(cat),
    );
    check(
      await cat.locator('#me').isHidden(),
      'after the expiry the header no longer shows a signed-in user',
      'no user name or Sign out in the header',
      await snapshot(cat),
    );
    const stillSignedIn = await cat.evaluate(() => sessionStorage.getItem('chat.signin'));
    check(
      stillSignedIn === null,
      'the expired token is forgotten (a reload does not retry it)',
      'no saved sign-in',
      JSON.stringify(stillSignedIn),
    );
    await signInWithToken(cat, mintJwt(JWT_SECRET, 'jwt-cat', 600), 'jwt-cat');
    await waitUntil(
      cat,
      "signing in again with a new token keeps the tab's conversations",
      'contact jwt-ann with the unread badge "1" from before the expiry',
      () => document.querySelector('.contact[data-name="jwt-ann"] .badge')?.textContent === '1',
    );
    await openConversation(cat, 'jwt-ann');
    await waitReceived(cat, 'jwt-ann', toCat, "jwt-cat still sees jwt-ann's message");

    // A token the edge refuses: the handshake fails, and after its retries the page says so on
    // the sign-in screen.
    const mallory = await openTokenSignin(browser, 'jwt-garbage', url);
    pages.push(mallory);
    // Characters no token has (they cannot even be offered to the server) are refused right away.
    const notAToken = 'this is not a token';
    await mallory.getByLabel('Access token').fill(notAToken);
    await mallory.getByLabel('Access token').press('Enter');
    await waitUntil(
      mallory,
      'text that cannot be a token is refused on the sign-in screen',
      'the sign-in view with an error about the token',
      () =>
        !document.getElementById('signin-view').hidden &&
        /token/i.test(document.getElementById('signin-error').textContent),
    );
    const header = await mallory.locator('#conn').textContent();
    check(
      !header.includes(notAToken),
      'the refused text is not echoed in the connection status',
      'a connection status without the pasted text',
      JSON.stringify(header.trim()),
    );
    await mallory.getByLabel('Access token').fill('not.a.jwt');
    await mallory.getByLabel('Access token').press('Enter');
    await waitUntil(
      mallory,
      'a refused token ends on the sign-in screen with an error',
      'the sign-in view with an error saying the token was refused',
      () =>
        !document.getElementById('signin-view').hidden &&
        document.getElementById('chat-view').hidden &&
        /refused this token/.test(document.getElementById('signin-error').textContent),
    );
    const shown = await mallory.locator('#signin-error').textContent();
    check(
      (await mallory.locator('#signin-error').isVisible()) &&
        /could not connect/i.test(shown) &&
        (await mallory.locator('#me').isHidden()),
      'the refusal is visible to the user, who is not signed in',
      'a visible "Could not connect … refused this token" and no user in the header',
      `${JSON.stringify(shown)}; ${await snapshot(mallory)}`,
    );
  } finally {
    for (const page of pages) await page.context().close();
    await stopProcess(edge);
  }
}

async function main() {
  const cs = await startConnectionService();
  let ms = await startMessageService(cs);
  let edge = await startEdge(cs, ms);
  const edgePort = edge.port;
  baseUrl = `http://127.0.0.1:${edgePort}/`;
  ok(`the three binaries are listening (edge on ${edgePort})`);

  await httpChecks(edgePort);

  fs.mkdirSync(screenshots, { recursive: true });
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
  });
  try {
    // aaron was here once and left: a contact that is offline.
    const aaron = await openAs(browser, 'aaron');
    await aaron.context().close();

    const alice = await openAs(browser, 'alice');
    await waitContact(alice, 'aaron', 'offline', 'a user who left is listed offline');
    const bob = await openAs(browser, 'bob');
    await waitContact(bob, 'alice', 'online', 'bob sees alice online');
    await waitContact(
      alice,
      'bob',
      'online',
      'alice sees bob appear online',
      NEW_CONTACT_TIMEOUT_MS,
    );
    const order = await alice.$$eval('.contact', (rows) => rows.map((r) => r.dataset.name));
    check(
      order.indexOf('bob') < order.indexOf('aaron'),
      'contacts are sorted online first',
      'bob (online) above aaron (offline)',
      order.join(', '),
    );

    // The filter box.
    await alice.getByLabel('Filter contacts').fill('bo');
    const filtered = await alice.$$eval('.contact', (rows) => rows.map((r) => r.dataset.name));
    check(
      filtered.length === 1 && filtered[0] === 'bob',
      'the filter box narrows the contacts',
      'only bob for "bo"',
      filtered.join(', ') || '(none)',
    );
    await alice.getByLabel('Filter contacts').fill('');

    // alice -> bob.
    await openConversation(alice, 'bob');
    await typeAndSend(alice, 'Hi Bob! Are we still on for lunch tomorrow?');
    await waitOwnMessage(
      alice,
      'Hi Bob! Are we still on for lunch tomorrow?',
      ['sent'],
      "alice's message reaches the sent state with the server's id",
    );
    await waitUntil(
      bob,
      'bob gets an unread count from alice',
      'a badge "1" on alice',
      () => document.querySelector('.contact[data-name="alice"] .badge')?.textContent === '1',
    );
    await openConversation(bob, 'alice');
    await waitReceived(
      bob,
      'alice',
      'Hi Bob! Are we still on for lunch tomorrow?',
      "bob sees alice's message",
    );
    const bubble = await bob.$eval('#messages .message.theirs', (li) => ({
      sender: li.querySelector('.sender').textContent,
      time: li.querySelector('time').textContent,
    }));
    check(
      bubble.sender === 'alice' && /\d/.test(bubble.time),
      'the bubble names its sender and time',
      'sender "alice" and a time',
      JSON.stringify(bubble),
    );
    await waitUntil(
      bob,
      'opening the conversation clears the unread count',
      'no badge on alice',
      () => !document.querySelector('.contact[data-name="alice"] .badge'),
    );

    // bob -> alice, with Shift+Enter for a new line.
    await typeAndSend(bob, 'Yes! 12:30 at the usual place?\nI will bring the slides.');
    await waitOwnMessage(
      bob,
      'Yes! 12:30 at the usual place?\nI will bring the slides.',
      ['sent'],
      "bob's two-line message is sent",
    );
    await waitReceived(
      alice,
      'bob',
      'Yes! 12:30 at the usual place?\nI will bring the slides.',
      "alice sees bob's reply with its line break",
    );

    // HTML arrives as text and runs nothing.
    const payload = '<img src=x onerror="window.__xss=1"><b>bold?</b>';
    await typeAndSend(bob, payload);
    await waitReceived(alice, 'bob', payload, 'HTML from bob arrives as visible text');
    const injected = await alice.evaluate(() => ({
      flag: window.__xss,
      imgs: document.querySelectorAll('#messages img, #contacts img').length,
      bolds: document.querySelectorAll('#messages b').length,
    }));
    check(
      injected.flag === undefined && injected.imgs === 0 && injected.bolds === 0,
      'the HTML created no elements and ran nothing',
      'window.__xss unset, no <img>/<b> in the messages',
      JSON.stringify(injected),
    );
    check(
      await alice.locator('#messages .message.theirs .text', { hasText: '<img src=x' }).isVisible(),
      'the HTML is visible as text',
      'a visible bubble showing "<img src=x …"',
      await snapshot(alice),
    );

    await typeAndSend(alice, 'Perfect. I will book a table for two.');
    await waitOwnMessage(
      alice,
      'Perfect. I will book a table for two.',
      ['sent'],
      "alice's second message is sent",
    );
    await waitReceived(bob, 'alice', 'Perfect. I will book a table for two.', 'bob sees it');

    await alice.screenshot({ path: path.join(screenshots, 'conversation.png') });
    ok(`screenshot ${path.join(screenshots, 'conversation.png')}`);

    // The edge restarts on the same port; both pages reconnect by themselves.
    await stopProcess(edge);
    await waitUntil(
      alice,
      'the page shows the connection is down',
      'connection state other than "open"',
      () => document.getElementById('conn').dataset.state !== 'open',
    );
    await alice.screenshot({ path: path.join(screenshots, 'reconnecting.png') });
    edge = await startEdge(cs, ms, edgePort);
    ok(`the edge restarted on port ${edgePort}`);
    await waitUntil(
      alice,
      'alice reconnects after the edge restart',
      'connection state "open"',
      () => document.getElementById('conn').dataset.state === 'open',
      undefined,
      RECONNECT_TIMEOUT_MS,
    );
    await waitUntil(
      bob,
      'bob reconnects after the edge restart',
      'connection state "open"',
      () => document.getElementById('conn').dataset.state === 'open',
      undefined,
      RECONNECT_TIMEOUT_MS,
    );
    await waitContact(alice, 'bob', 'online', 'alice sees bob online again after reconnecting');

    await typeAndSend(alice, 'Back again after the restart.');
    await waitOwnMessage(
      alice,
      'Back again after the restart.',
      ['sent'],
      'a message is sent after the reconnect',
    );
    await waitReceived(
      bob,
      'alice',
      'Back again after the restart.',
      'bob receives it after the reconnect',
    );

    // message-service goes away: the send fails where it happened, in words, and Retry sends it
    // once the service is back.
    const msPort = ms.port;
    await stopProcess(ms);
    const downText = 'Did the service go down?';
    await typeAndSend(alice, downText);
    await waitOwnMessage(alice, downText, ['failed'], 'a send while message-service is down fails');
    const downFailure = await alice
      .locator('#messages .message[data-state="failed"] .failure')
      .last()
      .textContent();
    check(
      /unavailable/i.test(downFailure),
      'the failure says the service is unavailable',
      'text mentioning "unavailable"',
      JSON.stringify(downFailure),
    );
    ms = await startMessageService(cs, msPort);
    await waitEdgeReady(edgePort, 'the edge is ready again once message-service is back');
    await alice.locator('#messages .message[data-state="failed"] .retry-button').last().click();
    await waitOwnMessage(alice, downText, ['sent'], 'Retry sends the failed message');
    await waitReceived(bob, 'alice', downText, 'bob receives the retried message');
    const bobSees = await shownTexts(bob);
    check(
      bobSees.filter((t) => t === downText).length === 1,
      'the retries (same idempotency key) stored it once',
      `${JSON.stringify(downText)} once in bob's conversation`,
      JSON.stringify(bobSees),
    );
    // bob has the conversation open and visible: what arrives is read at once.
    await waitOwnTick(alice, downText, 'read', 'bob reads it as it arrives: alice sees read');

    // bob leaves: his dot turns grey for alice, through a presence event (the restored watch).
    await bob.context().close();
    await waitUntil(
      alice,
      "bob's dot turns grey when his page closes",
      'contact bob offline with a grey dot, announced by a presence event',
      () => {
        const row = document.querySelector('.contact[data-name="bob"]');
        const dot = row?.querySelector('.dot');
        if (!dot || row.dataset.status !== 'offline') return false;
        const [r, g, b] = getComputedStyle(dot).backgroundColor.match(/\d+/g).map(Number);
        const presence = window.chatDebug.state.lastPresence;
        return (
          Math.max(r, g, b) - Math.min(r, g, b) < 40 &&
          presence?.name === 'bob' &&
          presence.status === false
        );
      },
      undefined,
      UI_TIMEOUT_MS,
    );
    await waitUntil(
      alice,
      'the open conversation says bob is offline',
      'peer status "Offline"',
      () => document.getElementById('peer-status').textContent === 'Offline',
    );

    // A message to an offline user is stored: sent (one tick), not delivered yet.
    const whileAway = 'Are you still there?';
    await typeAndSend(alice, whileAway);
    await waitOwnMessage(alice, whileAway, ['sent'], 'a message to offline bob is stored and sent');
    check(
      (await ownTick(alice, whileAway)) === 'sent',
      'its tick says sent, not delivered, while bob is away',
      'data-tick "sent"',
      `data-tick ${JSON.stringify(await ownTick(alice, whileAway))}; ${await snapshot(alice)}`,
    );
    await alice.screenshot({ path: path.join(screenshots, 'conversation-offline.png') });

    edge = await durableChecks(browser, alice, whileAway, { cs, ms, edge });
    await alice.setViewportSize({ width: 390, height: 800 });
    await alice.screenshot({ path: path.join(screenshots, 'phone-conversation.png') });
    await alice.getByRole('button', { name: 'Back to contacts' }).click();
    await waitUntil(
      alice,
      'on a phone, Back shows the contact list',
      'the contacts visible',
      () => getComputedStyle(document.querySelector('.sidebar')).display !== 'none',
    );
    await alice.screenshot({ path: path.join(screenshots, 'phone-contacts.png') });
    ok(`phone-width screenshots in ${screenshots}`);

    ms = await storeReplacedChecks(browser, alice, cs, ms);

    const jwtStarted = Date.now();
    await jwtChecks(browser, cs, ms);
    console.log(`# jwt mode took ${((Date.now() - jwtStarted) / 1000).toFixed(1)} s`);

    check(
      consoleProblems.length === 0,
      'no console errors or CSP violations',
      'none',
      consoleProblems.join('\n    '),
    );
  } finally {
    await browser.close();
    await stopProcess(edge);
    await stopProcess(ms);
    await stopProcess(cs);
  }
}

try {
  await main();
} catch (error) {
  failed += 1;
  console.log(
    `not ok ${passed + failed} - ${error instanceof CheckFailure ? error.message : error.stack}`,
  );
}
console.log(`browser: ${passed} passed, ${failed} failed`);
process.exitCode = failed ? 1 : 0;
