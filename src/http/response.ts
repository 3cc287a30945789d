/**
 * Writing to an HTTP response when the client may go away at any moment:
 * every wait here ends when the response closes, so no sender waits forever
 * for a socket that is gone.
 */
import type { ServerResponse } from 'node:http';

/**
 * Writes `chunk`. `ok` is write()'s answer (false: wait for a drain);
 * `taken` resolves once the socket took the bytes, so the chunk's buffer may
 * be filled again, or once the response closed.
 */
export function writeChunk(res: ServerResponse, chunk: Buffer): { ok: boolean; taken: Promise<void> } {
  let done!: () => void;
  const taken = new Promise<void>((resolve) => {
    done = resolve;
  });
  const onClose = () => done();
  res.once('close', onClose);
  const ok = res.write(chunk, () => {
    res.off('close', onClose);
    done();
  });
  return { ok, taken };
}

/** Resolves once the response no longer needs a drain (at once if it drained already) or closed. */
export function drainOrClose(res: ServerResponse): Promise<void> {
  if (!res.writableNeedDrain || res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** Ends the response; resolves true once it finished, false if the connection closed first. */
export function endResponse(res: ServerResponse): Promise<boolean> {
  return new Promise((resolve) => {
    if (res.destroyed) {
      resolve(res.writableFinished);
      return;
    }
    const done = () => {
      res.off('finish', done);
      res.off('close', done);
      resolve(res.writableFinished);
    };
    res.on('finish', done);
    res.on('close', done);
    res.end();
  });
}
