/**
 * Windows: dxgi.v1 — D3D11 textures shared by NT handle with a keyed mutex — between separate
 * node.exe processes (test/windows/programs/dxgi-*.cjs), under wine 8 on Linux or natively on the
 * hosted Windows runner.
 *
 * The probe test always runs and asserts the reason names the call that failed. Wine 8 cannot share
 * textures (QI IDXGIResource1 is E_NOINTERFACE, OpenSharedResource1 a stub; facts/windows-wine.md
 * §7), so there every test that needs sharing logs the probe's reason and skips; on Windows they run.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { WindowsSession, requireWindows, type ProgramEvent } from './harness';

let pipeNo = 0;
const pipeName = (): string => `\\\\.\\pipe\\surfacelink-dxgi-${process.pid}-${++pipeNo}`;
const LUID = /^[0-9a-f]{8}:[0-9a-f]{8}$/;

interface Probe {
  available: boolean;
  reason: string;
  adapter: string;
  luid: string;
  wine: string | null;
}

describe('Windows: dxgi.v1 (D3D11 shared textures, keyed mutex) between node.exe processes', function () {
  this.timeout(240_000);
  let session: WindowsSession;
  let probed: ProgramEvent;
  let probe: Probe;

  before(async function () {
    requireWindows(this);
    // Wine needs an X display for any D3D device (facts/windows-wine.md §5).
    session = await WindowsSession.start();
    const program = session.spawn('probe', 'dxgi-probe.cjs');
    probed = await program.waitFor('probe');
    probe = probed.probe as Probe;
    console.log(`      dxgi.v1 probe: ${probe.available ? 'available' : 'unavailable'}: ${probe.reason}`);
  });

  after(async () => {
    await session?.close();
  });

  /** Skips a test that needs real texture sharing where the probe says there is none, saying why. */
  function needsSharing(ctx: Mocha.Context): void {
    if (probe.available) return;
    console.log(`      skipped: dxgi.v1 is unavailable here: ${probe.reason}`);
    ctx.skip();
  }

  it('the probe says whether textures can be shared, naming the failing call and its HRESULT', () => {
    const report = probed.report as { available: boolean; reason: string };
    expect(report.available).to.equal(probe.available);
    expect(report.reason).to.equal(probe.reason);
    if (probe.available) {
      expect(probe.luid).to.match(LUID);
      expect(probe.reason).to.include('shares NT-handle textures with a keyed mutex');
      expect(probed.texture).to.deep.equal({ width: 16, height: 16, format: 87 });
      return;
    }
    expect(probe.reason).to.match(
      /^(D3D11CreateDevice|QueryInterface|IDXGIDevice::|IDXGIAdapter::|CreateTexture2D|IDXGIResource1::|ID3D11Device1::|IDXGIKeyedMutex::)[^ ]* .*failed: 0x[0-9A-F]{8}/,
    );
    if (probe.wine !== null) {
      // Wine 8 makes the device and the texture, then cannot share it.
      expect(probe.reason).to.include(
        'QueryInterface(IDXGIResource1) of a shared texture failed: 0x80004002 E_NOINTERFACE',
      );
      expect(probe.reason).to.include(`this is Wine ${probe.wine}`);
      expect(probe.luid).to.match(LUID);
      expect(probe.adapter).to.not.equal('');
      expect(probed.texture).to.include({ code: 'E_UNSUPPORTED' });
    }
  });

  it('a handle that is not a shared texture (a section) is E_HANDLE_TYPE, before anything is opened', () => {
    expect(probed.badHandle).to.include({ code: 'E_HANDLE_TYPE' });
    expect((probed.badHandle as { message: string }).message).to.include('the handle is a section');
  });

  it('SurfaceServer → SurfaceClient in two processes with dxgi.v1: every frame pixel-exact', async function () {
    needsSharing(this);
    const pipe = pipeName();
    const server = session.spawn('server', 'dxgi-server.cjs', [pipe, JSON.stringify({ frames: 8 })]);
    const listening = await server.waitFor('listening');
    expect(listening.mechanism).to.equal('dxgi.v1');
    const client = session.spawn('client', 'dxgi-client.cjs', [pipe, JSON.stringify({ frames: 8 })]);
    const connected = await client.waitFor('connected');
    expect(connected.mechanism).to.equal('dxgi.v1');
    expect(connected.reason).to.match(/^dxgi\.v1 is the client's 1st choice/);
    const first = await client.waitFor('frame');
    expect(first).to.include({ mechanism: 'dxgi.v1', identity: 'dxgi', mismatches: 0 });
    const done = await client.waitFor('done');
    expect(done.mismatches, 'pixels differing from what the producer wrote').to.equal(0);
    expect(await client.finished()).to.equal(0);
    server.kill();
  });

  it('keyed mutex: key 0 is not acquired while the other process holds it, then its writes show', async function () {
    needsSharing(this);
    const pipe = pipeName();
    const holding = path.join(session.dir, `holding-${pipeNo}`);
    const env = { SL_HOLDING: session.toWindows(holding) };
    const owner = session.spawn('owner', 'dxgi-mutex.cjs', ['owner', pipe, JSON.stringify({ holdMs: 1500 })], env);
    await owner.waitFor('listening');
    const peer = session.spawn('peer', 'dxgi-mutex.cjs', ['peer', pipe], env);
    const opened = await peer.waitFor('opened');
    expect(opened).to.include({ width: 32, height: 32, format: 87 });
    const result = await peer.waitFor('result');
    const released = await owner.waitFor('released');
    expect(result.early, 'AcquireSync(0, 50 ms) while the owner holds key 0').to.equal(false);
    expect(result.later, 'AcquireSync(0, 10 s) once the owner released').to.equal(true);
    expect(result.acquiredAt as number, 'acquired only after the owner released').to.be.at.least(
      (released.at as number) - 50,
    );
    expect(result.mismatches, 'pixels differing from what the owner wrote under the mutex').to.equal(0);
    fs.rmSync(holding, { force: true });
  });

  it('a client on another GPU (LUID mismatch) gets shared memory, with the reason', async function () {
    needsSharing(this);
    const pipe = pipeName();
    const server = session.spawn('server', 'dxgi-server.cjs', [pipe, JSON.stringify({ frames: 3 })]);
    await server.waitFor('listening');
    const luid = probe.luid === 'ffffffff:ffffffff' ? 'fffffffe:ffffffff' : 'ffffffff:ffffffff';
    const client = session.spawn('client', 'dxgi-client.cjs', [pipe, JSON.stringify({ frames: 3, luid })]);
    const connected = await client.waitFor('connected');
    expect(connected.mechanism).to.equal('winshm.v1');
    const reason = `the client's GPU (LUID ${luid}) is not the server's (${probe.luid}); it gets shared memory`;
    expect(connected.rejected).to.deep.equal([{ name: 'dxgi.v1', reason }]);
    expect(connected.reason).to.include(`skipped dxgi.v1: ${reason}`);
    const done = await client.waitFor('done');
    expect(done.mismatches, 'the winshm.v1 copy of the dxgi.v1 surface').to.equal(0);
    server.kill();
  });
});
