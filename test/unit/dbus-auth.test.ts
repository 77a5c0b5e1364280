/**
 * D-Bus authentication state machines (src/bridges/qemu-dbus/dbus/auth.ts) and address parsing
 * (address.ts), without sockets: client against server, against scripted peers, and the bounds.
 */
import { expect } from 'chai';
import {
  AuthClient,
  AuthServer,
  MAX_AUTH_LINE,
  parseAddress,
  unixPathOf,
  type AuthProgress,
} from '../../src/bridges/qemu-dbus/dbus/index.js';
import { expectCode } from '../fixtures/dbus/helpers.js';

const GUID = '0123456789abcdef0123456789abcdef';
const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');
const hexUid = (uid: number): string => Buffer.from(String(uid)).toString('hex');

/** Runs a client and a server against each other until both are done (or one throws). */
function converse(client: AuthClient, server: AuthServer): { c: AuthProgress; s: AuthProgress; log: string[] } {
  const log: string[] = [];
  let toServer = client.start();
  let c: AuthProgress = { send: '', done: false, rest: null };
  let s: AuthProgress = { send: '', done: false, rest: null };
  for (let round = 0; round < 10 && !(c.done && s.done); round++) {
    log.push('C: ' + JSON.stringify(toServer));
    s = server.feed(bytes(toServer));
    if (s.done) break;
    log.push('S: ' + JSON.stringify(s.send));
    c = client.feed(bytes(s.send));
    toServer = c.send;
  }
  return { c, s, log };
}

describe('D-Bus authentication', () => {
  describe('client and server roles together', () => {
    for (const initialResponse of [true, false])
      for (const negotiateUnixFds of [true, false]) {
        const ir = initialResponse ? 'with' : 'without';
        const title = `EXTERNAL ${ir} initial response, fds ${negotiateUnixFds ? '' : 'not '}asked`;
        it(title, () => {
          const client = new AuthClient({ uid: 1000, initialResponse, negotiateUnixFds });
          const server = new AuthServer({ peerUid: 1000, allowedUid: 1000, guid: GUID });
          const { s, log } = converse(client, server);
          expect(s.done, log.join('\n')).to.equal(true);
          expect(client.result).to.deep.equal({ guid: GUID, unixFds: negotiateUnixFds });
          expect(server.result).to.deep.equal({ guid: GUID, unixFds: negotiateUnixFds });
          expect(log[0]).to.equal(
            'C: ' + JSON.stringify(`\0AUTH EXTERNAL${initialResponse ? ' ' + hexUid(1000) : ''}\r\n`),
          );
          if (!initialResponse) expect(log).to.include('S: "DATA\\r\\n"');
        });
      }

    it('the server refuses fd passing when told to; the client goes on without fds', () => {
      const client = new AuthClient({ uid: 5 });
      const server = new AuthServer({ peerUid: 5, allowedUid: 5, allowUnixFds: false });
      const { s } = converse(client, server);
      expect(s.done).to.equal(true);
      expect(client.result!.unixFds).to.equal(false);
      expect(server.result!.unixFds).to.equal(false);
    });
  });

  describe('client role against scripted servers', () => {
    it('REJECTED is E_PERMISSION naming what the server offers', () => {
      const client = new AuthClient({ uid: 1 });
      client.start();
      expectCode(() => client.feed(bytes('REJECTED DBUS_COOKIE_SHA1\r\n')), 'E_PERMISSION', /DBUS_COOKIE_SHA1/);
    });

    it('a GUID other than the address says is E_PERMISSION; a malformed OK is E_MALFORMED', () => {
      const client = new AuthClient({ uid: 1, expectedGuid: GUID });
      expectCode(() => client.feed(bytes(`OK ${'f'.repeat(32)}\r\n`)), 'E_PERMISSION', /GUID/);
      expectCode(() => new AuthClient({ uid: 1 }).feed(bytes('OK nothex\r\n')), 'E_MALFORMED', /GUID/);
    });

    it('ERROR to NEGOTIATE_UNIX_FD: no fds, BEGIN, and the bytes after the last line are handed back', () => {
      const client = new AuthClient({ uid: 1 });
      expect(client.feed(bytes(`OK ${GUID}\r\n`)).send).to.equal('NEGOTIATE_UNIX_FD\r\n');
      const p = client.feed(bytes('ERROR "no"\r\nl\x01\x00\x01'));
      expect(p).to.include({ send: 'BEGIN\r\n', done: true });
      expect(Buffer.from(p.rest!).toString('latin1')).to.equal('l\x01\x00\x01');
      expect(client.result).to.deep.equal({ guid: GUID, unixFds: false });
    });

    it('lines split across chunks are reassembled', () => {
      const client = new AuthClient({ uid: 1, negotiateUnixFds: false });
      expect(client.feed(bytes('OK ' + GUID.slice(0, 10))).done).to.equal(false);
      expect(client.feed(bytes(GUID.slice(10) + '\r')).done).to.equal(false);
      expect(client.feed(bytes('\n'))).to.include({ send: 'BEGIN\r\n', done: true });
    });

    it('bounds: a line over the limit is E_TOO_LARGE; binary bytes, a bare LF, unknown replies are E_MALFORMED', () => {
      expectCode(() => new AuthClient({ uid: 1 }).feed(Buffer.alloc(MAX_AUTH_LINE + 1, 0x41)), 'E_TOO_LARGE');
      const long = new AuthClient({ uid: 1 });
      for (let i = 0; i < 16; i++) long.feed(Buffer.alloc(1000, 0x41));
      expectCode(() => long.feed(Buffer.alloc(1000, 0x41)), 'E_TOO_LARGE');
      expectCode(() => new AuthClient({ uid: 1 }).feed(bytes('OK \xff\r\n')), 'E_MALFORMED', /ASCII/);
      expectCode(() => new AuthClient({ uid: 1 }).feed(bytes(`OK ${GUID}\n`)), 'E_MALFORMED', /CRLF/);
      expectCode(() => new AuthClient({ uid: 1 }).feed(bytes('AGREE_UNIX_FD\r\n')), 'E_MALFORMED', /unexpected/);
      const nagging = new AuthClient({ uid: 1 });
      nagging.feed(bytes('DATA\r\n'));
      nagging.feed(bytes('DATA\r\n'));
      expectCode(() => nagging.feed(bytes('DATA\r\n')), 'E_MALFORMED', /DATA/);
    });
  });

  describe('server role against scripted clients', () => {
    const server = (peerUid: number | null = 1000): AuthServer =>
      new AuthServer({ peerUid, allowedUid: 1000, guid: GUID });

    it('the NUL byte must come first', () => {
      expectCode(() => server().feed(bytes('AUTH EXTERNAL\r\n')), 'E_MALFORMED', /NUL/);
    });

    it('a claimed uid other than the peer credentials, or a peer of another uid, is REJECTED', () => {
      expect(server().feed(bytes(`\0AUTH EXTERNAL ${hexUid(0)}\r\n`)).send).to.equal('REJECTED EXTERNAL\r\n');
      expect(server(0).feed(bytes(`\0AUTH EXTERNAL ${hexUid(0)}\r\n`)).send).to.equal('REJECTED EXTERNAL\r\n');
      expect(server(null).feed(bytes('\0AUTH EXTERNAL\r\nDATA\r\n')).send).to.equal('DATA\r\nREJECTED EXTERNAL\r\n');
      expect(server().feed(bytes('\0AUTH EXTERNAL zz\r\n')).send).to.equal('REJECTED EXTERNAL\r\n');
      expect(server().feed(bytes('\0AUTH DBUS_COOKIE_SHA1 abc\r\n')).send).to.equal('REJECTED EXTERNAL\r\n');
    });

    it('BEGIN before OK is E_PERMISSION; too many attempts end it', () => {
      expectCode(() => server().feed(bytes('\0BEGIN\r\n')), 'E_PERMISSION', /BEGIN/);
      const s = server();
      s.feed(bytes('\0'));
      for (let i = 0; i < 8; i++) s.feed(bytes('AUTH EXTERNAL 30\r\n'));
      expectCode(() => s.feed(bytes('AUTH EXTERNAL 30\r\n')), 'E_PERMISSION', /too many/);
    });

    it('a pipelining client: everything after BEGIN is handed back as message bytes', () => {
      const p = server().feed(
        bytes(`\0AUTH EXTERNAL ${hexUid(1000)}\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\nl\x01\x00\x01rest`),
      );
      expect(p.send).to.equal(`OK ${GUID}\r\nAGREE_UNIX_FD\r\n`);
      expect(p.done).to.equal(true);
      expect(Buffer.from(p.rest!).toString('latin1')).to.equal('l\x01\x00\x01rest');
    });

    it('unknown commands get ERROR and the conversation goes on; CANCEL starts over', () => {
      const s = server();
      expect(s.feed(bytes('\0HELLO\r\n')).send).to.match(/^ERROR/);
      expect(s.feed(bytes(`AUTH EXTERNAL ${hexUid(1000)}\r\n`)).send).to.equal(`OK ${GUID}\r\n`);
      expect(s.feed(bytes('CANCEL\r\n')).send).to.equal('REJECTED EXTERNAL\r\n');
      expectCode(() => s.feed(bytes('BEGIN\r\n')), 'E_PERMISSION');
    });
  });
});

