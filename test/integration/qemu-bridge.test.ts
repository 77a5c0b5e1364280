/**
 * The QEMU bridge against real QEMU, in separate processes throughout: QEMU (TCG, booting the
 * test guest of test/qemu/, which draws a picture that describes its own state) → the bridge
 * (`surfacelink serve --qemu QMP`, the compiled CLI) → viewers (test/fixtures/qemu-viewer.ts,
 * the public client API; headless Chromium for the stream). Run on Debian 12's QEMU 7.2 (pixels
 * in Scanout/Update messages) and on 10.0 from bookworm-backports (`bpp=16`: QEMU's own memfd,
 * ScanoutMap/UpdateMap). Skipped with the reason when QEMU, gcc or Chromium is missing; a
 * failure under CI=true.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { Cli, ensureCliBuilt } from '../cli-process.js';
import { findDbusDaemon, startBus } from '../fixtures/dbus/bus.js';
import { Peer, eventually, tempDir } from '../helpers.js';
import { type CheckResult, type GuestState, checkBgrx, cursorImage, parsePpm } from '../qemu/pattern.js';
import {
  buildGuest,
  findQemu,
  startQemu,
  type QemuVersion,
  type RunningQemu,
  type StartOptions,
} from '../qemu/qemu.js';

const KEY_A = 30;
const KEY_C = 46;
const BTN_LEFT = 0x110;
/** Set-1 scancodes the guest's PS/2 keyboard reports for A: make and break. */
const A_MAKE = 0x1e;
const A_BREAK = 0x9e;
const CHROMIUM = process.env.SURFACELINK_CHROMIUM ?? '/usr/bin/chromium';
const MiB = 1024 * 1024;

type Checked = CheckResult & { sequence: number; surfaceId: number; mechanism: string };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function skipOrFail(ctx: Mocha.Context, reason: string): never {
  if (process.env.CI === 'true') throw new Error(`CI=true, and this machine should run this test, but: ${reason}`);
  ctx.test!.title += ` — skipped: ${reason}`;
  ctx.skip();
}

function summary(r: Checked): string {
  const s = r.state;
  return (
    `${s.width}x${s.height} frame ${s.frame} key ${s.key.toString(16)} keys ${s.keys} mouse ${s.mouseX},${s.mouseY} ` +
    `buttons ${s.buttons}, ${r.mismatches} pixels wrong ${JSON.stringify(r.examples.slice(0, 3))}`
  );
}

