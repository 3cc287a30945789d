/**
 * Bounded write commands. FerretDB 1.24 hangs on a write command of more
 * than about 99 statements (updates; inserts and deletes are kept to the same
 * bound), and a sync streams its plan rather than holding it: every write of
 * a sync goes out WRITE_CHUNK documents at a time.
 */
export const WRITE_CHUNK = 99;

/** `items` in arrays of `size` (the last one shorter), as they come. */
export async function* chunked<T>(
  items: AsyncIterable<T> | Iterable<T>,
  size = WRITE_CHUNK,
): AsyncGenerator<T[]> {
  let chunk: T[] = [];
  for await (const item of items) {
    chunk.push(item);
    if (chunk.length >= size) {
      yield chunk;
      chunk = [];
    }
  }
  if (chunk.length > 0) yield chunk;
}
