/**
 * Issue 13, findings 2, 3 and 7: what a remote peer's legal traffic may cost the producer's
 * StreamServer, bounded (docs/remote.md §2.1, §3). Producer (test/fixtures/flood-producer.ts)
 * and attacker (flood-upgrades.ts) are processes of their own; viewers are raw WebSockets here.
 *
 * - Connections that never say hello are bounded per address and in total, apart from the viewer
 *   slots: recycling them just before the hello deadline keeps no viewer with a token out.
 * - hello.maxFps / maxBitrateKbps are clamped to documented ranges: no timer overflows, no CPU
 *   multiplied; NaN, Infinity, ≤ 0 are E_MALFORMED.
 * - After a `resize`, no frame at the old size follows, and the first is a full refresh.
 */
import { expect } from 'chai';
import WebSocket from 'ws';
import { addressKey } from '../../src/stream/http.js';
import { FLAG_KEYFRAME, SUBPROTOCOL } from '../../src/stream/protocol.js';
import type { StreamClientInfo, StreamServerStats } from '../../src/stream/server.js';
import { Peer, eventually, sleep } from '../helpers.js';

/** A viewer speaking the protocol by hand: everything it receives, in order; it acks every frame at once. */
class Viewer {
  readonly ws: WebSocket;
  readonly log: (
    | { kind: 'text'; m: Record<string, any> }
    | { kind: 'frame'; width: number; height: number; keyframe: boolean; sequence: number }
  )[] = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
  frames = 0;

  constructor(wsUrl: string, localAddress?: string) {
    this.ws = new WebSocket(wsUrl, SUBPROTOCOL, localAddress ? { localAddress } : {});
    this.ws.on('message', (data: Buffer, isBinary) => {
      if (!isBinary) return void this.log.push({ kind: 'text', m: JSON.parse(data.toString()) });
      const sequence = data.readUInt32LE(4);
      this.frames++;
      this.log.push({
        kind: 'frame',
        width: data.readUInt32LE(24),
        height: data.readUInt32LE(28),
        keyframe: (data[1] & FLAG_KEYFRAME) !== 0,
        sequence,
      });
      this.send({ type: 'ack', seq: sequence });
    });
    this.ws.on('error', () => {});
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () =>
          reject(Object.assign(new Error(`HTTP ${res.statusCode}: ${body.trim()}`), { status: res.statusCode })),
        );
      });
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) =>
      this.ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
  }

  send(m: object | string): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(typeof m === 'string' ? m : JSON.stringify(m));
  }

  texts(type: string): Record<string, any>[] {
    return this.log.filter((e) => e.kind === 'text' && e.m.type === type).map((e) => (e as { m: any }).m);
  }

  /** Sends hello (`extra` overrides; `raw`: the exact text) and resolves with the welcome or error. */
  async hello(token: string, extra: Record<string, unknown> = {}, raw?: string): Promise<Record<string, any>> {
    await this.opened;
    this.send(raw ?? { type: 'hello', token, name: 'viewer', codecs: ['tiles'], ...extra });
    await eventually(() => this.texts('welcome').length + this.texts('error').length > 0, 10000, 'welcome or error');
    return this.texts('welcome')[0] ?? this.texts('error')[0];
  }

  close(): void {
    this.ws.terminate();
  }
}

async function startProducer(
  peers: Peer[],
  options: Record<string, unknown>,
): Promise<{
  peer: Peer;
  wsUrl: string;
  token: string;
}> {
  const peer = new Peer('flood-producer.ts');
  peers.push(peer);
  await peer.waitEvent('ready', () => true, 30000);
  const { wsUrl, token } = await peer.call('start', options);
  return { peer, wsUrl, token };
}

/** CPU seconds (user + system) the producer spends over `ms`. */
async function cpuOver(peer: Peer, ms: number): Promise<number> {
  const a: NodeJS.CpuUsage = await peer.call('cpu');
  await sleep(ms);
  const b: NodeJS.CpuUsage = await peer.call('cpu');
  return (b.user - a.user + b.system - a.system) / 1e6;
}

