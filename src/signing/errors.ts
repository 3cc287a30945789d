/** Errors of the signed-URL check. All answer 403; match on `code`. */
import { PulpLazyError } from '../errors.ts';

export type SignatureErrorCode =
  | 'PL_SIG_NOT_SIGNED'
  | 'PL_SIG_MALFORMED'
  | 'PL_SIG_BAD_SIGNATURE'
  | 'PL_SIG_EXPIRED'
  | 'PL_SIG_RESOURCE_MISMATCH'
  | 'PL_SIG_EXTENSION_MISMATCH';

/** A URL that is not signed, or whose signature does not allow this request. */
export class SignatureError extends PulpLazyError {
  declare readonly code: SignatureErrorCode;

  constructor(code: SignatureErrorCode, message: string) {
    super(code, message, { status: 403, exitCode: 1 });
  }
}
