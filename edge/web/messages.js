// How one conversation's messages look: bubbles, day dividers, sending / sent / delivered / read
// ticks, and the words for what went wrong. Message text only ever goes in through textContent.

import { el, formatTime, formatDay, dayKey } from './dom.js';

// Human words for protocol errors.

export function errorText(code, peer, fallback) {
  switch (code) {
    case 'rate_limited':
      return 'You are sending too fast. Wait a moment, then retry.';
    case 'unknown_user':
      return `There is no user called “${peer}”.`;
    case 'recipient_offline':
      // Servers that store messages never say this; an older one could.
      return `${peer} is offline and this server does not keep messages for later.`;
    case 'unavailable':
      return 'The chat service is temporarily unavailable. Retry: it will not be sent twice.';
    case 'forbidden':
      return 'The server refused this message.';
    case 'bad_request':
      return 'The server could not accept this message.';
    case 'internal':
      return 'Something went wrong on the server. Try again.';
    case 'too_large':
      return 'This message is too long to send. Split it into smaller parts.';
    case 'timeout':
      return 'The server did not confirm this message in time. Retry: it will not be sent twice.';
    case 'disconnected':
      return (
        'The connection dropped before the server confirmed this message. ' +
        'Retry: it will not be sent twice.'
      );
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

const SVG = 'http://www.w3.org/2000/svg';

// One check mark for sent, two for delivered and read (read in its own colour, see style.css).
function ticksIcon(tick) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 18 12');
  svg.setAttribute('width', '16');
  svg.setAttribute('height', '11');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'ticks');
  const marks =
    tick === 'sending'
      ? ['M6 2v4l2.5 1.5', 'M6 11a5 5 0 1 0 0-10 5 5 0 0 0 0 10z']
      : tick === 'failed'
        ? ['M6 2.5v4.5', 'M6 9.2v.3']
        : tick === 'sent'
          ? ['M1.5 6.5l3 3 6-7']
          : ['M1.5 6.5l3 3 6-7', 'M7.5 9.5l.5.5 6-7.5'];
  for (const d of marks) {
    const path = document.createElementNS(SVG, 'path');
    path.setAttribute('d', d);
    svg.append(path);
  }
  return svg;
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
    const tick = m.state === 'sent' ? view.tickOf(m) : m.state;
    node.dataset.tick = tick;
    const label = {
      sending: 'Sending…',
      sent: 'Sent',
      delivered: 'Delivered',
      read: 'Read',
      failed: 'Not sent',
    }[tick];
    meta.append(
      el('span', { className: `state state-${tick}`, title: label }, ticksIcon(tick), label),
    );
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
