// The chat page: sign-in, contacts with presence and unread counts, one conversation pane per
// contact with its stored history and sent / delivered / read ticks.
// Everything a user or another client wrote is put on the page with textContent, never as HTML.

import { ChatClient, ChatError, backoffDelay } from './client.js';
import { el, avatarFor } from './dom.js';
import { errorText, fillMessage, messageNodes } from './messages.js';
import {
  StreamTracker,
  highestSeq,
  insertMessage,
  lowestSeq,
  newKey,
  resort,
  sameMessage,
} from './stream.js';

const SESSION_KEY = 'chat.signin';
// + user name, in sessionStorage: the open conversation and the unconfirmed messages of this tab.
const TAB_KEY = 'chat.tab.';
// + user name, in localStorage: {useq, epoch}, where the next `sync` starts.
const STREAM_KEY = 'chat.stream.';
const HISTORY_PAGE = 50;
const CONVERSATIONS_PAGE = 200;
const MAX_CONVERSATION_PAGES = 10;
const SYNC_PAGE = 500;
const MAX_SYNC_PAGES = 40;
const GAP_WAIT_MS = 1000;
// A send refused as temporary (unavailable, timeout...) is tried again after these, with the
// same idempotency key, before the page shows it as failed.
const SEND_RETRY_DELAYS_MS = [1000, 2000];
// Servers keep idempotency keys for 24 hours; older unconfirmed messages are not resent alone.
const KEY_TRUST_MS = 23 * 3600 * 1000;
const LOAD_OLDER_WITHIN_PX = 60;
const HISTORY_RETRIES = 5;
// New users only show up in `users`, so it is asked again this often.
const CONTACTS_REFRESH_MS = 10000;
const MAX_WATCH = 1000;
const USERS_PAGE_LIMIT = 1000;
const MAX_USERS_PAGES = 50;

const $ = (id) => document.getElementById(id);

const ui = {
  conn: $('conn'),
  connText: $('conn-text'),
  connRetry: $('conn-retry'),
  me: $('me'),
  meName: $('me-name'),
  meAvatar: $('me-avatar'),
  signOut: $('sign-out'),
  signinView: $('signin-view'),
  signinForm: $('signin-form'),
  signinHint: $('signin-hint'),
  nameField: $('name-field'),
  nameInput: $('signin-name'),
  tokenField: $('token-field'),
  tokenInput: $('signin-token'),
  signinError: $('signin-error'),
  chatView: $('chat-view'),
  filter: $('filter'),
  contacts: $('contacts'),
  contactsEmpty: $('contacts-empty'),
  onlineCount: $('online-count'),
  noPeer: $('no-peer'),
  peerPane: $('peer-pane'),
  back: $('back'),
  peerAvatar: $('peer-avatar'),
  peerName: $('peer-name'),
  peerStatus: $('peer-status'),
  messages: $('messages'),
  composer: $('composer'),
  input: $('composer-input'),
  composerLabel: $('composer-label'),
  announcer: $('announcer'),
};

const state = {
  auth: 'name', // 'name' | 'jwt', from /config.json
  client: null,
  me: null, // the user name the server confirmed in `hello`
  contacts: new Map(), // name -> Contact
  active: null, // name of the open conversation
  nextLocalId: 1,
  refreshTimer: null,
  countdownTimer: null,
  watched: '', // the watch set last sent, joined, to skip identical re-sends
  refreshing: null, // the in-flight contact refresh, if any
  failedOpens: 0,
  lastPresence: null, // the last presence event, for the browser test
  tabFor: null, // the user whose tab state (open conversation, unsent messages) was restored
  saveTimer: null,
  v2: false, // the server stores messages (hello says protocol 2)
  helloEpoch: null,
  stream: new StreamTracker(),
  streamFor: null, // the user whose stream position was loaded from localStorage
  streamSaveTimer: null,
  byConversation: new Map(), // conversation id -> contact name
  syncing: null,
  syncAgain: false,
  gapTimer: null,
  conversationsTimer: null,
  catchUpTimer: null,
};

// What the message rendering needs from the page.
const messageView = {
  get me() {
    return state.me;
  },
  onRetry: (m) => retrySend(m),
  tickOf: (m) => tickOf(m),
};

// Where a conversation's marks start (and start again after a reset).
function conversationMarks() {
  return {
    conversation: null,
    readSeq: 0, // how far this user has read, as the server knows it
    readLocal: 0, // how far this page has shown it (ahead while a `read` is on its way)
    readAsked: 0, // the highest `read` sent
    readInFlight: false,
    readAgain: false,
    peerReadSeq: 0,
    deliveredSeq: 0, // how far this user's messages have reached the peer
    unreadBase: 0, // `conversations`' unread count, as of its last message...
    baseSeq: 0, // ...which had this seq
    last: null, // that last message, for the preview before the history is loaded
    historyLoaded: false,
    historyFailures: 0,
    loadingHistory: null,
    loadingOlder: false,
    more: true,
  };
}

// ---------------------------------------------------------------------------------------------
// Contacts.

function contact(name) {
  let c = state.contacts.get(name);
  if (!c) {
    c = { name, online: false, messages: [], draft: '', ...conversationMarks() };
    state.contacts.set(name, c);
  }
  return c;
}

function sortedContacts() {
  return [...state.contacts.values()].sort((a, b) => {
    if (a.online !== b.online) return a.online ? -1 : 1;
    return a.name.localeCompare(b.name);
  });
}

function renderContacts() {
  const query = ui.filter.value.trim().toLowerCase();
  const all = sortedContacts();
  const shown = all.filter((c) => c.name.toLowerCase().includes(query));
  const online = all.filter((c) => c.online).length;
  ui.onlineCount.textContent = all.length ? `${online} online` : '';

  const focusedName = document.activeElement?.closest?.('.contact')?.dataset.name;
  ui.contacts.replaceChildren(...shown.map(contactRow));
  setTabStop(
    ui.contacts.querySelector('button[aria-current="true"]') || ui.contacts.querySelector('button'),
  );
  if (focusedName)
    ui.contacts.querySelector(`[data-name="${CSS.escape(focusedName)}"] button`)?.focus();

  if (all.length === 0) {
    ui.contactsEmpty.textContent = state.client?.isOpen()
      ? 'Nobody else has signed in yet. Open this page in another tab and sign in with a different name.'
      : 'Contacts appear once you are connected.';
  } else if (shown.length === 0) {
    ui.contactsEmpty.textContent = `No contact matches “${ui.filter.value.trim()}”.`;
  }
  ui.contactsEmpty.hidden = shown.length > 0;
  updateTitle();
}

