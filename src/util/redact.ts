/**
 * The one URL redactor: no password in any message or log line, whether the
 * URL is a feed's (src/upstream/) or the database's connection string (src/db/).
 */

/** Hides the credentials of every URL in `text`: `user:password@` becomes `user:***@`, `token@` `***@`. */
export function redactUrl(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#@]*)@/gi, (_m, scheme: string, info: string) => {
    const colon = info.indexOf(':');
    return `${scheme}${colon >= 0 ? `${info.slice(0, colon)}:***` : '***'}@`;
  });
}
