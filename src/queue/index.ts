/** The deferred_download queue and unit download leases (see claim.ts, entries.ts, retry.ts and units.ts). */
export * from './claim.ts';
export * from './entries.ts';
export { LeaseHeartbeat, LeaseLost } from './heartbeat.ts';
export { type RetryResult, retryEntries } from './retry.ts';
export { backoffDelay, type QueueSettings, queueSettings } from './settings.ts';
export { type FailingUnit, type QueueStats, queueStats } from './stats.ts';
export { pruneTokens, TOKENS_COLLECTION } from './tokens.ts';
export {
  claimUnit,
  releaseUnit,
  renewUnit,
  UNIT_LEASES_COLLECTION,
  type UnitClaim,
  type UnitLease,
  unitsLeased,
} from './units.ts';
export { workerId } from './worker.ts';
