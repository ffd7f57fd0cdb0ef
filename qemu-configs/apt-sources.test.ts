import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  archiveBaseFromConfig, isDebianMainArchive, parseDeb822Sources, parseOneLineSources, readAptConfig,
} from './apt-sources.ts';

// Mirror names below are placeholders under the reserved .example domain.
const DEB822 = `Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`;

test('deb822: takes the main archive, not the security archive', () => {
  const sources = parseDeb822Sources(DEB822);
  assert.equal(sources.length, 2);
  assert.deepEqual(sources[0], { uri: 'http://mirror.example/debian', suites: ['bookworm', 'bookworm-updates'], components: ['main'] });
  assert.equal(isDebianMainArchive(sources[1]!), false);
  assert.equal(archiveBaseFromConfig({ sourcesParts: [{ name: 'debian.sources', text: DEB822 }] }), 'http://mirror.example/debian');
});

test('deb822: security first, disabled stanzas, deb-src and continuation lines', () => {
  const text = `Types: deb
URIs: http://mirror.example/debian-security/
Suites: trixie-security
Components: main

Types: deb
Enabled: no
URIs: http://disabled.example/debian
Suites: trixie
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: trixie
Components: main

Types: deb
URIs:
 https://mirror2.example/debian/
Suites: trixie trixie-updates
Components: main contrib
`;
  assert.equal(archiveBaseFromConfig({ sourcesParts: [{ name: 'x.sources', text }] }), 'https://mirror2.example/debian');
});

test('one-line sources.list with options and comments', () => {
  const text = [
    '# deb http://commented.example/debian bookworm main',
    'deb [ arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg ] http://mirror.example/debian/ bookworm main contrib',
    'deb http://mirror.example/debian-security bookworm-security main',
    'deb-src http://mirror.example/debian bookworm main',
  ].join('\n');
  const sources = parseOneLineSources(text);
  assert.equal(sources.length, 2);
  assert.deepEqual(sources[0], { uri: 'http://mirror.example/debian/', suites: ['bookworm'], components: ['main', 'contrib'] });
  assert.equal(archiveBaseFromConfig({ sourcesList: text, sourcesParts: [] }), 'http://mirror.example/debian');
});

test('non-Debian archives are not taken for Debian', () => {
  const ubuntu = 'deb http://archive.example/ubuntu jammy main restricted\n';
  assert.equal(archiveBaseFromConfig({ sourcesList: ubuntu, sourcesParts: [] }), undefined);
  const thirdParty = 'Types: deb\nURIs: https://thirdparty.example/node_20.x\nSuites: nodistro\nComponents: main\n';
  assert.equal(archiveBaseFromConfig({ sourcesParts: [{ name: 'thirdparty.sources', text: thirdParty }] }), undefined);
  const cdrom = 'deb cdrom:[Debian GNU/Linux 12]/ bookworm main\n';
  assert.equal(archiveBaseFromConfig({ sourcesList: cdrom, sourcesParts: [] }), undefined);
});

test('sources.list is read before sources.list.d, which is read in name order', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'edu-plus-apt-'));
  try {
    mkdirSync(join(dir, 'sources.list.d'));
    writeFileSync(join(dir, 'sources.list.d', 'b.list'), 'deb http://b.example/debian trixie main\n');
    writeFileSync(join(dir, 'sources.list.d', 'a.sources'), 'Types: deb\nURIs: http://a.example/debian\nSuites: trixie\nComponents: main\n');
    writeFileSync(join(dir, 'sources.list.d', 'ignored.save'), 'deb http://c.example/debian trixie main\n');
    const config = await readAptConfig(dir);
    assert.equal(config.sourcesList, undefined);
    assert.deepEqual(config.sourcesParts.map((p) => p.name), ['a.sources', 'b.list', 'ignored.save']);
    assert.equal(archiveBaseFromConfig(config), 'http://a.example/debian');

    writeFileSync(join(dir, 'sources.list'), 'deb http://first.example/debian bookworm main\n');
    assert.equal(archiveBaseFromConfig(await readAptConfig(dir)), 'http://first.example/debian');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
