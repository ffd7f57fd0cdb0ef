/**
 * Who can reach the server (issue 11, item 7): sockets are born mode 0600 even under umask
 * 000 (a chmod after bind leaves a window in which another local user can connect), and the
 * default socket directory outside $XDG_RUNTIME_DIR is ours alone or refused.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { defaultSocketPath } from '../../cli/serve.ts';
import { close, listenUnix } from '../../protocol/native/libc.ts';
import { ensurePrivateDir, withPrivateUmask } from '../../protocol/socket-file.ts';
import { ServerProcess } from './server-process.ts';

const base = mkdtempSync(join(tmpdir(), 'edu-plus-sockets-'));
after(() => rmSync(base, { recursive: true, force: true }));
const modeOf = (path: string) => statSync(path).mode & 0o777;

describe('socket files and directories', () => {
  it('7: under umask 000 both the device and the trace socket are created 0600', async () => {
    const server = await ServerProcess.start([], { umask: 0 });
    try {
      assert.equal(modeOf(server.socketPath).toString(8), '600');
      assert.equal(modeOf(server.tracePath).toString(8), '600');
    } finally {
      assert.equal(await server.stop(), 0);
    }
  });

  it('binding under withPrivateUmask needs no chmod (a plain bind under umask 000 is world-connectable)', () => {
    const old = process.umask(0);
    try {
      const plain = join(base, 'plain.sock');
      close(listenUnix(plain));
      assert.equal(modeOf(plain).toString(8), '777', 'without it the socket is born open to everyone');
      const guarded = join(base, 'guarded.sock');
      close(withPrivateUmask(() => listenUnix(guarded)));
      assert.equal(modeOf(guarded).toString(8), '600');
      assert.equal(process.umask(0), 0, 'the umask is restored');
    } finally {
      process.umask(old);
    }
  });

  it('the default path without XDG_RUNTIME_DIR is in a per-user directory, not /tmp itself', () => {
    const saved = process.env.XDG_RUNTIME_DIR;
    delete process.env.XDG_RUNTIME_DIR;
    try {
      assert.equal(defaultSocketPath(), `/tmp/edu-plus-${process.getuid!()}/edu-plus.sock`);
    } finally {
      if (saved !== undefined) process.env.XDG_RUNTIME_DIR = saved;
    }
  });

  it('a private directory is created 0700; one others can enter, or a symlink, is refused', () => {
    const fresh = join(base, 'fresh');
    ensurePrivateDir(fresh);
    assert.equal(modeOf(fresh).toString(8), '700');
    ensurePrivateDir(fresh); // an existing good one is accepted
    const open = join(base, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    assert.throws(() => ensurePrivateDir(open), /mode 0777.*chmod 700/);
    const link = join(base, 'link');
    symlinkSync(fresh, link);
    assert.throws(() => ensurePrivateDir(link), /not a directory \(a symlink\?\)/);
  });
});
