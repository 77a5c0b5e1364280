/**
 * D-Bus type signatures: parsing into a type tree, validation by the specification's rules
 * (at most 255 bytes, 32 nested arrays, 32 nested structs, dict entries only as array elements
 * with a basic key), and the name checks for object paths, interfaces, members and bus names.
 */
import { SurfaceLinkError } from '../../../errors.js';

/** One complete type of a signature, parsed. */
export interface DBusType {
  /** The type code: a basic code (`y b n q i u x t d s o g h`), `v`, `a`, `(` (struct) or `{` (dict entry). */
  readonly code: string;
  /** This complete type's own signature, e.g. `a{sv}`. */
  readonly signature: string;
  /** Its alignment in bytes (1, 2, 4 or 8). */
  readonly align: number;
  /** Array: the element type. */
  readonly element?: DBusType;
  /** Struct or dict entry: the field types (a dict entry has exactly two: key, value). */
  readonly fields?: readonly DBusType[];
}

/** Longest signature the specification allows, in bytes. */
export const MAX_SIGNATURE_LENGTH = 255;
/** Most arrays nested in one another (and, separately, most structs). */
export const MAX_NESTING = 32;
/** Most containers of any kind (arrays, structs, variants) nested in one value. */
export const MAX_TOTAL_NESTING = 64;

const BASIC_ALIGN: Record<string, number> = {
  y: 1,
  b: 4,
  n: 2,
  q: 2,
  i: 4,
  u: 4,
  x: 8,
  t: 8,
  d: 8,
  s: 4,
  o: 4,
  g: 1,
  h: 4,
};

/** Whether `code` is a basic type code (one that may be a dict key). */
export function isBasicCode(code: string): boolean {
  return code in BASIC_ALIGN;
}

const cache = new Map<string, readonly DBusType[]>();
const CACHE_LIMIT = 512;

function malformed(what: string, signature: string, code: 'E_MALFORMED' | 'E_INVALID_ARGUMENT'): SurfaceLinkError {
  return new SurfaceLinkError(code, `invalid D-Bus signature ${JSON.stringify(signature)}: ${what}`);
}

/**
 * Parses a signature (any number of complete types) into its types. Throws a SurfaceLinkError
 * with `errorCode` (E_MALFORMED for what a peer sent, E_INVALID_ARGUMENT for what the caller
 * passed) when the signature breaks a rule. Results are cached.
 */
export function parseSignature(
  signature: string,
  errorCode: 'E_MALFORMED' | 'E_INVALID_ARGUMENT' = 'E_MALFORMED',
): readonly DBusType[] {
  const hit = cache.get(signature);
  if (hit) return hit;
  if (typeof signature !== 'string') throw malformed('not a string', String(signature), errorCode);
  if (signature.length > MAX_SIGNATURE_LENGTH) throw malformed('longer than 255 bytes', signature, errorCode);
  const types: DBusType[] = [];
  const state = { pos: 0, arrays: 0, structs: 0 };
  while (state.pos < signature.length) types.push(parseOne(signature, state, errorCode, false));
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(signature, types);
  return types;
}

/** Parses a signature that must be exactly one complete type (a variant's). */
export function parseSingleType(
  signature: string,
  errorCode: 'E_MALFORMED' | 'E_INVALID_ARGUMENT' = 'E_MALFORMED',
): DBusType {
  const types = parseSignature(signature, errorCode);
  if (types.length !== 1) throw malformed('a variant needs exactly one complete type', signature, errorCode);
  return types[0];
}

/** Whether `signature` is a valid signature (any number of complete types). */
export function isValidSignature(signature: string): boolean {
  try {
    parseSignature(signature);
    return true;
  } catch {
    return false;
  }
}

function parseOne(
  sig: string,
  state: { pos: number; arrays: number; structs: number },
  errorCode: 'E_MALFORMED' | 'E_INVALID_ARGUMENT',
  inArray: boolean,
): DBusType {
  const start = state.pos;
  if (start >= sig.length) throw malformed('ends in the middle of a type', sig, errorCode);
  const c = sig[start];
  state.pos++;
  const basic = BASIC_ALIGN[c];
  if (basic !== undefined) return { code: c, signature: c, align: basic };
  switch (c) {
    case 'v':
      return { code: 'v', signature: 'v', align: 1 };
    case 'a': {
      if (++state.arrays > MAX_NESTING) throw malformed('more than 32 nested arrays', sig, errorCode);
      const element = parseOne(sig, state, errorCode, true);
      state.arrays--;
      return { code: 'a', signature: sig.slice(start, state.pos), align: 4, element };
    }
    case '(':
    case '{': {
      const dict = c === '{';
      if (dict && !inArray) throw malformed('a dict entry outside an array', sig, errorCode);
      if (++state.structs > MAX_NESTING) throw malformed('more than 32 nested structs', sig, errorCode);
      const close = dict ? '}' : ')';
      const fields: DBusType[] = [];
      while (true) {
        if (state.pos >= sig.length)
          throw malformed(`a ${dict ? 'dict entry' : 'struct'} is not closed`, sig, errorCode);
        if (sig[state.pos] === close) break;
        fields.push(parseOne(sig, state, errorCode, false));
      }
      state.pos++;
      state.structs--;
      if (fields.length === 0) throw malformed('an empty struct', sig, errorCode);
      if (dict) {
        if (fields.length !== 2) throw malformed('a dict entry needs exactly a key and a value', sig, errorCode);
        if (!isBasicCode(fields[0].code)) throw malformed('a dict entry key must be a basic type', sig, errorCode);
      }
      return { code: c, signature: sig.slice(start, state.pos), align: 8, fields };
    }
    default:
      throw malformed(`unexpected ${JSON.stringify(c)} at ${start}`, sig, errorCode);
  }
}

const PATH_RE = /^\/(?:[A-Za-z0-9_]+(?:\/[A-Za-z0-9_]+)*)?$/;
const ELEMENT = '[A-Za-z_][A-Za-z0-9_]*';
const INTERFACE_RE = new RegExp(`^${ELEMENT}(?:\\.${ELEMENT})+$`);
const MEMBER_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const UNIQUE_NAME_RE = /^:[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+$/;
const WELL_KNOWN_RE = /^[A-Za-z_-][A-Za-z0-9_-]*(?:\.[A-Za-z_-][A-Za-z0-9_-]*)+$/;

/** Whether `path` is a valid object path (`/`, or `/`-separated non-empty `[A-Za-z0-9_]` elements). */
export function isValidObjectPath(path: string): boolean {
  return typeof path === 'string' && PATH_RE.test(path);
}

/** Whether `name` is a valid interface name (also the rule for error names). */
export function isValidInterfaceName(name: string): boolean {
  return typeof name === 'string' && name.length <= 255 && INTERFACE_RE.test(name);
}

/** Whether `name` is a valid member (method or signal) name. */
export function isValidMemberName(name: string): boolean {
  return typeof name === 'string' && name.length <= 255 && MEMBER_RE.test(name);
}

/** Whether `name` is a valid bus name: unique (`:1.42`) or well-known (`org.qemu`). */
export function isValidBusName(name: string): boolean {
  return (
    typeof name === 'string' &&
    name.length <= 255 &&
    (name.startsWith(':') ? UNIQUE_NAME_RE.test(name) : WELL_KNOWN_RE.test(name))
  );
}
