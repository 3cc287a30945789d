/**
 * The `pulp-lazy top` screen. Gets a snapshot and the key callbacks as props;
 * its only state is what the screen shows (help, the y/n question).
 */
import { Box, Text, useInput } from 'ink';
import { useRef, useState } from 'react';
import {
  DaemonRow,
  exitedDaemons,
  Failures,
  GoneList,
  Header,
  Help,
  QueueLine,
  RepoList,
  RestartsLine,
  RunList,
  StreamerLine,
  SweepLine,
} from './components.tsx';
import { listRows } from './layout.ts';
import type { TopActions, TopSnapshot } from './types.ts';

export interface AppProps extends TopActions {
  snapshot: TopSnapshot | null;
  /** false: no colours (NO_COLOR). */
  color?: boolean;
  /** Result of the last action, shown at the bottom. */
  message?: string | undefined;
  width?: number;
  /** Terminal rows the screen may use (undefined: no limit); the lists shrink to fit. */
  height?: number | undefined;
}

/** Lines of the help box (border included). */
const HELP_LINES = 7;

export function Screen(props: {
  snapshot: TopSnapshot | null;
  color: boolean;
  width: number;
  footer?: string | undefined;
  help?: boolean;
  height?: number | undefined;
}) {
  const s = props.snapshot;
  const restarts = s !== null && exitedDaemons(s.daemons).length > 0;
  const gone = s?.gone && s.gone.total > 0 ? s.gone : null;
  // Header, daemons, restarts, queue, sweep, streamer, low disk, the error line, the list headings, the footer, the help box.
  const fixed =
    9 +
    (restarts ? 1 : 0) +
    (s?.diskWarning ? 1 : 0) +
    (s?.remotesWarning ? 1 : 0) +
    (s?.error ? 1 : 0) +
    (gone ? 1 : 0) +
    (props.help ? HELP_LINES : 0);
  const rows = s ? listRows(s, props.height, fixed) : null;
  return (
    <Box flexDirection="column" width={props.width}>
      <Header at={s?.at ?? null} color={props.color} width={props.width} />
      {s === null || rows === null ? (
        <Text>collecting...</Text>
      ) : (
        <>
          <DaemonRow daemons={s.daemons} color={props.color} />
          {restarts ? <RestartsLine daemons={s.daemons} color={props.color} /> : null}
          <QueueLine queue={s.queue} color={props.color} />
          <SweepLine runs={s.runs} />
          <StreamerLine streamer={s.streamer} />
          {s.diskWarning ? (
            <Text wrap="truncate" color={props.color ? 'yellow' : undefined}>
              {s.diskWarning}
            </Text>
          ) : null}
          {s.remotesWarning ? (
            <Text wrap="truncate" color={props.color ? 'yellow' : undefined}>
              {s.remotesWarning}
            </Text>
          ) : null}
          {s.error ? (
            <Text wrap="truncate" color={props.color ? 'red' : undefined}>
              {s.error}
            </Text>
          ) : null}
          <RepoList repos={s.repos} rows={rows.repos} color={props.color} />
          <Failures queue={s.queue} max={rows.failures} color={props.color} width={props.width} />
          {gone ? <GoneList gone={gone} rows={rows.gone} color={props.color} /> : null}
          <RunList runs={s.runs} rows={rows.runs} color={props.color} />
        </>
      )}
      {props.help ? <Help /> : null}
      {props.footer ? <Text wrap="truncate">{props.footer}</Text> : null}
    </Box>
  );
}

export function App(props: AppProps) {
  const [help, setHelp] = useState(false);
  const [confirming, setConfirmingState] = useState(false);
  // The input handler may run before React re-subscribes it after a render: read the question from a ref.
  const asking = useRef(false);
  const setConfirming = (v: boolean) => {
    asking.current = v;
    setConfirmingState(v);
  };
  useInput((input, key) => {
    if (asking.current) {
      if (input === 'y' || input === 'Y') props.onRetry();
      setConfirming(false);
      return;
    }
    if (input === 'q' || (key.ctrl && input === 'c')) props.onQuit();
    else if (input === 's') props.onSweep();
    else if (input === 'r') setConfirming(true);
    else if (input === '?') setHelp((h) => !h);
    else if (key.escape) setHelp(false);
  });
  const failed = props.snapshot?.queue?.failing_total ?? 0;
  const footer = confirming ? `retry ${failed} failing entries now? (y/n)` : props.message;
  return (
    <Screen
      snapshot={props.snapshot}
      color={props.color ?? true}
      width={props.width ?? 80}
      height={props.height}
      footer={footer}
      help={help}
    />
  );
}
