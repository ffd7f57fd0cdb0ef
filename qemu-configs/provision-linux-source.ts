// Provides a complete kernel source tree of exactly the provisioned guest kernel's release:
// Debian's linux-source-<line> package (e.g. linux-source-7.3 7.3.4-1~bpo13+1), whose one
// payload is usr/src/linux-source-<line>.tar.xz. The tarball is unpacked once into
// <cache>/linux-source/<debian version>/linux-source-<line>/ and then reused read-only: callers
// that want to change a file work on a copy, so the pristine tree stays what Debian shipped.
//
// Users: the out-of-tree vfio-pci loop's end-to-end test (a change of ours applied to a copy of
// drivers/vfio/pci) and the kernel's own VFIO selftests (tools/testing/selftests/vfio with
// tools/include, tools/lib and the few files outside tools/ they reach through symlinks), so the
// WHOLE tree is extracted, not a subset.

import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { cacheDir, progress, readMarker, writeMarker } from './cache.ts';
import { aptCache, downloadOnly, extractDeb } from './debian-archive.ts';
import { provisionKernel } from './provision-kernel.ts';
import { runCommand } from './run-command.ts';

export interface LinuxSource {
  /** The top of the kernel tree (holds Makefile, drivers/, tools/ ...). Treat it as read-only. */
  dir: string;
  /** The Debian package version, e.g. "7.3.4-1~bpo13+1" (the same as the guest kernel's). */
  version: string;
}

interface SourceMarker extends LinuxSource {
  package: string;
  /** The guest kernel release this tree belongs to, e.g. "7.3.4+deb13-amd64". */
  kernelRelease: string;
}

/** "7.3.4+deb13-amd64" -> "7.3" (the kernel line that names Debian's source package). */
export function kernelLineOf(release: string): string {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (m === null) throw new Error(`cannot read a kernel line (major.minor) from release "${release}"`);
  return `${m[1]}.${m[2]}`;
}

/**
 * From `apt-cache madison <pkg>` output (rows `name | version | source`), the versions listed
 * for exactly `pkg`.
 */
export function madisonVersions(madison: string, pkg: string): string[] {
  const versions: string[] = [];
  for (const row of madison.split('\n')) {
    const cols = row.split('|').map((c) => c.trim());
    if (cols.length >= 3 && cols[0] === pkg && cols[1] !== undefined && cols[1] !== '') versions.push(cols[1]);
  }
  return versions;
}

/**
 * The Debian version of the provisioned guest kernel: the version of its linux-modules-<release>
 * package. Every binary package built from one `linux` source upload carries that version, so it
 * is also the version of the matching linux-source, linux-kbuild and linux-headers packages.
 */
export async function guestKernelDebianVersion(release: string): Promise<string> {
  const pkg = `linux-modules-${release}`;
  const versions = madisonVersions(await aptCache(['madison', pkg]), pkg);
  if (versions.length === 0) throw new Error(`the package lists name no ${pkg}; cannot tell the guest kernel's Debian version`);
  if (new Set(versions).size > 1) {
    throw new Error(`the package lists name several versions of ${pkg} (${versions.join(', ')}); ` +
      'cannot tell which one the guest kernel is');
  }
  return versions[0]!;
}

function markerPath(release: string): string {
  return join(cacheDir(), 'linux-source', `current-${release}.json`);
}

function usable(marker: SourceMarker | undefined): marker is SourceMarker {
  return marker !== undefined && existsSync(join(marker.dir, 'Makefile')) &&
    existsSync(join(marker.dir, 'drivers', 'vfio', 'pci', 'vfio_pci_core.c'));
}

/**
 * Returns Debian's kernel source tree of the provisioned guest kernel's exact release, downloading
 * linux-source-<line> and unpacking its tarball into the cache on first use (about 170 MB
 * download, 1.8 GB unpacked, half a minute here). Later calls reuse it without the network.
 */
export async function provisionLinuxSource(): Promise<LinuxSource> {
  const kernel = await provisionKernel();
  const cached = await readMarker<SourceMarker>(markerPath(kernel.version));
  if (usable(cached)) return { dir: cached.dir, version: cached.version };

  const step = progress('linux source');
  const line = kernelLineOf(kernel.version);
  const pkg = `linux-source-${line}`;
  const version = await guestKernelDebianVersion(kernel.version);
  const offered = madisonVersions(await aptCache(['madison', pkg]), pkg);
  if (!offered.includes(version)) {
    throw new Error(`the guest kernel is ${kernel.version} (Debian ${version}) but the package lists offer ` +
      `${pkg} only as ${offered.length > 0 ? offered.join(', ') : 'nothing'}; a source tree of another release ` +
      'would not match the kernel the modules are loaded into');
  }
  step.info(`${pkg} ${version} for kernel ${kernel.version}`);

  const base = join(cacheDir(), 'linux-source', version);
  const dir = join(base, pkg);
  if (!existsSync(join(dir, 'Makefile'))) {
    const [deb] = await downloadOnly([`${pkg}=${version}`]);
    if (deb === undefined) throw new Error(`apt returned no file for ${pkg}=${version}`);
    // The .deb is unpacked to reach the tarball, the tarball into a .partial directory that is
    // renamed into place only when complete: an interrupted run leaves no half tree behind.
    const debRoot = join(base, 'deb.partial');
    const partial = join(base, 'tree.partial');
    await rm(debRoot, { recursive: true, force: true });
    await rm(partial, { recursive: true, force: true });
    step.info(`unpacking ${deb}`);
    await extractDeb(deb, debRoot);
    const tarball = await findTarball(join(debRoot, 'usr', 'src'), pkg);
    await mkdir(partial, { recursive: true });
    step.info(`extracting ${tarball} (the whole tree, ~1.8 GB; about half a minute)`);
    await runCommand('tar', ['-xf', tarball, '-C', partial]);
    const top = join(partial, pkg);
    if (!existsSync(join(top, 'Makefile')) || !existsSync(join(top, 'drivers', 'vfio', 'pci'))) {
      throw new Error(`${tarball} did not unpack into ${pkg}/ with a Makefile and drivers/vfio/pci: ` +
        'the package layout changed; adjust provision-linux-source.ts');
    }
    await rm(dir, { recursive: true, force: true });
    await rename(top, dir);
    await rm(partial, { recursive: true, force: true });
    await rm(debRoot, { recursive: true, force: true });
  }
  const result: SourceMarker = { dir, version, package: pkg, kernelRelease: kernel.version };
  if (!usable(result)) throw new Error(`${dir} is not a complete kernel tree (no Makefile or drivers/vfio/pci/vfio_pci_core.c)`);
  await writeMarker(markerPath(kernel.version), result);
  step.done(dir);
  return { dir, version };
}

/** The source tarball the package ships (linux-source-7.3.tar.xz; other compressions tolerated). */
async function findTarball(srcDir: string, pkg: string): Promise<string> {
  const names = existsSync(srcDir) ? await readdir(srcDir) : [];
  const tarball = names.find((n) => n.startsWith(`${pkg}.tar`));
  if (tarball === undefined) {
    throw new Error(`${pkg}'s .deb has no ${pkg}.tar.* in usr/src (found: ${names.join(', ') || 'nothing'})`);
  }
  return join(srcDir, tarball);
}
