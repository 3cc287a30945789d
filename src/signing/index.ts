/** Signed, expiring URLs for the streamer redirect (Ed25519); gpg.ts: signed upstream metadata (gpgv). */
export { SignatureError, type SignatureErrorCode } from './errors.ts';
export { generateKeys, loadPrivateKey, loadPublicKey, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE } from './keys.ts';
export { type Policy, signUrl, stripSignature, verifyUrl } from './url.ts';
