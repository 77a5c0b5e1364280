/**
 * Adaptive H.264 bitrate (docs/remote.md §5.1) over a link narrower than the target: a producer
 * process (test/fixtures/stream-producer.ts) streams a surface of random pixels (which no encoder
 * compresses below its target) at 30 fps, 8000 kbit/s, to a Node viewer (RemoteStreamClient,
 * decoding with GStreamer) through a TCP proxy that passes the server's bytes at 1.5 Mbit/s.
 *
 * - adaptive (the default): the target falls below the link's rate and the viewer gets most of its
 *   frames; once the link is opened up, the target climbs again;
 * - the control, `adaptiveBitrate: false`: the target stays at 8000 and the viewer gets the few
 *   frames of that size the link carries (latest wins: the window bounds the delay, not the rate).
 *
 * Skipped without an H.264 encoder (GStreamer, x264enc) and decoder (avdec_h264); with CI=true that
 * is a failure.
 */
import { expect } from 'chai';
import * as net from 'node:net';
import { RemoteStreamClient } from '../../src/stream/client.js';
import { probeH264 } from '../../src/stream/h264.js';
import type { StreamClientInfo } from '../../src/stream/types.js';
import { Peer, eventually } from '../helpers.js';

const LINK_KBPS = 1500;

/** Passes client → server bytes freely and server → client bytes at `kbps` (null: unlimited), in 10 ms slices. */
class ThrottledProxy {
  readonly server: net.Server;
  kbps: number | null = LINK_KBPS;
  target = 0;
  private readonly sockets = new Set<net.Socket>();

  constructor() {
    this.server = net.createServer((client) => {
      const upstream = net.connect(this.target, '127.0.0.1');
      this.sockets.add(client).add(upstream);
      const queue: Buffer[] = [];
      let queued = 0;
      const timer = setInterval(() => {
        let budget = this.kbps === null ? Infinity : (this.kbps * 1000) / 8 / 100;
        while (queue.length > 0 && budget > 0) {
          const head = queue[0];
          const n = Math.min(head.length, budget);
          client.write(head.subarray(0, n));
          if (n === head.length) queue.shift();
          else queue[0] = head.subarray(n);
          queued -= n;
          budget -= n;
        }
        if (queued < 64 * 1024) upstream.resume();
      }, 10);
      upstream.on('data', (chunk: Buffer) => {
        queue.push(chunk);
        queued += chunk.length;
        // What the link cannot carry stays in the server's socket, as on a real network.
        if (queued > 256 * 1024) upstream.pause();
      });
      client.pipe(upstream);
      const end = (): void => {
        clearInterval(timer);
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as net.AddressInfo).port;
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
    this.server.close();
  }
}

describe('adaptive H.264 bitrate over a narrow link', function () {
  this.timeout(120000);
  const peers: Peer[] = [];
  const clients: RemoteStreamClient[] = [];
  const proxies: ThrottledProxy[] = [];

  before(async function () {
    const probe = await probeH264();
    const missing = !probe.encoder ? `no H.264 encoder: ${probe.reason}` : !probe.decoder ? 'no avdec_h264' : null;
    if (!missing) return;
    if (process.env.CI === 'true') throw new Error(`CI=true, and this machine should run H.264, but: ${missing}`);
    this.skip();
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const p of proxies.splice(0)) p.close();
    await Promise.all(peers.splice(0).map((p) => p.stop()));
  });

  /** A producer with a noise surface, a throttled proxy in front of it, and a viewer of that surface through it. */
  async function setUp(args: string[]): Promise<{ peer: Peer; proxy: ThrottledProxy; viewer: RemoteStreamClient }> {
    const peer = new Peer('stream-producer.ts', ['--codecs', 'h264', '--max-fps', '30', ...args]);
    peers.push(peer);
    const info = (await peer.waitEvent('ready', () => true, 30000)) as { wsUrl: string; token: string };
    const { surfaceId } = await peer.call<{ surfaceId: number }>('addNoiseSurface', {
      width: 320,
      height: 240,
      fps: 30,
    });
    const proxy = new ThrottledProxy();
    proxies.push(proxy);
    proxy.target = Number(new URL(info.wsUrl).port);
    const port = await proxy.listen();
    const viewer = await RemoteStreamClient.connect(`ws://127.0.0.1:${port}/stream`, {
      token: info.token,
      codecs: ['h264'],
      surface: surfaceId,
    });
    clients.push(viewer);
    return { peer, proxy, viewer };
  }

  const clientInfo = async (peer: Peer): Promise<StreamClientInfo> =>
    (await peer.call<StreamClientInfo[]>('clients'))[0];

  /** Frames the viewer decodes over `ms`, per second. */
  async function fps(viewer: RemoteStreamClient, ms: number): Promise<number> {
    let n = 0;
    const count = (): void => void n++;
    viewer.on('frame', count);
    await new Promise((r) => setTimeout(r, ms));
    viewer.off('frame', count);
    return (n * 1000) / ms;
  }

  it('the target falls below the link and the viewer gets its frames; opened up, the target climbs again', async () => {
    const { peer, proxy, viewer } = await setUp([]);
    expect(viewer.welcome!.bitrateKbps).to.equal(8000);
    let info = await clientInfo(peer);
    await eventually(
      async () => ((info = await clientInfo(peer)).targetBitrateKbps ?? Infinity) <= LINK_KBPS,
      20000,
      `the target below the link's ${LINK_KBPS} kbit/s (last: ${JSON.stringify(info?.bitrate)})`,
    );
    expect(info.bitrate!.decreases).to.be.at.least(1);
    await new Promise((r) => setTimeout(r, 3000)); // settled
    const adapted = await fps(viewer, 5000);
    expect(adapted, `frames per second through ${LINK_KBPS} kbit/s, adapted`).to.be.at.least(15);

    proxy.kbps = null;
    const low = (await clientInfo(peer)).bitrate!;
    // Two increases and a target above where it was: both at once, some time within 30 s. (Checked one after the
    // other, a loaded machine failed it: a late ack in between is congestion to the controller, which then lowers
    // the target again before climbing — 472 after two increases from 638, in one full run.)
    let after = low;
    await eventually(
      async () => {
        after = (await clientInfo(peer)).bitrate!;
        return after.increases >= low.increases + 2 && after.targetKbps > low.targetKbps;
      },
      30000,
      `two increases and a target above ${low.targetKbps} kbit/s once the link is open`,
    ).catch((error: Error) => expect.fail(`${error.message} (last: ${JSON.stringify(after)})`));
    expect(after.targetKbps).to.be.at.most(8000);
  });

  it('the control, adaptiveBitrate false: the target stays at the cap and the link carries few frames', async () => {
    const { peer, viewer } = await setUp(['--fixed-bitrate']);
    await new Promise((r) => setTimeout(r, 6000));
    const fixed = await fps(viewer, 5000);
    const info = await clientInfo(peer);
    expect(info.targetBitrateKbps).to.equal(8000);
    expect(info.bitrate).to.equal(null);
    expect(fixed, `frames per second through ${LINK_KBPS} kbit/s at 8000 kbit/s`).to.be.below(12);
  });
});