function contactRow(c) {
  let last = c.messages[c.messages.length - 1];
  if (c.last && (!last || (last.seq !== undefined && last.seq < c.last.seq))) last = c.last;
  const unread = unreadOf(c);
  let preview = '';
  if (last)
    preview =
      last.from !== state.me
        ? last.text
        : `${last.state === 'failed' ? 'Not sent' : 'You'}: ${last.text}`;
  const statusWord = c.online ? 'online' : 'offline';
  const unreadWords = unread ? `, ${unread} unread` : '';

  const avatar = avatarFor(c.name, 'avatar');
  avatar.append(el('span', { className: 'dot', 'aria-hidden': 'true' }));
  const button = el(
    'button',
    {
      type: 'button',
      className: 'contact-button',
      'aria-label': `${c.name}, ${statusWord}${unreadWords}`,
      'aria-current': c.name === state.active ? 'true' : 'false',
    },
    avatar,
    el(
      'span',
      { className: 'contact-text' },
      el('span', { className: 'contact-name', text: c.name }),
      el('span', {
        className: 'contact-preview',
        text: preview || (c.online ? 'Online' : 'Offline'),
      }),
    ),
  );
  if (unread) {
    button.append(
      el('span', {
        className: 'badge',
        'aria-hidden': 'true',
        text: unread > 99 ? '99+' : String(unread),
      }),
    );
  }
  button.addEventListener('click', () => openConversation(c.name));
  return el('li', { className: 'contact', dataset: { name: c.name, status: statusWord } }, button);
}

// The list is one tab stop (a roving tabindex): Tab enters and leaves it, arrows move in it.
function setTabStop(button) {
  for (const b of ui.contacts.querySelectorAll('button')) b.tabIndex = b === button ? 0 : -1;
}
ui.contacts.addEventListener('focusin', (event) => {
  const button = event.target.closest('button');
  if (button) setTabStop(button);
});

// Arrow keys move between contacts; Tab leaves the list.
ui.contacts.addEventListener('keydown', (event) => {
  if (!['ArrowDown', 'ArrowUp', 'Home', 'End'].includes(event.key)) return;
  const buttons = [...ui.contacts.querySelectorAll('button')];
  const index = buttons.indexOf(document.activeElement);
  if (index < 0) return;
  event.preventDefault();
  const next = { ArrowDown: index + 1, ArrowUp: index - 1, Home: 0, End: buttons.length - 1 }[
    event.key
  ];
  buttons[Math.max(0, Math.min(buttons.length - 1, next))].focus();
});

ui.filter.addEventListener('input', renderContacts);
ui.filter.addEventListener('keydown', (event) => {
  if (event.key === 'ArrowDown') {
    event.preventDefault();
    ui.contacts.querySelector('button')?.focus();
  } else if (event.key === 'Enter') {
    const first = ui.contacts.querySelector('.contact');
    if (first) openConversation(first.dataset.name);
  } else if (event.key === 'Escape') {
    ui.filter.value = '';
    renderContacts();
  }
});

// Fetches every page of `users`, merges it in and (re)sends the watch set. Used after every
// hello (restoring the watch set on reconnect), periodically (new users only appear in
// `users`), and when presence names someone we have not seen.
function refreshContacts() {
  if (state.refreshing) return state.refreshing;
  state.refreshing = (async () => {
    const client = state.client;
    let after;
    for (let page = 0; page < MAX_USERS_PAGES; page++) {
      const request = { action: 'users', limit: USERS_PAGE_LIMIT };
      if (after !== undefined) request.after = after;
      const reply = await client.request(request);
      for (const entry of reply.contacts || []) {
        if (typeof entry?.name !== 'string' || entry.name === state.me) continue;
        contact(entry.name).online = entry.status === true;
      }
      if (typeof reply.next !== 'string' || reply.next === after) break;
      after = reply.next;
    }
    await syncWatch();
    renderContacts();
    renderPeerHead();
  })()
    .catch(() => {
      // Dropped connections are retried by the reconnect; timeouts by the next refresh.
    })
    .finally(() => {
      state.refreshing = null;
    });
  return state.refreshing;
}

async function syncWatch() {
  const names = sortedContacts()
    .map((c) => c.name)
    .slice(0, MAX_WATCH);
  const key = names.join('\n');
  if (key === state.watched) return;
  await state.client.request({ action: 'watch', users: names });
  state.watched = key;
}

function onPresence(frame) {
  if (typeof frame.name !== 'string' || frame.name === state.me) return;
  state.lastPresence = { name: frame.name, status: frame.status === true };
  const known = state.contacts.has(frame.name);
  const c = contact(frame.name);
  c.online = frame.status === true;
  renderContacts();
  if (c.name === state.active) renderPeerHead();
  if (!known) refreshContacts();
}

// ---------------------------------------------------------------------------------------------
// Conversations: what the server stores, kept per contact in seq order.

function learnConversation(c, id) {
  if (typeof id !== 'string' || id === '') return;
  c.conversation = id;
  state.byConversation.set(id, c.name);
}

function isMessageObject(o) {
  return (
    o !== null &&
    typeof o === 'object' &&
    typeof o.sent_by === 'string' &&
    typeof o.send_to === 'string' &&
    typeof o.message === 'string'
  );
}

function peerOf(o) {
  return o.sent_by === state.me ? o.send_to : o.sent_by;
}

function seqOf(value) {
  return Number.isSafeInteger(value) && value >= 0 ? value : null;
}

// A message object from the server (live frame, `synced`, `history`, `conversations`).
function fromServer(o) {
  const mine = o.sent_by === state.me;
  return {
    localId: state.nextLocalId++,
    id: typeof o.id === 'string' ? o.id : null,
    conversation: o.conversation,
    seq: seqOf(o.seq) ?? undefined,
    useq: seqOf(o.useq) ?? undefined,
    from: o.sent_by,
    to: o.send_to,
    text: o.message,
    ts: Number.isFinite(o.ts) ? o.ts : Date.now(),
    state: mine ? 'sent' : 'received',
  };
}

