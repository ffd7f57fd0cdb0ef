import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UnsupportedPlatformError, assertSupportedPlatform, currentPlatform, unsupportedReason } from './platform.ts';

test('this machine is supported', () => {
  assert.equal(unsupportedReason(currentPlatform()), undefined);
});

test('other kernels, architectures and C libraries are refused with the reason', () => {
  assert.match(unsupportedReason({ platform: 'darwin', arch: 'arm64', glibc: undefined })!, /needs Linux/);
  assert.match(unsupportedReason({ platform: 'linux', arch: 'ia32', glibc: '2.36' })!, /x86_64 and aarch64/);
  assert.match(unsupportedReason({ platform: 'linux', arch: 'x64', glibc: undefined })!, /needs glibc/);
  assert.throws(() => assertSupportedPlatform({ platform: 'win32', arch: 'x64', glibc: undefined }), UnsupportedPlatformError);
  assert.equal(unsupportedReason({ platform: 'linux', arch: 'arm64', glibc: '2.39' }), undefined);
});
