/**
 * `vm --selftests [TREE]`: the kernel's own VFIO selftests (tools/testing/selftests/vfio of
 * TREE, or of Debian's linux-source of the provisioned kernel when TREE is left out), built
 * statically with edu-plus's selftests driver in their library, run in the guest against
 * edu-plus; their results join the verdict like any other program's. The build is
 * qemu-configs/selftests-build.ts, the guest side qemu-configs/selftests.ts.
 */
import { provisionKernelHeaders } from '../qemu-configs/provision-headers.ts';
import { provisionLinuxSource } from '../qemu-configs/provision-linux-source.ts';
import { SELFTESTS_GUEST_DIR, selftestCommand, selftestsSetup } from '../qemu-configs/selftests.ts';
import { SelftestsInputError, buildSelftests, checkSelftestsTree } from '../qemu-configs/selftests-build.ts';
import type { progress } from '../qemu-configs/cache.ts';
import { UsageError } from './flags.ts';
import type { ExtraPrograms } from './vm-extra-tests.ts';
import { programCommand } from './vm-report.ts';

/** The default timeout with --selftests: the driver test pins 1 GiB + 2 MiB per case under TCG. */
export const SELFTESTS_TIMEOUT_S = 3600;

/** Checks a TREE given to --selftests before anything slow runs ('' means Debian's). */
export function checkSelftestsOption(tree: string): void {
  if (tree === '') return;
  try {
    checkSelftestsTree(tree);
  } catch (err) {
    if (err instanceof SelftestsInputError) throw new UsageError(`--selftests: ${err.message}`);
    throw err;
  }
}

/**
 * Splits --tests entries into program names and the harness options an entry may carry after
 * a colon ("vfio_pci_driver_test:-v vfio_type1v2_iommu" → that name, "-v vfio_type1v2_iommu").
 */
export function splitTestEntries(entries: readonly string[]): { names: string[]; args: Map<string, string> } {
  const args = new Map<string, string>();
  const names = entries.map((entry) => {
    const colon = entry.indexOf(':');
    if (colon < 0) return entry;
    const name = entry.slice(0, colon).trim();
    args.set(name, entry.slice(colon + 1).trim());
    return name;
  });
  return { names, args };
}

/**
 * Builds the selftests and plans their /init lines. `only`: the selftest programs to run (from
 * --tests), undefined for all of them; `args`: harness options per program. `includeDir`: the
 * UAPI headers (--headers), default the provisioned Debian ones, which match Debian's source.
 */
export async function planSelftests(
  opts: { tree: string; includeDir?: string; only?: readonly string[]; args?: ReadonlyMap<string, string> },
  step: ReturnType<typeof progress>,
): Promise<ExtraPrograms> {
  const tree = opts.tree !== '' ? opts.tree : (await provisionLinuxSource()).dir;
  if (opts.tree === '') step.info(`selftests from Debian's kernel source: ${tree}`);
  const built = await buildSelftests({ tree, includeDir: opts.includeDir ?? (await provisionKernelHeaders()) });
  const programs = opts.only === undefined ? built.programs : built.programs.filter((p) => opts.only!.includes(p.name));
  return {
    names: programs.map((p) => p.name),
    files: programs.map((p) => ({ src: p.path, dest: `${SELFTESTS_GUEST_DIR}/${p.name}` })),
    setup: programs.length === 0 ? [] : selftestsSetup(),
    commands: programs.map((p) => programCommand(p.name, selftestCommand(p.name, opts.args?.get(p.name)))),
  };
}

/**
 * Which programs run: `--tests` names ours and, with --selftests, selftest programs (with
 * harness options after a colon); `all` is every one of ours. Without --tests: all of ours,
 * or none when the developer brought programs (--run) or asked for the selftests, which then
 * all run. Unknown names are a usage error that lists what exists.
 */
export async function choosePrograms(
  opts: { tests?: string[]; selftests?: string; includeDir?: string; ours: readonly string[]; byo: ExtraPrograms },
  step: ReturnType<typeof progress>,
): Promise<{ tests: string[]; selftests?: ExtraPrograms }> {
  const { ours } = opts;
  const bringsOwn = opts.byo.names.length > 0 || opts.selftests !== undefined;
  const entries = splitTestEntries(opts.tests ?? []);
  const asked = entries.names.includes('all') ? [...ours, ...entries.names.filter((t) => t !== 'all')] : opts.tests ? entries.names : bringsOwn ? [] : [...ours];
  const withArgs = [...entries.args.keys()].filter((t) => ours.includes(t));
  if (withArgs.length > 0) throw new UsageError(`--tests: options after a colon are for the kernel's selftests (--selftests), not for ${withArgs.join(', ')}`);
  const tests = asked.filter((t) => ours.includes(t));
  const others = asked.filter((t) => !ours.includes(t));
  const selftests = opts.selftests === undefined
    ? undefined
    : await planSelftests({ tree: opts.selftests, includeDir: opts.includeDir, only: others.length === 0 ? undefined : others, args: entries.args }, step);
  const unknown = others.filter((t) => !selftests?.names.includes(t));
  if (unknown.length > 0) {
    throw new UsageError(`--tests: no guest test ${unknown.map((t) => `"${t}"`).join(', ')}; available: ${[...ours, ...(selftests?.names ?? [])].join(', ')}`);
  }
  return { tests, selftests };
}
