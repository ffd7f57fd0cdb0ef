import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { GUEST_TESTS_DIR } from './build.ts';
import { blankNonCode, checkGuestSources, findErrnoNextToCall } from './source-checks.ts';

const lines = (src: string) => findErrnoNextToCall(src, 'x.c').map((p) => p.line);

describe('errno read next to a call (guest test sources)', () => {
  it('rejects errno passed beside the call that sets it (the shape that blamed the kernel)', () => {
    const bad = [
      'static void f(void)',
      '{',
      '\tdb_expect_errno("second revoke", db_revoke(db.dev.device, fd),',
      '\t\t\terrno, EBADFD);',
      '}',
    ].join('\n');
    const found = findErrnoNextToCall(bad, 'dmabuf_revoke.c');
    assert.equal(found.length, 1);
    assert.equal(found[0]!.line, 3);
    assert.match(found[0]!.message, /db_expect_errno\(\.\.\.\) reads errno .* db_revoke\(\)/);
  });

  it('rejects errno formatted next to a call in the same list (munmap inside the condition)', () => {
    const bad = 'ktap_expect(munmap(p, n) == 0, "munmap: %s (errno %d)", strerror(errno), errno);';
    assert.deepEqual(lines(bad), [1]);
    assert.deepEqual(lines('ktap_fail("%s: %s", vu_error(), db_errno_name(errno));'), [1]);
  });

  it('accepts errno captured or formatted on its own', () => {
    const good = [
      'int ret = db_revoke(fd, x);',
      'int err = errno;',
      'db_check_errno("revoke", ret, err, EBADFD);',
      'ktap_fail("mmap: %s", db_errno_name(errno));',
      'ktap_fail("eventfd: %s (errno %d)", strerror(errno), errno);',
      'if (db_revoke_v2(fd, -1) == 0 || errno == EBADF) ok = 1;',
      'while (nanosleep(&ts, &ts) && errno == EINTR) ;',
      'DB_EXPECT_ERRNO("second revoke", db_revoke(dev, fd), EBADFD);',
      'why = db_why("reset: %s", ret ? db_errno_name(errno) : "0");',
    ].join('\n');
    assert.deepEqual(lines(good), []);
  });

  it('ignores errno and calls inside comments, strings and preprocessor lines', () => {
    const src = [
      '/* f(g(), errno) */',
      'ktap_diag("f(g(), errno)");',
      '// f(g(), errno)',
      '#define READ_ERRNO(call) ({ int r_ = (call); int e_ = errno; \\',
      '\treport(r_, e_, g()); })',
      "char c = '(';",
    ].join('\n');
    assert.deepEqual(lines(src), []);
    const blanked = blankNonCode(src);
    assert.equal(blanked.split('\n').length, 6, 'line count is kept');
    assert.doesNotMatch(blanked, /errno/);
  });

  it('finds nothing in the guest tests themselves', () => {
    const sources = readdirSync(GUEST_TESTS_DIR)
      .filter((f) => f.endsWith('.c') || f.endsWith('.h'))
      .map((f) => ({ file: f, text: readFileSync(join(GUEST_TESTS_DIR, f), 'utf8') }));
    assert.ok(sources.length > 10);
    assert.deepEqual(checkGuestSources(sources), []);
  });
});
