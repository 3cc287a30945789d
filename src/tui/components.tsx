/** The panels of `pulp-lazy top`. Data in through props; no I/O, no state. */
import { Box, Text } from 'ink';
import type { QueueStats } from '../queue/index.ts';
import { type GoneUpstreamList, goneWhere } from '../storage/gone.ts';
import { formatBytes, formatDuration } from '../tasks/progress.ts';
import { type TaskRun, throughput } from '../tasks/runs.ts';
import type { DaemonView, RepoSyncView, RepoView, StreamerView } from './types.ts';

type Color = string | undefined;
export const paint = (on: boolean, c: string): Color => (on ? c : undefined);

export function Header(props: { at: Date | null; color: boolean; width: number }) {
  const time = props.at ? props.at.toISOString().slice(11, 19) : '--:--:--';
  return (
    <Box width={props.width} justifyContent="space-between">
      <Text bold color={paint(props.color, 'cyan')} wrap="truncate">
        pulp-lazy top {time}
      </Text>
      {/* Narrow terminals lose the key hint first ("?" still shows the help). */}
      {props.width >= 56 ? <Text dimColor={props.color}>s sweep r retry ? help q quit</Text> : null}
    </Box>
  );
}

export function DaemonRow(props: { daemons: DaemonView[]; color: boolean }) {
  return (
    <Text wrap="truncate">
      daemons:{' '}
      {props.daemons.map((d) => {
        const [word, c] = !d.running
          ? ['down', 'red']
          : d.healthy === false
            ? ['BAD', 'yellow']
            : ['up', 'green'];
        return (
          <Text key={d.name}>
            {d.name} <Text color={paint(props.color, c)}>{word}</Text>{' '}
          </Text>
        );
      })}
    </Text>
  );
}

/** Daemons restarted by their supervisor or given up on (none: the line is not shown). */
export function exitedDaemons(daemons: DaemonView[]): DaemonView[] {
  return daemons.filter((d) => d.lastExit !== undefined || (d.restarts ?? 0) > 0);
}

/** "restarts: streamer 2 (last SIGKILL), content gave up after 5 (last code 1)". */
export function RestartsLine(props: { daemons: DaemonView[]; color: boolean }) {
  return (
    <Text wrap="truncate">
      restarts:{' '}
      {exitedDaemons(props.daemons).map((d, i) => (
        <Text key={d.name}>
          {i > 0 ? ', ' : ''}
          {d.name}{' '}
          {d.givenUp ? (
            <Text color={paint(props.color, 'red')}>gave up after {d.restarts ?? 0}</Text>
          ) : (
            (d.restarts ?? 0)
          )}
          {d.lastExit ? ` (last ${d.lastExit})` : ''}
        </Text>
      ))}
    </Text>
  );
}

export function QueueLine(props: { queue: QueueStats | null; color: boolean }) {
  const q = props.queue;
  if (!q) return <Text wrap="truncate">queue: unknown</Text>;
  if (q.total === 0) return <Text wrap="truncate">queue: empty (nothing waiting to be downloaded)</Text>;
  return (
    <Text wrap="truncate">
      queue: {q.total} total, {q.ready} ready, {q.waiting} waiting, {q.leased} leased,{' '}
      <Text color={paint(props.color && q.failed > 0, 'red')}>{q.failed} failed</Text>
      {q.oldest_age_s !== null ? `, oldest ${formatDuration(q.oldest_age_s)}` : ''}
    </Text>
  );
}

const perSecond = (units: number, bytes: number) =>
  `${units >= 100 ? Math.round(units) : units.toFixed(1)} units/s, ${formatBytes(Math.round(bytes))}/s`;

/** Sweep throughput: stored units and bytes per second of the last sweep and of the recent busy ones. */
export function SweepLine(props: { runs: TaskRun[] | null }) {
  if (!props.runs) return <Text wrap="truncate">sweep: run history not readable</Text>;
  const sweeps = props.runs.filter((r) => r.kind === 'sweep');
  const last = sweeps[0];
  if (!last) return <Text wrap="truncate">sweep: no runs recorded yet (s starts one)</Text>;
  const lastRate = throughput([last]);
  const lastText =
    last.claimed === 0 && last.failed === 0
      ? 'nothing to do'
      : lastRate
        ? perSecond(lastRate.unitsPerSecond, lastRate.bytesPerSecond)
        : `${last.stored} stored`;
  // Runs that found the queue empty say nothing about speed.
  const busy = sweeps.filter((r) => r.claimed > 0);
  const avg = busy.length > 1 ? throughput(busy) : null;
  return (
    <Text wrap="truncate">
      sweep: last run {lastText}
      {avg ? `; avg of ${busy.length} runs ${perSecond(avg.unitsPerSecond, avg.bytesPerSecond)}` : ''}
    </Text>
  );
}

/** Tenths of a second below 10 s (sweeps of a few small units are quick), else `formatDuration`. */
const runTime = (s: number) => (s < 10 ? `${s.toFixed(1)}s` : formatDuration(s));

/** The newest runs: finish time (UTC), kind, stored/failed, bytes and duration; `rows` lines at most. */
export function RunList(props: { runs: TaskRun[] | null; rows: number; color: boolean }) {
  if (!props.runs) return <Text wrap="truncate">last runs: unknown</Text>;
  if (props.runs.length === 0) return <Text wrap="truncate">last runs: none recorded</Text>;
  return (
    <Box flexDirection="column">
      <Text bold>last runs</Text>
      {props.runs.slice(0, props.rows).map((r) => {
        const label = r.kind === 'sweep' ? 'sweep' : `repo ${r.repo ?? '?'}`;
        return (
          <Text key={`${r.worker} ${r.kind} ${r.started_at.toISOString()}`} wrap="truncate">
            {'  '}
            {r.finished_at.toISOString().slice(11, 19)} {label.slice(0, 22).padEnd(22)} {r.stored} stored,{' '}
            <Text color={paint(props.color && r.failed > 0, 'red')}>{r.failed} failed</Text>,{' '}
            {formatBytes(r.bytes)} in {runTime(r.seconds)}
          </Text>
        );
      })}
    </Box>
  );
}

