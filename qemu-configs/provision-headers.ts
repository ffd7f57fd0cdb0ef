// Provides the stock kernel UAPI headers the guest tests are compiled against: Debian's
// linux-libc-dev of the guest kernel's line (7.3 by default, from trixie-backports), downloaded
// through the private apt state and unpacked into <cache>/headers/<version>/root.
//
// Why not the host's /usr/include: the host's linux/vfio.h is whatever kernel the host distro
// ships (bookworm: 6.1, which has no VFIO_DEVICE_FEATURE_DMA_BUF). The guest tests must see the
// UAPI of the kernel they run on. A developer's own kernel brings its own headers
// (`make headers_install`), which the build takes instead of these.
//
// The release is picked like provision-kernel.ts picks the kernel: the newest linux-libc-dev of
// EDU_PLUS_KERNEL_LINE (default "7.3"), so the headers and the default guest kernel agree.

import { existsSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { cacheDir, progress, readMarker, writeMarker } from './cache.ts';
import { aptCache, downloadOnly, extractDeb } from './debian-archive.ts';

const PACKAGE = 'linux-libc-dev';
const DEFAULT_LINE = '7.3';

interface HeadersMarker {
  /** The Debian version, e.g. "7.3.4-1~bpo13+1". */
  version: string;
  debFile: string;
  /** <root>/usr/include: holds linux/, asm-generic/ and the multiarch x86_64-linux-gnu/asm/. */
  includeDir: string;
}

/** "1:7.3.4-1~bpo13+1" -> "7.3.4" (epoch and Debian revision dropped). */
function upstreamOf(version: string): string {
  const noEpoch = version.includes(':') ? version.slice(version.indexOf(':') + 1) : version;
  const dash = noEpoch.lastIndexOf('-');
  return dash < 0 ? noEpoch : noEpoch.slice(0, dash);
}

/** Compares dotted numeric versions ("7.3.10" > "7.3.4"); non-numeric parts count as 0. */
function compareDotted(a: string, b: string): number {
  const pa = a.split('.').map((p) => Number.parseInt(p, 10) || 0);
  const pb = b.split('.').map((p) => Number.parseInt(p, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * From `apt-cache madison linux-libc-dev` output (rows `name | version | source`), the newest
 * version whose upstream release belongs to `line` ("7.3" matches 7.3 and 7.3.x, not 7.30).
 * Returns undefined when the line has none.
 */
export function pickHeadersVersion(madison: string, line: string): string | undefined {
  const candidates: { version: string; upstream: string }[] = [];
  for (const row of madison.split('\n')) {
    const cols = row.split('|').map((c) => c.trim());
    if (cols.length < 3 || cols[0] !== PACKAGE || cols[1] === undefined || cols[1] === '') continue;
    const upstream = upstreamOf(cols[1]);
    if (upstream !== line && !upstream.startsWith(`${line}.`)) continue;
    candidates.push({ version: cols[1], upstream });
  }
  // Newest upstream first; for the same upstream the longer/later Debian revision string wins
  // (a good enough tie-break: the archive carries one revision per release in practice).
  candidates.sort((a, b) => compareDotted(b.upstream, a.upstream) || b.version.localeCompare(a.version));
  return candidates[0]?.version;
}

function markerPath(line: string): string {
  return join(cacheDir(), 'headers', `current-${line}.json`);
}

/**
 * Returns an include directory holding the stock UAPI headers of the guest kernel's line
 * (`<root>/usr/include`, with `linux/vfio.h` and Debian's multiarch `x86_64-linux-gnu/asm`),
 * downloading and unpacking linux-libc-dev on first use; later calls reuse it without the
 * network.
 */
export async function provisionKernelHeaders(): Promise<string> {
  const line = process.env.EDU_PLUS_KERNEL_LINE || DEFAULT_LINE;
  const marker = await readMarker<HeadersMarker>(markerPath(line));
  if (marker !== undefined && existsSync(join(marker.includeDir, 'linux', 'vfio.h'))) return marker.includeDir;

  const step = progress('kernel headers');
  const madison = await aptCache(['madison', PACKAGE]);
  const version = pickHeadersVersion(madison, line);
  if (version === undefined) {
    throw new Error(`no ${PACKAGE} of kernel line ${line} in trixie/trixie-backports ` +
      '(set EDU_PLUS_KERNEL_LINE, or pass an include directory from `make headers_install`)');
  }
  step.info(`${PACKAGE} ${version}`);

  const dir = join(cacheDir(), 'headers', version);
  const root = join(dir, 'root');
  const includeDir = join(root, 'usr', 'include');
  let debFile = `${PACKAGE}_${version}_all.deb`;
  if (!existsSync(join(includeDir, 'linux', 'vfio.h'))) {
    const [deb] = await downloadOnly([`${PACKAGE}=${version}`]);
    if (deb === undefined) throw new Error(`apt returned no file for ${PACKAGE}=${version}`);
    debFile = basename(deb);
    const partial = join(dir, 'root.partial');
    await rm(partial, { recursive: true, force: true });
    await extractDeb(deb, partial);
    if (!existsSync(join(partial, 'usr', 'include', 'linux', 'vfio.h'))) {
      throw new Error(`${debFile} unpacked into ${partial} has no usr/include/linux/vfio.h: ` +
        'the package layout changed; adjust provision-headers.ts');
    }
    await rm(root, { recursive: true, force: true });
    await rename(partial, root);
  }
  await writeMarker(markerPath(line), { version, debFile, includeDir } satisfies HeadersMarker);
  step.done(includeDir);
  return includeDir;
}
