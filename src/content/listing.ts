/** The plain HTML index served for a published directory. */
import { encodeSegment } from './path.ts';
import type { DirEntry } from './resolve.ts';

const escapeHtml = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/**
 * `mount` is the URL prefix (`/pulp/content/`), `segments` the decoded path
 * of the directory below it. Links are absolute, so the page works with or
 * without a trailing slash in the request.
 */
export function renderIndex(
  mount: string,
  segments: readonly string[],
  entries: readonly DirEntry[],
): string {
  const base = mount + segments.map((s) => `${encodeSegment(s)}/`).join('');
  const title = `Index of ${mount}${segments.map((s) => `${s}/`).join('')}`;
  const rows = entries.map((e) => {
    const name = e.dir ? `${e.name}/` : e.name;
    return `<li><a href="${escapeHtml(base + encodeSegment(e.name) + (e.dir ? '/' : ''))}">${escapeHtml(name)}</a></li>`;
  });
  if (segments.length > 0) {
    const parent =
      mount +
      segments
        .slice(0, -1)
        .map((s) => `${encodeSegment(s)}/`)
        .join('');
    rows.unshift(`<li><a href="${escapeHtml(parent)}">../</a></li>`);
  }
  return [
    '<!DOCTYPE html>',
    `<html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>`,
    `<body><h1>${escapeHtml(title)}</h1>`,
    '<ul>',
    ...rows,
    '</ul></body></html>',
    '',
  ].join('\n');
}