// Adds a stored message to its conversation unless it is already there. Conversations with
// yourself are not shown (you are not in your own contact list). Returns {c, m, where} or null.
function addStored(o) {
  if (!isMessageObject(o)) return null;
  const peer = peerOf(o);
  if (peer === state.me) return null;
  const c = contact(peer);
  learnConversation(c, o.conversation);
  const m = fromServer(o);
  if (renumbered(c, m)) return null;
  const where = insertMessage(c.messages, m);
  if (where === 'dup') return null;
  return { c, m, where };
}

// A stored message whose seq the page already holds under another id: the server's store was
// replaced (a restore, a new database) while this connection stayed up, and nothing else tells
// a connected page so. Its next `sync`, with the old epoch, answers reset and the page rebuilds.
function renumbered(c, m) {
  if (m.seq === undefined || !m.id) return false;
  if (!c.messages.some((x) => x !== m && x.seq === m.seq && x.id && x.id !== m.id)) return false;
  syncSoon();
  return true;
}

// Puts a message that was just added to `c` on the page, if `c` is the open conversation.
function showAdded(c, m, where) {
  if (c.name !== state.active) return;
  if (where !== 'end') {
    renderMessages(true);
    return;
  }
  const at = c.messages.indexOf(m);
  const stick = isNearBottom();
  ui.messages.querySelector('.empty-conversation')?.remove();
  ui.messages.append(...messageNodes(m, c.messages[at - 1] || null, messageView));
  if (stick || m.from === state.me) ui.messages.scrollTop = ui.messages.scrollHeight;
}

// Unread: what `conversations` counted up to its last message, plus the peer's messages that
// came after it, minus what this page has since read.
function unreadOf(c) {
  const read = Math.max(c.readSeq, c.readLocal);
  let n = read < c.baseSeq ? c.unreadBase : 0;
  const after = Math.max(read, c.baseSeq);
  for (const m of c.messages) {
    if (m.from === state.me) continue;
    if (m.seq === undefined ? !m.seen : m.seq > after) n += 1;
  }
  return n;
}

function shownAndVisible(c) {
  return (
    c.name === state.active &&
    document.visibilityState === 'visible' &&
    document.body.classList.contains('show-conversation') &&
    !ui.chatView.hidden
  );
}

// The user is looking at `c`: tell the server how far they have read (it tells the peer).
function markRead(c) {
  for (const m of c.messages) m.seen = true;
  const last = Math.max(highestSeq(c.messages) ?? 0, c.baseSeq);
  if (last > c.readLocal) c.readLocal = last;
  renderContacts();
  sendRead(c);
}

// One `read` per conversation on the wire at a time, for the latest seq shown: a burst of
// incoming messages makes one or two requests, not one each (the edge closes connections that
// keep hitting its rate limit).
function sendRead(c) {
  const last = c.readLocal;
  if (!state.v2 || !state.client?.isOpen() || last <= c.readAsked || last <= c.readSeq) return;
  if (c.readInFlight) {
    c.readAgain = true;
    return;
  }
  c.readAsked = last;
  c.readInFlight = true;
  state.client
    .request({ action: 'read', with: c.name, seq: last })
    .then((reply) => {
      const seq = seqOf(reply.seq);
      if (seq !== null && seq > c.readSeq) c.readSeq = seq;
    })
    .catch(() => {
      // Asked again the next time the conversation is looked at.
      c.readAsked = c.readSeq;
    })
    .finally(() => {
      c.readInFlight = false;
      if (c.readAgain) {
        c.readAgain = false;
        sendRead(c);
      }
    });
}

// Sent / delivered / read for one of the user's own stored messages.
function tickOf(m) {
  const c = state.contacts.get(m.to);
  if (!c || m.seq === undefined) return m.delivered > 0 ? 'delivered' : 'sent';
  if (m.seq <= c.peerReadSeq) return 'read';
  if (m.seq <= c.deliveredSeq || m.delivered > 0) return 'delivered';
  return 'sent';
}

function refreshTicks(c) {
  if (c.name !== state.active) return;
  for (const m of c.messages) {
    if (m.from !== state.me || m.state !== 'sent' || !m.node?.isConnected) continue;
    if (m.node.dataset.tick !== tickOf(m)) fillMessage(m, messageView);
  }
}

function onReceipt(frame) {
  const name = state.byConversation.get(frame.conversation);
  if (name === undefined) {
    // A conversation this page has not seen yet (started in another tab): ask for the list.
    refreshConversationsSoon();
    return;
  }
  const c = contact(name);
  const read = seqOf(frame.read_seq);
  const delivered = seqOf(frame.delivered_seq);
  if (frame.user === state.me) {
    // Read in another tab or device.
    if (read !== null && read > c.readSeq) {
      c.readSeq = read;
      c.readAsked = Math.max(c.readAsked, read);
    }
  } else if (frame.user === c.name) {
    if (read !== null && read > c.peerReadSeq) c.peerReadSeq = read;
    if (delivered !== null && delivered > c.deliveredSeq) c.deliveredSeq = delivered;
    refreshTicks(c);
  }
  renderContacts();
}

function applyConversation(item) {
  if (typeof item?.with !== 'string' || item.with === state.me) return null;
  const c = contact(item.with);
  learnConversation(c, item.conversation);
  c.readSeq = Math.max(c.readSeq, seqOf(item.read_seq) ?? 0);
  c.readAsked = Math.max(c.readAsked, c.readSeq);
  c.peerReadSeq = Math.max(c.peerReadSeq, seqOf(item.peer_read_seq) ?? 0);
  c.deliveredSeq = Math.max(c.deliveredSeq, seqOf(item.delivered_seq) ?? 0);
  if (isMessageObject(item.last)) {
    c.last = fromServer(item.last);
    c.baseSeq = c.last.seq ?? 0;
  }
  c.unreadBase = seqOf(item.unread) ?? 0;
  refreshTicks(c);
  return c;
}

// Every page of `conversations`; returns the highest useq among their last messages (the
// newest message of the user's stream when the list was read).
async function loadConversations(client) {
  let after;
  let newest = 0;
  for (let page = 0; page < MAX_CONVERSATION_PAGES; page++) {
    const request = { action: 'conversations', limit: CONVERSATIONS_PAGE };
    if (after !== undefined) request.after = after;
    const reply = await client.request(request);
    if (client !== state.client) throw new ChatError('disconnected', 'signed out');
    for (const item of Array.isArray(reply.items) ? reply.items : []) {
      applyConversation(item);
      newest = Math.max(newest, seqOf(item?.last?.useq) ?? 0);
    }
    if (typeof reply.next !== 'string' || reply.next === after) break;
    after = reply.next;
  }
  renderContacts();
  return newest;
}

