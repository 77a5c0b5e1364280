/**
 * The courier seam (Mechanism.courier, docs/protocol.md §9.1.3) that iosurface.v1 uses on macOS to
 * move mach ports beside the unix socket, exercised on Linux with a test mechanism whose courier is
 * an in-process queue of duplicated memfds: the server and client run in this process over a real
 * unix socket. Proven here, independent of macOS: a courier mechanism's SCANOUT declares no handles
 * on the socket; the courier gets each SCANOUT's handles first and the client collects them in
 * order; a courier that cannot start (server) or deliver (client) moves the client to its next
 * offer; couriers are closed when sessions end. The mach courier itself runs only on a Mac
 * (test/macos/iosurface.test.ts).
 */
import { expect } from 'chai';
import path from 'node:path';
import { SurfaceClient, SurfaceServer, type Frame } from '../../src/index.js';
import { dupHandle, type OsHandle } from '../../src/handles.js';
import { mechanisms } from '../../src/mechanisms/index.js';
import { shmMechanism } from '../../src/mechanisms/shm.js';
import type { CourierClient, CourierServer, Mechanism } from '../../src/mechanisms/types.js';
import { eventually, tempDir } from '../helpers.js';

const NAME = 'courier-test.v0';
const queue: OsHandle[][] = []; // what the server's courier delivered, not yet collected
const events: string[] = [];
let failServer = false;
let failClient = false;

const courierMechanism: Mechanism = {
  ...shmMechanism,
  name: NAME,
  caps: { ...shmMechanism.caps, copyTarget: false, fallback: false },
  explicitOnly: 'a test mechanism: served only where a test names it',
  // shm.v1's memfds, described for this mechanism's clients as shm.v1 describes them.
  allocate(request) {
    const backing = shmMechanism.allocate!(request);
    return {
      ...backing,
      mechanism: NAME,
      exportSame: (mechanism, peer) => {
        const same = backing.exportSame(mechanism === NAME ? 'shm.v1' : mechanism, peer);
        return same && 'mechanism' in same ? { ...same, mechanism } : same;
      },
    };
  },
  courier: {
    server(): CourierServer {
      if (failServer) throw new Error('no courier today');
      events.push('server started');
      return {
        welcome: { testCourier: 'in-process' },
        deliver: (handles) => void queue.push(handles.map(dupHandle)),
        close: () => void events.push('server closed'),
      };
    },
    client(welcome): CourierClient {
      expect(welcome.extra?.testCourier).to.equal('in-process');
      events.push('client started');
      return {
        collect() {
          if (failClient) throw new Error('the courier lost it');
          const next = queue.shift();
          if (!next) throw new Error('nothing was delivered ahead of this SCANOUT');
          return next;
        },
        close: () => void events.push('client closed'),
      };
    },
  },
};
mechanisms.register(courierMechanism);

describe('the courier seam: handles that travel beside the socket (iosurface.v1 on macOS)', function () {
  this.timeout(20000);
  let tmp: ReturnType<typeof tempDir>;
  let server: SurfaceServer;

  beforeEach(async () => {
    tmp = tempDir();
    queue.length = 0;
    events.length = 0;
    failServer = failClient = false;
    server = await SurfaceServer.listen({
      path: path.join(tmp.dir, 's.sock'),
      mechanisms: [NAME, 'shm.v1'],
      logger: () => {},
    });
  });

  afterEach(() => {
    server.close();
    tmp.cleanup();
  });

  /** A client offering `offers`; each frame's mechanism and first byte are recorded, then it is released. */
  async function connect(
    offers: string[],
  ): Promise<{ client: SurfaceClient; frames: { mechanism: string; first: number }[] }> {
    const client = await SurfaceClient.connect({ path: path.join(tmp.dir, 's.sock'), mechanisms: offers });
    const frames: { mechanism: string; first: number }[] = [];
    client.on('frame', (f: Frame) => {
      frames.push({ mechanism: f.mechanism, first: f.pixels()[0] });
      f.release();
    });
    return { client, frames };
  }

  it('delivers each SCANOUT’s handles by courier, in order, and the client imports them', async () => {
    const surface = server.createSurface({ width: 32, height: 16, format: 'XRGB8888', buffers: 2, mechanism: NAME });
    const { client, frames } = await connect([NAME]);
    expect(client.mechanism).to.equal(NAME);
    for (let i = 1; i <= 4; i++) {
      const b = surface.acquire();
      b.pixels().fill(i);
      surface.present(b);
      await eventually(() => frames.length >= i, 5000, `frame ${i}`);
    }
    // A SCANOUT that carried handles on the socket as well would have ended the session (E_HANDLE_COUNT).
    expect(frames).to.deep.equal([1, 2, 3, 4].map((first) => ({ mechanism: NAME, first })));
    expect(queue).to.have.length(0); // every delivery was collected
    client.close();
    await eventually(() => events.includes('server closed'), 5000, 'server courier closed');
    expect(events).to.include.members(['server started', 'client started', 'client closed', 'server closed']);
  });

  it('a server courier that cannot start passes the offer over, with the reason', async () => {
    failServer = true;
    server.createSurface({ width: 32, height: 16, format: 'XRGB8888' });
    const { client } = await connect([NAME, 'shm.v1']);
    expect(client.mechanism).to.equal('shm.v1');
    expect(client.negotiation?.reason).to.include(`${NAME}: its handle courier failed: no courier today`);
    client.close();
  });

  it('a client courier that cannot deliver is an import failure: the server falls back to the next offer', async () => {
    failClient = true;
    const surface = server.createSurface({ width: 32, height: 16, format: 'XRGB8888', mechanism: NAME });
    const { client, frames } = await connect([NAME, 'shm.v1']);
    const failures: string[] = [];
    client.on('importFailed', (e) => failures.push(e.message));
    const first = surface.acquire();
    first.pixels().fill(6);
    surface.present(first); // its SCANOUT's handles cannot be collected: IMPORT_FAILED, then MECHANISM
    await eventually(() => client.mechanism === 'shm.v1', 5000, 'the fallback');
    const b = surface.acquire();
    b.pixels().fill(7);
    surface.present(b);
    await eventually(() => frames.length >= 1, 5000, 'a frame after the fallback');
    expect(client.mechanism).to.equal('shm.v1');
    expect(frames[0]).to.deep.equal({ mechanism: 'shm.v1', first: 7 });
    expect(failures[0]).to.include('the courier lost it');
    await eventually(() => events.includes('server closed'), 5000, 'the old courier closed at the fallback');
    client.close();
  });
});
