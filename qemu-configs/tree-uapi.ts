// The UAPI headers the guest tests are compiled against when the loop builds vfio-pci from a
// developer's tree: the guest kernel's stock UAPI (Debian's linux-libc-dev of the same release,
// provision-headers.ts) with every header the tree changed replaced by the tree's version,
// prepared for userspace exactly as `make headers_install` prepares it (kbuild's
// scripts/headers_install.sh with its unifdef, from the provisioned linux-kbuild).
//
// Why not `make headers_install` on the tree itself: it writes into the tree (the loop never
// does) and needs host tools built from the tree. Comparing the tree's include/uapi and
// arch/x86/include/uapi with the same release's pristine copies (shipped in
// linux-headers-<abi>-common) finds the changed files in well under a second, and with no
// change the stock include directory is used as is, so the guest test binaries stay cached.

import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Kbuild } from './provision-kbuild.ts';
import { kbuildEnv } from './provision-kbuild.ts';
import { provisionKernelHeaders } from './provision-headers.ts';
import { runCommand } from './run-command.ts';

/** A UAPI header of the tree that differs from the release's pristine one. */
export interface ChangedUapiHeader {
  /** The tree's file. */
  source: string;
  /** Where it goes below the include directory, e.g. "linux/vfio.h" or "x86_64-linux-gnu/asm/kvm.h". */
  dest: string;
}

/** The tree's UAPI directories and where their headers live in Debian's multiarch include layout. */
const UAPI_DIRS = [
  { tree: 'include/uapi', dest: '' },
  { tree: 'arch/x86/include/uapi/asm', dest: 'x86_64-linux-gnu/asm' },
] as const;

async function sameContent(a: string, b: string): Promise<boolean> {
  if (!existsSync(b)) return false;
  const [x, y] = await Promise.all([readFile(a), readFile(b)]);
  return x.equals(y);
}

/** The tree's UAPI headers that are new or differ from `pristineRoot`'s (a headers-common tree). */
export async function changedUapiHeaders(tree: string, pristineRoot: string): Promise<ChangedUapiHeader[]> {
  const changed: ChangedUapiHeader[] = [];
  for (const dir of UAPI_DIRS) {
    const from = join(tree, dir.tree);
    if (!existsSync(from)) continue;
    for (const rel of await readdir(from, { recursive: true })) {
      if (!rel.endsWith('.h')) continue;
      const source = join(from, rel);
      if (await sameContent(source, join(pristineRoot, dir.tree, rel))) continue;
      changed.push({ source, dest: dir.dest === '' ? rel : join(dir.dest, rel) });
    }
  }
  return changed.sort((a, b) => a.dest.localeCompare(b.dest));
}

/**
 * The include directory for the guest tests of a loop run on `tree`: the stock one when the tree
 * changed no UAPI header, else a copy of it (hard links) under `workDir` with the changed
 * headers installed. Cached by the changed headers' contents.
 */
export async function treeUapiInclude(tree: string, kbuild: Kbuild, workDir: string): Promise<{ includeDir: string; changed: string[] }> {
  const stock = await provisionKernelHeaders();
  const changed = await changedUapiHeaders(tree, kbuild.srcDir);
  if (changed.length === 0) return { includeDir: stock, changed: [] };
  const hash = createHash('sha256');
  for (const c of changed) hash.update(c.dest).update('\0').update(await readFile(c.source)).update('\0');
  const dir = join(workDir, `uapi-${hash.digest('hex').slice(0, 12)}`);
  if (!existsSync(join(dir, 'linux', 'vfio.h'))) {
    const partial = `${dir}.partial`;
    await rm(partial, { recursive: true, force: true });
    await mkdir(dirname(partial), { recursive: true });
    await runCommand('cp', ['-al', stock, partial]);
    // headers_install.sh calls scripts/unifdef relative to its working directory.
    const kbuildScriptsParent = dirname(join(kbuild.srcDir, 'scripts', '.'));
    for (const c of changed) {
      const out = join(partial, c.dest);
      await mkdir(dirname(out), { recursive: true });
      await rm(out, { force: true }); // a hard link into the stock tree: never write through it
      await runCommand('sh', [join(kbuild.srcDir, 'scripts/headers_install.sh'), c.source, out], {
        cwd: kbuildScriptsParent, env: kbuildEnv(kbuild),
      });
    }
    await rm(dir, { recursive: true, force: true });
    await rename(partial, dir);
  }
  return { includeDir: dir, changed: changed.map((c) => c.dest) };
}
