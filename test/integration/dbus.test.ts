/**
 * The D-Bus implementation (src/bridges/qemu-dbus/dbus/) against a real dbus-daemon (a private
 * bus from a config file in a temp dir), and peer-to-peer over socketPair() (client role against
 * our server role, no Hello — how QEMU's listener socket is spoken), including a raw peer that
 * sends malformed messages, fd passing with memfds, and fd-leak checks on /proc/self/fd.
 *
 * Without dbus-daemon (Debian package `dbus`) the bus suite is skipped with the reason, except
 * under CI=true, where it fails.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import {
  DBusConnection,
  DBusError,
  DBusErrorName,
  MessageFramer,
  MessageType,
  Variant,
  encodeMessage,
  type CallResult,
  type DBusMessage,
} from '../../src/bridges/qemu-dbus/dbus/index.js';
import { socketPair, streamFromFd, type ByteStream } from '../../src/bridges/stream-socket.js';
import type { SurfaceLinkError } from '../../src/errors.js';
import { linuxNative, type NativeFd } from '../../src/native/index.js';
import { openFdCount } from '../helpers.js';
import { findDbusDaemon, startBus, type PrivateBus } from '../fixtures/dbus/bus.js';
import { fakeFd } from '../fixtures/dbus/helpers.js';
import { measure } from '../fixtures/dbus/throughput.js';

const BUS = { destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus' };
const IFACE = 'org.example.Test';
const PATH = '/org/example/Obj';
const MB4 = 4 * 1024 * 1024;

/** Resolves when `fn` returns true (polled), or rejects after `ms`. */
async function until(fn: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Expects `promise` to reject with a SurfaceLinkError of `code` (and DBusError `name` when given). */
async function rejects(promise: Promise<unknown>, code: string, name?: string): Promise<SurfaceLinkError> {
  let error: SurfaceLinkError | undefined;
  await promise.then(
    () => expect.fail(`expected a rejection with ${code}`),
    (e) => (error = e),
  );
  expect(error!.code, error!.message).to.equal(code);
  if (name !== undefined) {
    expect(error).to.be.instanceOf(DBusError);
    expect(error!.name).to.equal(name);
  }
  return error!;
}

/** Methods of the test object (exported on one connection, called from another). */
function testMethods(state: { count: number; flags: number[]; hang: (() => void)[] }) {
  return {
    /** ay → (u length, u sum of bytes, ay the same bytes back) */
    Blob: (m: DBusMessage) => {
      const data = m.body[0] as Buffer;
      let sum = 0;
      for (let i = 0; i < data.length; i += 4096) sum = (sum + data[i]) >>> 0;
      return { signature: 'uuay', body: [data.length, sum, data] };
    },
    /** h → (s kind, t size, t inode); closes the fd it received */
    TakeFd: (m: DBusMessage) => {
      const fd = m.body[0] as NativeFd;
      expect(m.fds).to.deep.equal([fd]);
      const st = fd.stat();
      fd.close();
      return { signature: 'stt', body: [st.kind, BigInt(st.size ?? -1), st.inode] };
    },
    /** u size → h: a new memfd of that size (closed here once the reply is written) */
    MakeFd: (m: DBusMessage) => {
      const fd = linuxNative().createMemfd('dbus-test-reply', m.body[0] as number);
      setImmediate(() => fd.close());
      return { signature: 'h', body: [fd] };
    },
    Count: (m: DBusMessage) => {
      state.count++;
      state.flags.push(m.flags);
      return { signature: 'u', body: [state.count] };
    },
    GetCount: () => ({ signature: 'u', body: [state.count] }),
    Nope: () => {
      throw new DBusError('org.example.Error.Nope', 'nope, said the handler');
    },
    Crash: () => {
      throw new TypeError('a bug in the handler');
    },
    AsyncFail: async () => {
      await new Promise((r) => setTimeout(r, 5));
      throw new DBusError('org.example.Error.Later', 'failed later');
    },
    Hang: () => new Promise<undefined>((resolve) => state.hang.push(() => resolve(undefined))),
    BadReply: () => ({ signature: 'u', body: ['not a number'] }),
  };
}

function newState(): { count: number; flags: number[]; hang: (() => void)[] } {
  return { count: 0, flags: [], hang: [] };
}

let propertyReads = 0;
const properties = {
  Label: new Variant('s', 'VGA'),
  Size: new Variant('(uu)', [1280, 800]),
};
const dynamicProperties = (): Record<string, Variant> => ({ Reads: new Variant('u', ++propertyReads) });

describe('D-Bus against a real dbus-daemon', function () {
  this.timeout(60000);
  let daemon: string | null = null;
  let bus: PrivateBus;
  const open: DBusConnection[] = [];

  async function connect(options: Parameters<typeof DBusConnection.connectAddress>[1] = {}): Promise<DBusConnection> {
    const c = await DBusConnection.connectAddress(bus.address, options);
    open.push(c);
    return c;
  }

  before(async function () {
    daemon = findDbusDaemon();
    if (!daemon) {
      const reason = 'no dbus-daemon on PATH (apt-get install dbus)';
      if (process.env.CI === 'true')
        throw new Error(`CI=true, and this machine should run the D-Bus tests, but: ${reason}`);
      const mark = (suite: Mocha.Suite): void => {
        for (const t of suite.tests) t.title += ` — skipped: ${reason}`;
        suite.suites.forEach(mark);
      };
      mark(this.test!.parent!);
      this.skip();
    }
    bus = await startBus(daemon);
  });

  afterEach(() => {
    for (const c of open.splice(0)) c.close();
  });

  after(async () => {
    await bus?.cleanup();
  });

  it('connects with Hello; ListNames and GetId answer; both EXTERNAL forms work', async () => {
    const ids: unknown[] = [];
    for (const authInitialResponse of [true, false]) {
      const c = await connect({ authInitialResponse });
      expect(c.uniqueName).to.match(/^:1\.\d+$/);
      expect(c.unixFds, 'dbus-daemon agrees to fd passing').to.equal(true);
      const names = await c.call({ ...BUS, member: 'ListNames' });
      expect(names.signature).to.equal('as');
      expect(names.body[0]).to.include.members(['org.freedesktop.DBus', c.uniqueName!]);
      const id = await c.call({ ...BUS, member: 'GetId' });
      expect(id.signature).to.equal('s');
      expect(id.body[0]).to.match(/^[0-9a-f]{32}$/);
      ids.push(id.body[0]);
      expect(c.guid, "the listening address's GUID, from OK").to.match(/^[0-9a-f]{32}$/);
    }
    expect(ids[0], 'one bus, one id').to.equal(ids[1]);
  });

  describe('two connections: one exports an object, the other calls it through the daemon', () => {
    let server: DBusConnection;
    let client: DBusConnection;
    let state: ReturnType<typeof newState>;
    const call = (member: string, signature = '', body: unknown[] = [], extra: object = {}): Promise<CallResult> =>
      client.call({ destination: server.uniqueName!, path: PATH, interface: IFACE, member, signature, body, ...extra });

    beforeEach(async () => {
      state = newState();
      server = await connect();
      server.export(PATH, IFACE, testMethods(state), properties);
      server.export(PATH, 'org.example.Dynamic', {}, dynamicProperties);
      client = await connect();
    });

    it('a 4 MB ay argument and reply', async () => {
      const data = Buffer.alloc(MB4);
      for (let i = 0; i < data.length; i += 4096) data[i] = i % 251;
      let sum = 0;
      for (let i = 0; i < data.length; i += 4096) sum = (sum + data[i]) >>> 0;
      const reply = await call('Blob', 'ay', [data]);
      expect(reply.signature).to.equal('uuay');
      expect(reply.body.slice(0, 2)).to.deep.equal([MB4, sum]);
      expect((reply.body[2] as Buffer).equals(data)).to.equal(true);
    });

    it('an fd (memfd) argument: the receiver gets a real memfd of the right size; the caller keeps its', async () => {
      const before = openFdCount();
      const memfd = linuxNative().createMemfd('dbus-test', 12345);
      const reply = await call('TakeFd', 'h', [memfd]);
      const [kind, size, inode] = reply.body as [string, bigint, bigint];
      expect(kind).to.equal('memfd');
      expect(size).to.equal(12345n);
      expect(inode, 'the same object').to.equal(memfd.stat().inode);
      expect(memfd.closed, 'borrowed: still ours').to.equal(false);
      memfd.close();
      expect(openFdCount()).to.equal(before);
    });

    it('an fd in a reply: the caller owns it', async () => {
      const before = openFdCount();
      const reply = await call('MakeFd', 'u', [4096]);
      expect(reply.fds).to.have.length(1);
      expect(reply.body[0]).to.equal(reply.fds[0]);
      const st = reply.fds[0].stat();
      expect([st.kind, st.size]).to.deep.equal(['memfd', 4096]);
      reply.fds[0].close();
      await new Promise((r) => setImmediate(r));
      expect(openFdCount()).to.equal(before);
    });

    it('properties: Get, GetAll (a record, and a function), Set refused, unknown ones', async () => {
      const props = (member: string, signature: string, body: unknown[]): Promise<CallResult> =>
        client.call({
          destination: server.uniqueName!,
          path: PATH,
          interface: 'org.freedesktop.DBus.Properties',
          member,
          signature,
          body,
        });
      const all = await props('GetAll', 's', [IFACE]);
      expect(all.signature).to.equal('a{sv}');
      expect(all.body[0]).to.deep.equal(new Map(Object.entries(properties)));
      expect((await props('Get', 'ss', [IFACE, 'Size'])).body).to.deep.equal([new Variant('(uu)', [1280, 800])]);
      const first = (await props('GetAll', 's', ['org.example.Dynamic'])).body[0] as Map<string, Variant>;
      const second = (await props('GetAll', 's', ['org.example.Dynamic'])).body[0] as Map<string, Variant>;
      expect((second.get('Reads')!.value as number) - (first.get('Reads')!.value as number)).to.equal(1);
      await rejects(
        props('Set', 'ssv', [IFACE, 'Label', new Variant('s', 'x')]),
        'E_UNEXPECTED',
        'org.freedesktop.DBus.Error.PropertyReadOnly',
      );
      await rejects(props('Get', 'ss', [IFACE, 'Nope']), 'E_UNEXPECTED', 'org.freedesktop.DBus.Error.UnknownProperty');
      await rejects(
        props('GetAll', 's', ['org.example.None']),
        'E_UNEXPECTED',
        'org.freedesktop.DBus.Error.UnknownInterface',
      );
      await rejects(props('Get', 's', [IFACE]), 'E_UNEXPECTED', 'org.freedesktop.DBus.Error.InvalidArgs');
    });

    const errorsTitle =
      'errors: unknown method/interface/object, a thrown DBusError, a thrown bug, an unencodable reply; ' +
      'the connection goes on';
    it(errorsTitle, async () => {
      await rejects(call('Missing'), 'E_UNEXPECTED', 'org.freedesktop.DBus.Error.UnknownMethod');
      await rejects(call('toString'), 'E_UNEXPECTED', 'org.freedesktop.DBus.Error.UnknownMethod');
      await rejects(
        client.call({ destination: server.uniqueName!, path: PATH, interface: 'org.example.Other', member: 'Blob' }),
        'E_UNEXPECTED',
        'org.freedesktop.DBus.Error.UnknownInterface',
      );
      await rejects(
        client.call({ destination: server.uniqueName!, path: '/nothing/here', interface: IFACE, member: 'Blob' }),
        'E_UNEXPECTED',
        'org.freedesktop.DBus.Error.UnknownObject',
      );
      const nope = await rejects(call('Nope'), 'E_UNEXPECTED', 'org.example.Error.Nope');
      expect(nope.message).to.equal('nope, said the handler');
      const crash = await rejects(call('Crash'), 'E_UNEXPECTED', 'org.freedesktop.DBus.Error.Failed');
      expect(crash.message).to.contain('a bug in the handler');
      await rejects(call('AsyncFail'), 'E_UNEXPECTED', 'org.example.Error.Later');
      const bad = await rejects(call('BadReply'), 'E_UNEXPECTED', 'org.freedesktop.DBus.Error.Failed');
      expect(bad.message).to.contain('could not be sent');
      await rejects(
        client.call({ destination: 'org.example.NobodyOwnsThis', path: '/', member: 'X' }),
        'E_UNEXPECTED',
        'org.freedesktop.DBus.Error.ServiceUnknown',
      );
      expect((await call('GetCount')).body).to.deep.equal([0]);
      expect(server.closed || client.closed).to.equal(false);
      const ping = await client.call({
        destination: server.uniqueName!,
        path: '/any',
        interface: 'org.freedesktop.DBus.Peer',
        member: 'Ping',
      });
      expect(ping.signature).to.equal('');
    });

    it('NO_REPLY_EXPECTED calls reach the handler with the flag; the promise resolves at once', async () => {
      for (let i = 0; i < 5; i++) {
        const r = await call('Count', '', [], { noReply: true });
        expect(r).to.deep.equal({ signature: '', body: [], fds: [] });
      }
      expect((await call('GetCount')).body).to.deep.equal([5]);
      expect(state.flags).to.deep.equal([1, 1, 1, 1, 1]);
    });

    it('signals: AddMatch selects what arrives, with the sender', async () => {
      const got: DBusMessage[] = [];
      client.on('signal', (m) => {
        if (m.interface === IFACE) got.push(m);
      });
      server.signal({ path: PATH, interface: IFACE, member: 'Tick', signature: 'u', body: [1] });
      await client.addMatch(`type='signal',interface='${IFACE}',member='Tick'`);
      server.signal({ path: PATH, interface: IFACE, member: 'Tock', signature: 'u', body: [2] });
      server.signal({ path: PATH, interface: IFACE, member: 'Tick', signature: 'u', body: [3] });
      await until(() => got.length >= 1, 5000, 'the Tick signal');
      expect((await call('GetCount')).body).to.deep.equal([0]); // a round trip: anything else would have arrived
      expect(got.map((m) => [m.member, m.body[0], m.sender, m.type])).to.deep.equal([
        ['Tick', 3, server.uniqueName, MessageType.SIGNAL],
      ]);
      await client.removeMatch(`type='signal',interface='${IFACE}',member='Tick'`);
      server.signal({ path: PATH, interface: IFACE, member: 'Tick', signature: 'u', body: [4] });
      expect((await call('GetCount')).body).to.deep.equal([0]);
      expect(got).to.have.length(1);
    });

    it('a call times out with E_TIMEOUT; later calls still work; pending calls are bounded', async () => {
      const t0 = Date.now();
      const e = await rejects(call('Hang', '', [], { timeoutMs: 300 }), 'E_TIMEOUT');
      expect(Date.now() - t0).to.be.within(280, 5000);
      expect(e.message).to.contain('Hang');
      expect((await call('GetCount')).body).to.deep.equal([0]);

      const limited = await connect({ maxPendingCalls: 2 });
      const target = { destination: server.uniqueName!, path: PATH, interface: IFACE, member: 'Hang' };
      const p1 = limited.call(target);
      const p2 = limited.call(target);
      await rejects(limited.call(target), 'E_LIMIT');
      await until(() => state.hang.length >= 3, 5000, 'the hanging calls');
      limited.close();
      await rejects(p1, 'E_CLOSED');
      await rejects(p2, 'E_CLOSED');
      await rejects(limited.call(target), 'E_CLOSED');
    });

    it('without fd passing, sending an fd fails with E_UNSUPPORTED naming why', async () => {
      const nofds = await connect({ negotiateUnixFds: false });
      expect(nofds.unixFds).to.equal(false);
      const memfd = linuxNative().createMemfd('dbus-test', 10);
      try {
        const e = await rejects(
          nofds.call({
            destination: server.uniqueName!,
            path: PATH,
            interface: IFACE,
            member: 'TakeFd',
            signature: 'h',
            body: [memfd],
          }),
          'E_UNSUPPORTED',
        );
        expect(e.message).to.match(/not negotiated/);
      } finally {
        memfd.close();
      }
    });
  });

  it('connectAddress: tries each entry of a list; refuses abstract and tcp; checks guid=', async () => {
    const c = await connect({ hello: true });
    const guid = c.guid;
    const multi = await DBusConnection.connectAddress(`unix:path=/nonexistent/x.sock;${bus.address},guid=${guid}`);
    open.push(multi);
    expect(multi.uniqueName).to.match(/^:1\./);
    await rejects(DBusConnection.connectAddress('unix:abstract=/tmp/foo'), 'E_UNSUPPORTED');
    await rejects(DBusConnection.connectAddress('tcp:host=127.0.0.1,port=1'), 'E_UNSUPPORTED');
    await rejects(DBusConnection.connectAddress(`${bus.address},guid=${'0'.repeat(32)}`), 'E_PERMISSION');
    await rejects(DBusConnection.connectAddress('unix:path=/nonexistent/x.sock'), 'E_CONNECT');
    const both = await rejects(DBusConnection.connectAddress('unix:path=/nonexistent/a;tcp:host=x'), 'E_UNSUPPORTED');
    expect(both.message).to.match(/1\. .*2\. /);
  });

  it('the daemon killed: pending calls reject with E_PEER_CLOSED, close events, no fd left open', async () => {
    const own = await startBus(daemon!);
    try {
      const baseline = openFdCount();
      const state = newState();
      const a = await DBusConnection.connectAddress(own.address);
      open.push(a);
      a.export(PATH, IFACE, testMethods(state));
      const b = await DBusConnection.connectAddress(own.address);
      open.push(b);
      const closes: string[] = [];
      a.on('close', (e) => closes.push('a:' + e.code));
      b.on('close', (e) => closes.push('b:' + e.code));
      const memfd = linuxNative().createMemfd('dbus-test', 100);
      await b.call({
        destination: a.uniqueName!,
        path: PATH,
        interface: IFACE,
        member: 'TakeFd',
        signature: 'h',
        body: [memfd],
      });
      memfd.close();
      const pending = rejects(
        b.call({ destination: a.uniqueName!, path: PATH, interface: IFACE, member: 'Hang' }),
        'E_PEER_CLOSED',
      );
      await until(() => state.hang.length === 1, 5000, 'the hanging call');
      expect(openFdCount()).to.equal(baseline + 2);
      await own.kill('SIGKILL');
      const e = await pending;
      expect(e.message).to.contain('Hang');
      await until(() => closes.length === 2, 5000, 'both close events');
      expect(closes.sort()).to.deep.equal(['a:E_PEER_CLOSED', 'b:E_PEER_CLOSED']);
      await rejects(b.call({ ...BUS, member: 'GetId' }), 'E_PEER_CLOSED');
      a.close();
      b.close();
      expect(closes, 'close() after the end emits nothing more').to.have.length(2);
      expect(openFdCount(), 'every fd closed').to.equal(baseline);
    } finally {
      await own.cleanup();
    }
  });
});

/** Streams made by streamPair(): closed after each test (which ends their connections), pass or fail. */
const streams: ByteStream[] = [];

/** A socket pair as two ByteStreams (the fds given to the streams are duplicates; ours are closed). */
function streamPair(): [ByteStream, ByteStream] {
  const [a, b] = socketPair();
  const pair: [ByteStream, ByteStream] = [streamFromFd(a), streamFromFd(b)];
  a.close();
  b.close();
  streams.push(...pair);
  return pair;
}

describe('D-Bus peer-to-peer over socketPair() (client role ↔ our server role, no Hello)', function () {
  this.timeout(60000);
  afterEach(() => {
    for (const s of streams.splice(0)) s.close();
  });

  it('authenticates, calls both ways, passes fds, answers GetAll exported before auth, closes cleanly', async () => {
    const baseline = openFdCount();
    const [sa, sb] = streamPair();
    const state = newState();
    const serverOpening = DBusConnection.open(sb, { role: 'server' });
    const client = await DBusConnection.open(sa, { role: 'client' }, (c) =>
      c.export('/org/qemu/Display1/Listener', 'org.qemu.Display1.Listener', testMethods(state), {}),
    );
    const server = await serverOpening;
    expect([client.uniqueName, server.uniqueName]).to.deep.equal([null, null]);
    expect([client.unixFds, server.unixFds]).to.deep.equal([true, true]);
    expect(client.guid).to.equal(server.guid);
    // like QEMU: the server side calls GetAll on the client's object right after authenticating
    const all = await server.call({
      path: '/org/qemu/Display1/Listener',
      interface: 'org.freedesktop.DBus.Properties',
      member: 'GetAll',
      signature: 's',
      body: ['org.qemu.Display1.Listener'],
    });
    expect(all.body).to.deep.equal([new Map()]);
    const memfd = linuxNative().createMemfd('p2p', 777);
    const r = await server.call({
      path: '/org/qemu/Display1/Listener',
      member: 'TakeFd',
      signature: 'h',
      body: [memfd],
    });
    expect(r.body.slice(0, 2)).to.deep.equal(['memfd', 777n]);
    memfd.close();
    server.export('/srv', IFACE, { Echo: (m) => ({ signature: m.signature, body: m.body }) });
    const echo = await client.call({
      path: '/srv',
      interface: IFACE,
      member: 'Echo',
      signature: 'a{sv}(yt)',
      body: [new Map([['k', new Variant('d', 2.5)]]), [1, 2n]],
    });
    expect(echo.body).to.deep.equal([new Map([['k', new Variant('d', 2.5)]]), [1, 2n]]);

    const serverClosed = new Promise<SurfaceLinkError>((resolve) => server.on('close', resolve));
    const pending = server.call({ path: '/org/qemu/Display1/Listener', member: 'Hang' });
    await until(() => state.hang.length === 1);
    client.close();
    client.close();
    expect((await serverClosed).code).to.equal('E_PEER_CLOSED');
    await rejects(pending, 'E_PEER_CLOSED');
    expect(openFdCount()).to.equal(baseline);
  });

  it('NO_REPLY_EXPECTED: nothing is sent back (the raw stream sees only the one Ping reply)', async () => {
    const [sa, sb] = streamPair();
    const state = newState();
    const serverOpening = DBusConnection.open(sb, { role: 'server' }, (c) => c.export(PATH, IFACE, testMethods(state)));
    const client = await DBusConnection.open(sa, { role: 'client' });
    const server = await serverOpening;
    const seen: DBusMessage[] = [];
    const observer = new MessageFramer((m) => seen.push(m));
    sa.on('data', (chunk) => observer.push(chunk));
    for (let i = 0; i < 20; i++) await client.call({ path: PATH, interface: IFACE, member: 'Count', noReply: true });
    await client.call({ path: '/', interface: 'org.freedesktop.DBus.Peer', member: 'Ping' });
    expect(state.count).to.equal(20);
    expect(seen.map((m) => m.type)).to.deep.equal([MessageType.METHOD_RETURN]);
    client.close();
    server.close();
  });

  const routingTitle =
    'routing: a call without an interface finds its method; Peer on any path; bad options close the stream';
  it(routingTitle, async () => {
    const [sa, sb] = streamPair();
    const serverOpening = DBusConnection.open(sb, { role: 'server' }, (c) => {
      c.export('/o', IFACE, { Ping: () => ({ signature: 's', body: ['mine'] }), Only: () => undefined });
      c.export('/o', 'org.example.Second', { Two: () => ({ signature: 'u', body: [2] }) });
    });
    const client = await DBusConnection.open(sa, { role: 'client' });
    const server = await serverOpening;
    const at = (path: string, member: string, iface?: string): Promise<CallResult> =>
      client.call({ path, member, interface: iface });
    expect((await at('/o', 'Two')).body).to.deep.equal([2]);
    expect((await at('/o', 'Ping')).body, "the object's own Ping first").to.deep.equal(['mine']);
    expect((await at('/o', 'Ping', 'org.freedesktop.DBus.Peer')).body).to.deep.equal([]);
    expect((await at('/not/exported', 'Ping')).signature, 'Peer.Ping answers on any path').to.equal('');
    if (['/etc/machine-id', '/var/lib/dbus/machine-id'].some((f) => fs.existsSync(f))) {
      const id = await at('/', 'GetMachineId', 'org.freedesktop.DBus.Peer');
      expect(id.body[0]).to.match(/^[0-9a-f]{32}$/);
    } else {
      await rejects(at('/', 'GetMachineId', 'org.freedesktop.DBus.Peer'), 'E_UNEXPECTED', DBusErrorName.FAILED);
    }
    await rejects(at('/o', 'Nothing'), 'E_UNEXPECTED', 'org.freedesktop.DBus.Error.UnknownMethod');
    await rejects(at('/x', 'Nothing'), 'E_UNEXPECTED', 'org.freedesktop.DBus.Error.UnknownObject');
    await rejects(at('/o', 'Two', IFACE), 'E_UNEXPECTED', 'org.freedesktop.DBus.Error.UnknownMethod');
    server.unexport('/o', IFACE);
    await rejects(at('/o', 'Only', IFACE), 'E_UNEXPECTED', 'org.freedesktop.DBus.Error.UnknownInterface');
    server.unexport('/o');
    await rejects(at('/o', 'Two'), 'E_UNEXPECTED', 'org.freedesktop.DBus.Error.UnknownObject');
    client.close();
    server.close();
    const [sc, sd] = streamPair();
    await rejects(DBusConnection.open(sc, { role: 'peer' as 'client' }), 'E_INVALID_ARGUMENT');
    expect(sc.closed, 'the stream is closed with the refused connection').to.equal(true);
    await rejects(DBusConnection.open(sd, { role: 'server', hello: true }), 'E_INVALID_ARGUMENT');
    expect(sd.closed).to.equal(true);
  });

  it('the server role refuses fd passing when told to; the client then cannot send fds', async () => {
    const [sa, sb] = streamPair();
    const serverOpening = DBusConnection.open(sb, { role: 'server', allowUnixFds: false });
    const client = await DBusConnection.open(sa, { role: 'client' });
    const server = await serverOpening;
    expect([client.unixFds, server.unixFds]).to.deep.equal([false, false]);
    const memfd = linuxNative().createMemfd('p2p', 1);
    const e = await rejects(client.call({ path: '/', member: 'X', signature: 'h', body: [memfd] }), 'E_UNSUPPORTED');
    expect(e.message).to.contain('refused');
    memfd.close();
    client.close();
    server.close();
  });

  it('authentication that never finishes is E_TIMEOUT, and the stream is closed', async () => {
    const [sa, sb] = streamPair();
    const t0 = Date.now();
    const e = await rejects(DBusConnection.open(sa, { role: 'client', timeoutMs: 200 }), 'E_TIMEOUT');
    expect(Date.now() - t0).to.be.within(180, 5000);
    expect(e.message).to.contain('authentication');
    expect(sa.closed).to.equal(true);
    sb.close();
  });

  describe('a raw peer sending bad data: the connection closes with the error, nothing throws', () => {
    /** A server end speaking the auth lines by hand, then sending `payload` (with `fds`) after BEGIN. */
    async function against(
      payload: Buffer,
      fds?: NativeFd[],
    ): Promise<{ reason: SurfaceLinkError; pending: Promise<unknown> }> {
      const [sa, sb] = streamPair();
      let text = '';
      sb.on('data', (chunk) => {
        text += Buffer.from(chunk).toString('latin1');
        if (text.includes('AUTH EXTERNAL') && !text.includes('#ok')) {
          text += '#ok';
          sb.write(Buffer.from(`OK ${'ab'.repeat(16)}\r\n`));
        }
        if (text.includes('NEGOTIATE_UNIX_FD') && !text.includes('#fd')) {
          text += '#fd';
          sb.write(Buffer.from('AGREE_UNIX_FD\r\n'));
        }
      });
      const client = await DBusConnection.open(sa, { role: 'client' });
      const closed = new Promise<SurfaceLinkError>((resolve) => client.on('close', resolve));
      const pending = client.call({ path: '/', member: 'Anything' });
      pending.catch(() => {});
      await until(() => text.includes('BEGIN'));
      sb.write(payload, fds);
      const reason = await closed;
      sb.close();
      return { reason, pending };
    }

    const header = (fields: number, body: number, endian = 0x6c): Buffer => {
      const b = Buffer.alloc(16);
      b[0] = endian;
      b[1] = 1;
      b[3] = 1;
      b.writeUInt32LE(body, 4);
      b.writeUInt32LE(1, 8);
      b.writeUInt32LE(fields, 12);
      return b;
    };

    it('garbage instead of a message: E_MALFORMED; the pending call rejects with it', async () => {
      const { reason, pending } = await against(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
      expect(reason.code).to.equal('E_MALFORMED');
      await rejects(pending, 'E_MALFORMED');
    });

    it('a header declaring 200 MB: E_TOO_LARGE before anything is allocated', async () => {
      const { reason } = await against(header(0, 200 * 1024 * 1024));
      expect(reason.code).to.equal('E_TOO_LARGE');
    });

    it('an array length that lies: E_MALFORMED', async () => {
      // a method call whose header fields array claims 64 bytes but holds garbage
      const { reason } = await against(Buffer.concat([header(64, 0), Buffer.alloc(64, 0xff)]));
      expect(reason.code).to.equal('E_MALFORMED');
    });

    it('a message claiming an fd that did not come: E_MALFORMED; fds that came are closed', async () => {
      const before = openFdCount();
      const twoFds = encodeMessage(
        { type: MessageType.METHOD_CALL, path: '/', member: 'M', signature: 'hh', body: [fakeFd(), fakeFd()] },
        1,
      ).bytes;
      const memfd = linuxNative().createMemfd('lie', 1);
      const { reason } = await against(Buffer.from(twoFds), [memfd]);
      memfd.close();
      expect(reason.code).to.equal('E_MALFORMED');
      expect(reason.message).to.contain('claims 2 file descriptors but 1 arrived');
      expect(openFdCount()).to.equal(before);
    });
  });

  for (const release of [false, true]) {
    const how = release ? ', release()' : '';
    const title = `4 MB NO_REPLY_EXPECTED Updates from another process: every one intact, memory flat${how}`;
    it(title, async () => {
      // raw_sender.py plays QEMU: the auth server, then Update(iiiiuuay) calls as fast as we read
      // them; measure() checks each message's pixels. How fast is a benchmark's question
      // (node --import tsx test/fixtures/dbus/throughput.ts), not this test's.
      const r = await measure({ seconds: 3, bytes: MB4, rate: 0, release });
      expect(r.messages, JSON.stringify(r)).to.be.at.least(10);
      expect(r.rssMaxMB - r.rssStartMB, `RSS growth over ${r.messages * 4} MB of messages`).to.be.below(
        release ? 64 : 256,
      );
    });
  }
});
