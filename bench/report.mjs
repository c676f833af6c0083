// Turns the JSON lines of bench/run.sh into bench/results/latest.md (medians
// per server, ratios ours/peer, the project's goals) and latest.json.
// Usage: node report.mjs --runs=FILE.jsonl --md=OUT.md --json=OUT.json [--quick=0|1]
//          [--store=sqlite|postgresql|none --store-desc=TEXT] [--services-commit=HASH]
//          [--baseline=OLDER/latest.json]  (adds ours/baseline, e.g. a build before a change)
import { readFileSync, writeFileSync } from 'node:fs';
import { execSync } from 'node:child_process';
import os from 'node:os';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const [k, ...v] = a.replace(/^--/, '').split('=');
    return [k, v.join('=')];
  }),
);
// --runs is run.sh's JSON lines, or an earlier latest.json (to re-render it).
const runsText = readFileSync(args.runs, 'utf8');
const previous = args.runs.endsWith('.json') ? JSON.parse(runsText) : null;
const runs = previous
  ? previous.runs
  : runsText.split('\n').filter((l) => l.trim().startsWith('{')).map((l) => JSON.parse(l));

const median = (xs) => {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};
const sum = (xs) => xs.reduce((a, b) => a + (b ?? 0), 0);
const pick = (server, kase, f) => runs.filter((r) => r.server === server && r.case === kase).map(f);
const med = (server, kase, f) => median(pick(server, kase, f));

const baseline = args.baseline ? JSON.parse(readFileSync(args.baseline, 'utf8')) : null;
const store = previous?.store ?? args.store ?? runs.find((r) => r.server === 'ours')?.store ?? '?';
const storeDesc = previous?.store_desc ?? args['store-desc'] ?? store;

const servers = [...new Set(runs.map((r) => r.server))];
const peers = servers.filter((s) => s !== 'ours');
const hasOurs = servers.includes('ours');

// Each row: label, case, extractor, format, higher-is-better, goal text, goal check, and
// options: sum (add up every run instead of the median), oursOnly (peers: n/a).
const rows = [
  ['CPU-µs per direct message, all server processes (closed loop, max rate)', 'dm_closed',
    (r) => r.cpu_us_per_msg, 2, false, '≤ 1.0× bun, ≤ 0.5× ws',
    (o, p) => p.bun !== undefined && p.ws !== undefined && o <= p.bun && o <= 0.5 * p.ws],
  ['max direct messages/s, servers on one core (closed loop)', 'dm_closed',
    (r) => r.delivered_per_s, 0, true, '≥ 1.0× bun', (o, p) => p.bun !== undefined && o >= p.bun],
  ['server CPU % during max-rate run (100 = one core)', 'dm_closed', (r) => r.server_cpu_pct, 0, null],
  ['load generator CPU % during max-rate run', 'dm_closed', (r) => r.client_cpu_pct, 0, null],
  ['p99 latency ms, 1000 pairs, 5000 msgs/s offered, open loop', 'dm_open',
    (r) => r.latency_us.p99 / 1000, 3, false, '≤ 1 ms and below both peers',
    (o, p) => o <= 1 && peers.every((k) => p[k] === undefined || o < p[k])],
  ['p50 latency ms, same run', 'dm_open', (r) => r.latency_us.p50 / 1000, 3, false],
  ['p99.9 latency ms, same run', 'dm_open', (r) => r.latency_us.p999 / 1000, 3, false],
  ['max latency ms, same run', 'dm_open', (r) => r.latency_us.max / 1000, 3, false],
  ['CPU-µs per message at 5000 msgs/s', 'dm_open', (r) => r.cpu_us_per_msg, 2, false],
  ['voluntary context switches per message at 5000 msgs/s, all server processes (every thread)',
    'dm_open', (r) => r.vcsw_per_msg, 2, false, '≤ 3', (o) => o <= 3],
  ['voluntary context switches per message, closed loop max rate', 'dm_closed', (r) => r.vcsw_per_msg, 2, false],
  ['lost + out-of-order messages (all dm runs)', 'dm_*', (r) => r.lost + r.out_of_order, 0, null],
  ['edge RSS per idle connection, bytes (19,000 connections)', 'idle',
    (r) => (r.server === 'ours' ? r.rss.edge?.bytes_per_conn : r.rss_bytes_per_conn_total), 0, false,
    '≤ 1.0× bun (stretch ≤ 1536 B)', (o, p) => p.bun !== undefined && o <= p.bun],
  ['RSS per idle connection, all server processes, bytes', 'idle', (r) => r.rss_bytes_per_conn_total, 0, false],
  ['idle CPU % of a core with 19,000 connections', 'idle', (r) => r.server_cpu_pct, 2, false],
  ['connects/s to hello (ours) / to open (peers)', 'storm', (r) => r.connects_per_s, 0, true,
    '≥ 1.0× bun', (o, p) => p.bun !== undefined && o >= p.bun],
  ['connect→hello p99 ms', 'storm', (r) => r.latency_us.p99 / 1000, 2, false],
  ['server CPU-µs per connect', 'storm', (r) => r.cpu_us_per_connect, 1, false],
  ['load generator CPU % during storm', 'storm', (r) => r.client_cpu_pct, 0, null],
  ['live connections held over 6 edge processes (idle100k)', 'idle100k',
    (r) => r.conns_ok - r.disconnects, 0, true, '100,000 held', (o) => o >= 100000],
  ['RSS per connection, all processes, bytes (idle100k)', 'idle100k', (r) => r.rss_bytes_per_conn_total, 0, false],
  ['sync10k: catch-up of 10,000 stored messages in pages of 500, total ms', 'sync10k',
    (r) => r.sync_ms, 1, false, '< 1000 ms', (o) => o < 1000, { oursOnly: true }],
  ['sync10k: page round trip p50 ms', 'sync10k', (r) => r.latency_us.p50 / 1000, 2, false, null, null, { oursOnly: true }],
  ['sync10k: page round trip p99 ms', 'sync10k', (r) => r.latency_us.p99 / 1000, 2, false, null, null, { oursOnly: true }],
  ['sync10k: server CPU-µs per synced message', 'sync10k', (r) => r.cpu_us_per_msg, 2, false, null, null, { oursOnly: true }],
  ['sync10k: messages stored/s while filling (1 sender, 32 in flight, request_id)', 'sync10k',
    (r) => r.fill_per_s, 0, true, null, null, { oursOnly: true }],
  ['sync10k: useqs missing, duplicated, out of order or with wrong text (all runs)', 'sync10k',
    (r) => r.missing_useqs + r.duplicates + r.out_of_order + r.text_mismatch + r.out_of_range, 0, null,
    '0', (o) => o === 0, { oursOnly: true, sum: true }],
  ['failed connections (all runs)', '*', (r) => r.conns_failed ?? 0, 0, null],
];

