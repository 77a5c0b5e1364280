/**
 * The stream server's HTTP side: the browser viewer's files (a whitelist made at start: no
 * request path reaches the file system), Origin checks, the token comparison, URL hosts.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import type * as http from 'node:http';
import * as path from 'node:path';
import { STREAM_PATH } from './protocol.js';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.wasm': 'application/wasm',
  '.txt': 'text/plain; charset=utf-8',
};

const HEADERS = { 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'no-referrer' };

/** Answers a GET/HEAD for one of `files` (URL path → file), 404 otherwise; 426 for the stream path. */
export function serveFile(
  files: ReadonlyMap<string, string>,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { ...HEADERS, Allow: 'GET, HEAD' }).end();
    return;
  }
  let pathname: string;
  try {
    pathname = new URL(req.url ?? '/', 'http://x').pathname;
  } catch {
    res.writeHead(400, HEADERS).end();
    return;
  }
  // Only names listed at start: no path from the request ever reaches the file system.
  const file = files.get(pathname === '/' ? '/index.html' : pathname);
  if (!file) {
    const stream = pathname === STREAM_PATH;
    res
      .writeHead(stream ? 426 : 404, { ...HEADERS, 'Content-Type': 'text/plain; charset=utf-8' })
      .end(stream ? 'WebSocket only\n' : 'not found\n');
    return;
  }
  fs.readFile(file, (error, body) => {
    if (error) {
      res.writeHead(404, HEADERS).end();
      return;
    }
    res.writeHead(200, {
      ...HEADERS,
      'Content-Type': CONTENT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream',
      'Content-Length': body.length,
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
}

/**
 * Whether a WebSocket upgrade from `origin` may proceed: a listed origin, or — bound to every
 * interface — the page's own origin when it was loaded from an IP literal (a DNS name could be
 * rebound to this host by someone else).
 */
export function originAllowed(
  allowed: ReadonlySet<string>,
  boundHost: string,
  origin: string,
  hostHeader: string | undefined,
): boolean {
  if (allowed.has(origin)) return true;
  if ((boundHost === '0.0.0.0' || boundHost === '::') && hostHeader && origin === `http://${hostHeader}`) {
    const name = hostHeader.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
    return /^[\d.]+$/.test(name) || name.includes(':');
  }
  return false;
}

/** Constant time whatever the lengths: both sides are hashed to 32 bytes first. */
export function tokenMatches(given: string, expected: string): boolean {
  const a = crypto.createHash('sha256').update(given, 'utf8').digest();
  const b = crypto.createHash('sha256').update(expected, 'utf8').digest();
  return crypto.timingSafeEqual(a, b);
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

/** A host as it goes in a URL (IPv6 literals in brackets). */
export function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** URL path → file, for the regular files directly in `root` and one level of folders below it. */
export function listWebFiles(root: string): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (dir: string, prefix: string, depth: number): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return; // no viewer installed: only the stream is served
    }
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const full = path.join(dir, e.name);
      if (e.isFile()) files.set(`${prefix}/${encodeURIComponent(e.name).replace(/%2F/gi, '')}`, full);
      else if (e.isDirectory() && depth === 0) walk(full, `${prefix}/${encodeURIComponent(e.name)}`, depth + 1);
    }
  };
  walk(root, '', 0);
  return files;
}

/**
 * The key connection budgets count by: the IP address (an IPv4-mapped IPv6 address as IPv4), an
 * IPv6 address by its /64, which one host can fill with addresses of its own.
 */
export function addressKey(address: string): string {
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (v4) return v4[1];
  if (!address.includes(':')) return address;
  const [head, tail] = address.split('::', 2) as [string, string | undefined];
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups =
    tail === undefined
      ? left
      : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => (parseInt(g, 16) || 0).toString(16))
    .join(':')}::/64`;
}
