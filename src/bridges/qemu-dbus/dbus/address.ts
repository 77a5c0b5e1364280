/**
 * D-Bus server addresses (the specification's "Server Addresses"): `transport:key=value,...`
 * entries separated by `;`, values %-escaped. Only `unix:path=` can be connected to here.
 */
import { SurfaceLinkError, invalidArgument } from '../../../errors.js';

/** One entry of an address list. */
export interface DBusAddressEntry {
  /** The transport, e.g. 'unix' or 'tcp'. */
  transport: string;
  /** Its key/value pairs, unescaped. */
  params: Map<string, string>;
}

/** Parses an address list. E_INVALID_ARGUMENT for a syntax error (the message names the entry). */
export function parseAddress(address: string): DBusAddressEntry[] {
  if (typeof address !== 'string' || address.trim() === '')
    throw invalidArgument('a D-Bus address', 'a non-empty string', address);
  const entries: DBusAddressEntry[] = [];
  for (const entry of address.split(';')) {
    if (entry === '') continue;
    const colon = entry.indexOf(':');
    if (colon <= 0) throw invalidArgument('a D-Bus address entry', '"transport:key=value,..."', entry);
    const params = new Map<string, string>();
    const rest = entry.slice(colon + 1);
    for (const pair of rest === '' ? [] : rest.split(',')) {
      const eq = pair.indexOf('=');
      if (eq <= 0) throw invalidArgument('a D-Bus address parameter', '"key=value"', pair);
      const key = pair.slice(0, eq);
      if (params.has(key)) throw invalidArgument(`the D-Bus address key ${key}`, 'given once', entry);
      params.set(key, unescape(pair.slice(eq + 1), entry));
    }
    entries.push({ transport: entry.slice(0, colon), params });
  }
  if (entries.length === 0) throw invalidArgument('a D-Bus address', 'at least one entry', address);
  return entries;
}

function unescape(value: string, entry: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '%') {
      const hex = value.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw invalidArgument('a D-Bus address escape', '"%XX"', entry);
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(...Buffer.from(c, 'utf8'));
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/**
 * The socket path of a `unix:path=` entry. E_UNSUPPORTED, naming what is missing, for the
 * transports and unix variants this implementation cannot connect to (abstract sockets, tcp,
 * nonce-tcp, launchd, listen-only `tmpdir=`/`dir=`/`runtime=`).
 */
export function unixPathOf(entry: DBusAddressEntry): string {
  const shown = `${entry.transport}:${[...entry.params.keys()].map((k) => k + '=…').join(',')}`;
  if (entry.transport !== 'unix')
    throw new SurfaceLinkError(
      'E_UNSUPPORTED',
      `the D-Bus transport "${entry.transport}:" is not supported (${shown}); only unix:path= is`,
    );
  const path = entry.params.get('path');
  if (path !== undefined && path !== '') return path;
  if (entry.params.has('abstract'))
    throw new SurfaceLinkError(
      'E_UNSUPPORTED',
      'abstract unix sockets (unix:abstract=) are not supported: the native channel connects to socket files; ' +
        'give the bus a <listen>unix:path=…</listen> address',
    );
  throw new SurfaceLinkError(
    'E_UNSUPPORTED',
    `cannot connect to ${shown}: only unix:path= is supported (tmpdir=, dir= and runtime= are for listening)`,
  );
}
