import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FdReceiver, FdSender } from './fd-messages.ts';
import { close, closeQuietly, eventfdCreate, isEventfd, setNonBlocking, socketPair } from './libc.ts';
import { RequestRing } from './request-ring.ts';

const EAGAIN = 11;
const ECANCELED = 125;
const WINDOW_MICROS = 2000;

/** A socket pair: ours with a ring on it, and the peer's end driven with plain calls. */
function pair() {
  const [ours, peer] = socketPair();
  const receiver = new FdReceiver(8);
  const sender = new FdSender(8);
  const ring = RequestRing.open(ours, sender.msghdr, receiver.msghdr, WINDOW_MICROS);
  const peerSender = new FdSender(8);
  const peerReceiver = new FdReceiver(8);
  const buffer = Buffer.alloc(4096);
  const peerBuffer = Buffer.alloc(4096);
  return {
    ours,
    peer,
    ring,
    receiver,
    sender,
    buffer,
    peerSend: (text: string, fds: number[] = []) => peerSender.sendSome(peer, [Buffer.from(text)], fds),
    peerRead: () => {
      const got = peerReceiver.recv(peer, peerBuffer, 0, peerBuffer.length);
      return got ? peerBuffer.subarray(0, got.bytes).toString() : null;
    },
    close: () => {
      ring?.close();
      closeQuietly([ours, peer]);
    },
  };
}

const available = RequestRing.open(-1, Buffer.alloc(56), Buffer.alloc(56), 1000);
const skip = available ? false : `io_uring is not usable here: ${RequestRing.unavailable}`;
available?.close();

describe('RequestRing', { skip }, () => {
  let p: ReturnType<typeof pair>;
  before(() => {
    p = pair();
    assert.ok(p.ring, RequestRing.unavailable);
  });
  after(() => p.close());

  it('receives a request that is already waiting, with nothing to send', () => {
    p.peerSend('first request');
    p.receiver.prepare(p.buffer, 0, p.buffer.length);
    assert.equal(p.ring!.exchange(false), true);
    assert.equal(p.ring!.recvResult, 'first request'.length);
    assert.deepEqual(p.receiver.finish(p.ring!.recvResult).fds, []);
    assert.equal(p.buffer.subarray(0, p.ring!.recvResult).toString(), 'first request');
  });

  it('sends the staged reply and receives the next request in one exchange', () => {
    p.peerSend('second request');
    const length = p.sender.stage([Buffer.from('reply '), Buffer.from('one')]);
    assert.equal(length, 9);
    p.receiver.prepare(p.buffer, 0, p.buffer.length);
    assert.equal(p.ring!.exchange(true), true);
    assert.equal(p.ring!.sendResult, 9);
    assert.equal(p.buffer.subarray(0, p.ring!.recvResult).toString(), 'second request');
    p.receiver.finish(p.ring!.recvResult);
    assert.equal(p.peerRead(), 'reply one');
  });

  it('gives up when no request comes before the run\'s limit, and takes nothing that comes later', () => {
    const length = p.sender.stage([Buffer.from('last reply')]);
    p.receiver.prepare(p.buffer, 0, p.buffer.length);
    assert.equal(p.ring!.exchange(length > 0), false);
    assert.equal(p.ring!.recvResult, -ECANCELED);
    assert.equal(p.ring!.sendResult, length);
    assert.equal(p.peerRead(), 'last reply');
    p.ring!.endRun();
    // Nothing is left in flight: what the peer sends now is there for a plain recvmsg.
    p.peerSend('after the run');
    const got = p.receiver.recv(p.ours, p.buffer, 0, p.buffer.length);
    assert.equal(got && p.buffer.subarray(0, got.bytes).toString(), 'after the run');
  });

  it('brings the fds that came with a request', () => {
    const efd = eventfdCreate();
    p.peerSend('with an fd', [efd]);
    close(efd);
    p.receiver.prepare(p.buffer, 0, p.buffer.length);
    assert.equal(p.ring!.exchange(false), true);
    const { bytes, fds } = p.receiver.finish(p.ring!.recvResult);
    assert.equal(bytes, 'with an fd'.length);
    assert.equal(fds.length, 1);
    assert.ok(isEventfd(fds[0]!), 'the fd received is the eventfd sent');
    closeQuietly(fds);
    p.ring!.endRun();
  });

  it('says when the socket is full (-EAGAIN: the caller queues the reply)', () => {
    const q = pair();
    try {
      // Fill the peer's receive queue: the staged reply cannot go out.
      setNonBlocking(q.ours, true);
      const filler = new FdSender(1);
      const chunk = Buffer.alloc(65536);
      while (filler.sendSome(q.ours, [chunk], []) > 0);
      const length = q.sender.stage([Buffer.from('no room')]);
      q.peerSend('request');
      q.receiver.prepare(q.buffer, 0, q.buffer.length);
      assert.equal(q.ring!.exchange(length > 0), true);
      assert.equal(q.ring!.sendResult, -EAGAIN);
      assert.equal(q.buffer.subarray(0, q.ring!.recvResult).toString(), 'request');
      q.receiver.finish(q.ring!.recvResult);
      q.ring!.endRun();
    } finally {
      q.close();
    }
  });

  it('says when the peer closed its end (0 bytes)', () => {
    const q = pair();
    try {
      close(q.peer);
      q.receiver.prepare(q.buffer, 0, q.buffer.length);
      assert.equal(q.ring!.exchange(false), true);
      assert.equal(q.ring!.recvResult, 0);
      q.ring!.endRun();
    } finally {
      q.ring?.close();
      closeQuietly([q.ours]);
    }
  });
});
