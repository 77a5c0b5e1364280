/**
 * macOS only: IOSurface sharing between separate processes, as a Mac runs it (npm run test:macos;
 * .github/workflows/macos.yml). Off macOS every test here is skipped with the reason: nothing
 * macOS-only is imitated on Linux. What is POSIX in the macOS design runs on Linux too:
 * test/integration/iosurface-pipe.test.ts (the ID pipe) and test/integration/shm-posix.test.ts
 * (shared memory without seals).
 *
 * Covered here: an IOSurface's create / lock / use counts / mach port round trip; iosurface.v1
 * between processes (mach ports through the per-session courier) and its audit-token check;
 * iosurface-pipe.v1 as UTM's CocoaSpice reads it, served only when the server names it, with the
 * warning in the negotiation reason; shm.v1 on shm_open memory.
 */
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { courierClientFor, courierServerFor } from '../../src/mechanisms/iosurface.js';
import { darwinNative } from '../../src/native/index.js';
import type { CourierClient } from '../../src/mechanisms/types.js';
import type { WelcomeInfo } from '../../src/protocol/codec.js';
import { PeerGroup } from '../helpers.js';

const BGRA = 0x42475241; // 'BGRA'

describe('macOS: IOSurface sharing', function () {
  this.timeout(30000);

  before(function () {
    if (process.platform !== 'darwin') {
      console.log(
        `      skipped: IOSurface, mach ports and XNU shared memory need macOS (this is ${process.platform})`,
      );
      this.skip();
    }
  });

  describe('the native IOSurface module', () => {
    it('creates, locks for writing and reading, counts uses, round-trips through a mach port', () => {
      const n = darwinNative();
      expect(n.iosurfaceMissingReason()).to.equal(null);
      const s = n.createIOSurface({
        width: 64,
        height: 48,
        pixelFormat: BGRA,
        bytesPerElement: 4,
        bytesPerRow: 256,
        global: false,
      });
      try {
        expect([s.width, s.height, s.pixelFormat, s.bytesPerRow, s.global]).to.deep.equal([64, 48, BGRA, 256, false]);
        expect(s.id).to.be.greaterThan(0);
        const w = new Uint8Array(s.lock(false));
        w.fill(0x5a, 0, 256 * 48);
        s.unlock();
        expect(w.length).to.equal(0); // detached: the memory is not reachable once unlocked
        const r = new Uint8Array(s.lock(true));
        expect(r[0]).to.equal(0x5a);
        expect(r[256 * 48 - 1]).to.equal(0x5a);
        s.unlock();
        s.incrementUseCount();
        expect(s.inUse).to.equal(true);
        s.decrementUseCount();
        const port = s.createMachPort();
        const again = n.ioSurfaceFromMachPort(port);
        port.close();
        expect(again.id).to.equal(s.id);
        again.release();
      } finally {
        s.release();
      }
    });
  });

  describe("iosurface.v1's courier binds only the socket's own peer", () => {
    /** A courier pair for a peer with `auditToken`, and one surface's port delivered through it. */
    function deliverOne(auditToken: Buffer, check: (client: CourierClient, surfaceId: number) => void): void {
      const server = courierServerFor({ pid: process.pid, uid: 0, user: 'test', auditToken });
      const client = courierClientFor({ extra: server.welcome } as unknown as WelcomeInfo);
      const s = darwinNative().createIOSurface({
        width: 16,
        height: 16,
        pixelFormat: BGRA,
        bytesPerElement: 4,
        bytesPerRow: 64,
        global: false,
      });
      const port = s.createMachPort();
      try {
        server.deliver([{ kind: 'mach', port }]);
        check(client, s.id);
      } finally {
        port.close();
        s.release();
        client.close();
        server.close();
      }
    }

    it('delivers ports to the peer whose audit token and nonce match', () => {
      const [a] = darwinNative().socketpair();
      const own = a.peer?.auditToken;
      a.close();
      expect(own).to.be.instanceOf(Buffer);
      deliverOne(own!, (client, surfaceId) => {
        const got = client.collect();
        expect(got).to.have.length(1);
        const handle = got[0];
        if (handle.kind !== 'mach') throw new Error(`a ${handle.kind} handle arrived instead of a mach port`);
        const back = darwinNative().ioSurfaceFromMachPort(handle.port);
        handle.port.close();
        expect(back.id).to.equal(surfaceId);
        back.release();
      });
    });

    it("refuses a process that is not the socket's peer, even with the nonce", () => {
      // Queued for a client that never binds: the stranger's CONNECT carries another audit token.
      deliverOne(randomBytes(32), (client) => expect(() => client.collect()).to.throw(/did not arrive/));
    });
  });

  describe('between processes', () => {
    let group: PeerGroup;
    afterEach(() => group.cleanup());

    async function serve(options: Record<string, unknown>) {
      group = new PeerGroup();
      const server = await group.server(options);
      await server.call('surface', { width: 64, height: 48 });
      return server;
    }

    it('iosurface.v1 by default: mach ports, exact pixels, no global ID', async () => {
      const server = await serve({});
      const c = await group.client({ mechanisms: ['iosurface.v1', 'shm.v1'] });
      expect((await c.waitEvent('negotiated')).mechanism).to.equal('iosurface.v1');
      await server.call('present', { fill: 0x11 });
      const frame = await c.waitEvent('frame');
      expect([frame.kind, frame.first, frame.planes[0]]).to.deep.equal(['iosurface', 0x11, 0x11]);
    });

    it('iosurface-pipe.v1 is off unless the server names it, and the reason says why', async () => {
      await serve({});
      const c = await group.client({ mechanisms: ['iosurface-pipe.v1', 'shm.v1'] });
      const neg = await c.waitEvent('negotiated');
      expect(neg.mechanism).to.equal('shm.v1');
      expect(neg.reason).to.match(/iosurface-pipe\.v1.*kIOSurfaceIsGlobal/);
    });

    it('iosurface-pipe.v1 where the server names it: the ID in a pipe, as UTM reads it, with the warning', async () => {
      const server = await serve({ mechanisms: ['iosurface-pipe.v1', 'iosurface.v1', 'shm.v1'] });
      const c = await group.client({ mechanisms: ['iosurface-pipe.v1'] });
      const neg = await c.waitEvent('negotiated');
      expect(neg.mechanism).to.equal('iosurface-pipe.v1');
      expect(neg.reason).to.match(/kIOSurfaceIsGlobal/);
      await server.call('present', { fill: 0x22 });
      const frame = await c.waitEvent('frame');
      expect([frame.kind, frame.first, frame.planes[0]]).to.deep.equal(['iosurface', 0x22, 0x22]);
    });

    it('shm.v1 on shm_open memory (no memfd, no seals on macOS)', async () => {
      const server = await serve({ mechanisms: ['shm.v1'] });
      const c = await group.client({ mechanisms: ['shm.v1'] });
      expect((await c.waitEvent('negotiated')).mechanism).to.equal('shm.v1');
      await server.call('present', { fill: 0x33 });
      const frame = await c.waitEvent('frame');
      expect([frame.kind, frame.first]).to.deep.equal(['shm', 0x33]);
    });
  });
});
