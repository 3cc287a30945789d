/** Errors of the signed-URL check. All answer 403; match on `code`. */
import type { ErrorCode } from '../error-codes.ts';
import { PulpLazyError } from '../errors.ts';

export type SignatureErrorCode = Extract<ErrorCode, `PL_SIG_${string}`>;

/** Whether `err` carries a signature code (matches on the code, as everywhere). */
export function isSignatureError(err: unknown): err is SignatureError {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('PL_SIG_');
}

/** A URL that is not signed, or whose signature does not allow this request. */
export class SignatureError extends PulpLazyError {
  declare readonly code: SignatureErrorCode;

  constructor(code: SignatureErrorCode, message: string) {
    super(code, message);
  }
}