const fmt = (v, d) => (v === undefined ? '–' : v.toLocaleString('en-US', {
  minimumFractionDigits: d, maximumFractionDigits: d, useGrouping: d === 0 && Math.abs(v) >= 10000 }));
const matchCase = (pattern, kase) => pattern === '*' || (pattern.endsWith('*') ? kase.startsWith(pattern.slice(0, -1)) : kase === pattern);

const baseOurs = (label) => baseline?.summary?.[label]?.ours;
const header = ['figure', ...servers, ...(hasOurs ? peers.map((p) => `ours/${p}`) : []),
  ...(hasOurs && baseline ? ['ours/baseline'] : []), 'goal', 'met'];
const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
const summary = {};
const safe = (f) => (r) => { try { return f(r); } catch { return undefined; } };
for (const [label, kase, f, digits, better, target, check, opt = {}] of rows) {
  const value = {};
  for (const s of servers) {
    const sel = runs.filter((r) => r.server === s && matchCase(kase, r.case));
    if (sel.length === 0) continue;
    value[s] = kase.includes('*') || opt.sum ? sum(sel.map(safe(f))) : median(sel.map(safe(f)));
  }
  if (Object.keys(value).length === 0) continue;  // workload not run
  summary[label] = value;
  const cells = [label, ...servers.map((s) => (opt.oursOnly && s !== 'ours' ? 'n/a' : fmt(value[s], digits)))];
  if (hasOurs) {
    for (const p of peers) {
      const comparable = better !== null && value.ours !== undefined && value[p];
      cells.push(comparable ? `${(value.ours / value[p]).toFixed(2)}×` : '–');
    }
    if (baseline) {
      const b = baseOurs(label);
      cells.push(better !== null && value.ours !== undefined && b ? `${(value.ours / b).toFixed(2)}×` : '–');
    }
  }
  cells.push(target ?? '');
  cells.push(check && value.ours !== undefined ? (check(value.ours, value) ? 'yes' : '**no**') : '');
  lines.push(`| ${cells.join(' | ')} |`);
}

