/**
 * The conformance suite: one set of contract tests, run for every mechanism the registry says
 * works here × every transport that works here. A new mechanism or transport gets the whole
 * suite by registering; the suite names none (the fixtures know that a mechanism without handles
 * reaches its frames through the server's StreamServer). Server and clients are separate processes
 * (test/fixtures/server.ts, client.ts). Contracts that only hold for some mechanisms (exact
 * damage, latest-wins holds, buffer viewports: mechanisms whose buffers reach the client) are
 * chosen by capability, never by name.
 *
 * Inside the test VM (test/vm) the same suite runs again, where dmabuf.v1 is available.
 */
import { expect } from 'chai';
import { mechanisms } from '../../src/mechanisms/index.js';
import type { Mechanism } from '../../src/mechanisms/types.js';
import { availableTransports } from '../../src/transport/index.js';
import { Peer, PeerGroup, eventually } from '../helpers.js';

const transports = availableTransports();
// The VM run (test/vm/run-inside.sh) names the mechanisms the host cannot run, so none runs twice.
const only = process.env.SURFACELINK_CONFORMANCE_MECHANISMS?.split(',');
const available = mechanisms.available().filter((m) => !only || only.includes(m.name));

if (process.env.CI === 'true' && (transports.length === 0 || available.length === 0))
  throw new Error(
    `CI=true: the conformance suite needs a transport and a mechanism here (transports: ${transports.length}, ` +
      `mechanisms: ${available.length})`,
  );

/** How a surface for `m`'s clients is made: by `m` itself where it allocates, else by the server's first mechanism. */
const surfaceMechanism = (m: Mechanism): string | undefined => (m.allocate ? m.name : undefined);

