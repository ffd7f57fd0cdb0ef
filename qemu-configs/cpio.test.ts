import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CpioWriter, normaliseArchivePath } from './cpio.ts';
import { provisionBusybox } from './provision-busybox.ts';

/** An independent newc reader (written from the format description, not from cpio.ts). */
interface ReadEntry {
  name: string;
  ino: number;
  mode: number;
  nlink: number;
  size: number;
  rdevmajor: number;
  rdevminor: number;
  data: Buffer;
  headerOffset: number;
}

function readNewc(archive: Buffer): ReadEntry[] {
  const entries: ReadEntry[] = [];
  let off = 0;
  for (;;) {
    assert.equal(off % 4, 0, `entry at ${off} is not 4-byte aligned`);
    assert.equal(archive.toString('ascii', off, off + 6), '070701', `bad magic at ${off}`);
    const field = (i: number): number => Number.parseInt(archive.toString('ascii', off + 6 + i * 8, off + 14 + i * 8), 16);
    const namesize = field(11);
    const nameStart = off + 110;
    assert.equal(archive[nameStart + namesize - 1], 0, 'name is not NUL-terminated');
    const name = archive.toString('utf8', nameStart, nameStart + namesize - 1);
    const dataStart = Math.ceil((nameStart + namesize) / 4) * 4;
    const size = field(6);
    const entry: ReadEntry = {
      name, ino: field(0), mode: field(1), nlink: field(4), size,
      rdevmajor: field(9), rdevminor: field(10),
      data: archive.subarray(dataStart, dataStart + size), headerOffset: off,
    };
    assert.equal(field(2), 0, 'uid');
    assert.equal(field(3), 0, 'gid');
    assert.equal(field(12), 0, 'check');
    off = Math.ceil((dataStart + size) / 4) * 4;
    if (name === 'TRAILER!!!') {
      assert.equal(off, archive.length, 'bytes after the trailer');
      return entries;
    }
    entries.push(entry);
  }
}

test('writes files, directories, symlinks and device nodes a newc reader understands', () => {
  const w = new CpioWriter();
  w.directory('proc');
  w.charDevice('/dev/console', 5, 1);
  w.file('/init', Buffer.from('#!/bin/sh\necho hi\n'), 0o755);
  w.file('tests/data/odd', Buffer.from([1, 2, 3]), 0o600); // size not a multiple of 4
  w.symlink('bin/sh', '/bin/busybox');
  const entries = readNewc(w.finish());
  const byName = new Map(entries.map((e) => [e.name, e]));

  assert.deepEqual(entries.map((e) => e.name), ['proc', 'dev', 'dev/console', 'init', 'tests', 'tests/data', 'tests/data/odd', 'bin', 'bin/sh']);
  assert.equal(byName.get('proc')!.mode, 0o040755);
  assert.equal(byName.get('dev/console')!.mode, 0o020600);
  assert.equal(byName.get('dev/console')!.rdevmajor, 5);
  assert.equal(byName.get('dev/console')!.rdevminor, 1);
  assert.equal(byName.get('init')!.mode, 0o100755);
  assert.equal(byName.get('init')!.data.toString(), '#!/bin/sh\necho hi\n');
  assert.deepEqual([...byName.get('tests/data/odd')!.data], [1, 2, 3]);
  assert.equal(byName.get('bin/sh')!.mode, 0o120777);
  assert.equal(byName.get('bin/sh')!.data.toString(), '/bin/busybox');
  // Distinct inode numbers: the kernel treats equal (ino, nlink>1) as hard links.
  assert.equal(new Set(entries.map((e) => e.ino)).size, entries.length);
});

test('parent directories come before their children, once', () => {
  const w = new CpioWriter();
  w.file('a/b/c/d.txt', Buffer.from('x'));
  w.file('a/b/e.txt', Buffer.from('y'));
  w.directory('a/b');
  const names = readNewc(w.finish()).map((e) => e.name);
  assert.deepEqual(names, ['a', 'a/b', 'a/b/c', 'a/b/c/d.txt', 'a/b/e.txt']);
});

test('rejects duplicates, "..", empty paths and a file where a directory is needed', () => {
  const w = new CpioWriter();
  w.file('x', Buffer.from('1'));
  assert.throws(() => w.file('/x', Buffer.from('2')), /added twice/);
  assert.throws(() => w.file('x/y', Buffer.from('3')), /not a directory/);
  assert.throws(() => normaliseArchivePath('../etc/passwd'), /\.\./);
  assert.throws(() => normaliseArchivePath('//'), /empty/);
  assert.equal(normaliseArchivePath('/a//b/./c/'), 'a/b/c');
  assert.equal(w.has('/x'), true);
  w.finish();
  assert.throws(() => w.file('z', Buffer.from('')), /finished/);
});

test('an empty archive is just the trailer', () => {
  const archive = new CpioWriter().finish();
  assert.deepEqual(readNewc(archive), []);
  assert.equal(archive.length, 124); // 110 header + 11 name bytes, padded to 4
});

test('busybox cpio (an independent reader) extracts the archive', async () => {
  // Provisions busybox-static on a fresh machine (the VM tests need it anyway).
  const busybox = await provisionBusybox();
  const w = new CpioWriter();
  const payload = Buffer.alloc(5000, 0xab);
  w.file('/deep/dir/payload.bin', payload, 0o640);
  w.symlink('/deep/link', 'dir/payload.bin');
  const dir = mkdtempSync(join(tmpdir(), 'edu-plus-cpio-'));
  try {
    const r = spawnSync(busybox.binary, ['cpio', '-i', '-d'], { cwd: dir, input: w.finish() });
    assert.equal(r.status, 0, r.stderr.toString());
    assert.deepEqual(readFileSync(join(dir, 'deep/dir/payload.bin')), payload);
    assert.equal(statSync(join(dir, 'deep/dir/payload.bin')).mode & 0o777, 0o640);
    assert.equal(readlinkSync(join(dir, 'deep/link')), 'dir/payload.bin');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