const sh = (cmd) => { try { return execSync(cmd, { encoding: 'utf8', cwd: here }).trim(); } catch { return '?'; } };
const cpuModel = (os.cpus()[0]?.model ?? '?').trim();
const dirty = sh('git status --porcelain --untracked-files=no | head -1') ? ' (+ uncommitted changes)' : '';
const commit = previous?.commit ?? sh('git rev-parse --short HEAD') + dirty;
// Services may come from another build (BUILD_DIR of an older checkout).
const servicesCommit = previous?.services_commit ?? args['services-commit'] ?? commit;
const commitText = servicesCommit && !commit.startsWith(servicesCommit)
  ? `services from commit ${servicesCommit}, load generator and report from ${commit}` : `commit ${commit}`;
const reps = Math.max(0, ...runs.map((r) => r.rep));
const params = {};
for (const r of runs) {
  if (params[r.case]) continue;
  if (r.case === 'dm_closed') params[r.case] = `${r.pairs} pairs, window ${r.window}, ${r.message_bytes}-byte messages, ${r.duration_s} s`;
  if (r.case === 'dm_open') params[r.case] = `${r.pairs} pairs, ${r.offered_rate} msgs/s offered, ${r.duration_s} s`;
  if (r.case === 'idle') params[r.case] = `${r.conns} connections, ${r.procs} client processes, CPU over ${r.hold_s} s`;
  if (r.case === 'idle100k') params[r.case] = `${r.conns} connections over 6 edges, ${r.procs} client processes`;
  if (r.case === 'storm') params[r.case] = `${r.conns} connections, ${r.concurrency} handshakes in flight`;
  if (r.case === 'sync10k') {
    params[r.case] = `${r.messages} messages of ${r.message_bytes} bytes stored for one user by one sender ` +
      `(${r.window} in flight, each with request_id, the recipient online), then a fresh connection of the ` +
      `recipient syncs from 0 in pages of ${r.page}, one request at a time, checking useq 1…${r.messages} ` +
      'exactly once, in order';
  }
}

// The goal against an older build: max direct messages/s with the store ≥ 0.8× without.
const maxLabel = 'max direct messages/s, servers on one core (closed loop)';
const baselineLines = [];
if (baseline && hasOurs) {
  const o = summary[maxLabel]?.ours;
  const b = baseOurs(maxLabel);
  const ratio = o !== undefined && b ? o / b : undefined;
  baselineLines.push(
    `Baseline: \`${args.baseline}\`, run ${baseline.run_id ?? '?'}, commit ${baseline.services_commit ?? baseline.commit ?? '?'}, ` +
    `store ${baseline.store ?? 'none'}. Max direct messages/s: ${fmt(o, 0)} vs ${fmt(b, 0)} = ` +
    `${ratio === undefined ? '–' : ratio.toFixed(2) + '×'} (goal ≥ 0.8×: ${ratio === undefined ? '–' : ratio >= 0.8 ? 'yes' : '**no**'}).`,
    '');
}

const md = [
  `# Benchmark: our three services vs. the Node \`ws\` and Bun relays`,
  '',
  `Run ${previous?.run_id ?? args['run-id'] ?? ''}${args.quick === '1' ? ' (**--quick**: shorter windows, 1 repetition)' : ''}; ` +
    `medians of ${reps} repetition(s); ${commitText}.`,
  `Machine: ${os.cpus().length} × ${cpuModel}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${os.release()}, ` +
    `Node ${process.versions.node}. Servers pinned to one core, load generator to the other ` +
    `(\`bench/run.sh\`). "ours" = edge + connection-service + message-service, CPU summed over all three` +
    (store === 'postgresql' ? ' and the PostgreSQL server\'s processes.' : '.'),
  `Store: **${store}**: ${storeDesc}.`,
  '',
  ...lines,
  '',
  ...baselineLines,
  'Workloads: ' + Object.entries(params).map(([k, v]) => `\`${k}\`: ${v}`).join('; ') + '.',
  'Latency is measured from the intended send time (open loop: no coordinated omission). ' +
    'CPU comes from utime+stime in /proc/PID/stat (10 ms ticks), so idle CPU below 0.2 % reads as 0. ' +
    'A load generator near 90 % CPU means that figure is bound by the client (loopback TCP is mostly ' +
    'kernel time on the sending side), not by the server. Voluntary context switches are summed over ' +
    'every thread of every server process (/proc/PID/task/*/status).',
  'Raw per-run JSON: `latest.json`; full output of each run: `raw/`.',
  '',
].join('\n');

writeFileSync(args.md, md);
writeFileSync(args.json, JSON.stringify({ run_id: previous?.run_id ?? args['run-id'], quick: args.quick === '1', machine: {
  cpus: os.cpus().length, model: cpuModel, kernel: os.release() }, commit, services_commit: servicesCommit,
  store, store_desc: storeDesc, baseline: args.baseline ?? null, summary, runs }, null, 1) + '\n');
