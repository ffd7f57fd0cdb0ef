/**
 * A small leveled logger: one line per event, prefixed with time, level and component.
 *
 * Warnings and errors are rate-limited, because a client (or a guest) can cause them at will:
 * a refused DMA, a guest register mistake or an EMFILE per request would otherwise write
 * megabytes a minute. Lines are grouped by their shape — the message with every number
 * replaced — so "DMA at 0x1000 refused" and "DMA at 0x2000 refused" count as one kind. Each
 * kind may log `burst` lines per `intervalMs`; the last one allowed says that repeats are being
 * suppressed, and the first line of the next interval says how many were. Info and debug lines
 * are not limited (nothing a client does repeats them per message).
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  /** Whether debug lines are written: a hot path builds its message only then. */
  readonly debugEnabled: boolean;
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
  child(component: string): Logger;
}

export interface LogRateLimit {
  /** Lines of one kind allowed per interval. */
  readonly burst: number;
  readonly intervalMs: number;
}

export const DEFAULT_LOG_RATE_LIMIT: LogRateLimit = { burst: 5, intervalMs: 10_000 };

/** Kinds tracked at once; past this the table starts over (a flood of distinct kinds is rare). */
const MAX_KINDS = 1024;

interface Kind {
  start: number;
  lines: number;
  suppressed: number;
}

export function createLogger(opts: { level?: LogLevel; component?: string; write?: (line: string) => void; rateLimit?: LogRateLimit } = {}): Logger {
  const min = rank[opts.level ?? 'info'];
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const limit = opts.rateLimit ?? DEFAULT_LOG_RATE_LIMIT;
  const kinds = new Map<string, Kind>();
  const line = (level: LogLevel, component: string, msg: string) =>
    write(`${new Date().toISOString().slice(11, 23)} ${level.padEnd(5)} ${component}: ${msg}`);

  /** Whether this warning or error may be written now (and with what note). */
  const admit = (level: LogLevel, component: string, msg: string): string | null => {
    const key = `${level} ${component} ${msg.replace(/0x[0-9a-f]+|\d+/gi, '#')}`;
    const now = Date.now();
    let kind = kinds.get(key);
    if (!kind || now - kind.start >= limit.intervalMs) {
      if (kind && kind.suppressed > 0) {
        line(level, component, `(${kind.suppressed} more like the next line were suppressed in the last ${Math.round((now - kind.start) / 1000)} s)`);
      }
      if (!kind && kinds.size >= MAX_KINDS) kinds.clear();
      kind = { start: now, lines: 0, suppressed: 0 };
      kinds.set(key, kind);
    }
    if (kind.lines >= limit.burst) {
      kind.suppressed++;
      return null;
    }
    kind.lines++;
    return kind.lines === limit.burst ? ` (repeats suppressed for ${Math.round(limit.intervalMs / 1000)} s)` : '';
  };

  const make = (component: string): Logger => {
    const emit = (level: LogLevel, msg: string) => {
      if (rank[level] < min) return;
      if (rank[level] >= rank.warn) {
        const note = admit(level, component, msg);
        if (note === null) return;
        msg += note;
      }
      line(level, component, msg);
    };
    return {
      debugEnabled: rank.debug >= min,
      debug: (m) => emit('debug', m),
      info: (m) => emit('info', m),
      warn: (m) => emit('warn', m),
      error: (m) => emit('error', m),
      child: (sub) => make(`${component}/${sub}`),
    };
  };
  return make(opts.component ?? 'edu-plus');
}

/** A logger that drops everything (unit tests that only care about behaviour). */
export const silentLogger: Logger = createLogger({ write: () => {} });