export function StreamerLine(props: { streamer: StreamerView | null }) {
  const s = props.streamer;
  if (!s) return <Text wrap="truncate">streamer: /metrics not reachable</Text>;
  return (
    <Text wrap="truncate">
      streamer: {s.misses} misses, {s.hits} hits, {s.joins} joins, {s.checksumFailures} checksum failures,{' '}
      {s.activeFlights} active
    </Text>
  );
}

export function ProgressBar(props: { done: number; total: number; width: number; color: boolean }) {
  const frac = props.total > 0 ? props.done / props.total : 1;
  const full = Math.round(frac * props.width);
  return (
    <Text>
      [<Text color={paint(props.color, 'green')}>{'#'.repeat(full)}</Text>
      {'-'.repeat(props.width - full)}]
    </Text>
  );
}

/** `rows` lines below the heading at most (the last one says how many more when they do not all fit). */
export function RepoList(props: { repos: RepoView[]; rows: number; color: boolean }) {
  if (props.repos.length === 0)
    return <Text wrap="truncate">repositories: none (pulp-lazy repo create ...)</Text>;
  const fits = props.repos.length <= props.rows;
  const shown = props.repos.slice(0, fits ? props.rows : Math.max(0, props.rows - 1));
  const more = props.repos.length - shown.length;
  return (
    <Box flexDirection="column">
      <Text bold>repositories (downloaded/total units, policy)</Text>
      {shown.map((r) => {
        const pct = r.total > 0 ? Math.floor((100 * r.downloaded) / r.total) : 100;
        return (
          <Text key={r.name} wrap="truncate">
            {'  '}
            {r.name.slice(0, 24).padEnd(24)}{' '}
            <ProgressBar done={r.downloaded} total={r.total} width={r.sync ? 8 : 24} color={props.color} />{' '}
            {String(pct).padStart(3)}% {r.downloaded}/{r.total}
            {r.policy ? ` ${r.policy}` : ''}
            {r.sync ? ` ${syncText(r.sync)}` : ''}
          </Text>
        );
      })}
      {more > 0 && props.rows > 0 ? <Text>{`  ... ${more} more`}</Text> : null}
    </Box>
  );
}

/** A repository's syncs in a few words: "synced, next 5h59m", "failed x3, retry 8s". */
export function syncText(s: RepoSyncView): string {
  if (s.last === 'running') return 'syncing';
  const last = s.last === 'failed' ? `failed x${s.failures}` : s.last === 'ok' ? 'synced' : 'never synced';
  if (s.nextInS === null) return last;
  const what = s.nextReason === 'retry' ? 'retry' : s.nextReason === 'request' ? 'requested' : 'next';
  return `${last}, ${what} ${s.nextInS === 0 ? 'now' : formatDuration(s.nextInS)}`;
}

/** The end of an error message (its most specific part), at most `room` characters. */
export function errorTail(message: string, room: number): string {
  const one = message.replace(/\s+/g, ' ').trim();
  return one.length <= room ? one : `…${one.slice(one.length - Math.max(room - 1, 8))}`;
}

export function Failures(props: { queue: QueueStats | null; max: number; color: boolean; width: number }) {
  const q = props.queue;
  if (!q || q.failing_total === 0) return <Text wrap="truncate">recent failures: none</Text>;
  return (
    <Box flexDirection="column">
      <Text bold color={paint(props.color, 'red')}>
        failures ({Math.min(props.max, q.failing.length)} of {q.failing_total})
      </Text>
      {q.failing.slice(0, props.max).map((f) => {
        const head = `  ${f.unit_id.slice(0, 12)} ${f.state === 'failed' ? 'parked' : 'pending'}, ${f.attempts} tries: `;
        return (
          <Text key={f.unit_id} wrap="truncate">
            {head}
            {errorTail(f.last_error, props.width - head.length)}
          </Text>
        );
      })}
    </Box>
  );
}

/** Units gone upstream (their repositories' re-sync was requested): since when (UTC), the status, where. */
export function GoneList(props: { gone: GoneUpstreamList; rows: number; color: boolean }) {
  const g = props.gone;
  return (
    <Box flexDirection="column">
      <Text bold color={paint(props.color, 'yellow')} wrap="truncate">
        gone upstream ({Math.min(props.rows, g.units.length)} of {g.total}, re-sync requested)
      </Text>
      {g.units.slice(0, props.rows).map((u) => (
        <Text key={u.unit_id} wrap="truncate">
          {'  '}
          {u.since.slice(0, 19).replace('T', ' ')} {u.status} {goneWhere(u)}
        </Text>
      ))}
    </Box>
  );
}

export function Help() {
  return (
    <Box flexDirection="column" borderStyle="single" paddingX={1}>
      <Text bold>keys</Text>
      <Text wrap="truncate">s start a sweep now (runs "pulp-lazy sweep" in the background)</Text>
      <Text wrap="truncate">r retry failed and backed-off entries (asks y/n)</Text>
      <Text wrap="truncate">? show or hide this help</Text>
      <Text wrap="truncate">q quit</Text>
    </Box>
  );
}
