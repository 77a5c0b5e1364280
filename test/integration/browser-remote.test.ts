/**
 * The browser viewer as a viewer on another machine sees it (docs/remote.md §2.2, §5.1), in real
 * headless Chromium against a producer + StreamServer in another process
 * (test/fixtures/stream-producer.ts):
 *
 * - HTTPS/WSS with the server's self-signed certificate, opened at a non-loopback address of this
 *   machine: Chromium trusts that one certificate (by its public key, as a user who accepted it),
 *   the page is a secure context, and WebCodecs decodes H.264. The same page over plain http at that
 *   address is not a secure context and falls back to tiles: why TLS is there. The Node viewer pins
 *   the certificate by fingerprint; a wrong fingerprint gets E_AUTH before the token is sent.
 * - Reconnecting: the connection dropped under the viewer (a TCP proxy in between cuts it, then
 *   refuses connections for a while), and the server restarted (close 1001): the viewer comes back
 *   by itself with the token it was opened with (already gone from the address bar), after a backoff.
 * - The decoder watchdog: a VideoDecoder that stops producing pictures (as hardware decoders that
 *   hold frames do; here the page's VideoDecoder is wrapped to swallow its output) is reset, a
 *   keyframe is asked for and sent, and frames are drawn again once the decoder works.
 *
 * Without Chromium (or without a non-loopback IPv4 address, for the first part) the tests are
 * skipped with the reason; with CI=true that is a failure.
 */
import { expect } from 'chai';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { RemoteStreamClient } from '../../src/stream/client.js';
import type { StreamCertificateInfo } from '../../src/stream/tls.js';
import { Peer, eventually } from '../helpers.js';

const CHROMIUM = process.env.SURFACELINK_CHROMIUM ?? '/usr/bin/chromium';
const WAIT_MS = 20000;

interface ProducerInfo {
  url: string;
  wsUrl: string;
  token: string;
  h264Encoder: string | null;
  certificate: StreamCertificateInfo | null;
}

interface ViewerStats {
  state: string;
  codec: string | null;
  offered: string[];
  framesDrawn: number;
  canvasSeq: number;
  errors: number;
  lastError: string | null;
  errorCode: string | null;
  keyframeRequests: number;
  keyframesReceived: number;
  watchdogResets: number;
  reconnects: number;
  reconnectAttempt: number;
  secureContext: boolean;
  message: string | null;
}

function unavailableReason(): string | null {
  if (!fs.existsSync(CHROMIUM))
    return `no Chromium at ${CHROMIUM} (apt-get install chromium, or set SURFACELINK_CHROMIUM)`;
  return null;
}

function skipOrFail(ctx: Mocha.Context, reason: string): never {
  if (process.env.CI === 'true') throw new Error(`CI=true, and this machine should run this test, but: ${reason}`);
  ctx.test!.title += ` — skipped: ${reason}`;
  ctx.skip();
}

/** A non-loopback IPv4 address of this machine (what another machine on the LAN would open), or null. */
function lanAddress(): string | null {
  for (const list of Object.values(os.networkInterfaces()))
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return null;
}

/** SHA-256 of the certificate's public key (SPKI, DER), base64: what Chromium's SPKI allow-list takes. */
function spkiHash(pem: string): string {
  const der = new crypto.X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
  return crypto.createHash('sha256').update(der).digest('base64');
}

/**
 * A TCP proxy in front of the stream server: `drop()` cuts every connection through it (what a
 * network drop looks like to both ends), `refuse(ms)` turns new connections away for a while.
 */
class Proxy {
  readonly server: net.Server;
  private readonly pairs = new Set<[net.Socket, net.Socket]>();
  private refuseUntil = 0;
  target = 0;
  accepted = 0;
  refused = 0;

