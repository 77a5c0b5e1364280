/**
 * stream.v1: no handles. A client offering it is pointed at the WebSocket endpoint of a
 * StreamServer running for the same SurfaceServer (WELCOME's `stream` field, docs/protocol.md
 * §4.4), where frames arrive encoded (docs/remote.md). It is the one mechanism a client on
 * another host can get, and it is chosen only at HELLO, never as a fallback.
 */
import { ProtocolError, type StreamEndpoint } from '../protocol/codec.js';
import type { Mechanism } from './types.js';

const NAME = 'stream.v1';

export const streamMechanism: Mechanism = {
  name: NAME,
  caps: {
    handles: false,
    cpuAccess: false,
    sync: 'none',
    negotiatesFormats: false,
    copyTarget: false,
    fallback: false,
  },

  probe: () => ({
    available: true,
    reason:
      'no handles: frames encoded (lossless tiles; H.264 where GStreamer has an encoder) over WebSocket, ' +
      'offered once a StreamServer is started (docs/remote.md)',
  }),

  accept(_offer, context) {
    const endpoint = context.attachment(NAME) as StreamEndpoint | undefined;
    if (!endpoint) return { refused: 'this server has no stream endpoint (no StreamServer was started for it)' };
    return { summary: ': frames come encoded over WebSocket', welcome: { stream: endpoint } };
  },

  checkWelcome(welcome) {
    if (!welcome.stream)
      throw new ProtocolError('E_MALFORMED', 'WELCOME: stream.v1 needs stream {wsUrl, token, url, codecs}');
  },
};
