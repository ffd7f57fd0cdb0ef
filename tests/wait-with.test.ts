/**
 * The two ways the server waits for a client's next request (--wait-with): io_uring, where one
 * io_uring_enter sends the held reply and sleeps, and recvmsg. Only a client in another process
 * makes the server wait at all (it never waits for one in its own), so each runs `serve` as a
 * child process and drives it from here: bursts of register accesses whose replies must come
 * back in order and correct, messages with fds, and pauses longer than a run of waits lasts,
 * after which the server must have gone back to its event loop and still answer.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { VfioUserClient } from '../protocol/client.ts';
import { encodeRegionAccess } from '../protocol/codec.ts';
import { close, memfdCreate } from '../protocol/native/libc.ts';
import { RequestRing } from '../protocol/native/request-ring.ts';
import { Command, DmaMap, DmaUnmap, PciRegion } from '../protocol/wire.ts';

const root = join(import.meta.dirname, '..');
const LIVENESS = 0x04n;

function startServe(socketPath: string, how: string): Promise<{ child: ChildProcess; log: string[] }> {
  const argv = [join(root, 'node_modules/tsx/dist/cli.mjs'), join(root, 'cli/main.ts'), 'serve', '--socket-path', socketPath, '--no-trace', '--wait-with', how];
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const log: string[] = [];
  return new Promise((resolve, reject) => {
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => log.push(...chunk.split('\n')));
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      if (chunk.includes('Stop with')) resolve({ child, log });
    });
    child.once('exit', (code) => reject(new Error(`serve exited early with ${code}: ${log.join('\n')}`)));
  });
}

/** Writes the liveness register and reads it back (edu answers with the value inverted). */
function liveness(client: VfioUserClient, value: number): number {
  const data = Buffer.alloc(4);
  data.writeUInt32LE(value);
  client.requestSync(Command.REGION_WRITE, encodeRegionAccess({ offset: LIVENESS, region: PciRegion.BAR0, count: 4, data }));
  return Buffer.from(client.regionReadSync(PciRegion.BAR0, LIVENESS, 4)).readUInt32LE(0);
}

/** A DMA mapping made with a memfd (an fd on the request) and taken down again. */
function mapAndUnmap(client: VfioUserClient): void {
  const fd = memfdCreate('wait-with-test', 1n << 16n);
  try {
    const map = DmaMap.encode({ argsz: DmaMap.size, flags: 3, offset: 0n, address: 0x100000n, size: 1n << 16n });
    assert.equal(client.requestSync(Command.DMA_MAP, map, [fd]).header.error, 0);
  } finally {
    close(fd);
  }
  const unmap = DmaUnmap.encode({ argsz: DmaUnmap.size, flags: 0, address: 0x100000n, size: 1n << 16n });
  assert.equal(client.requestSync(Command.DMA_UNMAP, unmap).header.error, 0);
}

const probe = RequestRing.open(-1, Buffer.alloc(56), Buffer.alloc(56), 1000);
const ringWorks = probe !== null;
probe?.close();

describe('serve --wait-with', () => {
  const dir = mkdtempSync(join(tmpdir(), 'edu-plus-wait-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const how of ['io_uring', 'recvmsg'] as const) {
    it(`${how}: answers bursts in order, carries fds, and answers again after pauses longer than a wait`, async () => {
      const socketPath = join(dir, `${how}.sock`);
      const { child, log } = await startServe(socketPath, how);
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      try {
        const client = VfioUserClient.connect(socketPath);
        client.requestSync(Command.VERSION, Buffer.from([0, 0, 0, 0, ...Buffer.from('{}\0')]));
        for (let burst = 0; burst < 4; burst++) {
          for (let i = 0; i < 300; i++) {
            const value = (burst * 1000 + i) * 2654435761;
            assert.equal(liveness(client, value >>> 0), ~value >>> 0, `burst ${burst}, access ${i}`);
          }
          mapAndUnmap(client);
          // Longer than the window and than a run of waits: the server goes back to its loop.
          await sleep(20);
        }
        client.close();
        await sleep(50);
        const connected = log.find((l) => l.includes('client connected'));
        const expected = how === 'recvmsg' || !ringWorks ? 'waits for requests in recvmsg' : 'waits for requests with io_uring';
        assert.ok(connected?.includes(expected), `the log says how it waits: ${connected}`);
        if (how === 'io_uring' && !ringWorks) assert.match(connected!, /io_uring unusable: /);
      } finally {
        child.kill('SIGTERM');
      }
      assert.equal(await exited, 0, log.join('\n'));
    });
  }

  it('refuses a --wait-with it does not know, saying what it takes', async () => {
    const child = spawn(process.execPath, [join(root, 'node_modules/tsx/dist/cli.mjs'), join(root, 'cli/main.ts'), 'serve', '--wait-with', 'epoll'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 2);
    assert.match(stderr, /--wait-with must be io_uring or recvmsg \(got "epoll"\)/);
  });
});