function refreshConversationsSoon() {
  if (!state.v2 || state.conversationsTimer) return;
  state.conversationsTimer = setTimeout(() => {
    state.conversationsTimer = null;
    if (state.client?.isOpen()) loadConversations(state.client).catch(() => {});
  }, 500);
}

// ---------------------------------------------------------------------------------------------
// The user's stream: catching up after every hello, and when a useq is missing.

function loadStream() {
  if (state.streamFor === state.me) return;
  state.streamFor = state.me;
  let saved = null;
  try {
    saved = JSON.parse(localStorage.getItem(STREAM_KEY + state.me));
  } catch {
    saved = null;
  }
  const useq = seqOf(saved?.useq);
  const epoch = typeof saved?.epoch === 'string' ? saved.epoch : null;
  state.stream =
    useq !== null && epoch !== null ? new StreamTracker(useq, epoch) : new StreamTracker();
}

function saveStreamSoon() {
  if (state.streamSaveTimer || state.streamFor !== state.me) return;
  state.streamSaveTimer = setTimeout(() => {
    state.streamSaveTimer = null;
    saveStream();
  }, 300);
}

function saveStream() {
  const stream = state.stream;
  if (!state.me || state.streamFor !== state.me || stream.held === null || !stream.epoch) return;
  try {
    localStorage.setItem(
      STREAM_KEY + state.me,
      JSON.stringify({ useq: stream.held, epoch: stream.epoch }),
    );
  } catch {
    // Storage disabled: the next visit starts from the conversations list instead.
  }
}

// A useq from a live frame or a `sent` reply; a gap waits a second for the missing frame
// (frames may arrive out of order during a failover), then syncs.
function seeUseq(useq) {
  if (!state.v2) return;
  if (state.stream.see(useq)) saveStreamSoon();
  if (!state.stream.hasGap() || state.gapTimer) return;
  state.gapTimer = setTimeout(() => {
    state.gapTimer = null;
    if (state.stream.hasGap()) syncSoon();
  }, GAP_WAIT_MS);
}

// After a hello. The first `sync` goes out before `conversations`: it makes this a version 2
// connection, so no receipt that moves a mark after the list was read is missed. With a stream
// position held, it catches up from there; without one (a new device, a reset), the page does
// not replay the user's whole stream: it starts from the list's newest message, and each
// conversation's history is fetched with `history` when it is opened.
async function catchUp(client, attempt = 0) {
  clearTimeout(state.catchUpTimer);
  try {
    if (state.stream.held !== null) {
      const synced = syncSoon();
      await loadConversations(client);
      if (!(await synced)) throw new ChatError('unavailable', 'sync failed', true);
    } else {
      const probe = client.request({ action: 'sync', since: 0, limit: 1 });
      probe.catch(() => {}); // awaited below, unless the list fails first
      const newest = await loadConversations(client);
      const reply = await probe;
      if (client !== state.client) return;
      if (state.stream.held === null) {
        state.stream.holdThrough(newest);
        state.stream.epoch =
          state.helloEpoch ?? (typeof reply.epoch === 'string' ? reply.epoch : null);
        saveStream();
      }
      if (!(await syncSoon())) throw new ChatError('unavailable', 'sync failed', true);
    }
    const active = state.active && state.contacts.get(state.active);
    // Its history may have failed to load while the connection was down.
    if (active && !active.historyLoaded) loadNewest(active);
    else if (active && shownAndVisible(active)) markRead(active);
  } catch {
    // The store may be down while the edge is up (hello then has no epoch): try again while
    // this connection lasts. A dropped connection catches up after its next hello.
    if (client !== state.client || !client.isOpen()) return;
    state.catchUpTimer = setTimeout(() => catchUp(client, attempt + 1), backoffDelay(attempt + 1));
  }
}

// One sync at a time; a request for another while one runs makes it go round once more.
// Resolves to whether it caught up.
function syncSoon() {
  if (state.syncing) {
    state.syncAgain = true;
    return state.syncing;
  }
  const client = state.client;
  state.syncing = (async () => {
    let resets = 0;
    do {
      state.syncAgain = false;
      if (await syncPages(client)) {
        // reset: the store was replaced; what the page held is gone and was rebuilt.
        resets += 1;
        if (resets > 2) return false;
        state.syncAgain = true;
      }
    } while (state.syncAgain && client === state.client && client.isOpen());
    return true;
  })()
    .catch(() => false) // retried by catchUp, or after the next hello or gap
    .finally(() => {
      state.syncing = null;
    });
  return state.syncing;
}

// Pages `sync` from the held useq. Returns true when the server said reset.
async function syncPages(client) {
  const stream = state.stream;
  for (let page = 0; page < MAX_SYNC_PAGES; page++) {
    if (stream.held === null) return false;
    const request = { action: 'sync', since: stream.held, limit: SYNC_PAGE };
    if (stream.epoch) request.epoch = stream.epoch;
    const reply = await client.request(request);
    if (client !== state.client || stream !== state.stream) return false;
    if (reply.reset === true) {
      await rebuild(client, reply.epoch);
      return true;
    }
    if (typeof reply.epoch === 'string') stream.epoch = reply.epoch;
    const touched = new Map();
    for (const o of Array.isArray(reply.messages) ? reply.messages : []) {
      const added = addStored(o);
      if (!added) continue;
      const list = touched.get(added.c) || [];
      list.push(added);
      touched.set(added.c, list);
    }
    stream.holdThrough(seqOf(reply.useq) ?? stream.held);
    saveStream();
    for (const [c, added] of touched) {
      if (added.length === 1) showAdded(c, added[0].m, added[0].where);
      else if (c.name === state.active) renderMessages(true);
      if (shownAndVisible(c)) markRead(c);
      else if (added.some((a) => a.m.from !== state.me))
        announce(`New messages from ${c.name}`);
    }
    if (touched.size) renderContacts();
    if (reply.more !== true) return false;
  }
  // Too far behind to page through it all: start again from the conversations list.
  await rebuild(client, stream.epoch);
  return false;
}

