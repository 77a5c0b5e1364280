/** Helpers for buffers made by someone else (adoptSurface): handles given as OsHandles or fd owners. */
import { fdHandle, type OsHandle } from '../handles.js';
import type { NativeFd } from '../native/index.js';

/** An OsHandle for what the caller gave: an OsHandle as is, a NativeFd wrapped (still the caller's). */
export function asOsHandle(given: OsHandle | NativeFd): OsHandle {
  return 'kind' in given && typeof (given as { kind: unknown }).kind === 'string'
    ? (given as OsHandle)
    : fdHandle(given as NativeFd);
}
