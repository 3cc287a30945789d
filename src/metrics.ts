/**
 * A small metrics registry: counters and gauges with labels, rendered in the
 * Prometheus text exposition format (version 0.0.4). Shared by the daemons;
 * each daemon owns one registry and serves `render()` on GET /metrics.
 */

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type Labels = Readonly<Record<string, string | number>>;

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

abstract class Metric {
  protected readonly values = new Map<string, { labels: Labels; value: number }>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge',
  ) {
    if (!NAME.test(name)) throw new Error(`invalid metric name: ${name}`);
  }

  /** Current value for these labels (0 when never touched). */
  get(labels: Labels = {}): number {
    return this.values.get(labelKey(labels))?.value ?? 0;
  }

  protected add(labels: Labels, n: number): void {
    const key = labelKey(labels);
    const slot = this.values.get(key);
    if (slot) slot.value += n;
    else this.values.set(key, { labels: { ...labels }, value: n });
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`];
    if (this.values.size === 0 && this.type === 'counter') lines.push(`${this.name} 0`);
    for (const { labels, value } of this.values.values())
      lines.push(`${this.name}${renderLabels(labels)} ${value}`);
    return lines.join('\n');
  }
}

export class Counter extends Metric {
  constructor(name: string, help: string) {
    super(name, help, 'counter');
  }

  inc(labels: Labels = {}, n = 1): void {
    if (n < 0) throw new Error(`counter ${this.name} cannot decrease`);
    this.add(labels, n);
  }
}

export class Gauge extends Metric {
  constructor(name: string, help: string) {
    super(name, help, 'gauge');
  }

  inc(labels: Labels = {}, n = 1): void {
    this.add(labels, n);
  }

  dec(labels: Labels = {}, n = 1): void {
    this.add(labels, -n);
  }

  set(labels: Labels, value: number): void {
    this.values.set(labelKey(labels), { labels: { ...labels }, value });
  }
}

export class MetricsRegistry {
  private readonly metrics = new Map<string, Metric>();

  counter(name: string, help: string): Counter {
    return this.register(new Counter(name, help));
  }

  gauge(name: string, help: string): Gauge {
    return this.register(new Gauge(name, help));
  }

  /** The exposition text served on GET /metrics. */
  render(): string {
    return `${[...this.metrics.values()].map((m) => m.render()).join('\n')}\n`;
  }

  private register<M extends Metric>(metric: M): M {
    if (this.metrics.has(metric.name)) throw new Error(`metric ${metric.name} registered twice`);
    this.metrics.set(metric.name, metric);
    return metric;
  }
}

function labelKey(labels: Labels): string {
  const names = Object.keys(labels).sort();
  for (const n of names) if (!LABEL.test(n)) throw new Error(`invalid label name: ${n}`);
  return names.map((n) => `${n}\u0000${labels[n]}`).join('\u0001');
}

function renderLabels(labels: Labels): string {
  const names = Object.keys(labels).sort();
  if (names.length === 0) return '';
  return `{${names.map((n) => `${n}="${escapeValue(String(labels[n]))}"`).join(',')}}`;
}

function escapeValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}