// Drops every stored message the page holds and starts over from `conversations` (a reset, or
// a stream too long to sync). Messages not yet stored stay.
async function rebuild(client, epoch) {
  for (const c of state.contacts.values()) {
    c.messages = c.messages.filter((m) => m.seq === undefined && m.from === state.me);
    Object.assign(c, conversationMarks());
  }
  state.byConversation.clear();
  state.stream.reset();
  const newest = await loadConversations(client);
  state.stream.holdThrough(newest);
  state.stream.epoch = typeof epoch === 'string' ? epoch : state.helloEpoch;
  saveStream();
  if (state.active) {
    renderMessages();
    loadNewest(contact(state.active));
  }
}

// ---------------------------------------------------------------------------------------------
// History of the open conversation: the newest page when it opens, older pages on scrolling up.

function canLoadOlder(c) {
  const low = lowestSeq(c.messages);
  return state.v2 && c.historyLoaded && c.more && low !== null && low > 1;
}

function loadNewest(c) {
  if (!state.v2 || !state.client?.isOpen()) return Promise.resolve();
  if (c.loadingHistory) return c.loadingHistory;
  const client = state.client;
  c.loadingHistory = (async () => {
    const reply = await client.request({ action: 'history', with: c.name, limit: HISTORY_PAGE });
    if (state.contacts.get(c.name) !== c) return;
    learnConversation(c, reply.conversation);
    const page = (Array.isArray(reply.messages) ? reply.messages : []).filter(isMessageObject);
    const pageLow = page.length ? seqOf(page[0].seq) : null;
    const heldHigh = highestSeq(c.messages);
    // What the page held does not join this page (it was away long): keep only this page.
    if (pageLow !== null && heldHigh !== null && pageLow > heldHigh + 1)
      c.messages = c.messages.filter((m) => m.seq === undefined);
    const heldLow = lowestSeq(c.messages);
    for (const o of page) {
      const m = fromServer(o);
      m.seen = true;
      insertMessage(c.messages, m);
    }
    // `more` describes what lies before this page; older pages already held keep theirs.
    if (heldLow === null || pageLow === null || heldLow >= pageLow) c.more = reply.more === true;
    c.historyLoaded = true;
    c.historyFailures = 0;
  })()
    .catch(() => {
      // Tried again while the conversation stays open (and when it is opened again).
      c.historyFailures += 1;
      if (c.historyFailures <= HISTORY_RETRIES) {
        setTimeout(() => {
          if (c.name === state.active && !c.historyLoaded && state.client === client)
            loadNewest(c);
        }, backoffDelay(c.historyFailures));
      }
    })
    .finally(() => {
      c.loadingHistory = null;
      if (c.name === state.active) {
        renderMessages(true);
        if (shownAndVisible(c)) markRead(c);
        fillViewport(c);
      }
      renderContacts();
    });
  if (c.name === state.active) renderMessages(true);
  return c.loadingHistory;
}

async function loadOlder(c) {
  if (c.loadingOlder || !canLoadOlder(c) || !state.client?.isOpen()) return;
  c.loadingOlder = true;
  renderHistoryEdge(c);
  try {
    const reply = await state.client.request({
      action: 'history',
      with: c.name,
      before: lowestSeq(c.messages),
      limit: HISTORY_PAGE,
    });
    if (state.contacts.get(c.name) !== c) return;
    for (const o of Array.isArray(reply.messages) ? reply.messages : []) {
      if (!isMessageObject(o)) continue;
      const m = fromServer(o);
      m.seen = true;
      insertMessage(c.messages, m);
    }
    c.more = reply.more === true;
  } catch {
    // Scrolling up again retries.
  } finally {
    c.loadingOlder = false;
  }
  if (c.name === state.active) {
    renderMessages(true);
    fillViewport(c);
  }
}

// A first page too short to scroll cannot be scrolled up: fetch older ones until it can.
function fillViewport(c) {
  if (c.name !== state.active || !canLoadOlder(c)) return;
  if (ui.messages.scrollHeight <= ui.messages.clientHeight + LOAD_OLDER_WITHIN_PX) loadOlder(c);
}

ui.messages.addEventListener('scroll', () => {
  if (!state.active || ui.messages.scrollTop > LOAD_OLDER_WITHIN_PX) return;
  loadOlder(contact(state.active));
});

// The row above the first message: loading, or where the conversation starts.
function historyEdge(c) {
  if (!state.v2 || c.messages.length === 0) return null;
  let text = null;
  if (c.loadingOlder) text = 'Loading earlier messages…';
  else if (c.historyLoaded && !canLoadOlder(c))
    text = `This is where your conversation with ${c.name} starts.`;
  if (!text) return null;
  return el('li', { className: 'history-edge', role: 'status', text });
}

function renderHistoryEdge(c) {
  if (c.name !== state.active) return;
  ui.messages.querySelector('.history-edge')?.remove();
  const edge = historyEdge(c);
  if (edge) ui.messages.prepend(edge);
}

// ---------------------------------------------------------------------------------------------
// The open conversation.

function openConversation(name) {
  const c = contact(name);
  if (state.active && state.active !== name) contact(state.active).draft = ui.input.value;
  state.active = name;
  document.body.classList.add('show-conversation');
  ui.noPeer.hidden = true;
  ui.peerPane.hidden = false;
  ui.input.value = c.draft;
  autoGrow();
  renderPeerHead();
  renderMessages();
  markRead(c);
  saveTabSoon();
  ui.input.focus();
  if (state.v2 && !c.historyLoaded) {
    c.historyFailures = 0;
    loadNewest(c);
  } else fillViewport(c);
}

function closeConversation() {
  if (state.active) contact(state.active).draft = ui.input.value;
  document.body.classList.remove('show-conversation');
  const name = state.active;
  ui.contacts.querySelector(`[data-name="${CSS.escape(name || '')}"] button`)?.focus();
}

ui.back.addEventListener('click', closeConversation);
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && document.body.classList.contains('show-conversation'))
    closeConversation();
});

function renderPeerHead() {
  if (!state.active) return;
  const c = contact(state.active);
  ui.peerName.textContent = c.name;
  ui.peerAvatar.replaceWith((ui.peerAvatar = avatarFor(c.name, 'avatar')));
  ui.peerAvatar.id = 'peer-avatar';
  ui.peerAvatar.setAttribute('aria-hidden', 'true');
  ui.peerAvatar.append(el('span', { className: 'dot' }));
  ui.peerAvatar.dataset.status = c.online ? 'online' : 'offline';
  ui.peerStatus.textContent = c.online ? 'Online' : 'Offline';
  ui.peerStatus.dataset.status = c.online ? 'online' : 'offline';
  ui.composerLabel.textContent = `Message to ${c.name}`;
  ui.input.placeholder = `Message ${c.name}`;
}

