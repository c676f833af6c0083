// Bookkeeping for stored conversations, with no DOM: which of the user's stream numbers (useq)
// the page has seen, and one conversation's messages kept unique and in seq order.

// The user's stream: every message they send or receive has the next useq, 1, 2, 3, ... The
// page keeps `held`, the highest useq up to which it has seen every number (what `sync` asks
// from), and the numbers above it seen out of order, which mean a gap until the rest arrive.
export class StreamTracker {
  constructor(held = null, epoch = null) {
    this.held = held; // null until there is a starting point (stored, or from `conversations`)
    this.epoch = epoch;
    this.above = new Set();
  }

  // Records one useq; returns true when it was not seen before.
  see(useq) {
    if (!Number.isSafeInteger(useq) || useq <= 0) return false;
    if (this.held === null) {
      this.above.add(useq);
      return true;
    }
    if (useq <= this.held || this.above.has(useq)) return false;
    this.above.add(useq);
    this.advance();
    return true;
  }

  // Everything up to `useq` is now held (a `synced` reply, or a new starting point).
  holdThrough(useq) {
    if (!Number.isSafeInteger(useq) || useq < 0) return;
    if (this.held === null || useq > this.held) this.held = useq;
    this.advance();
  }

  advance() {
    for (const n of this.above) if (n <= this.held) this.above.delete(n);
    while (this.above.delete(this.held + 1)) this.held += 1;
  }

  // Numbers seen above a missing one: something did not arrive (yet).
  hasGap() {
    return this.held !== null && this.above.size > 0;
  }

  reset() {
    this.held = null;
    this.epoch = null;
    this.above.clear();
  }
}

// Whether `m` sorts before `n`: stored messages by seq; messages not yet stored (no seq) after
// every stored one, in the order they were written.
function before(m, n) {
  const ms = Number.isSafeInteger(m.seq);
  const ns = Number.isSafeInteger(n.seq);
  if (ms && ns) return m.seq < n.seq;
  if (ms !== ns) return ms;
  return m.localId < n.localId;
}

// Puts `m` into `list` (kept sorted). Returns 'dup' when the list already has it (same id, or
// same seq), 'end' when it went last, 'middle' otherwise.
export function insertMessage(list, m) {
  if (list.some((x) => x !== m && sameMessage(x, m))) return 'dup';
  let i = list.length;
  while (i > 0 && before(m, list[i - 1])) i -= 1;
  list.splice(i, 0, m);
  return i === list.length - 1 ? 'end' : 'middle';
}

export function sameMessage(a, b) {
  if (a.id && b.id && a.id === b.id) return true;
  return Number.isSafeInteger(a.seq) && a.seq === b.seq;
}

// Moves `m`, already in `list`, to where its (new) seq belongs. Returns true if it moved.
export function resort(list, m) {
  const at = list.indexOf(m);
  if (at < 0) return false;
  list.splice(at, 1);
  insertMessage(list, m);
  return list.indexOf(m) !== at;
}

export function lowestSeq(list) {
  for (const m of list) if (Number.isSafeInteger(m.seq)) return m.seq;
  return null;
}

export function highestSeq(list) {
  for (let i = list.length - 1; i >= 0; i--) {
    if (Number.isSafeInteger(list[i].seq)) return list[i].seq;
  }
  return null;
}

// An idempotency key: 128 random bits in hex. crypto.getRandomValues works on plain http too
// (randomUUID needs a secure context).
export function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
