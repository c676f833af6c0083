// A WebSocket client for the chat protocol: request/reply matching by request_id, and automatic
// reconnect with exponential backoff and jitter. It knows nothing about the page.

const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 30000;
const REQUEST_TIMEOUT_MS = 10000;
// A connection that stayed up this long resets the backoff; one that drops sooner keeps growing
// it, so a server that accepts and immediately closes is not hammered.
const STABLE_AFTER_MS = 5000;

// Close codes after which trying again cannot help until the user does something.
const FATAL_CLOSE_CODES = new Set([1008]);

export class ChatError extends Error {
  constructor(code, message, temporary = false) {
    super(message || code);
    this.code = code;
    this.temporary = temporary;
  }
}

// Delay before reconnect attempt `attempt` (0-based): "equal jitter", so that a crowd of
// clients dropped by one edge restart does not come back in lockstep, yet none waits ~0.
export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 16));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

export class ChatClient extends EventTarget {
  // url: the ws(s) URL; protocols: subprotocols to offer (the JWT convention), or undefined.
  constructor(url, protocols) {
    super();
    this.url = url;
    this.protocols = protocols;
    this.ws = null;
    this.state = 'idle'; // idle | connecting | open | waiting | stopped
    this.hello = null;
    this.attempt = 0;
    this.retryAt = 0;
    this.retryTimer = null;
    this.stableTimer = null;
    this.nextId = 1;
    this.pending = new Map(); // request_id -> {resolve, reject, timer}
    this.everOpened = false;
  }

  start() {
    if (this.state === 'stopped') return;
    this.connect();
  }

  stop() {
    this.setState('stopped');
    clearTimeout(this.retryTimer);
    clearTimeout(this.stableTimer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, 'bye');
    }
    this.failPending('disconnected', 'signed out');
  }

  // Skips the rest of the backoff wait (the "Retry now" button, the browser coming online).
  retryNow() {
    if (this.state !== 'waiting') return;
    clearTimeout(this.retryTimer);
    this.connect();
  }

  isOpen() {
    return this.state === 'open';
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.setState('connecting');
    let ws;
    try {
      ws = this.protocols ? new WebSocket(this.url, this.protocols) : new WebSocket(this.url);
    } catch (e) {
      this.stop();
      this.emit('fatal', { reason: `Bad server address: ${e.message}` });
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.addEventListener('open', () => {
      opened = true;
    });
    ws.addEventListener('message', (event) => {
      if (this.ws !== ws) return;
      this.onFrame(event.data);
    });
    ws.addEventListener('close', (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearTimeout(this.stableTimer);
      this.failPending('disconnected', 'connection lost');
      this.hello = null;
      if (this.state === 'stopped') return;
      if (FATAL_CLOSE_CODES.has(event.code)) {
        this.setState('stopped');
        this.emit('fatal', { code: event.code, reason: event.reason || 'closed by the server' });
        return;
      }
      this.emit('disconnected', { code: event.code, reason: event.reason, opened });
      this.scheduleReconnect();
    });
  }

  scheduleReconnect() {
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this.setState('waiting');
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  onFrame(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return; // The server only sends JSON objects; anything else is not for us.
    }
    if (!frame || typeof frame !== 'object') return;
    if (frame.action === 'hello') {
      this.hello = frame;
      this.everOpened = true;
      this.setState('open');
      this.stableTimer = setTimeout(() => {
        this.attempt = 0;
      }, STABLE_AFTER_MS);
      this.emit('hello', frame);
      return;
    }
    if (frame.request_id !== undefined && this.pending.has(frame.request_id)) {
      const entry = this.pending.get(frame.request_id);
      this.pending.delete(frame.request_id);
      clearTimeout(entry.timer);
      if (frame.action === 'error') {
        entry.reject(new ChatError(frame.code, frame.message, frame.temporary === true));
      } else {
        entry.resolve(frame);
      }
      return;
    }
    this.emit('frame', frame);
  }

  // Sends `body` with a fresh request_id and resolves with the reply, or rejects with a
  // ChatError: the server's code, or 'disconnected' / 'timeout' / 'too_large' from here.
  request(body) {
    if (!this.isOpen()) {
      return Promise.reject(new ChatError('disconnected', 'not connected', true));
    }
    const id = `r${this.nextId++}`;
    const text = JSON.stringify({ ...body, request_id: id });
    const limit = this.hello?.limits?.max_message_bytes;
    // The edge closes the whole connection (1009) for an oversized frame; refuse it here.
    if (limit && new TextEncoder().encode(text).length > limit) {
      return Promise.reject(new ChatError('too_large', 'message too large'));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ChatError('timeout', 'no answer from the server', true));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(text);
    });
  }

  failPending(code, message) {
    const entries = [...this.pending.values()];
    this.pending.clear();
    for (const entry of entries) {
      clearTimeout(entry.timer);
      entry.reject(new ChatError(code, message, true));
    }
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit('state', { state });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