// Draws the open conversation. `keep`: keep the view where it was (older messages added above
// stay out of sight), unless it was at the bottom, where it stays.
function renderMessages(keep = false) {
  const c = contact(state.active);
  const fromBottom = ui.messages.scrollHeight - ui.messages.scrollTop;
  const stick = !keep || isNearBottom();
  ui.messages.setAttribute('aria-busy', 'true');
  const nodes = [];
  const edge = historyEdge(c);
  if (edge) nodes.push(edge);
  let previous = null;
  for (const m of c.messages) {
    nodes.push(...messageNodes(m, previous, messageView));
    previous = m;
  }
  if (c.messages.length === 0) {
    const loading = state.v2 && !c.historyLoaded && state.client?.isOpen();
    let text = `No messages with ${c.name} yet. Say hello!`;
    if (loading)
      text = c.historyFailures
        ? 'The messages could not be loaded yet. Trying again…'
        : 'Loading messages…';
    nodes.push(
      el('li', { className: loading ? 'empty-conversation loading' : 'empty-conversation', text }),
    );
  }
  ui.messages.replaceChildren(...nodes);
  ui.messages.removeAttribute('aria-busy');
  ui.messages.scrollTop = stick ? ui.messages.scrollHeight : ui.messages.scrollHeight - fromBottom;
}

function updateMessage(m) {
  saveTabSoon();
  if (!m.node || !m.node.isConnected) return;
  const stick = isNearBottom();
  fillMessage(m, messageView);
  if (stick) ui.messages.scrollTop = ui.messages.scrollHeight;
}

function isNearBottom() {
  return ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 80;
}

function onIncoming(frame) {
  if (!isMessageObject(frame)) return;
  seeUseq(frame.useq);
  const peer = peerOf(frame);
  if (peer === state.me) return; // a message to yourself: not shown
  const known = state.contacts.has(peer);
  const added = addStored(frame);
  if (!added) return;
  const { c, m, where } = added;
  showAdded(c, m, where);
  if (m.from !== state.me) {
    if (shownAndVisible(c)) markRead(c);
    else announce(`New message from ${c.name}: ${m.text}`);
  }
  renderContacts();
  if (!known) refreshContacts();
}

// ---------------------------------------------------------------------------------------------
// What this tab keeps across a reload: the open conversation, and the messages the server has
// not confirmed yet (with their idempotency keys, so that sending them again is safe).

function saveTabSoon() {
  if (!state.me || state.tabFor !== state.me) return;
  clearTimeout(state.saveTimer);
  state.saveTimer = setTimeout(saveTab, 250);
}

function saveTab() {
  const outbox = [];
  for (const c of state.contacts.values()) {
    for (const m of c.messages) {
      if (m.from !== state.me || m.state === 'sent') continue;
      outbox.push({ to: m.to, text: m.text, key: m.key, ts: m.ts, state: m.state, error: m.error });
    }
  }
  try {
    sessionStorage.setItem(TAB_KEY + state.me, JSON.stringify({ active: state.active, outbox }));
  } catch {
    // Storage full or disabled: the chat still works, a reload just forgets the unsent ones.
  }
}

function restoreTab() {
  if (state.tabFor === state.me) return;
  state.tabFor = state.me;
  let saved;
  try {
    saved = JSON.parse(sessionStorage.getItem(TAB_KEY + state.me));
  } catch {
    saved = null;
  }
  if (!saved || typeof saved !== 'object') return;
  for (const entry of Array.isArray(saved.outbox) ? saved.outbox : []) {
    if (typeof entry?.to !== 'string' || typeof entry.text !== 'string') continue;
    const m = {
      localId: state.nextLocalId++,
      id: null,
      from: state.me,
      to: entry.to,
      text: entry.text,
      key: typeof entry.key === 'string' ? entry.key : newKey(),
      ts: Number.isFinite(entry.ts) ? entry.ts : Date.now(),
      state: entry.state === 'failed' ? 'failed' : 'sending',
      error: typeof entry.error === 'string' ? entry.error : undefined,
      retries: 0,
    };
    // The server forgets keys after a day: a resend then could store it twice.
    if (m.state === 'sending' && Date.now() - m.ts > KEY_TRUST_MS) {
      m.state = 'failed';
      m.error = errorText('disconnected', m.to);
    }
    insertMessage(contact(m.to).messages, m);
  }
  renderContacts();
  if (typeof saved.active === 'string' && !state.active) openConversation(saved.active);
}

// ---------------------------------------------------------------------------------------------
// Sending.

ui.composer.addEventListener('submit', (event) => {
  event.preventDefault();
  sendFromComposer();
});

ui.input.addEventListener('keydown', (event) => {
  if (
    event.key === 'Enter' &&
    !event.shiftKey &&
    !event.isComposing &&
    !event.altKey &&
    !event.ctrlKey &&
    !event.metaKey
  ) {
    event.preventDefault();
    sendFromComposer();
  }
});
ui.input.addEventListener('input', autoGrow);

function autoGrow() {
  ui.input.style.height = 'auto';
  ui.input.style.height = `${Math.min(ui.input.scrollHeight, 160)}px`;
}

function sendFromComposer() {
  const text = ui.input.value;
  if (!state.active || text.trim() === '') return;
  ui.input.value = '';
  autoGrow();
  const c = contact(state.active);
  c.draft = '';
  const m = {
    localId: state.nextLocalId++,
    id: null,
    from: state.me,
    to: c.name,
    text,
    key: newKey(), // the same for every attempt: the server stores it once
    ts: Date.now(),
    state: 'sending',
    retries: 0,
  };
  showAdded(c, m, insertMessage(c.messages, m));
  saveTabSoon();
  renderContacts();
  if (state.client.isOpen()) deliver(m);
  // Otherwise it waits, as "Sending…", for the next hello.
}

// Whether `m` still belongs to this session (signing out or in as someone else drops it).
function isCurrent(m) {
  return state.contacts.get(m.to)?.messages.includes(m) === true;
}