for (const version of ['7.2', '10.0'] as QemuVersion[]) {
  // 10.0: a 16 bpp mode, so that QEMU shadows the VRAM in a memfd of its own and hands it over
  // (ScanoutMap); at 32 bpp both versions send pixels in messages (test/qemu/README.md).
  const depth = version === '10.0' ? ' bpp=16' : '';

  describe(`QEMU ${version} → surfacelink serve --qemu → viewers (separate processes)`, function () {
    this.timeout(120000);
    let unavailable: string | null = null;
    let tmp: ReturnType<typeof tempDir>;
    let vms: RunningQemu[] = [];
    let clis: Cli[] = [];
    let peers: Peer[] = [];
    let sockets = 0;

    before(async function () {
      this.timeout(300000);
      const found = findQemu(version);
      if ('reason' in found) unavailable = found.reason;
      else {
        try {
          await buildGuest();
        } catch (error) {
          unavailable = `the test guest does not build (gcc): ${(error as Error).message}`;
        }
      }
      if (unavailable === null) ensureCliBuilt();
      tmp = tempDir('sl-qemu-');
    });

    beforeEach(function () {
      if (unavailable !== null) skipOrFail(this, unavailable);
    });

    afterEach(async () => {
      await Promise.all(peers.map((p) => (p.child.kill('SIGCONT'), p.stop())));
      for (const c of clis) c.kill();
      await Promise.all(vms.map((vm) => vm.stop()));
      [vms, clis, peers] = [[], [], []];
    });

    after(() => tmp?.cleanup());

    async function boot(params: string, options: Partial<StartOptions> = {}): Promise<RunningQemu> {
      const vm = await startQemu({ qemu: version, params, ...options });
      vms.push(vm);
      await vm.waitForFrame(1, 30000);
      return vm;
    }

    /** `surfacelink serve --qemu` on the VM's QMP socket; resolves once console 0 shows a surface. */
    async function bridge(vm: RunningQemu, extra: string[] = []): Promise<{ cli: Cli; socket: string }> {
      const socket = path.join(tmp.dir, `bridge-${sockets++}.sock`);
      const cli = new Cli(['serve', '--qemu', vm.qmpPath, '--path', socket, ...extra]);
      clis.push(cli);
      await cli.waitFor(/console 0 \([^)]*\): surface \d+, \d+x\d+/, 30000);
      return { cli, socket };
    }

    async function viewer(socket: string): Promise<Peer> {
      const peer = new Peer('qemu-viewer.ts');
      peers.push(peer);
      await peer.call('connect', { path: socket });
      return peer;
    }

    /**
     * Polls the viewer's picture (as its damage rectangles built it) until it shows a state
     * `want` accepts. Strict (std VGA, page flipping: every presented frame is complete): a wrong
     * picture on the way fails when it is not a single torn one — the same wrong pixel in two
     * successive frames, or three wrong frames in a row. (A reader late by more than a guest frame
     * copies the page the guest is already drawing its next frame into: QEMU never waits for its
     * listeners, so on a loaded machine one frame can tear even with page flipping; lost damage
     * stays wrong, and is caught.) Before the first
     * readable picture of a size (the guest not drawn yet, also after a mode set: the bridge
     * presents QEMU's new surface after at most 100 ms even if the guest, slow on a loaded
     * machine, has not drawn into it yet) it waits. Not strict (vmware draws in place): torn
     * pictures on the way are allowed, the one returned is exact.
     */
    async function picture(
      v: Peer,
      what: string,
      want: (s: GuestState) => boolean,
      {
        timeoutMs = 30000,
        strict = true,
        surfaceId,
      }: { timeoutMs?: number; strict?: boolean; surfaceId?: number } = {},
    ): Promise<Checked> {
      const deadline = Date.now() + timeoutMs;
      const readable = new Set<string>(); // sizes a readable picture was seen at
      let last: string = 'no frame yet';
      let torn: Checked | null = null; // the previous wrong frame, if the one before this was wrong
      let tornInRow = 0;
      for (;;) {
        const seen = await v.call<(Checked & { unreadable?: string; size: string }) | null>('check', { surfaceId });
        if (seen?.unreadable !== undefined) {
          if (strict && readable.has(seen.size))
            throw new Error(`the viewer's picture lost the guest's bar (${what}, ${seen.size}): ${seen.unreadable}`);
          last = seen.unreadable;
        } else if (seen) {
          readable.add(seen.size);
          last = summary(seen);
          if (strict && seen.mismatches > 0 && seen.sequence !== torn?.sequence) {
            const again = torn?.examples.some((a) =>
              seen.examples.some((b) => a.x === b.x && a.y === b.y && a.got === b.got),
            );
            tornInRow++;
            if (again || tornInRow >= 3)
              expect(
                seen.mismatches,
                `wrong pixels in the viewer's picture (${what}), ` +
                  `${again ? 'the same in two frames' : '3 frames in a row'}` +
                  `: ${last}; before: ${torn ? summary(torn) : '-'}`,
              ).to.equal(0);
            torn = seen;
          } else if (seen.mismatches === 0) {
            torn = null;
            tornInRow = 0;
          }
          if (seen.mismatches === 0 && want(seen.state)) return seen;
        }
        if (Date.now() > deadline) throw new Error(`no picture with ${what} within ${timeoutMs} ms; last: ${last}`);
        await sleep(100);
      }
    }

    it('the viewer sees exactly what the guest drew, from damage bands alone, through a guest resize', async () => {
      const vm = await boot(`w=800 h=600 mode=box fps=30 resize=640x480@180${depth}`);
      const { cli, socket } = await bridge(vm);
      const v = await viewer(socket);
      const before = await picture(v, '800x600', (s) => s.width === 800 && s.height === 600 && s.frame > 5);
      expect(before.mechanism).to.equal('shm.v1');
      expect(before.state.mode).to.equal('box');
      expect(before.state.bpp16).to.equal(version === '10.0');
      const later = await picture(v, 'a later frame', (s) => s.frame >= before.state.frame + 10 && s.width === 800);
      expect(later.sequence).to.be.greaterThan(before.sequence);
      await picture(v, '640x480 after the guest resized', (s) => s.width === 640 && s.height === 480, {
        timeoutMs: 60000,
      });
      let last = (await picture(v, 'frames after the resize', (s) => s.width === 640 && s.frame >= 185)).state.frame;
      // At least 10 frames built from damage rectangles alone, each picture after them exact. How many of a run's
      // frames carry rectangles is QEMU's doing: 7.2 shares the page the guest flipped to as a new surface and sends
      // it whole (Scanout) when its refresh sees the flip, and sends Update bands otherwise; on a loaded machine
      // more of its refreshes see a flip (one full run: 4 frames of a few seconds' carried rectangles). So the guest
      // is watched for as long as that takes, every picture on the way checked.
      const deadline = Date.now() + 60000;
      let stats = await v.call('stats');
      while (stats.partialFrames <= 10) {
        if (Date.now() > deadline)
          expect.fail(`${stats.partialFrames} of ${stats.frames} frames carried damage rectangles in the last 60 s`);
        last = (await picture(v, 'a later frame', (s) => s.width === 640 && s.frame >= last + 5)).state.frame;
        stats = await v.call('stats');
      }
      console.log(`      ${stats.partialFrames} of ${stats.frames} frames carried damage rectangles`);
      expect(stats.damagedPixels / stats.frames, 'mean damaged pixels per frame').to.be.lessThan(800 * 600);
      if (version === '7.2') {
        expect(cli.stdout).to.match(/, scanout: QEMU sends the pixels in its Scanout\/Update messages/);
      } else {
        // QEMU 10 allocates its display memfd without MFD_ALLOW_SEALING (qemu_memfd_alloc with no
        // seals): F_SEAL_SEAL is set and F_SEAL_SHRINK can never be added, so viewers must not map
        // it (a shrink would SIGBUS them, and any of them holding the fd could crash QEMU the same
        // way). The bridge copies from it instead and says so.
        expect(cli.stdout).to.match(/, map-copy: QEMU shares its display memory \(ScanoutMap\).*F_SEAL_SEAL is set/);
      }
    });

    it('a key, a click and motion (sendKey / sendButton / sendPointerMotion) reach the guest', async () => {
      const vm = await boot(`w=640 h=480 mode=static${depth}`);
      const { socket } = await bridge(vm);
      const v = await viewer(socket);
      const mode = await v.waitEvent('inputMode', () => true, 15000);
      expect(mode.mode, 'std VGA with a PS/2 mouse: QEMU says IsAbsolute false').to.equal('relative');
      const start = await picture(v, 'the first picture', () => true);
      const sid = start.surfaceId;

      await v.call('send', { method: 'sendKey', args: [sid, KEY_A, true] });
      await v.call('send', { method: 'sendKey', args: [sid, KEY_A, false] });
      const typed = await picture(v, 'A pressed and released', (s) => s.keys === (start.state.keys + 2) % 256);
      expect(typed.state.key).to.equal(A_BREAK);
      expect(vm.debugLog()).to.include(`key 0x${A_MAKE.toString(16)}`);

      await v.call('send', { method: 'sendButton', args: [sid, BTN_LEFT, true] });
      await picture(v, 'the left button down', (s) => (s.buttons & 1) === 1);
      await v.call('send', { method: 'sendButton', args: [sid, BTN_LEFT, false] });
      await picture(v, 'the left button up', (s) => s.buttons === 0);

      await v.call('send', { method: 'sendPointerMotion', args: [sid, { dx: 40, dy: 24 }] });
      const moved = await picture(v, 'the mouse moved', (s) => s.mouseX !== start.state.mouseX);
      expect([moved.state.mouseX - start.state.mouseX, moved.state.mouseY - start.state.mouseY]).to.deep.equal([
        40, 24,
      ]);
    });

    it("absolute vs relative follows QEMU's IsAbsolute: viewers told; a position reaches QEMU's input", async () => {
      // The guest has no USB driver: the tablet is made QEMU's current mouse by hand (HMP mouse_set),
      // and QEMU's input trace shows what arrives.
      const vm = await boot(`w=640 h=480 mode=static${depth}`, { tablet: true, trace: ['input_event_abs'] });
      const { cli, socket } = await bridge(vm);
      const v = await viewer(socket);
      await v.waitEvent('inputMode', (e) => e.mode === 'relative', 15000);
      const start = await picture(v, 'the first picture', () => true);
      const tablet = /Mouse #(\d+): QEMU HID Tablet/.exec(await vm.hmp('info mice'));
      expect(tablet, 'the usb-tablet in info mice').to.not.equal(null);
      await vm.hmp(`mouse_set ${tablet![1]}`);
      await v.waitEvent('inputMode', (e) => e.mode === 'absolute', 15000);
      await v.call('send', { method: 'sendPointer', args: [start.surfaceId, { x: 320, y: 240 }] });
      const trace = path.join(vm.dir, 'trace.log');
      await eventually(
        async () => fs.existsSync(trace) && /input_event_abs .*axis x, value \d+/.test(fs.readFileSync(trace, 'utf8')),
        10000,
        'an absolute X event in QEMU',
      );
      expect(cli.stderr).to.not.match(/SetAbsPosition/);
    });

    it('the vmware hardware cursor arrives as cursor.v1 (image, hotspot, moves), not in the frames', async () => {
      // Not 640x480 on vmware: QEMU's placeholder console surface is already 640x480x32, so the
      // guest's mode set changes nothing and QEMU never switches to the VRAM (a black screen).
      const vm = await boot('w=800 h=600 mode=static cursor=1', { vga: 'vmware' });
      const { socket } = await bridge(vm);
      const v = await viewer(socket);
      const start = await picture(v, 'the first picture', () => true, { strict: false });
      const want0 = cursorImage(0);
      const shape = await v.waitEvent('cursor', (e) => e.image !== null, 20000);
      expect(shape.image.width).to.equal(want0.width);
      expect(shape.image.height).to.equal(want0.height);
      expect([shape.image.hotspotX, shape.image.hotspotY]).to.deep.equal([want0.hotX, want0.hotY]);
      expect(Buffer.from(shape.image.pixels, 'base64').equals(want0.data), 'cursor image bytes').to.equal(true);

      const from = await v.waitEvent('cursor', (e) => e.visible, 20000);
      await v.call('send', { method: 'sendPointerMotion', args: [start.surfaceId, { dx: 30, dy: 20 }] });
      await v.waitEvent('cursor', (e) => !e.shapeChanged && e.x === from.x + 30 && e.y === from.y + 20, 20000);

      // The C key switches the guest's cursor image: a new shape, sent once.
      await v.call('send', { method: 'sendKey', args: [start.surfaceId, KEY_C, true] });
      await v.call('send', { method: 'sendKey', args: [start.surfaceId, KEY_C, false] });
      const want1 = cursorImage(1);
      const second = await v.waitEvent(
        'cursor',
        (e) => e.image !== null && Buffer.from(e.image.pixels, 'base64').equals(want1.data),
        20000,
      );
      expect(second.serial).to.be.greaterThan(shape.serial);
      // The frames hold the guest's picture only (checked exactly, pixel for pixel), the cursor on top of nothing.
      await picture(v, 'the picture after the moves', (s) => s.mouseX === start.state.mouseX + 30, { strict: false });
    });

    it('a viewer SIGSTOPped for 10 s: QEMU stays flat (±10 MB), a second viewer keeps its rate', async function () {
      this.timeout(180000);
      const vm = await boot(`w=800 h=600 mode=all fps=30${depth}`);
      const { cli, socket } = await bridge(vm);
      const stopped = await viewer(socket);
      const steady = await viewer(socket);
      await picture(stopped, 'frames in the first viewer', (s) => s.frame > 0);
      await picture(steady, 'frames in the second viewer', (s) => s.frame > 0);
      await sleep(2000);
      const t0 = Date.now();
      await sleep(4000);
      const rateBefore = (await steady.call<number>('framesSince', { since: t0 })) / 4;
      const rss0 = vm.rss();
      const bridgeRss0 = rssOf(cli.child.pid!);

      stopped.child.kill('SIGSTOP');
      const samples: number[] = [];
      const t1 = Date.now();
      for (let i = 0; i < 10; i++) {
        await sleep(1000);
        samples.push(vm.rss());
      }
      const rateStopped =
        (await steady.call<number>('framesSince', { since: t1 + 2000 })) / ((Date.now() - t1 - 2000) / 1000);
      const bridgeRss1 = rssOf(cli.child.pid!);
      stopped.child.kill('SIGCONT');

      const drift = samples.map((s) => (s - rss0) / MiB);
      expect(
        Math.max(...drift.map(Math.abs)),
        `QEMU RSS change, MiB, each second: ${drift.map((d) => d.toFixed(1))}`,
      ).to.be.at.most(10);
      expect(
        rateStopped,
        `second viewer's frames/s: ${rateBefore} before, ${rateStopped} while the first was stopped`,
      ).to.be.at.least(0.7 * rateBefore);
      expect((bridgeRss1 - bridgeRss0) / MiB, "the bridge's RSS growth, MiB").to.be.lessThan(32);
      // Holding a frame for 10 s is past the server's release timeout (ServerOptions.releaseTimeoutMs,
      // 2 s by default): the stopped viewer is told why and let go; a new one sees the picture at once.
      const gone = await stopped.waitEvent('disconnect', () => true, 10000);
      expect(gone.code).to.equal('E_RELEASE_TIMEOUT');
      await picture(await viewer(socket), 'a new viewer after the stopped one', (s) => s.frame > 0);
      await picture(steady, 'the second viewer still exact', () => true);
    });

    it('the bridge killed (SIGKILL) and restarted: QEMU keeps running and the new bridge attaches again', async () => {
      const vm = await boot(`w=640 h=480 mode=box fps=30${depth}`);
      const first = await bridge(vm);
      const v1 = await viewer(first.socket);
      await picture(v1, 'a picture through the first bridge', (s) => s.frame > 0);
      first.cli.kill('SIGKILL');
      await v1.waitEvent('disconnect', () => true, 10000);
      const frame = vm.lastFrame();
      await vm.waitForFrame(frame + 30, 20000); // the guest runs on
      expect(vm.stderr()).to.not.match(/error|assert/i);
      const second = await bridge(vm);
      const v2 = await viewer(second.socket);
      await picture(v2, 'a picture through the second bridge', (s) => s.frame > frame + 30);
      const later = await picture(v2, 'the picture moving on', (s) => s.frame > frame + 60);
      expect(later.state.width).to.equal(640);
    });

    it('on a D-Bus bus (as libvirt sets it up): --qemu-dbus, exact pixels, keys reach the guest', async function () {
      const daemon = findDbusDaemon();
      if (!daemon) skipOrFail(this, 'no dbus-daemon on PATH (apt-get install dbus-daemon)');
      const bus = await startBus(daemon);
      try {
        await boot(`w=640 h=480 mode=box fps=30${depth}`, { display: `dbus,gl=off,addr=${bus.address}` });
        const socket = path.join(tmp.dir, `bridge-${sockets++}.sock`);
        const cli = new Cli(['serve', '--qemu-dbus', bus.address, '--path', socket]);
        clis.push(cli);
        await cli.waitFor(/console 0 \([^)]*\): surface \d+, 640x480/, 30000);
        const v = await viewer(socket);
        const start = await picture(v, 'a picture through the bus', (s) => s.frame > 0);
        await v.call('send', { method: 'sendKey', args: [start.surfaceId, KEY_A, true] });
        await v.call('send', { method: 'sendKey', args: [start.surfaceId, KEY_A, false] });
        await picture(v, 'A typed', (s) => s.keys === (start.state.keys + 2) % 256 && s.key === A_BREAK);
      } finally {
        for (const c of clis.splice(0)) c.kill();
        await bus.cleanup();
      }
    });

    it('two consoles (std VGA and secondary-vga) become two surfaces, each exact', async () => {
      const vm = await boot(`w=640 h=480 mode=box fps=30${depth}`, {
        extraArgs: ['-device', 'secondary-vga,id=head2'],
      });
      const { cli, socket } = await bridge(vm);
      await cli.waitFor(/console 1 \([^)]*\): surface \d+/, 30000);
      const sids = [...cli.stdout.matchAll(/console (\d) \([^)]*\): surface (\d+)/g)].map((m) => [+m[1], +m[2]]);
      const first = sids.find(([c]) => c === 0)![1];
      const second = sids.find(([c]) => c === 1)![1];
      expect(first).to.not.equal(second);
      const v = await viewer(socket);
      await picture(v, 'the guest on console 0', (s) => s.frame > 0, { surfaceId: first });
      // Console 1: QEMU's own picture of a display the guest does not drive, compared with QEMU's screendump of it.
      await eventually(
        async () => (await v.call('surfaces')).some((x: { id: number }) => x.id === second),
        10000,
        'head 2',
      );
      const file = path.join(vm.dir, 'head2.ppm');
      await vm.qmp('screendump', { filename: file, device: 'head2' });
      const { width, height, rgb } = parsePpm(fs.readFileSync(file));
      const shown = await v.call('dump', { surfaceId: second });
      expect([shown.width, shown.height]).to.deep.equal([width, height]);
      const bgrx = Buffer.from(shown.bgrx, 'base64');
      let wrong = 0;
      for (let i = 0; i < width * height; i++)
        if (bgrx[i * 4] !== rgb[i * 3 + 2] || bgrx[i * 4 + 1] !== rgb[i * 3 + 1] || bgrx[i * 4 + 2] !== rgb[i * 3])
          wrong++;
      expect(wrong, 'pixels of console 1 differing from its screendump').to.equal(0);
    });

    it('surfacelink view --qemu: the bridge and a viewer in one process; says when the VM goes away', async () => {
      const vm = await boot(`w=640 h=480 mode=box fps=30${depth}`);
      const view = new Cli(['view', '--qemu', vm.qmpPath]);
      clis.push(view);
      await view.waitFor(/^viewing VM "[^"]*" \(QEMU \d+\.\d+\.\d+, 1 console\(s\)\)/m, 30000);
      await view.waitFor(/^\* console 0 \(VGA\): surface \d+, 640x480, (scanout|map-copy): /m, 30000);
      await view.waitFor(/^shm\.v1 640x480 +\d+\.\d fps/m, 30000);
      await vm.stop();
      const run = await view.done;
      expect(run.code, run.stderr).to.equal(1);
      expect(run.stderr).to.match(/surfacelink view: the VM went away: /);
    });

    it('a browser (headless Chromium, the stream viewer) types into the guest and sees the result', async function () {
      if (!fs.existsSync(CHROMIUM)) skipOrFail(this, `no Chromium at ${CHROMIUM} (apt-get install chromium)`);
      const vm = await boot(`w=640 h=480 mode=static${depth}`);
      const { cli } = await bridge(vm, ['--stream']);
      const url = (await cli.waitFor(/^stream: (\S+)$/m))[1];
      let browser: Browser | null = null;
      try {
        browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
        const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
        const errors: string[] = [];
        page.on('pageerror', (e) => errors.push(String(e)));
        const u = new URL(url);
        u.search = '?codec=tiles';
        await page.goto(u.href);
        const canvas = async (): Promise<CheckResult> => {
          const s = await page.evaluate(() => (globalThis as any).surfacelinkViewer.snapshot());
          const rgba = Buffer.from(s.rgba, 'base64');
          for (let i = 0; i < rgba.length; i += 4) [rgba[i], rgba[i + 2]] = [rgba[i + 2], rgba[i]];
          return checkBgrx(rgba, s.width, s.height);
        };
        const deadline = Date.now() + 30000;
        let shown: CheckResult | null = null;
        while (!shown) {
          try {
            shown = await canvas();
          } catch {
            if (Date.now() > deadline) throw new Error(`the browser showed no guest picture; page errors: ${errors}`);
            await sleep(200);
          }
        }
        expect(shown.mismatches, 'the canvas is the guest picture, exactly (tiles are lossless)').to.equal(0);
        await page.focus('canvas');
        await page.keyboard.type('a');
        let after = shown;
        while (after.state.keys !== (shown.state.keys + 2) % 256) {
          if (Date.now() > deadline + 20000)
            throw new Error(`the keys typed never reached the guest's picture: ${JSON.stringify(after.state)}`);
          await sleep(200);
          after = await canvas();
        }
        expect(after.state.key).to.equal(A_BREAK);
        expect(after.mismatches).to.equal(0);
        expect(errors).to.deep.equal([]);
      } finally {
        await browser?.close();
      }
    });
  });
}

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}
