/** A small leveled logger: one line per event, prefixed with time, level and component. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
  child(component: string): Logger;
}

export function createLogger(opts: { level?: LogLevel; component?: string; write?: (line: string) => void } = {}): Logger {
  const min = rank[opts.level ?? 'info'];
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const make = (component: string): Logger => {
    const emit = (level: LogLevel, msg: string) => {
      if (rank[level] < min) return;
      const time = new Date().toISOString().slice(11, 23);
      write(`${time} ${level.padEnd(5)} ${component}: ${msg}`);
    };
    return {
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