for (const transport of transports) {
  for (const mechanism of available) {
    describe(`conformance: ${mechanism.name} over ${transport.name}`, function () {
      // In the test VM (TCG: no KVM here) starting one node process takes 10–20 s, and a test starts up to three:
      // a run with the host loaded took over 60 s for one test. What is measured stays the same.
      this.timeout(process.env.SURFACELINK_IN_VM === '1' ? 240000 : 60000);
      let group: PeerGroup;
      let server: Peer;
      const caps = mechanism.caps;

      const client = async (options: Record<string, unknown> = {}): Promise<Peer> => {
        const peer = group.spawn('client.ts');
        await peer.call('connect', {
          path: group.socketPath,
          mechanisms: [mechanism.name],
          transport: transport.name,
          ...options,
        });
        return peer;
      };
      const surface = (options: Record<string, unknown> = {}) =>
        server.call('surface', {
          width: 64,
          height: 48,
          format: 'XRGB8888',
          mechanism: surfaceMechanism(mechanism),
          ...options,
        });

      beforeEach(async () => {
        group = new PeerGroup();
        server = group.spawn('server.ts');
        await server.call('listen', {
          path: group.socketPath,
          options: { releaseTimeoutMs: 1500, transport: transport.name },
        });
        // Mechanisms without handles reach their frames through a component of the server.
        if (!caps.handles) await server.call('stream');
      });
      afterEach(() => group.cleanup());

      it('negotiates the mechanism the client offers, with a reason naming it, on both sides', async () => {
        await surface();
        const c = await client();
        const neg = await c.waitEvent('negotiated');
        expect(neg.mechanism).to.equal(mechanism.name);
        expect(neg.reason).to.include(mechanism.name);
        const joined = await server.waitEvent('client');
        expect(joined.client.mechanism).to.equal(mechanism.name);
        expect(joined.client.reason).to.equal(neg.reason);
      });

      it('frames arrive pixel-exact in another process, in order, the newest last', async () => {
        await surface();
        const c = await client();
        await c.waitEvent('negotiated');
        for (let fill = 1; fill <= 5; fill++) {
          const { sequence } = await server.call('present', { fill });
          const frame = await c.waitEvent('frame', (f) => f.sequence === sequence);
          expect(frame.planes[0], `frame ${sequence}`).to.equal(fill);
          expect([frame.width, frame.height]).to.deep.equal([64, 48]);
        }
      });

      // Mechanisms without handles have no buffers of their own on the client: this contract is not theirs.
      if (caps.handles)
        it('the first frame is the whole surface; later ones carry exactly the damage presented', async () => {
          await surface();
          const c = await client();
          await server.call('present', { fill: 1, damage: [{ x: 0, y: 0, width: 8, height: 8 }] });
          expect((await c.waitEvent('frame', (f) => f.sequence === 1)).damage).to.deep.equal([]);
          const damage = [
            { x: 1, y: 2, width: 3, height: 4 },
            { x: 10, y: 10, width: 54, height: 38 },
          ];
          await server.call('present', { fill: 2, damage });
          expect((await c.waitEvent('frame', (f) => f.sequence === 2)).damage).to.deep.equal(damage);
        });

      // Mechanisms without handles have no buffers of their own on the client: this contract is not theirs.
      if (caps.handles)
        it('latest wins: a client holding a frame skips to the newest, with the damage it missed', async () => {
          await surface({ buffers: 3, maxBuffers: 8 });
          const c = await client({ releaseMode: 'hold' });
          await server.call('present', { fill: 1 });
          await c.waitEvent('frame', (f) => f.sequence === 1);
          await server.call('present', { fill: 2, damage: [{ x: 0, y: 0, width: 4, height: 4 }] });
          await server.call('present', { fill: 3, damage: [{ x: 8, y: 8, width: 4, height: 4 }] });
          await server.call('present', { fill: 4, damage: [{ x: 16, y: 16, width: 4, height: 4 }] });
          await c.call('setMode', { releaseMode: 'auto' });
          await c.call('releaseHeld');
          const next = await c.waitEvent('frame', (f) => f.sequence > 1);
          expect(next.sequence).to.equal(4);
          expect(next.planes[0]).to.equal(4);
          expect(next.damage).to.deep.equal([
            { x: 0, y: 0, width: 4, height: 4 },
            { x: 8, y: 8, width: 4, height: 4 },
            { x: 16, y: 16, width: 4, height: 4 },
          ]);
        });

      it('a resize reaches the client: the new size, a new generation, sequence continuing', async () => {
        await surface();
        const c = await client();
        const first = await server.call('present', { fill: 1 });
        await c.waitEvent('frame', (f) => f.sequence === first.sequence);
        await server.call('resize', { width: 32, height: 16 });
        const after = await server.call('present', { fill: 9 });
        expect(after.sequence).to.equal(first.sequence + 1);
        const frame = await c.waitEvent('frame', (f) => f.sequence === after.sequence);
        expect([frame.width, frame.height]).to.deep.equal([32, 16]);
        expect(frame.planes[0]).to.equal(9);
        if (caps.handles) expect(frame.generation).to.equal(2);
      });

      // Mechanisms without handles have no buffers of their own on the client: this contract is not theirs.
      if (caps.handles)
        it('orientation and the visible rectangle reach the client', async () => {
          await surface({ orientation: 'bottom-up', visible: { x: 2, y: 4, width: 60, height: 40 } });
          const c = await client();
          await server.call('present', { fill: 7 });
          const frame = await c.waitEvent('frame', (f) => f.sequence === 1);
          expect(frame.orientation).to.equal('bottom-up');
          expect(frame.visible).to.deep.equal({ x: 2, y: 4, width: 60, height: 40 });
        });

      // Without handles the client gets the picture, not the buffer: the visible part, top row first.
      if (!caps.handles)
        it(
          'the picture arrives as a viewer should see it: ' + 'the visible rectangle only, a bottom-up buffer flipped',
          async () => {
            await surface({ orientation: 'bottom-up', visible: { x: 2, y: 4, width: 60, height: 40 } });
            const c = await client();
            await c.waitEvent('negotiated');
            await server.call('presentRows');
            const frame = await c.waitEvent('frame', (f) => f.sequence === 1);
            expect([frame.width, frame.height]).to.deep.equal([60, 40]);
            // Buffer row r holds r & 0xff; the picture's top row is the visible rectangle's bottom buffer row.
            expect(frame.rows).to.deep.equal(Array.from({ length: 40 }, (_, y) => (4 + 40 - 1 - y) & 0xff));
          },
        );

      it('serves three clients at once, each receiving the same newest frame', async () => {
        await surface();
        const clients = await Promise.all([client(), client(), client()]);
        for (const c of clients) await c.waitEvent('negotiated');
        const { sequence } = await server.call('present', { fill: 0x42 });
        for (const c of clients)
          expect((await c.waitEvent('frame', (f) => f.sequence === sequence)).planes[0]).to.equal(0x42);
      });

      it('a client killed mid-session gives back everything it held (server fds back to baseline)', async () => {
        await surface();
        await server.call('present', { fill: 1 });
        const baseline = (await server.call('stats')).fds;
        const c = await client({ releaseMode: 'never' });
        await c.waitEvent('frame');
        c.child.kill('SIGKILL');
        await c.exited;
        await eventually(
          async () => (await server.call('stats')).fds === baseline,
          5000,
          `server fds back to ${baseline}`,
        );
        const { sequence } = await server.call('present', { fill: 2 });
        const other = await client();
        expect((await other.waitEvent('frame', (f) => f.sequence === sequence)).planes[0]).to.equal(2);
      });

      it('the server going away is a disconnect on the client', async () => {
        await surface();
        const c = await client();
        await c.waitEvent('negotiated');
        server.child.kill('SIGKILL');
        const gone = await c.waitEvent('disconnect');
        expect(gone.code).to.be.a('string');
      });

      it('a closed surface is announced to the client', async () => {
        await surface();
        const c = await client();
        await server.call('present', { fill: 1 });
        await c.waitEvent('frame');
        await server.call('closeSurface');
        await c.waitEvent('surfaceGone');
      });
    });
  }
}
