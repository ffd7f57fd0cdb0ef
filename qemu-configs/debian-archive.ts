// A private apt state below the cache: its own sources list, an empty dpkg status, its own
// lists and archives. With it, apt resolves and downloads trixie(-backports) packages on a
// bookworm host without installing anything and without touching /var/lib/apt or /var/lib/dpkg.
//
// Layout (<cache>/apt):
//   etc/sources.list        trixie + trixie-backports from the machine's own mirror
//   etc/apt.conf            read via APT_CONFIG; only re-points Dir::Etc::main (see below)
//   etc/last.conf           read after the host's apt.conf.d: clears the host's hooks
//   state/status            empty dpkg status: "nothing is installed", so apt fetches closures
//   state/lists/            package lists;  state/updated.json records when and from what
//   cache/archives/         downloaded .debs

import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { machineArchiveBase } from './apt-sources.ts';
import { cacheDir, progress, readMarker, writeMarker } from './cache.ts';
import type { Progress } from './cache.ts';
import { runCommand } from './run-command.ts';

/** Suites the private state knows; packages default to trixie, `-t trixie-backports` opts in. */
export const SUITES = ['trixie', 'trixie-backports'] as const;
const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';
/** Lists older than this are refreshed before resolving (backports move fast). */
const LISTS_MAX_AGE_MS = 24 * 60 * 60 * 1000;
/** The guest kernel and QEMU prefix are x86-64; foreign host architectures are irrelevant. */
const ARCH = 'amd64';

interface UpdateMarker {
  time: number;
  sources: string;
}

function aptRoot(): string {
  return join(cacheDir(), 'apt');
}

/** The `-o` options that point apt at the private state instead of the host's. */
export function aptOptions(root = aptRoot()): string[] {
  const o = (key: string, value: string): string[] => ['-o', `${key}=${value}`];
  return [
    ...o('Dir::Etc::SourceList', join(root, 'etc/sources.list')),
    ...o('Dir::Etc::SourceParts', join(root, 'etc/sources.list.d')),
    ...o('Dir::Etc::Preferences', join(root, 'etc/preferences')),
    ...o('Dir::Etc::PreferencesParts', join(root, 'etc/preferences.d')),
    ...o('Dir::State', join(root, 'state')),
    ...o('Dir::State::status', join(root, 'state/status')),
    ...o('Dir::Cache', join(root, 'cache')),
    ...o('Dir::Cache::archives', join(root, 'cache/archives')),
    // The host (a Docker-style image) disables the binary caches; re-enable them privately so
    // repeated apt-cache queries do not re-parse every list.
    ...o('Dir::Cache::pkgcache', join(root, 'cache/pkgcache.bin')),
    ...o('Dir::Cache::srcpkgcache', join(root, 'cache/srcpkgcache.bin')),
    ...o('Dir::Log', join(root, 'log')),
    ...o('APT::Architecture', ARCH),
    ...o('APT::Architectures', ARCH),
    ...o('APT::Install-Recommends', 'false'),
    ...o('APT::Install-Suggests', 'false'),
    // As root apt downloads as `_apt`, which cannot write into root's cache directory.
    ...o('APT::Sandbox::User', 'root'),
    ...o('Acquire::Languages', 'none'),
  ];
}

/** The sources list text for the given archive base URL. */
export function sourcesListText(archiveBase: string): string {
  return SUITES.map((suite) => `deb [signed-by=${KEYRING}] ${archiveBase} ${suite} main\n`).join('');
}

/** Creates the directories and config files of the private state (idempotent). */
async function prepareState(root: string): Promise<string> {
  const sources = sourcesListText(await machineArchiveBase());
  for (const dir of ['etc/sources.list.d', 'etc/preferences.d', 'state/lists/partial',
    'cache/archives/partial', 'log']) {
    await mkdir(join(root, dir), { recursive: true });
  }
  await writeFile(join(root, 'etc/sources.list'), sources);
  // APT_CONFIG is read before the host's apt.conf.d, so it cannot undo the hooks declared
  // there; it can move Dir::Etc::main, which apt reads last, and that file clears them. The
  // host's other settings (proxies, Check-Valid-Until) stay in force on purpose.
  await writeFile(join(root, 'etc/apt.conf'), `Dir::Etc::main "${join(root, 'etc/last.conf')}";\n`);
  await writeFile(
    join(root, 'etc/last.conf'),
    ['#clear APT::Update::Post-Invoke-Success;', '#clear APT::Update::Post-Invoke;',
      '#clear DPkg::Pre-Install-Pkgs;', '#clear DPkg::Post-Invoke;', '#clear DPkg::Pre-Invoke;', ''].join('\n'),
  );
  if (!existsSync(join(root, 'state/status'))) await writeFile(join(root, 'state/status'), '');
  return sources;
}