async function deliver(m) {
  if (m.inFlight || !isCurrent(m)) return;
  clearTimeout(m.retryTimer);
  m.retryTimer = null;
  m.state = 'sending';
  m.inFlight = true;
  updateMessage(m);
  let failure = null;
  try {
    const reply = await state.client.request({
      action: 'send',
      send_to: m.to,
      message: m.text,
      sent_by: state.me,
      idempotency_key: m.key,
    });
    onSent(m, reply);
  } catch (error) {
    failure = error;
  } finally {
    m.inFlight = false;
  }
  if (!failure) return;
  if (failure.code === 'disconnected') {
    // Sent again, with the same key, after the next hello.
    updateMessage(m);
    return;
  }
  if (failure.temporary && m.retries < SEND_RETRY_DELAYS_MS.length) {
    const delay = SEND_RETRY_DELAYS_MS[m.retries];
    m.retries += 1;
    m.retryTimer = setTimeout(() => {
      m.retryTimer = null;
      if (state.client?.isOpen() && m.state === 'sending') deliver(m);
    }, delay);
    return;
  }
  m.retries = 0;
  m.state = 'failed';
  m.error = errorText(failure.code, m.to, failure.message);
  announce(`Message to ${m.to} not sent. ${m.error}`);
  updateMessage(m);
  renderContacts(); // the preview shows whether the last message went out
}

function onSent(m, reply) {
  const c = contact(m.to);
  m.state = 'sent';
  m.retries = 0;
  m.error = undefined;
  m.id = typeof reply.id === 'string' ? reply.id : null;
  if (Number.isFinite(reply.ts)) m.ts = reply.ts;
  m.delivered = reply.delivered;
  learnConversation(c, reply.conversation);
  m.conversation = reply.conversation;
  const seq = seqOf(reply.seq);
  if (seq !== null) m.seq = seq;
  seeUseq(reply.useq);
  if (renumbered(c, m)) {
    updateMessage(m);
    return;
  }
  // A sync may have brought the stored copy before this reply: keep one.
  const twin = c.messages.findIndex((x) => x !== m && sameMessage(x, m));
  if (twin >= 0) c.messages.splice(twin, 1);
  const moved = resort(c.messages, m);
  if ((moved || twin >= 0) && c.name === state.active) renderMessages(true);
  else updateMessage(m);
  saveTabSoon();
  renderContacts();
}

function retrySend(m) {
  m.retries = 0;
  if (!state.client.isOpen()) {
    m.state = 'sending';
    updateMessage(m);
    return; // flushed on the next hello
  }
  deliver(m);
}

function flushUnsent() {
  for (const c of state.contacts.values()) {
    for (const m of c.messages) {
      if (m.from === state.me && m.state === 'sending' && !m.inFlight && !m.retryTimer) deliver(m);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Connection state.

function showConnection() {
  const client = state.client;
  clearInterval(state.countdownTimer);
  ui.connRetry.hidden = true;
  if (!client) {
    ui.conn.dataset.state = 'idle';
    ui.connText.textContent = 'Not connected';
    return;
  }
  ui.conn.dataset.state = client.state;
  switch (client.state) {
    case 'connecting':
      ui.connText.textContent = client.everOpened ? 'Reconnecting…' : 'Connecting…';
      break;
    case 'open':
      ui.connText.textContent = 'Connected';
      break;
    case 'waiting': {
      ui.connRetry.hidden = false;
      const tick = () => {
        const seconds = Math.max(1, Math.ceil((client.retryAt - Date.now()) / 1000));
        ui.connText.textContent = `Offline — retrying in ${seconds}s`;
      };
      tick();
      state.countdownTimer = setInterval(tick, 1000);
      break;
    }
    case 'stopped':
      ui.conn.dataset.state = 'stopped';
      ui.connText.textContent = 'Disconnected';
      break;
    default:
      ui.connText.textContent = 'Not connected';
  }
}

ui.connRetry.addEventListener('click', () => state.client?.retryNow());
window.addEventListener('online', () => state.client?.retryNow());

function announce(text) {
  ui.announcer.textContent = '';
  // A fresh text node after clearing makes screen readers read it even if it repeats.
  requestAnimationFrame(() => {
    ui.announcer.textContent = text;
  });
}

function updateTitle() {
  let unread = 0;
  for (const c of state.contacts.values()) unread += unreadOf(c);
  document.title = unread ? `(${unread}) Chat` : 'Chat';
}

document.addEventListener('visibilitychange', () => {
  if (!state.active) return;
  const c = contact(state.active);
  if (shownAndVisible(c)) markRead(c);
});

// ---------------------------------------------------------------------------------------------
// Sign-in and the session.

function wsBase() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
}

// The edge's rule for names (docs/protocol.md §1), checked here so a mistake gets a clear message
// instead of a handshake the browser can only report as a failed connection.
function nameProblem(name) {
  if (name.length === 0) return 'Enter a name.';
  if (name !== name.trim()) return 'A name cannot start or end with a space.';
  if (new TextEncoder().encode(name).length > 64)
    return 'That name is too long (64 bytes at most).';
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'A name cannot contain control characters.';
  return null;
}

function startSession(signin) {
  stopSession();
  state.me = signin.name || null;
  const client =
    state.auth === 'jwt'
      ? new ChatClient(wsBase(), ['authorization', signin.token])
      : new ChatClient(`${wsBase()}?name=${encodeURIComponent(signin.name)}`);
  state.client = client;
  state.failedOpens = 0;

  client.addEventListener('state', showConnection);
  client.addEventListener('hello', (event) => {
    const hello = event.detail;
    if (typeof hello.user === 'string') state.me = hello.user;
    state.failedOpens = 0;
    ui.meName.textContent = state.me;
    ui.meAvatar.replaceWith((ui.meAvatar = avatarFor(state.me, 'avatar avatar-small')));
    ui.meAvatar.setAttribute('aria-hidden', 'true');
    ui.me.hidden = false;
    state.v2 = Number(hello.protocol) >= 2;
    state.helloEpoch = typeof hello.epoch === 'string' ? hello.epoch : null;
    if (state.v2) loadStream();
    showChat();
    restoreTab();
    state.watched = ''; // a new connection starts with an empty watch set
    refreshContacts();
    flushUnsent();
    if (state.v2) catchUp(client);
    else if (state.active) renderMessages(true);
    clearInterval(state.refreshTimer);
    state.refreshTimer = setInterval(refreshContacts, CONTACTS_REFRESH_MS);
  });
  client.addEventListener('disconnected', (event) => {
    clearInterval(state.refreshTimer);
    clearTimeout(state.gapTimer);
    clearTimeout(state.catchUpTimer);
    state.gapTimer = null;
    if (!event.detail.opened && !client.everOpened) {
      state.failedOpens += 1;
      // Never connected: either the server is down or it refused us at the handshake, which
      // browsers cannot tell apart. After a few tries say so on the sign-in screen.
      if (state.failedOpens >= 3) {
        const what = state.auth === 'jwt' ? 'token' : 'name';
        showSignin(
          `Could not connect. The server may be down, or it refused this ${what}. Still trying…`,
        );
      }
    }
    // Nobody is online as far as we know; presence comes back with the next `users`.
    for (const c of state.contacts.values()) c.online = false;
    renderContacts();
    renderPeerHead();
  });
  client.addEventListener('frame', (event) => {
    const frame = event.detail;
    if (frame.action === 'send') onIncoming(frame);
    else if (frame.action === 'receipt') onReceipt(frame);
    else if (frame.action === 'presence') onPresence(frame);
  });
  client.addEventListener('fatal', (event) => {
    clearInterval(state.refreshTimer);
    showConnection();
    const reason = event.detail.reason;
    if (state.auth === 'jwt' && event.detail.code === 1008 && /token expired/.test(reason)) {
      // Retrying with the same token cannot work: ask for a new one.
      stopSession();
      sessionStorage.removeItem(SESSION_KEY);
      ui.tokenInput.value = '';
      ui.me.hidden = true; // no longer signed in: the header must not say otherwise
      showConnection();
      showSignin('Your token expired. Paste a new token to continue.');
      return;
    }
    ui.connText.textContent = `Disconnected: ${reason}`;
    ui.connRetry.hidden = false;
  });
  showConnection();
  client.start();
}

// After a fatal close the retry button starts a fresh client with the same sign-in.
ui.connRetry.addEventListener('click', () => {
  if (state.client?.state === 'stopped') {
    const saved = loadSignin();
    if (saved) startSession(saved);
  }
});

function stopSession() {
  clearInterval(state.refreshTimer);
  clearTimeout(state.catchUpTimer);
  clearInterval(state.countdownTimer);
  state.client?.stop();
  state.client = null;
}

function showSignin(error = '') {
  ui.signinView.hidden = false;
  ui.chatView.hidden = true;
  ui.nameField.hidden = state.auth === 'jwt';
  ui.tokenField.hidden = state.auth !== 'jwt';
  ui.signinHint.textContent =
    state.auth === 'jwt'
      ? 'Paste the access token you were given.'
      : 'Pick a name. Anyone who signs in with the same name in another tab or device is you.';
  ui.signinError.textContent = error;
  (state.auth === 'jwt' ? ui.tokenInput : ui.nameInput).focus();
}

function showChat() {
  if (!ui.chatView.hidden) return;
  ui.signinView.hidden = true;
  ui.chatView.hidden = false;
  renderContacts();
  if (!state.active) ui.filter.focus();
}

function loadSignin() {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION_KEY));
  } catch {
    return null;
  }
}

