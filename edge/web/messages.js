// How one conversation's messages look: bubbles, day dividers, per-message state, and the
// words for what went wrong. Message text only ever goes in through textContent.

import { el, formatTime, formatDay, dayKey } from './dom.js';

// Human words for protocol errors.

export function errorText(code, peer, fallback) {
  switch (code) {
    case 'rate_limited':
      return 'You are sending too fast. Wait a moment, then retry.';
    case 'unknown_user':
      return `There is no user called “${peer}”.`;
    case 'recipient_offline':
      return `${peer} is offline and messages are not stored yet, so this was not delivered.`;
    case 'unavailable':
      return 'The chat service is temporarily unavailable. Nothing was delivered; try again.';
    case 'forbidden':
      return 'The server refused this message.';
    case 'bad_request':
      return 'The server could not accept this message.';
    case 'internal':
      return 'Something went wrong on the server. Try again.';
    case 'too_large':
      return 'This message is too long to send. Split it into smaller parts.';
    case 'timeout':
      return 'The server did not confirm this message in time. It may not have been delivered.';
    case 'disconnected':
      return 'The connection dropped before the server confirmed this message. It may not have been delivered.';
    default:
      return fallback ? `Not sent: ${fallback}` : 'Not sent.';
  }
}

// A day divider when the day changes, then the bubble. The sender's name starts each run of
// messages from one person.
export function messageNodes(m, previous, view) {
  const nodes = [];
  if (!previous || dayKey(previous.ts) !== dayKey(m.ts)) {
    nodes.push(
      el(
        'li',
        { className: 'day-divider', role: 'separator' },
        el('span', { text: formatDay(m.ts) }),
      ),
    );
  }
  const startsRun = !previous || previous.from !== m.from || dayKey(previous.ts) !== dayKey(m.ts);
  m.node = el('li', { className: 'message', dataset: { localId: String(m.localId) } });
  fillMessage(m, view, startsRun);
  nodes.push(m.node);
  return nodes;
}

export function fillMessage(m, view, startsRun = m.node.classList.contains('run-start')) {
  const mine = m.from === view.me;
  const node = m.node;
  node.className = `message ${mine ? 'mine' : 'theirs'}${startsRun ? ' run-start' : ''}`;
  node.dataset.state = m.state;
  if (m.id) node.dataset.id = m.id;

  const meta = el(
    'span',
    { className: 'meta' },
    el('time', {
      dateTime: new Date(m.ts).toISOString(),
      title: new Date(m.ts).toLocaleString(),
      text: formatTime(m.ts),
    }),
  );
  if (mine) {
    const label = {
      sending: 'Sending…',
      sent: m.delivered > 0 ? 'Delivered' : 'Sent',
      failed: 'Not sent',
    }[m.state];
    meta.append(el('span', { className: `state state-${m.state}`, text: label }));
  }

  const children = [
    el('span', { className: 'sender', text: mine ? 'You' : m.from }),
    el('div', { className: 'bubble' }, el('span', { className: 'text', text: m.text }), meta),
  ];
  if (m.state === 'failed') {
    const retry = el('button', { type: 'button', className: 'retry-button', text: 'Retry' });
    retry.addEventListener('click', () => view.onRetry(m));
    children.push(
      el('div', { className: 'failure', role: 'alert' }, el('span', { text: m.error }), retry),
    );
  }
  node.replaceChildren(...children);
}