describe('D-Bus addresses', () => {
  it('parses a list, unescapes values, keeps the guid', () => {
    const entries = parseAddress('unix:path=/tmp/a%20b%2cc,guid=' + GUID + ';unix:abstract=/x;tcp:host=h,port=1');
    expect(entries.map((e) => e.transport)).to.deep.equal(['unix', 'unix', 'tcp']);
    expect(entries[0].params.get('path')).to.equal('/tmp/a b,c');
    expect(entries[0].params.get('guid')).to.equal(GUID);
    expect(unixPathOf(entries[0])).to.equal('/tmp/a b,c');
  });

  it('abstract sockets, tcp and listen-only forms are E_UNSUPPORTED with a clear message', () => {
    expectCode(() => unixPathOf(parseAddress('unix:abstract=/tmp/dbus-x')[0]), 'E_UNSUPPORTED', /abstract/);
    expectCode(() => unixPathOf(parseAddress('tcp:host=localhost,port=1')[0]), 'E_UNSUPPORTED', /"tcp:"/);
    expectCode(() => unixPathOf(parseAddress('unix:tmpdir=/tmp')[0]), 'E_UNSUPPORTED', /listening/);
  });

  it('syntax errors are E_INVALID_ARGUMENT', () => {
    for (const bad of ['', 'nocolon', 'unix:path', 'unix:path=%zz', 'unix:path=a,path=b', ':path=x'])
      expectCode(() => parseAddress(bad), 'E_INVALID_ARGUMENT');
  });
});
