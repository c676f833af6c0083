// The chat page: sign-in, contacts with presence, one conversation pane per contact.
// Everything a user or another client wrote is put on the page with textContent, never as HTML.

import { ChatClient, backoffDelay } from './client.js';
import { el, avatarFor } from './dom.js';
import { errorText, fillMessage, messageNodes } from './messages.js';

const SESSION_KEY = 'chat.signin';
const HISTORY_KEY = 'chat.history.'; // + user name; the tab's conversations survive a reload
const HISTORY_PER_CONTACT = 200;
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
  historyFor: null, // the user whose saved conversations were loaded into this page
  saveTimer: null,
};

// What the message rendering needs from the page.
const messageView = {
  get me() {
    return state.me;
  },
  onRetry: (m) => retrySend(m),
};

// ---------------------------------------------------------------------------------------------
// Contacts.

function contact(name) {
  let c = state.contacts.get(name);
  if (!c) {
    c = { name, online: false, unread: 0, messages: [], draft: '' };
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
  const last = c.messages[c.messages.length - 1];
  let preview = '';
  if (last)
    preview =
      last.from !== state.me
        ? last.text
        : `${last.state === 'failed' ? 'Not sent' : 'You'}: ${last.text}`;
  const statusWord = c.online ? 'online' : 'offline';
  const unreadWords = c.unread ? `, ${c.unread} unread` : '';

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
  if (c.unread) {
    button.append(
      el('span', {
        className: 'badge',
        'aria-hidden': 'true',
        text: c.unread > 99 ? '99+' : String(c.unread),
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
// Conversations.

function openConversation(name) {
  const c = contact(name);
  if (state.active && state.active !== name) contact(state.active).draft = ui.input.value;
  state.active = name;
  c.unread = 0;
  document.body.classList.add('show-conversation');
  ui.noPeer.hidden = true;
  ui.peerPane.hidden = false;
  ui.input.value = c.draft;
  autoGrow();
  renderPeerHead();
  renderMessages();
  renderContacts();
  saveHistorySoon();
  ui.input.focus();
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

function renderMessages() {
  const c = contact(state.active);
  ui.messages.setAttribute('aria-busy', 'true');
  const nodes = [];
  let previous = null;
  for (const m of c.messages) {
    nodes.push(...messageNodes(m, previous, messageView));
    previous = m;
  }
  if (nodes.length === 0) {
    nodes.push(
      el('li', {
        className: 'empty-conversation',
        text: `No messages with ${c.name} yet. Say hello!`,
      }),
    );
  }
  ui.messages.replaceChildren(...nodes);
  ui.messages.removeAttribute('aria-busy');
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

function appendMessage(c, m) {
  const previous = c.messages[c.messages.length - 1] || null;
  c.messages.push(m);
  saveHistorySoon();
  if (c.name !== state.active) return;
  const stick = isNearBottom();
  ui.messages.querySelector('.empty-conversation')?.remove();
  ui.messages.append(...messageNodes(m, previous, messageView));
  if (stick || m.from === state.me) ui.messages.scrollTop = ui.messages.scrollHeight;
}

function updateMessage(m) {
  saveHistorySoon();
  if (!m.node || !m.node.isConnected) return;
  const stick = isNearBottom();
  fillMessage(m, messageView);
  if (stick) ui.messages.scrollTop = ui.messages.scrollHeight;
}

// The protocol has no history yet, so the tab keeps its own: a reload must not wipe the chat.
function saveHistorySoon() {
  if (!state.me || state.historyFor !== state.me) return;
  clearTimeout(state.saveTimer);
  state.saveTimer = setTimeout(saveHistory, 250);
}

function saveHistory() {
  const contacts = {};
  for (const c of state.contacts.values()) {
    if (c.messages.length === 0 && !c.unread) continue;
    contacts[c.name] = {
      unread: c.unread,
      messages: c.messages.slice(-HISTORY_PER_CONTACT).map(({ node, inFlight, ...m }) => m),
    };
  }
  try {
    sessionStorage.setItem(
      HISTORY_KEY + state.me,
      JSON.stringify({ active: state.active, contacts }),
    );
  } catch {
    // Storage full or disabled: the conversation still works, it just will not survive a reload.
  }
}

function restoreHistory() {
  if (state.historyFor === state.me) return;
  state.historyFor = state.me;
  let saved;
  try {
    saved = JSON.parse(sessionStorage.getItem(HISTORY_KEY + state.me));
  } catch {
    saved = null;
  }
  if (!saved || typeof saved.contacts !== 'object') return;
  for (const [name, entry] of Object.entries(saved.contacts)) {
    const c = contact(name);
    c.unread = Number(entry.unread) || 0;
    c.messages = (Array.isArray(entry.messages) ? entry.messages : []).map((m) => {
      const restored = { ...m, localId: state.nextLocalId++ };
      // It was on its way when the page went away: whether it arrived is unknown.
      if (restored.state === 'sending') {
        restored.state = 'failed';
        restored.error = errorText('disconnected', restored.to);
      }
      return restored;
    });
  }
  renderContacts();
  if (typeof saved.active === 'string' && !state.active) openConversation(saved.active);
}

function isNearBottom() {
  return ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 80;
}

function onIncoming(frame) {
  if (typeof frame.sent_by !== 'string' || typeof frame.message !== 'string') return;
  // Our own sends to ourselves come back; they are already on the page from local state.
  if (frame.sent_by === state.me) return;
  const known = state.contacts.has(frame.sent_by);
  const c = contact(frame.sent_by);
  if (frame.id && c.messages.some((m) => m.id === frame.id)) return;
  const m = {
    localId: state.nextLocalId++,
    id: frame.id,
    from: frame.sent_by,
    text: frame.message,
    ts: Number.isFinite(frame.ts) ? frame.ts : Date.now(),
    state: 'received',
  };
  const visible =
    c.name === state.active &&
    document.visibilityState === 'visible' &&
    document.body.classList.contains('show-conversation');
  if (!visible) {
    c.unread += 1;
  }
  appendMessage(c, m);
  if (!visible || c.name !== state.active) announce(`New message from ${c.name}: ${m.text}`);
  renderContacts();
  if (!known) refreshContacts();
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
    ts: Date.now(),
    state: 'sending',
  };
  appendMessage(c, m);
  renderContacts();
  if (state.client.isOpen()) deliver(m);
  // Otherwise it waits, as "Sending…", for the next hello: it never reached the server, so
  // sending it then cannot make a duplicate.
}

async function deliver(m) {
  m.state = 'sending';
  m.inFlight = true;
  updateMessage(m);
  try {
    const reply = await state.client.request({
      action: 'send',
      send_to: m.to,
      message: m.text,
      sent_by: state.me,
    });
    m.state = 'sent';
    m.id = reply.id;
    if (Number.isFinite(reply.ts)) m.ts = reply.ts;
    m.delivered = reply.delivered;
  } catch (error) {
    m.state = 'failed';
    m.error = errorText(error.code, m.to, error.message);
    announce(`Message to ${m.to} not sent. ${m.error}`);
  } finally {
    m.inFlight = false;
  }
  updateMessage(m);
  renderContacts(); // the preview shows whether the last message went out
}

function retrySend(m) {
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
      if (m.from === state.me && m.state === 'sending' && !m.inFlight) deliver(m);
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
  for (const c of state.contacts.values()) unread += c.unread;
  document.title = unread ? `(${unread}) Chat` : 'Chat';
}

document.addEventListener('visibilitychange', () => {
  if (document.visibilityState !== 'visible' || !state.active) return;
  if (!document.body.classList.contains('show-conversation')) return;
  const c = contact(state.active);
  if (c.unread) {
    c.unread = 0;
    renderContacts();
  }
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
    showChat();
    restoreHistory();
    state.watched = ''; // a new connection starts with an empty watch set
    refreshContacts();
    flushUnsent();
    clearInterval(state.refreshTimer);
    state.refreshTimer = setInterval(refreshContacts, CONTACTS_REFRESH_MS);
  });
  client.addEventListener('disconnected', (event) => {
    clearInterval(state.refreshTimer);
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
  // The contacts are cleared, so the tab's saved conversations must be loaded again after the
  // next hello (signing in again after an expired token is the same user coming back).
  if (state.me && state.historyFor === state.me) {
    clearTimeout(state.saveTimer);
    saveHistory();
  }
  state.historyFor = null;
  state.contacts.clear();
  state.active = null;
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

ui.signOut.addEventListener('click', () => {
  sessionStorage.removeItem(SESSION_KEY);
  if (state.me) sessionStorage.removeItem(HISTORY_KEY + state.me);
  clearTimeout(state.saveTimer);
  state.historyFor = null;
  stopSession();
  state.me = null;
  state.active = null;
  state.contacts.clear();
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
