/** Lease and retry settings of the deferred_download queue (config tasks.*). */
import type { Config } from '../config.ts';

export interface QueueSettings {
  /** How long a claim holds an entry or a unit before another worker may take it. */
  leaseMs: number;
  /** Claims (attempts) before an entry is parked in state 'failed'. */
  maxAttempts: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
}

export function queueSettings(config: Config): QueueSettings {
  return {
    leaseMs: config.tasks.lease,
    maxAttempts: config.tasks.max_attempts,
    backoffBaseMs: config.tasks.backoff_base,
    backoffMaxMs: config.tasks.backoff_max,
  };
}

/** Delay before attempt `attempts + 1`: base · 2^(attempts-1), capped at max. */
export function backoffDelay(
  attempts: number,
  s: Pick<QueueSettings, 'backoffBaseMs' | 'backoffMaxMs'>,
): number {
  const exp = Math.max(0, attempts - 1);
  // 2^40 × base overflows nothing but is far beyond any cap.
  return Math.min(s.backoffMaxMs, s.backoffBaseMs * 2 ** Math.min(exp, 40));
}
