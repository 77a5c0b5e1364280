/**
 * Negotiation as pure functions (src/core/negotiate.ts): no sockets, no processes, no native
 * code — mechanisms here are plain objects with the capabilities under test.
 */
import { expect } from 'chai';
import { SurfaceLinkError } from '../../src/errors.js';
import {
  chooseFeatures,
  chooseMechanism,
  chooseVersion,
  otherHostReason,
  type Rejection,
  type ServerOffer,
} from '../../src/core/negotiate.js';
import { FormatSet } from '../../src/format-set.js';
import { FORMATS, MODIFIER_LINEAR } from '../../src/formats.js';
import type { Acceptance, Mechanism, MechanismCaps } from '../../src/mechanisms/types.js';

const HANDLES: MechanismCaps = {
  handles: true,
  cpuAccess: true,
  sync: 'none',
  negotiatesFormats: false,
  copyTarget: true,
  fallback: true,
};

function mechanism(
  name: string,
  caps: Partial<MechanismCaps> = {},
  accept: Mechanism['accept'] = () => ({}),
): Mechanism {
  return { name, caps: { ...HANDLES, ...caps }, probe: () => ({ available: true, reason: 'test' }), accept };
}

function server(list: Mechanism[], attachments: Record<string, unknown> = {}): ServerOffer {
  return {
    served: new Map(list.map((m) => [m.name, m])),
    unavailableReason: (name) => (name === 'planned.v1' ? 'not in this build' : undefined),
    context: { attachment: (name) => attachments[name] },
  };
}

const shm = mechanism('shm.v1');
const fenced = mechanism(
  'fenced.v1',
  { sync: 'sync_file', negotiatesFormats: true, copyTarget: false },
  (offer): Acceptance => {
    const declared = FormatSet.fromJSON((offer.formats as unknown[]) ?? []);
    const common = declared.intersect(FormatSet.of([[FORMATS.XRGB8888.fourcc, [MODIFIER_LINEAR]]]));
    return common.size === 0
      ? { refused: 'no common format' }
      : { formats: common, detail: `; common formats: ${common.toString()}` };
  },
);
const stream = mechanism(
  'remote.v1',
  { handles: false, cpuAccess: false, copyTarget: false, fallback: false },
  (_offer, ctx) =>
    ctx.attachment('remote.v1')
      ? { summary: ': frames go elsewhere', welcome: { endpoint: ctx.attachment('remote.v1') } }
      : { refused: 'no endpoint attached' },
);
const xrgb = [{ format: 'XR24', modifiers: ['0x0'] }];

