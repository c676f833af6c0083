// In-memory relay of the original chat app's protocol on Bun's built-in
// WebSocket server (uWebSockets underneath): the fastest JavaScript option.
// Usage: bun bun-relay.ts [--listen=127.0.0.1:0]
// Prints "listening on HOST:PORT" once ready, like our services.
import type { ServerWebSocket } from 'bun';

type Data = { name: string };

const listenArg = process.argv.find((a) => a.startsWith('--listen='));
const [host, portText] = (listenArg ? listenArg.slice(9) : '127.0.0.1:0').split(':');

// name -> Set of sockets; a name stays with an empty set once seen, because
// `users` lists everyone who has ever connected.
const users = new Map<string, Set<ServerWebSocket<Data>>>();

const server = Bun.serve<Data>({
  hostname: host,
  port: Number(portText),
  fetch(req, srv) {
    const name = new URL(req.url).searchParams.get('name');
    if (!name) return new Response('name required\n', { status: 400 });
    if (srv.upgrade(req, { data: { name } })) return undefined;
    return new Response('websocket upgrade expected\n', { status: 400 });
  },
  websocket: {
    perMessageDeflate: false,
    maxPayloadLength: 128 * 1024,
    idleTimeout: 600,
    open(ws) {
      let sockets = users.get(ws.data.name);
      if (!sockets) {
        sockets = new Set();
        users.set(ws.data.name, sockets);
      }
      sockets.add(ws);
    },
    message(ws, data) {
      let req: any;
      try {
        req = JSON.parse(typeof data === 'string' ? data : data.toString());
      } catch {
        ws.send('{"action":"error","code":"bad_request"}');
        return;
      }
      if (req === null || typeof req !== 'object') return;
      if (req.action === 'send') {
        const targets = users.get(req.send_to);
        if (!targets || typeof req.message !== 'string') return;
        const out = JSON.stringify({
          action: 'send', sent_by: ws.data.name, send_to: req.send_to, message: req.message,
          ts: Date.now(),
        });
        for (const t of targets) t.send(out);
      } else if (req.action === 'users') {
        const contacts: { name: string; status: boolean }[] = [];
        for (const [n, s] of users) contacts.push({ name: n, status: s.size > 0 });
        contacts.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
        ws.send(JSON.stringify({ action: 'users', contacts }));
      }
    },
    close(ws) {
      users.get(ws.data.name)?.delete(ws);
    },
  },
});

process.stdout.write(`listening on ${server.hostname}:${server.port}\n`);
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0));
