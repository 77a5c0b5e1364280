/**
 * HTTPS/WSS for the stream server (docs/remote.md §2.2). WebCodecs, and so the browser viewer's
 * H.264, needs a secure context: plain http is one only on localhost. A viewer on another machine
 * therefore needs https, with the certificate the user gives (PEM files) or, for a LAN or a test,
 * one the server makes itself at start: self-signed, RSA-2048 (the key from node:crypto), SHA-256,
 * valid for a year, naming every address the server can be reached at. Its SHA-256 fingerprint is
 * what a user compares before accepting it in the browser, and what `surfacelink view --remote`
 * pins with `--fingerprint`.
 *
 * The certificate itself is built by the `selfsigned` package (node-forge, loaded only when a
 * certificate is made): Node has no API to write an X.509 certificate.
 */
import * as crypto from 'node:crypto';
import * as os from 'node:os';
import type * as Selfsigned from 'selfsigned';
import { SurfaceLinkError, invalidArgument } from '../errors.js';

/** A certificate and its private key, PEM (what `https.createServer` takes). */
export interface StreamTlsPem {
  /** The certificate chain, PEM (the server's certificate first). */
  cert: string | Buffer;
  /** Its private key, PEM (unencrypted). */
  key: string | Buffer;
}

/** `StreamServerOptions.tls`: a certificate given, or `'self-signed'` (made at start). */
export type StreamTlsOption = StreamTlsPem | 'self-signed';

/** What the stream server says about the certificate it serves. */
export interface StreamCertificateInfo {
  /** SHA-256 of the certificate (DER), as colon-separated upper-case hex: what browsers show. */
  fingerprint256: string;
  /** True when the server made it itself (`tls: 'self-signed'`): browsers warn until the user accepts it. */
  selfSigned: boolean;
  /** The names and addresses it is valid for, e.g. `DNS:localhost, IP Address:127.0.0.1`. */
  subjectAltName: string;
  /** When it expires (the certificate's notAfter, as Node prints it). */
  validTo: string;
  /** The certificate itself, PEM (public): what a client that should trust it can be given (`ca`). */
  pem: string;
}

const SELF_SIGNED_DAYS = 365;

/**
 * The names a self-signed certificate for a server bound to `host` should carry: `localhost`, the
 * loopback addresses, the host itself, this machine's name, and (bound to a wildcard) every
 * address of every interface.
 */
export function certificateNames(host: string): { dns: string[]; ips: string[] } {
  const dns = new Set<string>(['localhost']);
  const ips = new Set<string>(['127.0.0.1', '::1']);
  const hostname = os.hostname();
  if (hostname) dns.add(hostname);
  const bare = host.replace(/^\[|\]$/g, '');
  if (bare === '0.0.0.0' || bare === '::') {
    for (const list of Object.values(os.networkInterfaces()))
      for (const a of list ?? []) if (!a.address.startsWith('fe80:')) ips.add(a.address);
  } else if (/^[\d.]+$/.test(bare) || bare.includes(':')) ips.add(bare);
  else dns.add(bare);
  return { dns: [...dns], ips: [...ips] };
}

/** Makes a self-signed certificate for a server bound to `host` (see certificateNames). */
export function selfSignedCertificate(host: string): { cert: string; key: string } {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
  });
  const names = certificateNames(host);
  const options = {
    days: SELF_SIGNED_DAYS,
    algorithm: 'sha256',
    keyPair: { publicKey, privateKey },
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [...names.dns.map((value) => ({ type: 2, value })), ...names.ips.map((ip) => ({ type: 7, ip }))],
      },
    ],
  };
  // Loaded here, not at import: node-forge takes ~80 ms to load, and only a self-signed server needs it.
  const { generate } = require('selfsigned') as typeof Selfsigned;
  const pems = generate([{ name: 'commonName', value: `surfacelink stream (${os.hostname() || host})` }], options);
  return { cert: pems.cert, key: pems.private };
}

/**
 * Resolves `StreamServerOptions.tls` to what https.createServer takes plus what the server
 * reports. Throws E_INVALID_ARGUMENT for something that is neither, or PEM that Node cannot read
 * (the message says which part), or a key that does not belong to the certificate.
 */
export function resolveTls(option: StreamTlsOption, host: string): { pem: StreamTlsPem; info: StreamCertificateInfo } {
  const selfSigned = option === 'self-signed';
  let pem: StreamTlsPem;
  if (selfSigned) pem = selfSignedCertificate(host);
  else if (option !== null && typeof option === 'object' && 'cert' in option && 'key' in option) pem = option;
  else throw invalidArgument('tls', "{ cert, key } (PEM) or 'self-signed'", option);
  let x509: crypto.X509Certificate;
  try {
    x509 = new crypto.X509Certificate(pem.cert);
  } catch (error) {
    throw invalidArgument('tls.cert', 'a PEM certificate', `unreadable (${(error as Error).message})`);
  }
  let key: crypto.KeyObject;
  try {
    key = crypto.createPrivateKey(pem.key);
  } catch (error) {
    throw invalidArgument('tls.key', 'an unencrypted PEM private key', `unreadable (${(error as Error).message})`);
  }
  if (!x509.checkPrivateKey(key))
    throw new SurfaceLinkError('E_INVALID_ARGUMENT', 'tls.key is not the private key of tls.cert');
  return {
    pem,
    info: {
      fingerprint256: x509.fingerprint256,
      selfSigned,
      subjectAltName: x509.subjectAltName ?? '',
      validTo: x509.validTo,
      pem: x509.toString(),
    },
  };
}

/** A fingerprint as the user may type it (any case, with or without colons) → the canonical form. */
export function normalizeFingerprint(text: string): string | null {
  const hex = text.replace(/^sha-?256[:=\s]*/i, '').replace(/[:\s]/g, '');
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) return null;
  return hex.toUpperCase().match(/.{2}/g)!.join(':');
}
