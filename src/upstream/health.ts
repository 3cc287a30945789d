/**
 * The health of each upstream origin (`scheme://host:port` of a URL fetched),
 * shared by every process through the remote_health collection (the model:
 * Nexus's auto-blocking, Artifactory's assumed-offline period).
 *
 *   - A connection-level failure (refused, reset before an answer, DNS, TLS
 *     handshake, connect or headers timeout: describe.ts isConnectionFailure)
 *     counts; any HTTP answer, whatever its status, resets the count.
 *   - After remotes.block_after consecutive failures the origin is blocked:
 *     the streamer answers its misses at once (503, Retry-After) or goes to
 *     the next catalog entry, and the sweep gives its entries back unspent.
 *   - A blocked origin is probed from remotes.probe_min after the block, the
 *     wait doubling up to remotes.probe_max. The process that moves
 *     `next_probe_at` on (a conditional write on the value it read) runs the
 *     probe: a GET of the origin's root with the repository's settings; any
 *     answer unblocks it (the answer resets it, like any other).
 *
 * Each process keeps the documents in memory, read again at most every
 * REFRESH_MS (so every process sees a block or an unblock within seconds),
 * and writes only on changes: a failure, the first answer after failures, a
 * probe claim. Writes of one origin are serialized in the process; across
 * processes they are conditional on the state read (retried on a conflict),
 * and a race between two of them (two blocks, two unblocks) ends in the same
 * state either way. This module is the only writer of remote_health.
 */
import { retryBusy } from '../db/busy.ts';
import { type Database, type RemoteHealthDoc, updateOneById } from '../db/index.ts';
import { isDuplicateKey, oneLine, UpstreamBlocked } from '../errors.ts';
import type { Logger } from '../log.ts';
import { UpstreamClient } from './client.ts';
import { describeError } from './describe.ts';
import type { HealthObserver, Timeouts } from './dispatcher.ts';

/** The cached documents are read again when older than this. */
export const REFRESH_MS = 2000;
/** Conditional writes retried this many times when another process changed the document first. */
const WRITE_TRIES = 5;

export interface HealthSettings {
  /** Consecutive connection failures that block an origin (remotes.block_after). */
  blockAfter: number;
  /** First probe this long after the block (remotes.probe_min). */
  probeMinMs: number;
  /** Longest wait between probes (remotes.probe_max). */
  probeMaxMs: number;
}

export type RemoteState = 'ok' | 'failing' | 'blocked';

/** An origin's health as shown (status, repo list, top, /metrics). */
export interface RemoteView {
  origin: string;
  state: RemoteState;
  failures: number;
  blocked_since: string | null;
  next_probe_at: string | null;
  last_error: string | null;
}

/** Probes `origin` (any answer: up); resolves either way (the observer records the result). */
export type Prober = (origin: string, doc: RemoteHealthDoc) => Promise<void>;

export function healthSettings(remotes: { block_after: number; probe_min: number; probe_max: number }) {
  return { blockAfter: remotes.block_after, probeMinMs: remotes.probe_min, probeMaxMs: remotes.probe_max };
}

/** `scheme://host:port` of `url` (undefined when it is not a URL). */
export function originOf(url: string): string | undefined {
  try {
    const o = new URL(url).origin;
    return o === 'null' ? undefined : o;
  } catch {
    return undefined;
  }
}

export function stateOf(doc: RemoteHealthDoc | undefined): RemoteState {
  if (!doc) return 'ok';
  if (doc.blocked_at) return 'blocked';
  return doc.failures > 0 ? 'failing' : 'ok';
}

export function viewOf(doc: RemoteHealthDoc): RemoteView {
  return {
    origin: doc._id,
    state: stateOf(doc),
    failures: doc.failures,
    blocked_since: doc.blocked_at?.toISOString() ?? null,
    next_probe_at: doc.blocked_at ? (doc.next_probe_at?.toISOString() ?? null) : null,
    last_error: doc.last_error,
  };
}

