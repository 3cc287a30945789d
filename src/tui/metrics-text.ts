/** Reads sums out of Prometheus text (the daemons' GET /metrics). */
import type { StreamerView } from './types.ts';

/** metric name → samples ({labels} text, value). */
export function parseMetrics(text: string): Map<string, Array<{ labels: string; value: number }>> {
  const out = new Map<string, Array<{ labels: string; value: number }>>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const value = Number(m[3]);
    if (!Number.isFinite(value)) continue;
    const list = out.get(m[1]!) ?? [];
    list.push({ labels: m[2] ?? '', value });
    out.set(m[1]!, list);
  }
  return out;
}

export function streamerView(text: string): StreamerView {
  const m = parseMetrics(text);
  const sum = (name: string, labelPart?: string) =>
    (m.get(`pulp_lazy_streamer_${name}`) ?? [])
      .filter((s) => labelPart === undefined || s.labels.includes(labelPart))
      .reduce((a, s) => a + s.value, 0);
  return {
    misses: sum('upstream_fetches_total'),
    hits: sum('requests_total', 'outcome="storage"'),
    joins: sum('single_flight_joins_total'),
    checksumFailures: sum('checksum_failures_total'),
    activeFlights: sum('flights_active'),
  };
}
