import { Command } from 'commander';
import { PulpLazyError, UsageError } from '../errors.ts';
import { type QueueStats, queueStats, retryEntries } from '../queue/index.ts';
import { type GoneUpstreamList, goneUpstreamUnits, goneWhere } from '../storage/gone.ts';
import { formatDuration } from '../tasks/progress.ts';
import { type Context, withJson } from './context.ts';

/**
 * `pulp-lazy queue`: the deferred_download queue (counts by state, oldest
 * entry, failing units with their last errors), and the units gone upstream
 * (every catalog entry answered 404/410: flagged, their repository's re-sync requested).
 * `pulp-lazy queue retry --all | UNIT_ID`: failed or backed-off entries
 * become claimable now with attempts reset (and their catalog entries'
 * verification cool-down is lifted).
 */
export function queueCommand(ctx: Context): Command {
  const queue = withJson(
    new Command('queue').description('show the deferred download queue (subcommand: retry)'),
  ).action(async (o: { json?: boolean }) => {
    const db = await ctx.db();
    const [stats, gone] = await Promise.all([queueStats(db), goneUpstreamUnits(db)]);
    if (o.json) return ctx.out.json({ ...stats, gone_upstream: gone });
    for (const line of [...describeQueue(stats), ...describeGone(gone)]) ctx.out.line(line);
  });
  queue.addCommand(
    withJson(
      new Command('retry')
        .description('make failed or backed-off entries claimable now (attempts reset)')
        .argument('[unit_id]', 'the unit whose entry to retry')
        .option('--all', 'every failed or backed-off entry'),
    ).action(async (unitId: string | undefined, o: { all?: boolean; json?: boolean }) => {
      if (o.all && unitId) throw new UsageError('give either --all or a UNIT_ID, not both');
      if (!o.all && !unitId) throw new UsageError('give --all or a UNIT_ID');
      const db = await ctx.db();
      const r = await retryEntries(db, o.all ? { all: true } : { unitId: unitId! });
      if (!o.all && r.units.length === 0) {
        const entry = await db.deferred.findOne({ unit_id: unitId! });
        const why = !entry
          ? 'has no queue entry'
          : entry.lease_expires_at && entry.lease_expires_at > new Date()
            ? `is being downloaded by ${entry.lease_owner}`
            : 'is already pending and due';
        throw new PulpLazyError('PL_NOTHING_TO_RETRY', `unit ${unitId} ${why}`);
      }
      // commander hands a --json after `retry` to `queue` (both define it): either one counts.
      if (o.json || queue.opts<{ json?: boolean }>().json) return ctx.out.json(r);
      ctx.out.line(
        `retrying ${r.units.length} unit(s)${r.catalog_cleared ? ` (cool-down lifted on ${r.catalog_cleared} catalog entries)` : ''}`,
      );
    }),
  );
  return queue;
}

export function describeQueue(s: QueueStats): string[] {
  const lines = [
    `queue: ${s.total} entries: ${s.ready} ready, ${s.waiting} waiting to retry, ${s.leased} leased, ${s.failed} failed`,
  ];
  if (s.oldest_age_s !== null)
    lines.push(`oldest: ${formatDuration(s.oldest_age_s)} (unit ${s.oldest_unit_id})`);
  if (s.failing_total > 0) {
    lines.push(
      `failing units (${s.failing_total}${s.failing_total > s.failing.length ? `, first ${s.failing.length}` : ''}):`,
    );
    for (const f of s.failing) {
      const when = f.state === 'failed' ? 'parked' : `next try ${f.next_attempt_at ?? '?'}`;
      lines.push(`  ${f.unit_id} [${f.state}, ${f.attempts} attempts, ${when}]: ${f.last_error}`);
    }
  }
  return lines;
}

/** "gone upstream (2): r/pkgs/a.bin since … (404)", one line per unit shown; nothing when none. */
export function describeGone(g: GoneUpstreamList): string[] {
  if (g.total === 0) return [];
  const lines = [`gone upstream (${g.total}${g.total > g.units.length ? `, first ${g.units.length}` : ''}):`];
  for (const u of g.units) lines.push(`  ${goneWhere(u)} since ${u.since} (${u.status}), unit ${u.unit_id}`);
  return lines;
}
