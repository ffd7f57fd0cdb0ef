/**
 * Checks of the guest test sources that the C compiler cannot make, run by build.ts before
 * it compiles anything.
 *
 * errno read next to a call: in `f(what, call(...), errno, X)` C leaves the order in which
 * the arguments are evaluated open, and gcc evaluates them right to left, so the errno
 * passed is the one left by whatever ran BEFORE call(). A guest test written that way
 * blames the kernel for an errno it never returned. The rule enforced here: when a call's
 * argument list reads errno, it must contain no other function call (so errno can only be
 * what the previous statement left). Formatting errno itself is allowed:
 * `db_errno_name(errno)` and `strerror(errno)` only read it. Capture errno in its own
 * statement (`int err = errno;`) or use DB_EXPECT_ERRNO (dmabuf_util.h), which does.
 */

export interface SourceProblem {
  file: string;
  line: number;
  message: string;
}

/** Calls whose only effect on errno is to read it: they may take errno next to nothing else. */
const ERRNO_FORMATTERS = ['db_errno_name', 'strerror'];

/** Words followed by `(` that are not function calls. */
const NOT_CALLS = new Set([
  'if', 'while', 'for', 'switch', 'return', 'sizeof', '_Alignof', 'alignof', '_Static_assert',
  'static_assert', '__attribute__', 'typeof', '__typeof__', 'defined', 'case', 'do', 'else',
]);

/**
 * The source with comments, string literals and character literals blanked out (newlines
 * kept, so offsets still map to the same lines), and preprocessor directives too: a
 * #define's body is checked where the macro is used.
 */
export function blankNonCode(src: string): string {
  let out = '';
  let i = 0;
  let lineStart = true;
  const blank = (s: string) => s.replace(/[^\n]/g, ' ');
  while (i < src.length) {
    const c = src[i]!;
    const rest2 = src.slice(i, i + 2);
    if (lineStart && c === '#') {
      // A directive runs to the end of the line, continued by a trailing backslash.
      let end = i;
      for (;;) {
        const nl = src.indexOf('\n', end);
        if (nl === -1) { end = src.length; break; }
        if (src[nl - 1] === '\\') { end = nl + 1; continue; }
        end = nl;
        break;
      }
      out += blank(src.slice(i, end));
      i = end;
      continue;
    }
    if (rest2 === '/*') {
      const end = src.indexOf('*/', i + 2);
      const stop = end === -1 ? src.length : end + 2;
      out += blank(src.slice(i, stop));
      i = stop;
      continue;
    }
    if (rest2 === '//') {
      const nl = src.indexOf('\n', i);
      const stop = nl === -1 ? src.length : nl;
      out += blank(src.slice(i, stop));
      i = stop;
      continue;
    }
    if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < src.length && src[j] !== c && src[j] !== '\n') j += src[j] === '\\' ? 2 : 1;
      const stop = Math.min(j + 1, src.length);
      // Keep the quotes so `f("x")` still has an argument there.
      out += c + blank(src.slice(i + 1, stop - 1)) + (stop - 1 > i ? src[stop - 1] : '');
      i = stop;
      lineStart = false;
      continue;
    }
    out += c;
    lineStart = c === '\n' || (lineStart && (c === ' ' || c === '\t'));
    i++;
  }
  return out;
}

/** Index of the `)` matching the `(` at open, or -1. */
function matchingParen(code: string, open: number): number {
  let depth = 0;
  for (let i = open; i < code.length; i++) {
    if (code[i] === '(') depth++;
    else if (code[i] === ')' && --depth === 0) return i;
  }
  return -1;
}

const CALL = /\b([A-Za-z_]\w*)\s*\(/g;

/** The non-keyword calls in code, as [name, offset of the name]. */
function calls(code: string): Array<[string, number]> {
  const found: Array<[string, number]> = [];
  for (const m of code.matchAll(CALL)) if (!NOT_CALLS.has(m[1]!)) found.push([m[1]!, m.index]);
  return found;
}

function lineOf(code: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset; i++) if (code[i] === '\n') line++;
  return line;
}

/** Every call whose arguments read errno next to another call, in one C source. */
export function findErrnoNextToCall(src: string, file: string): SourceProblem[] {
  const code = blankNonCode(src);
  const formatter = new RegExp(`\\b(?:${ERRNO_FORMATTERS.join('|')})\\s*\\(\\s*errno\\s*\\)`, 'g');
  const problems: SourceProblem[] = [];
  for (const [name, at] of calls(code)) {
    const open = code.indexOf('(', at);
    const close = matchingParen(code, open);
    if (close === -1) continue;
    const args = code.slice(open + 1, close);
    if (!/\berrno\b/.test(args)) continue;
    const others = calls(args.replace(formatter, 'ERRNO_READ'));
    if (others.length === 0) continue;
    problems.push({
      file,
      line: lineOf(code, at),
      message:
        `${name}(...) reads errno in the same argument list as the call ${others.map(([n]) => `${n}()`).join(', ')}: ` +
        'C leaves the order open (gcc evaluates right to left), so errno may predate that call. ' +
        'Capture errno in its own statement first (int err = errno;) or use DB_EXPECT_ERRNO(what, call, expected).',
    });
  }
  return problems;
}

/** All problems of a set of sources, as one message per problem ("file:line: message"). */
export function checkGuestSources(sources: Array<{ file: string; text: string }>): string[] {
  return sources.flatMap(({ file, text }) =>
    findErrnoNextToCall(text, file).map((p) => `${p.file}:${p.line}: ${p.message}`),
  );
}