ui.signinForm.addEventListener('submit', (event) => {
  event.preventDefault();
  let signin;
  if (state.auth === 'jwt') {
    const token = tokenFromPaste(ui.tokenInput.value);
    if (!token) {
      ui.signinError.textContent = 'Paste your access token.';
      return;
    }
    // The token travels as a WebSocket subprotocol, which only takes these characters; anything
    // else would make the browser refuse to connect at all, with no word on this screen.
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(token)) {
      ui.signinError.textContent =
        'That is not an access token: it contains characters a token cannot have.';
      ui.tokenInput.focus();
      return;
    }
    signin = { token };
  } else {
    const name = ui.nameInput.value;
    const problem = nameProblem(name);
    if (problem) {
      ui.signinError.textContent = problem;
      ui.nameInput.focus();
      return;
    }
    signin = { name };
  }
  ui.signinError.textContent = '';
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(signin));
  // The contacts are cleared, so the tab's unsent messages must be loaded again after the next
  // hello (signing in again after an expired token is the same user coming back).
  if (state.me && state.tabFor === state.me) {
    clearTimeout(state.saveTimer);
    saveTab();
  }
  forgetSession();
  startSession(signin);
});

// A token as people copy it: maybe after "Bearer ", maybe wrapped onto several lines. A JWT has
// no whitespace, so all of it goes.
function tokenFromPaste(text) {
  return text
    .trim()
    .replace(/^bearer\s+/i, '')
    .replace(/\s+/g, '');
}

// A token has no line breaks: Enter in its box signs in, as in the name field.
ui.tokenInput.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey) {
    event.preventDefault();
    ui.signinForm.requestSubmit();
  }
});

// What the page holds for the signed-in user; the server has the conversations.
function forgetSession() {
  clearTimeout(state.saveTimer);
  clearTimeout(state.streamSaveTimer);
  state.streamSaveTimer = null;
  saveStream();
  state.tabFor = null;
  state.streamFor = null;
  state.stream = new StreamTracker();
  state.byConversation.clear();
  state.contacts.clear();
  state.active = null;
}

ui.signOut.addEventListener('click', () => {
  sessionStorage.removeItem(SESSION_KEY);
  if (state.me) {
    sessionStorage.removeItem(TAB_KEY + state.me);
    localStorage.removeItem(STREAM_KEY + state.me);
  }
  stopSession();
  state.streamFor = null; // nothing is saved for a signed-out user
  forgetSession();
  state.me = null;
  ui.me.hidden = true;
  ui.peerPane.hidden = true;
  ui.noPeer.hidden = false;
  document.body.classList.remove('show-conversation');
  ui.nameInput.value = '';
  ui.tokenInput.value = '';
  showConnection();
  showSignin();
  updateTitle();
});

async function loadConfig() {
  try {
    const response = await fetch('/config.json', { cache: 'no-cache' });
    if (!response.ok) return;
    const config = await response.json();
    if (config?.auth === 'jwt') state.auth = 'jwt';
  } catch {
    // No config: development (name) mode.
  }
}

async function main() {
  await loadConfig();
  const saved = loadSignin();
  if (saved && (state.auth === 'jwt' ? saved.token : saved.name)) {
    // Sign straight back in after a reload.
    showChat();
    startSession(saved);
  } else {
    showSignin();
  }
}

// Exposed for tests and the curious: the backoff schedule is part of the behaviour.
window.chatDebug = { backoffDelay, state };

main();