  constructor() {
    this.server = net.createServer((client) => {
      if (Date.now() < this.refuseUntil) {
        this.refused++;
        client.destroy();
        return;
      }
      this.accepted++;
      const upstream = net.connect(this.target, '127.0.0.1');
      const pair: [net.Socket, net.Socket] = [client, upstream];
      this.pairs.add(pair);
      const end = (): void => {
        this.pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
      client.pipe(upstream);
      upstream.pipe(client);
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as net.AddressInfo).port;
  }

  drop(): number {
    const n = this.pairs.size;
    for (const [a, b] of [...this.pairs]) {
      a.destroy();
      b.destroy();
    }
    this.pairs.clear();
    return n;
  }

  refuse(ms: number): void {
    this.refuseUntil = Date.now() + ms;
  }

  close(): void {
    this.drop();
    this.server.close();
  }
}

describe('browser viewer off this host: wss, reconnect, decoder watchdog (headless Chromium)', function () {
  this.timeout(90000);
  const unavailable = unavailableReason();
  const contexts: BrowserContext[] = [];
  const peers: Peer[] = [];
  const browsers: Browser[] = [];

  before(function () {
    if (unavailable && process.env.CI === 'true')
      throw new Error(`CI=true, and this machine should run the browser viewer tests, but: ${unavailable}`);
  });

  beforeEach(function () {
    if (unavailable === null) return;
    this.currentTest!.title += ` — skipped: ${unavailable}`;
    this.skip();
  });

  afterEach(async () => {
    await Promise.all(contexts.splice(0).map((c) => c.close().catch(() => {})));
    await Promise.all(browsers.splice(0).map((b) => b.close().catch(() => {})));
    await Promise.all(peers.splice(0).map((p) => p.stop()));
  });

  async function producer(args: string[]): Promise<{ peer: Peer; info: ProducerInfo }> {
    const peer = new Peer('stream-producer.ts', ['--width', '320', '--height', '240', '--fps', '30', ...args]);
    peers.push(peer);
    const info = (await peer.waitEvent('ready', () => true, 30000)) as ProducerInfo;
    return { peer, info };
  }

  async function launch(args: string[] = []): Promise<Browser> {
    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args });
    browsers.push(browser);
    return browser;
  }

  async function open(
    browser: Browser,
    url: string,
    token: string,
    init?: string,
  ): Promise<{ page: Page; errors: string[] }> {
    const context = await browser.newContext();
    contexts.push(context);
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    if (init) await page.addInitScript({ content: init });
    const u = new URL(url);
    u.hash = `token=${token}`;
    await page.goto(u.href);
    return { page, errors };
  }

  const stats = (page: Page): Promise<ViewerStats> =>
    page.evaluate(() => (globalThis as any).surfacelinkViewer.stats());

  async function waitStats(
    page: Page,
    what: string,
    predicate: (s: ViewerStats) => boolean,
    timeoutMs = WAIT_MS,
  ): Promise<ViewerStats> {
    let last: ViewerStats | null = null;
    try {
      await eventually(async () => predicate((last = await stats(page))), timeoutMs, what);
    } catch (error) {
      throw new Error(`${(error as Error).message}; viewer stats: ${JSON.stringify(last)}`, { cause: error });
    }
    return last!;
  }

  it('wss, self-signed, at a LAN address: secure context, H.264 via WebCodecs; plain http is not', async function () {
    const host = lanAddress();
    if (!host) skipOrFail(this, 'this machine has no non-loopback IPv4 address to serve a "remote" viewer on');
    const { info } = await producer(['--host', host, '--tls', 'self-signed', '--codecs', 'h264,tiles']);
    if (info.h264Encoder === null) skipOrFail(this, 'the server has no H.264 encoder (x264enc through GStreamer)');
    const cert = info.certificate!;
    expect(info.url.startsWith(`https://${host}:`), info.url).to.equal(true);
    expect(info.wsUrl.startsWith(`wss://${host}:`), info.wsUrl).to.equal(true);
    expect(cert.selfSigned).to.equal(true);
    expect(cert.subjectAltName).to.include(`IP Address:${host}`);
    expect(cert.fingerprint256).to.match(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);

    // As a user who accepted this one certificate: Chromium trusts its public key, nothing else.
    const browser = await launch([`--ignore-certificate-errors-spki-list=${spkiHash(cert.pem)}`]);
    const v = await open(browser, info.url, info.token);
    const s = await waitStats(v.page, 'H.264 frames drawn over wss', (x) => x.framesDrawn >= 10);
    expect(s.secureContext, 'https at a LAN address is a secure context').to.equal(true);
    expect(s.offered).to.deep.equal(['h264', 'tiles']);
    expect(s.codec).to.equal('h264');
    expect(s.state).to.equal('streaming');
    expect(v.errors).to.deep.equal([]);

    // The Node viewer: pinned by fingerprint it gets frames; a wrong pin is refused before the hello.
    const node = await RemoteStreamClient.connect(info.url, { fingerprint: cert.fingerprint256.toLowerCase() });
    try {
      expect(node.welcome!.surface.width).to.equal(320);
      await new Promise<void>((resolve) => node.once('frame', () => resolve()));
    } finally {
      node.close();
    }
    const trusted = await RemoteStreamClient.connect(info.url, { ca: cert.pem, codecs: ['tiles'] });
    trusted.close();
    const wrong = '00'.repeat(32);
    const refused = await RemoteStreamClient.connect(info.url, { fingerprint: wrong }).then(
      () => null,
      (e: { code: string; message: string }) => e,
    );
    expect(refused?.code).to.equal('E_AUTH');
    expect(refused?.message).to.include(cert.fingerprint256).and.to.include('nothing was sent');
    const untrusted = await RemoteStreamClient.connect(info.url).then(
      () => null,
      (e: { code: string }) => e,
    );
    expect(untrusted?.code, 'a self-signed certificate without a pin or a ca').to.equal('E_CONNECT');

    // The control: the same viewer over plain http at that address has no WebCodecs, so no H.264.
    const { info: plain } = await producer(['--host', host, '--codecs', 'h264,tiles']);
    expect(plain.url.startsWith(`http://${host}:`)).to.equal(true);
    const p = await open(browser, plain.url, plain.token);
    const ps = await waitStats(p.page, 'tiles drawn over plain http', (x) => x.framesDrawn >= 3);
    expect(ps.secureContext, 'plain http at a LAN address is not a secure context').to.equal(false);
    expect(ps.offered).to.deep.equal(['tiles']);
  });

  it('reconnects with its token: after a drop, while refused (backoff), after a server restart', async () => {
    const proxy = new Proxy();
    const port = await proxy.listen();
    try {
      const { peer, info } = await producer(['--codecs', 'tiles', '--allow-origin', `http://127.0.0.1:${port}`]);
      proxy.target = Number(new URL(info.url).port);
      const browser = await launch();
      const v = await open(browser, `http://127.0.0.1:${port}/`, info.token);
      const first = await waitStats(v.page, 'frames drawn', (s) => s.framesDrawn >= 5);
      expect(v.page.url(), 'the token left the address bar').to.not.include('token');

      // A network drop, then 2.5 s in which connections are refused: attempts back off, then it is back.
      proxy.refuse(2500);
      expect(proxy.drop()).to.be.greaterThan(0);
      const waiting = await waitStats(v.page, 'reconnecting', (s) => s.state === 'reconnecting');
      expect(waiting.message).to.match(/Reconnecting in [\d.]+ s \(attempt \d+\)/);
      const back = await waitStats(v.page, 'streaming again', (s) => s.state === 'streaming' && s.reconnects === 1);
      expect(proxy.refused, 'attempts while refused (backoff: 0.5, 1, 2 s…)').to.be.within(2, 5);
      await waitStats(v.page, 'frames after the reconnect', (s) => s.canvasSeq > first.canvasSeq + 10);
      expect(back.reconnectAttempt).to.equal(0);

      // The server restarts (its viewers get 1001): the viewer comes back to the new one.
      const restarted = await peer.call<{ port: number; samePort: boolean }>('restartStream');
      expect(restarted.samePort).to.equal(true);
      const again = await waitStats(
        v.page,
        'back after the restart',
        (s) => s.state === 'streaming' && s.reconnects === 2,
      );
      await waitStats(v.page, 'frames from the new server', (s) => s.framesDrawn > again.framesDrawn + 5);
      const clients = await peer.call<{ name: string }[]>('clients');
      expect(clients.map((c) => c.name)).to.deep.equal(['browser viewer']);
      expect(v.errors).to.deep.equal([]);
    } finally {
      proxy.close();
    }
  });

  it('decoder watchdog: a stalled decoder is reset, a keyframe asked for and sent, frames resume', async function () {
    const { peer, info } = await producer(['--codecs', 'h264']);
    if (info.h264Encoder === null) skipOrFail(this, 'the server has no H.264 encoder (x264enc through GStreamer)');
    const browser = await launch();
    // The page's VideoDecoder, wrapped: while `__stallDecoder` is set its pictures are swallowed,
    // as a hardware decoder that holds its frames would (no output, no error).
    // (A string, not a function: the test runner's transpiler would add helpers the page does not have.)
    const v = await open(
      browser,
      info.url,
      info.token,
      `(() => {
        const Real = globalThis.VideoDecoder;
        if (!Real) return;
        globalThis.__stallDecoder = false;
        globalThis.VideoDecoder = class extends Real {
          constructor(init) {
            super({ ...init, output: (frame) => (globalThis.__stallDecoder ? frame.close() : init.output(frame)) });
          }
        };
      })();`,
    );
    const before = await waitStats(v.page, 'H.264 frames drawn', (s) => s.framesDrawn >= 10);
    if (before.codec !== 'h264')
      skipOrFail(this, `this Chromium cannot decode H.264 with WebCodecs: ${before.message}`);
    const keyframesSent = (await peer.call<{ keyframes: number }[]>('clients'))[0].keyframes;

    await v.page.evaluate(() => ((globalThis as any).__stallDecoder = true));
    const stalled = await waitStats(v.page, 'the watchdog fired', (s) => s.watchdogResets >= 1);
    expect(stalled.lastError).to.match(/decoder stalled/);
    expect(stalled.keyframeRequests).to.be.greaterThan(before.keyframeRequests);
    // While the decoder shows nothing, the server keeps getting acks (dropped frames) and keyframe requests.
    await eventually(
      async () => (await peer.call<{ keyframes: number }[]>('clients'))[0].keyframes > keyframesSent,
      WAIT_MS,
      'the server sent a keyframe for the request',
    );

    await v.page.evaluate(() => ((globalThis as any).__stallDecoder = false));
    const drawn = (await stats(v.page)).framesDrawn;
    const after = await waitStats(v.page, 'frames drawn again', (s) => s.framesDrawn >= drawn + 10);
    expect(after.state).to.equal('streaming');
    expect(v.errors).to.deep.equal([]);
  });
});
