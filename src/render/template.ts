/**
 * The `{{name}}` template renderer for config files. No escaping (these are
 * not HTML), no logic: optional blocks are computed in TypeScript and passed
 * in as values. A placeholder alone on its line takes that line's indentation
 * for every line of a multi-line value, and the line disappears when the
 * value is empty.
 */
import { PulpLazyError } from '../errors.ts';

export type TemplateValues = Readonly<Record<string, string | number>>;

export class TemplateError extends PulpLazyError {
  constructor(message: string) {
    super('PL_TEMPLATE', message);
  }
}

// Either a placeholder alone on its line (group 1: indentation, 2: name) or one inside a line (3).
const PLACEHOLDER = /^([ \t]*)\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}[ \t]*(?:\r?\n|$)|\{\{\s*([^{}]*?)\s*\}\}/gm;

export function renderTemplate(text: string, values: TemplateValues, name = 'template'): string {
  const lookup = (key: string): string => {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new TemplateError(`${name}: bad placeholder {{${key}}}`);
    if (!Object.hasOwn(values, key)) throw new TemplateError(`${name}: no value for {{${key}}}`);
    return String(values[key]);
  };
  // One pass, so text coming from a value is never scanned for placeholders.
  return text.replace(
    PLACEHOLDER,
    (_all, indent: string | undefined, lineKey?: string, inlineKey?: string) => {
      if (inlineKey !== undefined) return lookup(inlineKey);
      const value = lookup(lineKey!);
      if (value === '') return '';
      return `${value
        .replace(/\n$/, '')
        .split('\n')
        .map((l) => (l === '' ? '' : indent + l))
        .join('\n')}\n`;
    },
  );
}