function aptEnv(root: string): NodeJS.ProcessEnv {
  return { ...process.env, APT_CONFIG: join(root, 'etc/apt.conf'), DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C' };
}

/**
 * Condenses apt's output for the progress log: errors and warnings verbatim, every tenth
 * download, and the closing "Fetched" summary.
 */
function aptLineReporter(step: Progress): (line: string) => void {
  let fetched = 0;
  return (line) => {
    if (/^(E:|W:|Err:)/.test(line) || /^Fetched /.test(line)) {
      step.info(line);
    } else if (/^Get:\d+/.test(line)) {
      fetched += 1;
      if (fetched % 10 === 1) step.info(`downloading #${fetched}: ${line.replace(/^Get:\d+\s+\S+\s+/, '')}`);
    }
  };
}

async function apt(tool: 'apt-get' | 'apt-cache', args: string[], step: Progress, cwd?: string): Promise<string> {
  const root = aptRoot();
  const result = await runCommand(tool, [...aptOptions(root), ...args], {
    env: aptEnv(root),
    cwd,
    onLine: tool === 'apt-get' ? aptLineReporter(step) : undefined,
  });
  return result.stdout;
}

let updateInFlight: Promise<void> | undefined;

/**
 * Makes sure the private package lists exist and are fresh: runs `apt-get update` when they
 * are missing, older than a day, built from a different mirror, or when `force` is set (a
 * download failed with 404 because the lists named a superseded version).
 */
export function updateLists(opts: { force?: boolean } = {}): Promise<void> {
  updateInFlight ??= doUpdateLists(opts.force ?? false).finally(() => {
    updateInFlight = undefined;
  });
  return updateInFlight;
}

async function doUpdateLists(force: boolean): Promise<void> {
  const root = aptRoot();
  const sources = await prepareState(root);
  const markerPath = join(root, 'state/updated.json');
  const marker = await readMarker<UpdateMarker>(markerPath);
  const fresh = marker !== undefined && marker.sources === sources && Date.now() - marker.time < LISTS_MAX_AGE_MS;
  if (fresh && !force) return;
  const step = progress('apt lists');
  step.info(`updating ${SUITES.join(' + ')} package lists in ${join(root, 'state/lists')}`);
  try {
    await apt('apt-get', ['update'], step);
  } catch (err) {
    // Merely old lists from the same mirror are still usable (e.g. offline with everything
    // already downloaded); missing lists, a new mirror or a forced refresh are not.
    if (force || marker === undefined || marker.sources !== sources) throw err;
    step.info(`update failed, going on with the lists from ${new Date(marker.time).toISOString()}: ${(err as Error).message.split('\n')[0]}`);
    return;
  }
  await writeMarker(markerPath, { time: Date.now(), sources } satisfies UpdateMarker);
  step.done();
}

/** Runs apt-cache against the private state (lists are made fresh first). */
export async function aptCache(args: string[]): Promise<string> {
  await updateLists();
  return apt('apt-cache', args, progress('apt-cache'));
}

/** apt's file name for a downloaded package (the epoch colon is escaped as %3a). */
export function debFileName(name: string, version: string, arch: string): string {
  return `${name}_${version.replace(/:/g, '%3a')}_${arch}.deb`;
}

/** A package selected by apt's resolver. */
export interface ResolvedPackage {
  name: string;
  version: string;
  arch: string;
}

/** Parses `apt-get install -s` output (`Inst name (version release [arch])`) into packages. */
export function parseSimulatedInstall(output: string): ResolvedPackage[] {
  const packages: ResolvedPackage[] = [];
  for (const line of output.split('\n')) {
    const m = /^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) .*\[([^\]]+)\]\)/.exec(line);
    if (m !== null) packages.push({ name: m[1]!, version: m[2]!, arch: m[3]! });
  }
  return packages;
}