describe('stream budgets: what a remote peer may cost the producer (issue 13)', function () {
  this.timeout(120000);
  const peers: Peer[] = [];
  const viewers: Viewer[] = [];

  afterEach(async () => {
    for (const v of viewers.splice(0)) v.close();
    await Promise.all(peers.splice(0).map((p) => p.stop()));
  });

  it(
    'hello-less upgrades held and recycled from two addresses keep no viewer with a token out: ' +
      'they are bounded per address (429) and never take a viewer slot',
    async () => {
      const producer = await startProducer(peers, {
        width: 160,
        height: 120,
        fps: 30,
        content: 'counter',
        stream: { maxClients: 4, helloTimeoutMs: 1500 },
      });
      // A viewer connected before the attack keeps its frames throughout.
      const early = new Viewer(producer.wsUrl, '127.0.0.1');
      viewers.push(early);
      expect((await early.hello(producer.token, { name: 'early' })).type).to.equal('welcome');

      const attacker = new Peer('flood-upgrades.ts');
      peers.push(attacker);
      await attacker.waitEvent('ready', () => true, 30000);
      await attacker.call('attack', {
        wsUrl: producer.wsUrl,
        addresses: ['127.0.0.1', '127.0.0.2'],
        perAddress: 24,
        holdMs: 1200, // recycled just before the 1500 ms hello deadline
        retryMs: 50,
      });
      await eventually(async () => (await attacker.call('stats')).opened >= 8, 10000, 'the attack under way');
      await sleep(1500); // a full recycling round

      // Viewers with the token, from a third address, one after another while the attack goes on.
      const earlyFrames = early.frames;
      for (let i = 0; i < 5; i++) {
        const v = new Viewer(producer.wsUrl, '127.0.0.3');
        viewers.push(v);
        await v.opened.catch((e: Error) => {
          throw new Error(`viewer ${i}: the upgrade was refused during the attack: ${e.message}`);
        });
        const answer = await v.hello(producer.token, { name: `legit-${i}` });
        expect(answer.type, `viewer ${i}: ${JSON.stringify(answer)}`).to.equal('welcome');
        await eventually(() => v.frames >= 2, 10000, `viewer ${i} frames`);
        v.close();
        await sleep(500);
      }
      expect(early.frames - earlyFrames, 'frames to the viewer connected before the attack').to.be.greaterThan(20);

      const stats: StreamServerStats & { presented: number } = await producer.peer.call('stats');
      const attack = await attacker.call('stats');
      await attacker.call('stop');
      // Bounded and counted: 8 pending per address (the default), refused with 429 beyond.
      expect(stats.pending, JSON.stringify({ stats, attack })).to.be.at.most(16);
      expect(stats.refusedPerAddress, JSON.stringify({ stats, attack })).to.be.greaterThan(0);
      expect(attack.refused['429'], JSON.stringify(attack)).to.be.greaterThan(0);
      expect(attack.refused['503'] ?? 0, JSON.stringify(attack)).to.equal(0);
      expect(stats.refusedClients, JSON.stringify(stats)).to.equal(0);
      // A refusal says why.
      const held = Array.from({ length: 8 }, () => new Viewer(producer.wsUrl, '127.0.0.4'));
      viewers.push(...held);
      await Promise.all(held.map((h) => h.opened));
      const ninth = new Viewer(producer.wsUrl, '127.0.0.4');
      viewers.push(ninth);
      const refusal = await ninth.opened.then(
        () => null,
        (e: Error & { status?: number }) => e,
      );
      expect(refusal?.status).to.equal(429);
      expect(refusal?.message).to.match(/too many connections from 127\.0\.0\.4 waiting for their hello/);
    },
  );

  it('pending connections count per IPv4 address, IPv4-mapped as IPv4, IPv6 per /64', () => {
    expect(addressKey('127.0.0.1')).to.equal('127.0.0.1');
    expect(addressKey('::ffff:10.1.2.3')).to.equal('10.1.2.3');
    expect(addressKey('2001:db8:1:2:3:4:5:6')).to.equal('2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:2::9')).to.equal(addressKey('2001:db8:1:2:ffff::1'));
    expect(addressKey('2001:db8:1:3::9')).to.not.equal(addressKey('2001:db8:1:2::9'));
    expect(addressKey('::1')).to.equal('0:0:0:0::/64');
  });

  it(
    'hello.maxFps / maxBitrateKbps of 1e-9 are clamped (1 fps, 100 kbit/s): no TimeoutOverflowWarning, ' +
      'the producer CPU not multiplied; NaN, Infinity, ≤ 0 are E_MALFORMED',
    async () => {
      const producer = await startProducer(peers, {
        width: 320,
        height: 240,
        fps: 10,
        content: 'counter',
        stream: { maxFps: 30 },
      });
      const connect = async (extra: Record<string, unknown>): Promise<Viewer> => {
        const v = new Viewer(producer.wsUrl);
        viewers.push(v);
        const answer = await v.hello(producer.token, extra);
        expect(answer.type, JSON.stringify(answer)).to.equal('welcome');
        return v;
      };

      // Baseline: eight viewers asking for the least they may (1 fps, 100 kbit/s), every frame acked.
      const normal = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          connect(i % 2 === 0 ? { name: `normal-${i}`, maxFps: 1 } : { name: `normal-${i}`, maxBitrateKbps: 100 }),
        ),
      );
      await sleep(1000);
      const baseline = await cpuOver(producer.peer, 3000);
      for (const v of normal) v.close();
      await eventually(async () => (await producer.peer.call('clients')).length === 0, 5000, 'viewers gone');

      // Eight viewers asking for less than that: next to nothing.
      const tiny = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          connect(i % 2 === 0 ? { name: `fps-${i}`, maxFps: 1e-9 } : { name: `kbps-${i}`, maxBitrateKbps: 1e-9 }),
        ),
      );
      await sleep(1000);
      const flooded = await cpuOver(producer.peer, 3000);
      const warnings: Record<string, number> = await producer.peer.call('warnings');
      const report =
        `CPU ${flooded.toFixed(3)} s vs baseline ${baseline.toFixed(3)} s; ` + `warnings ${JSON.stringify(warnings)}`;

      expect(warnings.TimeoutOverflowWarning ?? 0, report).to.equal(0);
      expect(flooded, report).to.be.at.most(2 * baseline + 0.15);
      // Clamped as documented: visible in the welcome and in StreamServer.clients.
      for (const v of tiny.filter((_, i) => i % 2 === 0)) expect(v.texts('welcome')[0].maxFps).to.equal(1);
      const clients: StreamClientInfo[] = await producer.peer.call('clients');
      for (const c of clients.filter((x) => x.name.startsWith('kbps-'))) expect(c.maxBitrateKbps).to.equal(100);
      // They still get frames: at 1 fps, and within 100 kbit/s.
      for (const v of tiny) expect(v.frames, 'frames to a clamped viewer').to.be.at.least(1);
      const big = await connect({ name: 'big', maxFps: 1e6, maxBitrateKbps: 1e12 });
      expect(big.texts('welcome')[0].maxFps).to.equal(30); // 240 at most, and the server's 30 below that
      const bigInfo = ((await producer.peer.call('clients')) as StreamClientInfo[]).find((c) => c.name === 'big')!;
      expect(bigInfo.maxBitrateKbps).to.equal(1_000_000);

      // Not a finite positive number: E_MALFORMED (JSON has no NaN; 1e999 parses as Infinity).
      const hello = (field: string, value: string): string =>
        `{"type":"hello","token":${JSON.stringify(producer.token)},` +
        `"name":"bad","codecs":["tiles"],"${field}":${value}}`;
      for (const [field, value] of [
        ['maxFps', '1e999'],
        ['maxFps', '-30'],
        ['maxFps', '0'],
        ['maxFps', '"30"'],
        ['maxBitrateKbps', '-1e999'],
        ['maxBitrateKbps', '0'],
        ['maxBitrateKbps', 'null'],
      ]) {
        const v = new Viewer(producer.wsUrl);
        viewers.push(v);
        const answer = await v.hello(producer.token, {}, hello(field, value));
        expect(answer, `${field}: ${value}`).to.include({ type: 'error', code: 'E_MALFORMED' });
        expect((await v.closed).code, `${field}: ${value}`).to.equal(4400);
      }
    },
  );

  it('200 resizes with frames in flight: every frame after each is at the new size, the first full', async () => {
    const sizes = [
      { width: 480, height: 360 },
      { width: 544, height: 400 },
    ];
    const producer = await startProducer(peers, {
      ...sizes[0],
      fps: 120,
      content: 'noise',
      stream: { maxFps: 240, window: 4 },
    });
    const v = new Viewer(producer.wsUrl);
    viewers.push(v);
    expect((await v.hello(producer.token, { name: 'resizes' })).type).to.equal('welcome');
    await eventually(() => v.frames >= 3, 10000, 'first frames');
    // A resize every 3 presented frames (40 a second), 200 in all, round the two sizes.
    await producer.peer.call('resizeLoop', { count: 200, every: 3, sizes: [sizes[1], sizes[0]] });
    await sleep(500);

    let size = { width: sizes[0].width, height: sizes[0].height };
    let firstAfterResize = false;
    let resizes = 0;
    const problems: string[] = [];
    for (const [i, e] of v.log.entries()) {
      if (e.kind === 'text') {
        if (e.m.type === 'resize') {
          size = { width: e.m.width, height: e.m.height };
          firstAfterResize = true;
          resizes++;
        }
        continue;
      }
      if (e.width !== size.width || e.height !== size.height)
        problems.push(`#${i}: a ${e.width}x${e.height} frame after resize ${resizes} to ${size.width}x${size.height}`);
      else if (firstAfterResize && !e.keyframe)
        problems.push(`#${i}: the first frame after resize ${resizes} is not a full refresh`);
      firstAfterResize = false;
    }
    // Resizes that come faster than frames are announced once (the newest size): not 200, but many.
    expect(resizes, 'resize messages').to.be.at.least(10);
    expect(problems, `${problems.length} bad frames of ${v.frames}, ${resizes} resizes`).to.deep.equal([]);
  });
});
