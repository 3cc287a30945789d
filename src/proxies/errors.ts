/** The error every proxy operation throws (a missing binary, a busy port, a failed start or stop). */
import type { ErrorCode } from '../error-codes.ts';
import { PulpLazyError } from '../errors.ts';

export class ProxyError extends PulpLazyError {
  constructor(code: Extract<ErrorCode, `PL_PROXY_${string}`>, message: string) {
    super(code, message);
  }
}
