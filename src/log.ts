/** Structured logs: JSON lines (pino). Never log signatures or credentials. */
import { type Logger, pino } from 'pino';

export type { Logger };

/** What an error becomes in a log line's `err` (see serializeError). */
export interface LoggedError {
  type: string;
  message: string;
  code?: unknown;
  status?: number;
  cause?: { message: string; code?: unknown };
  stack?: string;
}

/** pino's level number for debug: at this level or below, errors keep their stack. */
const DEBUG = 20;

/**
 * An error as one log field: its code, message, HTTP status and cause (one
 * level: the cause's message and code), plus the stack only when asked
 * (the logger is at debug or lower, or the line reports a crash). A value
 * that is not an Error is logged as it is.
 */
export function serializeError(err: unknown, withStack: boolean): unknown {
  if (!(err instanceof Error)) return err;
  const e = err as Error & { code?: unknown; status?: unknown };
  const out: LoggedError = { type: e.name, message: e.message };
  if (e.code !== undefined) out.code = e.code;
  if (typeof e.status === 'number') out.status = e.status;
  if (e.cause !== undefined) {
    const c = e.cause as { message?: unknown; code?: unknown } | null;
    const message =
      c instanceof Error || typeof c?.message === 'string' ? String(c?.message) : String(e.cause);
    out.cause = c?.code === undefined ? { message } : { message, code: c.code };
  }
  if (withStack && e.stack) out.stack = e.stack;
  return out;
}

export function createLogger(
  opts: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {},
): Logger {
  const logger: Logger = pino(
    {
      level: opts.level ?? 'info',
      base: opts.name ? { name: opts.name } : {},
      timestamp: pino.stdTimeFunctions.isoTime,
      // Log errors as `{ err }`: the level is read when the line is written.
      serializers: { err: (err: unknown) => serializeError(err, logger.levelVal <= DEBUG) },
      redact: {
        paths: ['password', '*.password', 'authorization', '*.authorization', 'signature'],
        censor: '[redacted]',
      },
    },
    // Logs go to stderr so that command output on stdout stays parseable.
    (opts.destination ?? process.stderr) as pino.DestinationStream,
  );
  return logger;
}

/** A child of `log` whose `err` keeps its stack at any level: for the one line a crash writes. */
export function crashLogger(log: Logger): Logger {
  return log.child({}, { serializers: { err: (err: unknown) => serializeError(err, true) } });
}

/** A logger that drops everything (tests and quiet commands). */
export const silentLogger: Logger = pino({ level: 'silent' });