describe('negotiation (unit: pure functions)', () => {
  it('chooses the highest common protocol version, or none', () => {
    expect(chooseVersion({ minVersion: 1, maxVersion: 3 }, { min: 1, max: 1 })).to.equal(1);
    expect(chooseVersion({ minVersion: 1, maxVersion: 3 }, { min: 2, max: 5 })).to.equal(3);
    expect(chooseVersion({ minVersion: 2, maxVersion: 3 }, { min: 1, max: 1 })).to.equal(null);
  });

  it("takes the client's first offer the server serves, and says so", () => {
    const rejected: Rejection[] = [];
    const choice = chooseMechanism([{ name: 'shm.v1' }], 0, server([fenced, shm]), null, rejected);
    expect(choice?.mechanism).to.equal(shm);
    expect(choice?.reason).to.equal("shm.v1 is the client's 1st choice and the server supports it");
    expect(rejected).to.deep.equal([]);
  });

  it('passes over what the server does not serve, naming why, and lists the skips in the reason', () => {
    const rejected: Rejection[] = [];
    const choice = chooseMechanism(
      [{ name: 'planned.v1' }, { name: 'nope.v9' }, { name: 'fenced.v1', formats: xrgb }],
      0,
      server([fenced, shm]),
      null,
      rejected,
    );
    expect(choice?.mechanism).to.equal(fenced);
    expect(choice?.index).to.equal(2);
    expect(rejected).to.deep.equal([
      { name: 'planned.v1', reason: 'not in this build' },
      { name: 'nope.v9', reason: 'this server was configured without it' },
    ]);
    expect(choice?.reason).to.match(
      /^fenced\.v1 is the client's 3rd choice and the server supports it \(skipped planned\.v1: not in this build; nope\.v9: this server/,
    );
    expect(choice?.reason).to.match(/; common formats: /);
    expect(choice?.formats?.has(FORMATS.XRGB8888.fourcc, MODIFIER_LINEAR)).to.equal(true);
  });

  it('lets the mechanism refuse an offer on its parameters (formats), then moves on', () => {
    const rejected: Rejection[] = [];
    const choice = chooseMechanism(
      [{ name: 'fenced.v1', formats: [{ format: 'NV12', modifiers: ['0x0'] }] }, { name: 'shm.v1' }],
      0,
      server([fenced, shm]),
      null,
      rejected,
    );
    expect(choice?.mechanism).to.equal(shm);
    expect(rejected).to.deep.equal([{ name: 'fenced.v1', reason: 'no common format' }]);
  });

  it("a malformed offer is the client's protocol error; a mechanism failing otherwise only rules itself out", () => {
    const malformed = mechanism('odd.v1', {}, () => {
      throw new SurfaceLinkError('E_MALFORMED', 'formats must be a list');
    });
    expect(() => chooseMechanism([{ name: 'odd.v1' }], 0, server([malformed]), null, []))
      .to.throw(/formats must be a list/)
      .with.property('code', 'E_MALFORMED');
    const broken = mechanism('odd.v1', {}, () => {
      throw new Error('driver exploded');
    });
    const rejected: Rejection[] = [];
    expect(chooseMechanism([{ name: 'odd.v1' }], 0, server([broken]), null, rejected)).to.equal(null);
    expect(rejected[0].reason).to.match(/not usable: driver exploded/);
  });

  it('a client on another host gets only mechanisms without handles', () => {
    const away = otherHostReason('ours', 'theirs');
    expect(away).to.match(/another host .*handles cannot cross hosts/);
    expect(otherHostReason('same', 'same')).to.equal(null);
    expect(otherHostReason(null, 'theirs')).to.equal(null);
    const rejected: Rejection[] = [];
    const choice = chooseMechanism(
      [{ name: 'shm.v1' }, { name: 'remote.v1' }],
      0,
      server([shm, stream], { 'remote.v1': 'ws://x' }),
      away,
      rejected,
    );
    expect(choice?.mechanism).to.equal(stream);
    expect(choice?.welcome).to.deep.equal({ endpoint: 'ws://x' });
    expect(choice?.reason).to.match(
      /^remote\.v1 is the client's 2nd choice: frames go elsewhere \(skipped shm\.v1: the client runs on another host/,
    );
    expect(rejected).to.have.length(1);
  });

  it(
    'a mechanism that may only be chosen at HELLO is never a fallback; ' +
      'nor is one that needs an attachment missing',
    () => {
      const offers = [{ name: 'shm.v1' }, { name: 'remote.v1' }];
      const rejected: Rejection[] = [];
      expect(chooseMechanism(offers, 1, server([shm, stream], { 'remote.v1': 'ws://x' }), null, rejected)).to.equal(
        null,
      );
      expect(rejected).to.deep.equal([
        { name: 'remote.v1', reason: 'remote.v1 is chosen only at HELLO, not as a fallback' },
      ]);
      const none: Rejection[] = [];
      expect(chooseMechanism([{ name: 'remote.v1' }], 0, server([stream]), null, none)).to.equal(null);
      expect(none).to.deep.equal([{ name: 'remote.v1', reason: 'no endpoint attached' }]);
    },
  );

  it(
    'session features: absent means frames.v1 (and WELCOME stays silent); ' + 'unknown names are dropped, order kept',
    () => {
      expect(chooseFeatures(undefined, ['frames.v1', 'cursor.v1'])).to.deep.equal({
        features: ['frames.v1'],
        announce: false,
      });
      expect(chooseFeatures(['cursor.v1', 'teleport.v1', 'frames.v1'], ['frames.v1', 'cursor.v1'])).to.deep.equal({
        features: ['cursor.v1', 'frames.v1'],
        announce: true,
      });
      expect(chooseFeatures(['input.v1'], ['frames.v1'])).to.deep.equal({ features: [], announce: true });
    },
  );
});
