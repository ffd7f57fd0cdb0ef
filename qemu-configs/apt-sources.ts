// Finds the Debian archive's base URL in the machine's own apt configuration.
//
// The house rule is that no registry host name is ever written into the repository: the
// machine already knows which mirror it may reach (on CI machines, the only one), so we read
// it from /etc/apt and only swap the suite names. Both formats are understood: deb822
// `*.sources` files (`URIs:` field) and one-line `sources.list` entries.

import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Debian release names and aliases; a suite outside this list is not Debian's main archive. */
const DEBIAN_SUITE_NAMES = new Set([
  'buster', 'bullseye', 'bookworm', 'trixie', 'forky', 'duke', 'sid',
  'oldoldstable', 'oldstable', 'stable', 'testing', 'unstable',
]);

/** One `deb` source: an archive URI, the suites it serves and their components. */
export interface AptSource {
  uri: string;
  suites: string[];
  components: string[];
}

/**
 * True for the main Debian archive (release, -updates, -backports suites with `main`), false
 * for the security archive (its own URI, `<codename>-security` suites) and non-Debian archives.
 */
export function isDebianMainArchive(source: AptSource): boolean {
  if (!/^(https?|file):/.test(source.uri)) return false;
  if (/-security\/?$/.test(source.uri)) return false;
  if (!source.components.includes('main')) return false;
  return source.suites.some((suite) => {
    const [codename, pocket] = suite.replace(/\/$/, '').split('-', 2);
    if (codename === undefined || !DEBIAN_SUITE_NAMES.has(codename)) return false;
    return pocket === undefined || pocket === 'updates' || pocket === 'backports';
  });
}

/** Parses deb822 `.sources` text into its enabled `deb` sources (one per URI). */
export function parseDeb822Sources(text: string): AptSource[] {
  const sources: AptSource[] = [];
  // Stanzas are separated by blank lines; comment lines are dropped before splitting so a
  // commented-out line between fields does not end a stanza.
  const lines = text.split(/\r?\n/).filter((l) => !/^\s*#/.test(l));
  const stanzas = lines.join('\n').split(/\n\s*\n/);
  for (const stanza of stanzas) {
    const fields = new Map<string, string>();
    let current: string | undefined;
    for (const line of stanza.split('\n')) {
      if (/^\s/.test(line) && current !== undefined) {
        fields.set(current, `${fields.get(current) ?? ''} ${line.trim()}`);
        continue;
      }
      const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
      if (m === null) continue;
      current = m[1]!.toLowerCase();
      fields.set(current, m[2]!.trim());
    }
    const words = (key: string): string[] => (fields.get(key) ?? '').split(/\s+/).filter((w) => w !== '');
    if (!words('types').includes('deb')) continue;
    if ((fields.get('enabled') ?? 'yes').toLowerCase() === 'no') continue;
    for (const uri of words('uris')) {
      sources.push({ uri, suites: words('suites'), components: words('components') });
    }
  }
  return sources;
}

/** Parses one-line `sources.list` text (`deb [opts] uri suite comp...`) into its `deb` sources. */
export function parseOneLineSources(text: string): AptSource[] {
  const sources: AptSource[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/#.*$/, '').trim();
    // Options in brackets may contain spaces (`[ arch=amd64 signed-by=... ]`): drop them whole.
    const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s*(.*)$/.exec(line);
    if (m === null) continue;
    sources.push({ uri: m[1]!, suites: [m[2]!], components: m[3]!.split(/\s+/).filter((c) => c !== '') });
  }
  return sources;
}

/** The first main-archive base URL among the sources, without a trailing slash. */
export function pickArchiveBase(sources: readonly AptSource[]): string | undefined {
  const found = sources.find(isDebianMainArchive);
  return found?.uri.replace(/\/+$/, '');
}

/** Where apt keeps its source lists, in the order apt reads them. */
export interface AptConfigFiles {
  /** Contents of /etc/apt/sources.list, if present. */
  sourcesList?: string;
  /** Name and contents of each file in /etc/apt/sources.list.d, sorted by name. */
  sourcesParts: { name: string; text: string }[];
}

/** The archive base URL named by the given apt configuration, or undefined. */
export function archiveBaseFromConfig(config: AptConfigFiles): string | undefined {
  const sources: AptSource[] = [];
  if (config.sourcesList !== undefined) sources.push(...parseOneLineSources(config.sourcesList));
  for (const part of config.sourcesParts) {
    if (part.name.endsWith('.sources')) sources.push(...parseDeb822Sources(part.text));
    else if (part.name.endsWith('.list')) sources.push(...parseOneLineSources(part.text));
  }
  return pickArchiveBase(sources);
}

/** Reads the machine's apt configuration from `etcApt` (default /etc/apt). */
export async function readAptConfig(etcApt = '/etc/apt'): Promise<AptConfigFiles> {
  const config: AptConfigFiles = { sourcesParts: [] };
  try {
    config.sourcesList = await readFile(join(etcApt, 'sources.list'), 'utf8');
  } catch {
    // A deb822-only machine has no sources.list; that is normal.
  }
  let names: string[] = [];
  try {
    names = (await readdir(join(etcApt, 'sources.list.d'))).sort();
  } catch {
    // No sources.list.d either: the error below explains what to do.
  }
  for (const name of names) {
    config.sourcesParts.push({ name, text: await readFile(join(etcApt, 'sources.list.d', name), 'utf8') });
  }
  return config;
}

/**
 * The Debian archive base URL this machine uses. `EDU_PLUS_DEBIAN_ARCHIVE` overrides it (for
 * machines whose apt points elsewhere, e.g. Ubuntu or a local proxy path).
 */
export async function machineArchiveBase(): Promise<string> {
  const override = process.env.EDU_PLUS_DEBIAN_ARCHIVE;
  if (override !== undefined && override !== '') return override.replace(/\/+$/, '');
  const base = archiveBaseFromConfig(await readAptConfig());
  if (base === undefined) {
    throw new Error(
      'no Debian archive found in /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources ' +
        '(looked for a `deb` entry with a Debian suite and the `main` component). ' +
        'Set EDU_PLUS_DEBIAN_ARCHIVE to the base URL of a Debian mirror (the part before /dists).',
    );
  }
  return base;
}
