// Provides the guest kernel: Debian's trixie-backports build of the 7.3 line (the stock kernel
// the guest tests are written against; it already has VFIO_PCI_DMABUF). Debian splits it into
// linux-binary-unsigned-<abi> (vmlinuz), linux-modules-<abi> and linux-base-<abi>
// (modules.builtin, config); all three are downloaded without dependencies and unpacked into
// <cache>/kernel/<abi>/root.
//
// EDU_PLUS_KERNEL_LINE (default "7.3") picks the newest release of that line ("7" = newest
// 7.x); EDU_PLUS_KERNEL_FLAVOUR (default "amd64"; "cloud-amd64" is smaller) the flavour. The
// `flavour` option overrides the variable (the vm command's tests boot the cloud flavour as
// "a kernel other than the default one").

import { existsSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { cacheDir, progress, readMarker, writeMarker } from './cache.ts';
import { aptCache, downloadOnly, extractDebs } from './debian-archive.ts';

export interface GuestKernel {
  /** The kernel release (`uname -r`), e.g. "7.3.4+deb13-amd64". */
  version: string;
  vmlinuz: string;
  /** .../lib/modules/<version>, holding kernel/, modules.builtin, config ... */
  modulesDir: string;
}

const DEFAULT_LINE = '7.3';
const DEFAULT_FLAVOUR = 'amd64';

interface KernelMarker extends GuestKernel {
  debianPackages: string[];
}

/** Compares dotted numeric versions ("7.3.10" > "7.3.4"). */
function compareDotted(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * From `apt-cache search` output, the newest kernel release of `line` in `flavour`: package
 * names look like `linux-binary-unsigned-7.3.4+deb13-amd64`, the release is the part after
 * the prefix ("7.3.4+deb13-amd64"). Returns undefined when the line has no release.
 */
export function pickKernelRelease(searchOutput: string, line: string, flavour: string): string | undefined {
  const releases: { release: string; upstream: string }[] = [];
  for (const row of searchOutput.split('\n')) {
    const name = row.split(' ')[0] ?? '';
    const m = /^linux-binary-unsigned-((\d+(?:\.\d+)+)\+([a-z0-9.~]+)-(.+))$/.exec(name);
    if (m === null || m[4] !== flavour) continue;
    const upstream = m[2]!;
    if (upstream !== line && !upstream.startsWith(`${line}.`)) continue;
    releases.push({ release: m[1]!, upstream });
  }
  releases.sort((a, b) => compareDotted(b.upstream, a.upstream));
  return releases[0]?.release;
}

function markerPath(line: string, flavour: string): string {
  return join(cacheDir(), 'kernel', `current-${line}-${flavour}.json`);
}

/**
 * Returns the guest kernel, downloading and unpacking it on first use. A later run reuses it
 * without touching the network; `refresh` re-resolves the newest release of the line.
 */
export async function provisionKernel(opts: { refresh?: boolean; flavour?: string } = {}): Promise<GuestKernel> {
  const line = process.env.EDU_PLUS_KERNEL_LINE || DEFAULT_LINE;
  const flavour = opts.flavour || process.env.EDU_PLUS_KERNEL_FLAVOUR || DEFAULT_FLAVOUR;
  const marker = await readMarker<KernelMarker>(markerPath(line, flavour));
  if (!opts.refresh && marker !== undefined && existsSync(marker.vmlinuz) && existsSync(join(marker.modulesDir, 'modules.builtin'))) {
    return { version: marker.version, vmlinuz: marker.vmlinuz, modulesDir: marker.modulesDir };
  }

  const step = progress('kernel');
  // apt-cache search takes a POSIX extended regex over package names.
  const escapedLine = line.replace(/\./g, '\\.');
  const search = await aptCache(['search', '--names-only', `^linux-binary-unsigned-${escapedLine}[.+]`]);
  const release = pickKernelRelease(search, line, flavour);
  if (release === undefined) {
    throw new Error(`no linux-binary-unsigned-${line}.*-${flavour} package in trixie/trixie-backports. ` +
      'Set EDU_PLUS_KERNEL_LINE (e.g. "7" for the newest 7.x) or EDU_PLUS_KERNEL_FLAVOUR ("cloud-amd64").');
  }
  // linux-base carries modules.builtin, modules.order, config and System.map.
  const packages = [`linux-binary-unsigned-${release}`, `linux-modules-${release}`, `linux-base-${release}`];
  step.info(`kernel ${release}: ${packages.join(', ')}`);

  const kernelDir = join(cacheDir(), 'kernel', release);
  const root = join(kernelDir, 'root');
  const found = locate(root, release);
  if (found === undefined) {
    const debs = await downloadOnly(packages);
    const partial = join(kernelDir, 'root.partial');
    await rm(partial, { recursive: true, force: true });
    step.info(`unpacking into ${partial}`);
    await extractDebs(debs, partial);
    if (locate(partial, release) === undefined) {
      throw new Error(`${packages.join(' + ')} unpacked into ${partial} but lib/modules/${release} ` +
        `(with kernel/, modules.builtin and a vmlinuz) is not there; the package layout changed: adjust locate() in provision-kernel.ts`);
    }
    await rm(root, { recursive: true, force: true });
    await rename(partial, root);
  }
  const kernel = locate(root, release)!;
  await writeMarker(markerPath(line, flavour), { ...kernel, debianPackages: packages } satisfies KernelMarker);
  step.done(`${kernel.vmlinuz}`);
  return kernel;
}

/**
 * Finds vmlinuz and the modules directory in an unpacked tree. Debian's 7.x split packages put
 * the image at lib/modules/<release>/vmlinuz.unsigned (the signed variant would install
 * /boot/vmlinuz-<release>); older layouts and non-/usr-merged trees are accepted too.
 */
function locate(root: string, release: string): GuestKernel | undefined {
  const modulesDir = ['usr/lib/modules', 'lib/modules']
    .map((d) => join(root, d, release))
    .find((p) => existsSync(join(p, 'modules.builtin')) && existsSync(join(p, 'kernel')));
  if (modulesDir === undefined) return undefined;
  const vmlinuz = [join(modulesDir, 'vmlinuz.unsigned'), join(modulesDir, 'vmlinuz'),
    join(root, 'boot', `vmlinuz-${release}`)].find((p) => existsSync(p));
  if (vmlinuz === undefined) return undefined;
  return { version: release, vmlinuz, modulesDir };
}
