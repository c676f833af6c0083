// Unit tests of the web UI's stream bookkeeping (edge/web/stream.js), which has no DOM:
//   node --test tests/browser/stream.test.mjs      (tests/browser/run.sh runs it first)

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  StreamTracker,
  highestSeq,
  insertMessage,
  lowestSeq,
  newKey,
  resort,
} from '../../edge/web/stream.js';

test('the held useq advances only over numbers without a gap', () => {
  const t = new StreamTracker(4, 'e1');
  assert.equal(t.see(5), true);
  assert.equal(t.held, 5);
  assert.equal(t.see(5), false, 'a useq seen twice is dropped');
  assert.equal(t.see(3), false, 'a useq at or below the held one is dropped');
  assert.equal(t.see(7), true);
  assert.equal(t.held, 5);
  assert.equal(t.hasGap(), true, '6 is missing');
  assert.equal(t.see(6), true);
  assert.equal(t.held, 7);
  assert.equal(t.hasGap(), false);
});

test('a sync reply holds everything up to its useq, and what was seen above it joins', () => {
  const t = new StreamTracker(10, 'e1');
  t.see(14);
  t.see(12);
  assert.equal(t.hasGap(), true);
  t.holdThrough(12);
  assert.equal(t.held, 12);
  assert.equal(t.hasGap(), true, '13 is still missing');
  t.holdThrough(13);
  assert.equal(t.held, 14);
  assert.equal(t.hasGap(), false);
  t.holdThrough(9);
  assert.equal(t.held, 14, 'never moves back');
});

test('without a starting point there is no gap; the starting point drops what it covers', () => {
  const t = new StreamTracker();
  t.see(20);
  t.see(22);
  assert.equal(t.held, null);
  assert.equal(t.hasGap(), false);
  t.holdThrough(21);
  assert.equal(t.held, 22);
  assert.equal(t.hasGap(), false);
});

test('bad useqs are ignored', () => {
  const t = new StreamTracker(1, 'e');
  for (const bad of [undefined, null, '2', 0, -1, 1.5, Number.MAX_VALUE]) {
    assert.equal(t.see(bad), false);
  }
  assert.equal(t.held, 1);
  assert.equal(t.hasGap(), false);
});

let nextLocal = 1;
const msg = (seq, id = `id${seq}`) => ({ seq, id, localId: nextLocal++ });
const local = () => ({ localId: nextLocal++ });

test('messages stay in seq order, unsent ones last, each once', () => {
  const list = [];
  const pending = local();
  assert.equal(insertMessage(list, pending), 'end');
  assert.equal(insertMessage(list, msg(3)), 'middle', 'stored messages go before unsent ones');
  insertMessage(list, msg(1));
  insertMessage(list, msg(2));
  assert.deepEqual(list.map((m) => m.seq), [1, 2, 3, undefined]);
  assert.equal(insertMessage(list, msg(2, 'other')), 'dup', 'same seq');
  assert.equal(insertMessage(list, { id: 'id3', localId: nextLocal++ }), 'dup', 'same id');
  assert.equal(list.length, 4);
  assert.equal(lowestSeq(list), 1);
  assert.equal(highestSeq(list), 3);
});

test('an unsent message moves to its place once its seq is known', () => {
  const list = [msg(1)];
  const mine = local();
  insertMessage(list, mine);
  insertMessage(list, msg(3));
  mine.seq = 2;
  mine.id = 'id2';
  assert.equal(resort(list, mine), true);
  assert.deepEqual(list.map((m) => m.seq), [1, 2, 3]);
  assert.equal(resort(list, mine), false, 'already in place');
});

test('idempotency keys are 32 hex digits and differ', () => {
  const a = newKey();
  assert.match(a, /^[0-9a-f]{32}$/);
  assert.notEqual(a, newKey());
});