/** Every origin's health, as stored (one read; status, repo list, top). */
export async function readRemoteHealth(db: Database): Promise<RemoteView[]> {
  const docs = await retryBusy(() => db.remoteHealth.find({}).sort({ _id: 1 }).toArray());
  return docs.map(viewOf);
}

export class RemoteHealth implements HealthObserver {
  readonly #db: Database;
  readonly #s: HealthSettings;
  readonly #clock: () => number;
  readonly #log: Logger | undefined;
  readonly #refreshMs: number;
  #docs = new Map<string, RemoteHealthDoc>();
  #readAt = Number.NEGATIVE_INFINITY;
  #reading: Promise<void> | undefined;
  /** The last write of each origin (writes of one origin run one after another). */
  readonly #writes = new Map<string, Promise<void>>();
  readonly #probing = new Set<string>();
  #prober: Prober | undefined;
  #timer: NodeJS.Timeout | undefined;
  #onRefresh: ((docs: RemoteHealthDoc[]) => void) | undefined;

  constructor(
    db: Database,
    settings: HealthSettings,
    opts: { clock?: () => number; log?: Logger; refreshMs?: number } = {},
  ) {
    this.#db = db;
    this.#s = settings;
    this.#clock = opts.clock ?? Date.now;
    this.#log = opts.log?.child({ module: 'remote-health' });
    this.#refreshMs = opts.refreshMs ?? REFRESH_MS;
  }

  /** The documents in hand. */
  all(): RemoteHealthDoc[] {
    return [...this.#docs.values()];
  }

  /** Reads every document again (concurrent calls share one read). */
  refresh(): Promise<void> {
    this.#reading ??= (async () => {
      try {
        const at = this.#clock();
        const docs = await retryBusy(() => this.#db.remoteHealth.find({}).toArray());
        this.#docs = new Map(docs.map((d) => [d._id, d]));
        this.#readAt = at;
        this.#onRefresh?.(docs);
      } finally {
        this.#reading = undefined;
      }
    })();
    return this.#reading;
  }

