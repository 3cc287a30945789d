/** The error every proxy operation throws (a missing binary, a busy port, a failed start or stop). */
import { PulpLazyError } from '../errors.ts';

export class ProxyError extends PulpLazyError {
  constructor(code: string, message: string) {
    super(code, message, { status: 503 });
  }
}
