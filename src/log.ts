/** Structured logs: JSON lines (pino). Never log signatures or credentials. */
import { type Logger, pino } from 'pino';

export type { Logger };

export function createLogger(
  opts: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {},
): Logger {
  return pino(
    {
      level: opts.level ?? 'info',
      base: opts.name ? { name: opts.name } : {},
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['password', '*.password', 'authorization', '*.authorization', 'signature'],
        censor: '[redacted]',
      },
    },
    // Logs go to stderr so that command output on stdout stays parseable.
    (opts.destination ?? process.stderr) as pino.DestinationStream,
  );
}

/** A logger that drops everything (tests and quiet commands). */
export const silentLogger: Logger = pino({ level: 'silent' });