/** True when apt's failure looks like stale lists (a file the lists name is gone: 404). */
function isStaleListFailure(err: unknown): boolean {
  const output = (err as { output?: string }).output ?? String(err);
  return /\b404\b|Unable to fetch some archives|Failed to fetch/.test(output);
}

async function withListRetry<T>(action: () => Promise<T>, step: Progress): Promise<T> {
  await updateLists();
  try {
    return await action();
  } catch (err) {
    if (!isStaleListFailure(err)) throw err;
    step.info('download failed (package lists out of date?); refreshing lists and retrying once');
    await updateLists({ force: true });
    return action();
  }
}

function archivesDir(): string {
  return join(aptRoot(), 'cache/archives');
}

/**
 * Resolves `pkgs` with all their dependencies (recommends excluded) as if nothing were
 * installed, downloads what is not in the private archives yet, and returns the .deb paths of
 * the whole closure. `targetRelease` is apt's `-t` (e.g. 'trixie-backports').
 */
export async function downloadWithDependencies(
  pkgs: string[],
  opts: { targetRelease?: string } = {},
): Promise<{ packages: ResolvedPackage[]; debs: string[] }> {
  const step = progress(`download ${pkgs.length === 1 ? pkgs[0] : `${pkgs.length} packages`}`);
  const target = opts.targetRelease !== undefined ? ['-t', opts.targetRelease] : [];
  return withListRetry(async () => {
    const simulated = await apt('apt-get', ['install', '-s', '-y', ...target, ...pkgs], step);
    const packages = parseSimulatedInstall(simulated);
    if (packages.length === 0) throw new Error(`apt resolved no packages for ${pkgs.join(' ')}:\n${simulated}`);
    const debs = packages.map((p) => join(archivesDir(), debFileName(p.name, p.version, p.arch)));
    const missing = debs.filter((d) => !existsSync(d));
    if (missing.length > 0) {
      step.info(`${packages.length} packages in the closure, ${missing.length} to download`);
      await apt('apt-get', ['install', '-d', '-y', ...target, ...pkgs], step);
    }
    const stillMissing = debs.filter((d) => !existsSync(d));
    if (stillMissing.length > 0) {
      throw new Error(`apt reported success but these files are missing: ${stillMissing.map((d) => basename(d)).join(', ')}`);
    }
    step.done(`${debs.length} .debs ready`);
    return { packages, debs };
  }, step);
}

/**
 * Downloads exactly `pkgs` (no dependencies; `name`, `name/suite` or `name=version`) into the
 * private archives and returns their paths, in the order given.
 */
export async function downloadOnly(pkgs: string[]): Promise<string[]> {
  const step = progress(`download ${pkgs.length === 1 ? pkgs[0] : `${pkgs.length} packages`}`);
  return withListRetry(async () => {
    // --print-uris names the files without fetching: `'URI' file size hash`.
    const uris = await apt('apt-get', ['download', '--print-uris', ...pkgs], step);
    const names = [...uris.matchAll(/^'[^']+' (\S+\.deb) /gm)].map((m) => m[1]!);
    if (names.length !== pkgs.length) {
      throw new Error(`apt-get download --print-uris named ${names.length} files for ${pkgs.length} packages:\n${uris}`);
    }
    const debs = names.map((n) => join(archivesDir(), n));
    if (debs.some((d) => !existsSync(d))) await apt('apt-get', ['download', ...pkgs], step, archivesDir());
    step.done(`${debs.length} .debs ready`);
    return debs;
  }, step);
}

/** Unpacks a .deb's files into `dir` (like `dpkg -x`; no maintainer scripts run). */
export async function extractDeb(deb: string, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await runCommand('dpkg-deb', ['-x', deb, dir]);
}

/** Unpacks many .debs into one directory, a few at a time (dpkg-deb is mostly xz-bound). */
export async function extractDebs(debs: readonly string[], dir: string, parallel = 4): Promise<void> {
  await mkdir(dir, { recursive: true });
  const queue = [...debs];
  const worker = async (): Promise<void> => {
    for (let deb = queue.shift(); deb !== undefined; deb = queue.shift()) await extractDeb(deb, dir);
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}
