// Provides a statically linked busybox for the guest initramfs: Debian's busybox-static,
// downloaded through the private apt state and unpacked into <cache>/busybox/<version>/root.
// Static, so the same binary runs in the guest and (for `--list-full`) on the host.

import { existsSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { cacheDir, progress, readMarker, writeMarker } from './cache.ts';
import { downloadOnly, extractDeb } from './debian-archive.ts';
import { runCommand } from './run-command.ts';

export interface Busybox {
  /** The Debian package's file name, e.g. "busybox-static_1%3a1.37.0-6+b9_amd64.deb". */
  debFile: string;
  binary: string;
  /** Applet install paths without a leading slash, e.g. ["bin/sh", "sbin/modprobe", ...]. */
  applets: string[];
}

const PACKAGE = 'busybox-static';

/** The applets the guest /init relies on; a busybox without them is not usable. */
const REQUIRED_APPLETS = ['sh', 'mount', 'mkdir', 'modprobe', 'insmod', 'cat', 'echo', 'ls', 'poweroff', 'sleep', 'grep'];

/** Parses `busybox --list-full` output and checks the applets the guest needs are there. */
export function parseAppletList(output: string): string[] {
  const applets = output.split('\n').map((l) => l.trim().replace(/^\/+/, '')).filter((l) => l !== '');
  const names = new Set(applets.map((a) => a.slice(a.lastIndexOf('/') + 1)));
  const missing = REQUIRED_APPLETS.filter((a) => !names.has(a));
  if (missing.length > 0) throw new Error(`busybox lacks applets the guest init needs: ${missing.join(', ')}`);
  return applets;
}

/** Returns the cached busybox, downloading and unpacking it on first use. */
export async function provisionBusybox(): Promise<Busybox> {
  const markerPath = join(cacheDir(), 'busybox/current.json');
  const marker = await readMarker<Busybox>(markerPath);
  if (marker !== undefined && existsSync(marker.binary)) return marker;

  const step = progress('busybox');
  const [deb] = await downloadOnly([PACKAGE]);
  if (deb === undefined) throw new Error(`apt returned no file for ${PACKAGE}`);
  const debFile = deb.slice(deb.lastIndexOf('/') + 1);
  const dir = join(cacheDir(), 'busybox', debFile.replace(/\.deb$/, ''));
  const partial = join(dir, 'root.partial');
  await rm(partial, { recursive: true, force: true });
  await extractDeb(deb, partial);
  const relative = ['usr/bin/busybox', 'bin/busybox'].find((p) => existsSync(join(partial, p)));
  if (relative === undefined) throw new Error(`${debFile} unpacked into ${partial} has no usr/bin/busybox or bin/busybox`);
  const listed = await runCommand(join(partial, relative), ['--list-full']);
  const applets = parseAppletList(listed.stdout);

  const root = join(dir, 'root');
  await rm(root, { recursive: true, force: true });
  await rename(partial, root);
  const busybox: Busybox = { debFile, binary: join(root, relative), applets };
  await writeMarker(markerPath, busybox);
  step.done(`${busybox.binary} (${applets.length} applets)`);
  return busybox;
}
