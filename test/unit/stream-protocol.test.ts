/** The stream parser (src/stream/protocol.ts, docs/remote.md §3) on what a hostile viewer may send as `type`. */
import { expect } from 'chai';
import { SurfaceLinkError } from '../../src/errors.js';
import { parseClientMessage } from '../../src/stream/protocol.js';

function codeOf(text: string): string {
  try {
    parseClientMessage(text, Buffer.byteLength(text));
  } catch (error) {
    expect(error, `${text} threw something other than a SurfaceLinkError`).to.be.instanceOf(SurfaceLinkError);
    return (error as SurfaceLinkError).code;
  }
  return 'accepted';
}

describe('stream client-message parser (unit)', () => {
  // The first was a counterexample of the codec property fuzzer (hosted CI, seed 1229424358): the error
  // text was built with String(type), which throws for an object whose own toString is not a function.
  for (const type of [
    '{"toString":false}',
    '{"toString":1,"valueOf":1}',
    '{"valueOf":null}',
    '[{"toString":false}]',
    '{}',
    '[]',
    'null',
    '0',
    'true',
    '"x"',
  ]) {
    it(`a type of ${type} is E_UNKNOWN_TYPE`, () => {
      expect(codeOf(`{"type":${type}}`)).to.equal('E_UNKNOWN_TYPE');
    });
  }

  it('a missing type is E_UNKNOWN_TYPE and a long one is quoted, cut short, in the message', () => {
    expect(codeOf('{"seq":1}')).to.equal('E_UNKNOWN_TYPE');
    try {
      parseClientMessage(JSON.stringify({ type: 'x'.repeat(1000) }), 1010);
      expect.fail('accepted');
    } catch (error) {
      expect((error as Error).message.length).to.be.below(80);
    }
  });
});
