/**
 * Runs a job (the sweep) every interval, never two at once. Intervals that a
 * cron expression can state exactly (a divisor of a minute, an hour or a
 * day) use the `cron` package with waitForCompletion, so a tick that comes
 * while the previous run is still going is skipped; other intervals use
 * timers with the same rule. `stop()` lets the current run finish until a
 * deadline, then aborts it.
 */
import { CronJob } from 'cron';
import type { Logger } from '../log.ts';

export interface RunSignals {
  /** Set when the scheduler stops: finish what is in progress, start nothing new. */
  stop: AbortSignal;
  /** Set at the stop deadline: abort now. */
  abort: AbortSignal;
}

/** How one run ended: its summary, or the error it threw. */
export interface RunEnd<T> {
  run: number;
  startedAt: Date;
  finishedAt: Date;
  summary?: T | undefined;
  error?: unknown;
}

export interface SchedulerOptions<T> {
  intervalMs: number;
  /** One run; its result is logged as the run's summary. */
  run: (signals: RunSignals) => Promise<T>;
  logger: Logger;
  /** Name in the logs (default "sweep"). */
  name?: string;
  clock?: () => number;
  /** Called after each run, finished or failed (e.g. to record it); what it throws is logged. */
  onRunEnd?: (end: RunEnd<T>) => unknown;
}

export interface Scheduler {
  readonly mode: 'cron' | 'interval';
  /** The cron expression in use (cron mode). */
  readonly cronTime: string | undefined;
  /** Runs started so far. */
  readonly runs: number;
  readonly running: boolean;
  start(): void;
  /** Stops scheduling; waits for the current run until `deadlineMs`, then aborts it. */
  stop(opts: { deadlineMs: number }): Promise<'idle' | 'finished' | 'aborted'>;
}

/** Waits for `running` at most `deadlineMs`: 'finished' if it settled by then, else 'late'. */
export async function finishedBy(
  running: Promise<unknown>,
  deadlineMs: number,
): Promise<'finished' | 'late'> {
  let t: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    t = setTimeout(() => resolve('late'), deadlineMs);
  });
  try {
    return await Promise.race([running.then(() => 'finished' as const), late]);
  } finally {
    clearTimeout(t);
  }
}

/** A 6-field cron expression firing exactly every `ms`, or undefined when there is none. */
export function cronExpression(ms: number): string | undefined {
  if (!Number.isInteger(ms) || ms <= 0 || ms % 1000 !== 0) return undefined;
  const sec = ms / 1000;
  if (sec < 60) return 60 % sec === 0 ? (sec === 1 ? '* * * * * *' : `*/${sec} * * * * *`) : undefined;
  if (sec % 60 !== 0) return undefined;
  const min = sec / 60;
  if (min < 60) return 60 % min === 0 ? (min === 1 ? '0 * * * * *' : `0 */${min} * * * *`) : undefined;
  if (min % 60 !== 0) return undefined;
  const hours = min / 60;
  if (hours < 24)
    return 24 % hours === 0 ? (hours === 1 ? '0 0 * * * *' : `0 0 */${hours} * * *`) : undefined;
  return hours === 24 ? '0 0 0 * * *' : undefined;
}

export function createScheduler<T>(opts: SchedulerOptions<T>): Scheduler {
  const clock = opts.clock ?? Date.now;
  const name = opts.name ?? 'sweep';
  const log = opts.logger.child({ module: 'scheduler', job: name });
  const stopAc = new AbortController();
  const abortAc = new AbortController();
  let current: Promise<void> | undefined;
  let runs = 0;
  let stopped = false;

  const tick = async (): Promise<void> => {
    if (stopped || current) {
      if (current) log.info({ event: `${name}_skipped` }, 'previous run still going; tick skipped');
      return;
    }
    const run = ++runs;
    const startedAt = clock();
    log.info(
      { event: `${name}_started`, run, started_at: new Date(startedAt).toISOString() },
      `${name} started`,
    );
    current = (async () => {
      let end: RunEnd<T>;
      try {
        const summary = await opts.run({ stop: stopAc.signal, abort: abortAc.signal });
        const finishedAt = clock();
        end = { run, startedAt: new Date(startedAt), finishedAt: new Date(finishedAt), summary };
        log.info(
          {
            event: `${name}_finished`,
            run,
            started_at: new Date(startedAt).toISOString(),
            finished_at: new Date(finishedAt).toISOString(),
            ms: finishedAt - startedAt,
            summary,
          },
          `${name} finished`,
        );
      } catch (err) {
        const finishedAt = clock();
        end = { run, startedAt: new Date(startedAt), finishedAt: new Date(finishedAt), error: err };
        log.error(
          {
            event: `${name}_failed`,
            run,
            started_at: new Date(startedAt).toISOString(),
            finished_at: new Date(finishedAt).toISOString(),
            err,
          },
          `${name} failed`,
        );
      }
      try {
        await opts.onRunEnd?.(end);
      } catch (err) {
        log.warn({ run, err }, `${name}: after-run hook failed`);
      } finally {
        current = undefined;
      }
    })();
    await current;
  };

  const cronTime = cronExpression(opts.intervalMs);
  let job: CronJob | undefined;
  let timer: NodeJS.Timeout | undefined;

  const scheduleInterval = (at: number) => {
    timer = setTimeout(
      () => {
        if (stopped) return;
        scheduleInterval(at + opts.intervalMs);
        void tick();
      },
      Math.max(0, at - clock()),
    );
  };

  return {
    mode: cronTime ? 'cron' : 'interval',
    cronTime,
    get runs() {
      return runs;
    },
    get running() {
      return current !== undefined;
    },
    start() {
      log.info(
        { interval_ms: opts.intervalMs, mode: cronTime ? 'cron' : 'interval', cron: cronTime },
        'scheduler started',
      );
      if (cronTime) {
        job = CronJob.from({
          cronTime,
          onTick: tick,
          waitForCompletion: true,
          errorHandler: (err) => log.error({ err }, `${name} tick failed`),
          start: true,
        });
      } else {
        scheduleInterval(clock() + opts.intervalMs);
      }
    },
    async stop({ deadlineMs }) {
      stopped = true;
      if (timer) clearTimeout(timer);
      void job?.stop();
      stopAc.abort(new Error('scheduler stopping'));
      const running = current;
      if (!running) return 'idle';
      if ((await finishedBy(running, deadlineMs)) === 'finished') return 'finished';
      log.warn({ deadline_ms: deadlineMs }, `${name} still running at the deadline; aborting it`);
      abortAc.abort(new Error('scheduler deadline reached'));
      await running;
      return 'aborted';
    },
  };
}