  /** Reads the documents again when the ones in hand are older than the refresh period. */
  async fresh(): Promise<void> {
    if (this.#clock() - this.#readAt >= this.#refreshMs) await this.refresh();
  }

  /** True when some origin is blocked (as far as this process knows). */
  anyBlocked(): boolean {
    for (const d of this.#docs.values()) if (d.blocked_at) return true;
    return false;
  }

  /**
   * When the origin of `url` is blocked: the error to answer with (503,
   * Retry-After until its next probe); else undefined. Answers from memory;
   * a probe that is due is started in the background.
   */
  blocked(url: string): UpstreamBlocked | undefined {
    if (this.#clock() - this.#readAt >= this.#refreshMs) this.refresh().catch(() => {});
    const origin = originOf(url);
    const doc = origin === undefined ? undefined : this.#docs.get(origin);
    if (!doc?.blocked_at) return undefined;
    const now = this.#clock();
    const probeAt = doc.next_probe_at?.getTime() ?? now;
    if (probeAt <= now) void this.#probe(doc);
    const retryAfterS = Math.max(1, Math.ceil((probeAt - now) / 1000));
    return new UpstreamBlocked(
      `${origin} is blocked after ${doc.failures} connection failures (last: ${doc.last_error ?? 'unknown'}); next probe in ${retryAfterS}s`,
      retryAfterS,
    );
  }

  /** When the earliest of these blocked URLs' origins is probed next (for giving a queue entry back). */
  nextProbe(urls: readonly string[]): Date {
    const now = this.#clock();
    let at = Number.POSITIVE_INFINITY;
    for (const url of urls) {
      const t = this.#docs.get(originOf(url) ?? '')?.next_probe_at?.getTime();
      if (t !== undefined) at = Math.min(at, t);
    }
    return new Date(Number.isFinite(at) ? Math.max(at, now + 1000) : now + this.#s.probeMinMs);
  }

  answered(origin: string): void {
    const doc = this.#docs.get(origin);
    // The common case, an origin without failures, costs no write.
    if (!doc || (doc.failures === 0 && !doc.blocked_at)) return;
    this.#write(origin, () => this.#reset(origin));
  }

  failed(origin: string, err: unknown, feed: string): void {
    this.#write(origin, () => this.#failure(origin, describeError(err), feed));
  }

  /** Resolves once the writes started so far are done (tests; shutdown). */
  async flush(): Promise<void> {
    await Promise.all([...this.#writes.values()]);
  }

  /**
   * Every `everyMs`: reads the documents again (then `onRefresh`), and runs
   * the probes that are due with `prober`. The timer does not hold the
   * process open; stop() ends it.
   */
  start(
    prober: Prober,
    opts: { everyMs?: number; onRefresh?: (docs: RemoteHealthDoc[]) => void } = {},
  ): void {
    this.#prober = prober;
    this.#onRefresh = opts.onRefresh;
    const tick = () =>
      void this.refresh()
        .then(() => this.probeDue())
        .catch((err: unknown) => this.#log?.warn({ err }, 'cannot read remote health'));
    tick();
    this.#timer = setInterval(tick, opts.everyMs ?? Math.min(1000, this.#refreshMs));
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#prober = undefined;
    await this.flush();
  }

  /** Starts the probes that are due (as far as the documents in hand say). */
  probeDue(): void {
    const now = this.#clock();
    for (const doc of this.#docs.values()) {
      if (doc.blocked_at && (doc.next_probe_at?.getTime() ?? now) <= now) void this.#probe(doc);
    }
  }

  /** Claims the probe of `doc` (moves next_probe_at on, the wait doubled), then runs it. */
  async #probe(doc: RemoteHealthDoc): Promise<void> {
    const prober = this.#prober;
    if (!prober || this.#probing.has(doc._id)) return;
    this.#probing.add(doc._id);
    try {
      const now = this.#clock();
      const wait = Math.min(
        this.#s.probeMaxMs,
        Math.max(this.#s.probeMinMs, 2 * (doc.probe_backoff_ms ?? 0)),
      );
      const next = { next_probe_at: new Date(now + wait), probe_backoff_ms: wait };
      const claimed = await retryBusy(() =>
        updateOneById(
          this.#db.server,
          this.#db.remoteHealth,
          doc._id,
          { blocked_at: doc.blocked_at, next_probe_at: doc.next_probe_at },
          { $set: next },
        ),
      );
      if (!claimed) return; // another process probes it (or it was unblocked)
      this.#docs.set(doc._id, { ...doc, ...next });
      this.#log?.info({ origin: doc._id, next_probe_in_ms: wait }, 'probing blocked remote');
      await prober(doc._id, doc);
    } catch (err) {
      this.#log?.warn({ origin: doc._id, err }, 'remote probe failed');
    } finally {
      this.#probing.delete(doc._id);
    }
  }

  #write(origin: string, fn: () => Promise<void>): void {
    const p = (this.#writes.get(origin) ?? Promise.resolve())
      .then(fn)
      .catch((err: unknown) => this.#log?.warn({ origin, err }, 'cannot record remote health'));
    this.#writes.set(origin, p);
    void p.finally(() => {
      if (this.#writes.get(origin) === p) this.#writes.delete(origin);
    });
  }

  /** One more failure; blocks the origin when it reaches block_after. */
  async #failure(origin: string, error: string, feed: string): Promise<void> {
    for (let i = 0; i < WRITE_TRIES; i++) {
      const cur = await retryBusy(() => this.#db.remoteHealth.findOne({ _id: origin }));
      const now = new Date(this.#clock());
      const failures = (cur?.failures ?? 0) + 1;
      const blocks = !cur?.blocked_at && failures >= this.#s.blockAfter;
      const next: RemoteHealthDoc = {
        _id: origin,
        blocked_at: null,
        next_probe_at: null,
        probe_backoff_ms: null,
        last_ok_at: null,
        ...cur,
        failures,
        last_error: error.slice(0, 500),
        last_failure_at: now,
        feed,
        ...(blocks
          ? {
              blocked_at: now,
              next_probe_at: new Date(now.getTime() + this.#s.probeMinMs),
              probe_backoff_ms: this.#s.probeMinMs,
            }
          : {}),
      };
      if (!(await this.#put(cur, next))) continue;
      this.#docs.set(origin, next);
      if (blocks)
        this.#log?.warn(
          { origin, failures, last_error: next.last_error, next_probe_at: next.next_probe_at },
          'remote blocked after consecutive connection failures',
        );
      return;
    }
  }

  /** An answer: failures 0, unblocked. */
  async #reset(origin: string): Promise<void> {
    for (let i = 0; i < WRITE_TRIES; i++) {
      const cur = await retryBusy(() => this.#db.remoteHealth.findOne({ _id: origin }));
      if (!cur) return;
      const next: RemoteHealthDoc = {
        ...cur,
        failures: 0,
        blocked_at: null,
        next_probe_at: null,
        probe_backoff_ms: null,
        last_ok_at: new Date(this.#clock()),
      };
      if (!(await this.#put(cur, next))) continue;
      this.#docs.set(origin, next);
      if (cur.blocked_at)
        this.#log?.info({ origin, blocked_since: cur.blocked_at }, 'remote answers: unblocked');
      return;
    }
  }

  /** Writes `next` over `cur` (inserts it when there was none); false when the document changed meanwhile. */
  async #put(cur: RemoteHealthDoc | null, next: RemoteHealthDoc): Promise<boolean> {
    if (!cur) {
      try {
        await retryBusy(() => this.#db.remoteHealth.insertOne(next));
        return true;
      } catch (err) {
        if (isDuplicateKey(err)) return false;
        throw err;
      }
    }
    const { _id, ...fields } = next;
    return retryBusy(() =>
      updateOneById(
        this.#db.server,
        this.#db.remoteHealth,
        _id,
        { failures: cur.failures, blocked_at: cur.blocked_at, next_probe_at: cur.next_probe_at },
        { $set: fields },
      ),
    );
  }
}

/** One line for an origin's state ("blocked since …, next probe …: why"). */
export function describeRemote(v: RemoteView): string {
  if (v.state === 'ok') return 'ok';
  if (v.state === 'failing')
    return `failing (${v.failures} connection failures: ${oneLine(v.last_error ?? '')})`;
  return `blocked since ${v.blocked_since}, next probe ${v.next_probe_at ?? 'due'}: ${oneLine(v.last_error ?? '')}`;
}

/**
 * The probe of a blocked origin: a GET of its root through `client` (whose
 * pool tells `health` of the answer or the failure), with the settings of
 * the repository whose request failed last (its CA, proxy; its credentials
 * only when the origin is its feed's); the body is dropped.
 */
export function probeThrough(client: Pick<UpstreamClient, 'get'>, db: Database): Prober {
  return async (origin, doc) => {
    const repo = (doc.feed ? await retryBusy(() => db.repos.findOne({ feed: doc.feed! })) : null) ?? {
      feed: `${origin}/`,
      upstream: { tls_verify: true },
    };
    try {
      const res = await client.get(`${origin}/`, repo, new AbortController().signal);
      // Any answer will do: its body is read up to a small limit and dropped (dump never throws).
      await res.body.dump({ limit: 64 * 1024 }).catch(() => {});
    } catch {
      // No answer: recorded by the pool's observer (the origin stays blocked).
    }
  };
}

/**
 * Probing in a process without a streamer (the scheduler daemon): a client
 * of its own with the streamer's timeouts, observed by `health`.
 */
export function startProbing(
  health: RemoteHealth,
  db: Database,
  timeouts: Timeouts,
): { close(): Promise<void> } {
  const client = new UpstreamClient(timeouts, { health });
  health.start(probeThrough(client, db));
  return {
    async close() {
      await health.stop();
      await client.close();
    },
  };
}

/** The health of `url`'s origin among `views` (ok with no failures when it has no record). */
export function remoteOf(url: string, views: readonly RemoteView[]): RemoteView {
  const origin = originOf(url) ?? url;
  return (
    views.find((v) => v.origin === origin) ?? {
      origin,
      state: 'ok',
      failures: 0,
      blocked_since: null,
      next_probe_at: null,
      last_error: null,
    }
  );
}
