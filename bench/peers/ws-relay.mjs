// In-memory relay of the original chat app's protocol on the npm `ws` package:
// the server a Node.js developer would write instead of our three services.
// Usage: node ws-relay.mjs [--listen=127.0.0.1:0]
// Prints "listening on HOST:PORT" once ready, like our services.
import { WebSocketServer } from 'ws';

const listenArg = process.argv.find((a) => a.startsWith('--listen='));
const [host, portText] = (listenArg ? listenArg.slice(9) : '127.0.0.1:0').split(':');

// name -> Set of sockets; a name stays in the map with an empty set once seen,
// because `users` lists everyone who has ever connected.
const users = new Map();

function decodeName(url) {
  const q = url.indexOf('?');
  if (q < 0) return null;
  const name = new URLSearchParams(url.slice(q + 1)).get('name');
  return name && name.length > 0 ? name : null;
}

const wss = new WebSocketServer({
  host,
  port: Number(portText),
  perMessageDeflate: false,
  maxPayload: 128 * 1024,
  clientTracking: false,
});

wss.on('connection', (ws, req) => {
  const name = decodeName(req.url);
  if (name === null) {
    ws.close(1008, 'name required');
    return;
  }
  let sockets = users.get(name);
  if (!sockets) {
    sockets = new Set();
    users.set(name, sockets);
  }
  sockets.add(ws);

  ws.on('message', (data, isBinary) => {
    let req;
    try {
      req = JSON.parse(data.toString());
    } catch {
      ws.send('{"action":"error","code":"bad_request"}');
      return;
    }
    if (req === null || typeof req !== 'object') return;
    if (req.action === 'send') {
      const targets = users.get(req.send_to);
      if (!targets || typeof req.message !== 'string') return;
      const out = JSON.stringify({
        action: 'send', sent_by: name, send_to: req.send_to, message: req.message, ts: Date.now(),
      });
      for (const t of targets) t.send(out);
    } else if (req.action === 'users') {
      const contacts = [];
      for (const [n, s] of users) contacts.push({ name: n, status: s.size > 0 });
      contacts.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      ws.send(JSON.stringify({ action: 'users', contacts }));
    }
  });
  ws.on('close', () => sockets.delete(ws));
  ws.on('error', () => {});
});

wss.on('listening', () => {
  const a = wss.address();
  process.stdout.write(`listening on ${a.address}:${a.port}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
