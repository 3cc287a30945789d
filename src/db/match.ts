/**
 * Evaluates a MongoDB query filter against a document in memory, for the
 * small subset of operators the queue's conditions use: field equality
 * (null also matches a missing field), $eq, $ne, $lt, $lte, $gt, $gte, $in,
 * $nin, $exists, and top-level $and/$or. Anything else is a programming
 * error and throws, so a filter can never be silently misread.
 */
export function matches(doc: Record<string, unknown>, filter: Record<string, unknown>): boolean {
  for (const [key, cond] of Object.entries(filter)) {
    if (key === '$and') {
      if (!(cond as Record<string, unknown>[]).every((f) => matches(doc, f))) return false;
    } else if (key === '$or') {
      if (!(cond as Record<string, unknown>[]).some((f) => matches(doc, f))) return false;
    } else if (key.startsWith('$')) {
      throw new Error(`matches: unsupported top-level operator ${key}`);
    } else if (!fieldMatches(get(doc, key), cond)) {
      return false;
    }
  }
  return true;
}

function get(doc: Record<string, unknown>, dotted: string): unknown {
  let v: unknown = doc;
  for (const part of dotted.split('.')) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

function isOperatorObject(c: unknown): c is Record<string, unknown> {
  if (c === null || typeof c !== 'object' || c instanceof Date || Array.isArray(c)) return false;
  const keys = Object.keys(c);
  return keys.length > 0 && keys.every((k) => k.startsWith('$'));
}

function fieldMatches(value: unknown, cond: unknown): boolean {
  if (!isOperatorObject(cond)) return equals(value, cond);
  for (const [op, arg] of Object.entries(cond)) {
    switch (op) {
      case '$eq':
        if (!equals(value, arg)) return false;
        break;
      case '$ne':
        if (equals(value, arg)) return false;
        break;
      case '$in':
        if (!(arg as unknown[]).some((a) => equals(value, a))) return false;
        break;
      case '$nin':
        if ((arg as unknown[]).some((a) => equals(value, a))) return false;
        break;
      case '$exists':
        if ((value !== undefined) !== Boolean(arg)) return false;
        break;
      case '$lt':
      case '$lte':
      case '$gt':
      case '$gte': {
        const c = compare(value, arg);
        if (c === undefined) return false;
        if (op === '$lt' && !(c < 0)) return false;
        if (op === '$lte' && !(c <= 0)) return false;
        if (op === '$gt' && !(c > 0)) return false;
        if (op === '$gte' && !(c >= 0)) return false;
        break;
      }
      default:
        throw new Error(`matches: unsupported operator ${op}`);
    }
  }
  return true;
}

/** MongoDB equality for scalars, dates and ObjectIds; `null` matches null and missing. */
function equals(value: unknown, expected: unknown): boolean {
  if (expected === null) return value === null || value === undefined;
  if (expected instanceof Date) return value instanceof Date && value.getTime() === expected.getTime();
  if (typeof expected === 'object' && expected !== null && 'equals' in expected) {
    return (expected as { equals(o: unknown): boolean }).equals(value);
  }
  if (typeof expected === 'object') throw new Error('matches: equality on documents/arrays is unsupported');
  return value === expected;
}

/** Orders two values of the same kind (numbers, strings, dates); undefined across kinds, like MongoDB. */
function compare(a: unknown, b: unknown): number | undefined {
  if (a instanceof Date && b instanceof Date) return a.getTime() - b.getTime();
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  return undefined;
}
