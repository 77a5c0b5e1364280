#!/usr/bin/env python3
"""A surfacelink protocol v1 client written only from docs/protocol.md (and docs/ownership.md).

Usage: python3 doc_client.py --path SOCKET --frames N [--hold-first MS] [--timeout S]

Standard library only. Prints exactly one JSON line on stdout when it ends; exit code 0 when "ok" is true, 1 otherwise.
Section references (§) are to docs/protocol.md.
"""

from __future__ import annotations

import argparse
import array
import collections
import fcntl
import json
import math
import mmap
import os
import select
import socket
import stat
import struct
import sys
import time

# --- §2 framing -----------------------------------------------------------------------------------------------------

HDR = struct.Struct('<IHBB')  # length, type, handles, flags (§2.2)
MAX_MESSAGE = 65536
MAX_HANDLES = 8
MAX_QUEUED_FDS = 16
MAGIC = 0x4B4E4C53  # "SLNK" (§3.1)
PROTO_MIN = PROTO_MAX = 1

T_HELLO, T_WELCOME, T_ERROR = 0x01, 0x02, 0x03
T_SCANOUT, T_FRAME, T_RELEASE, T_RETIRE, T_SURFACE_GONE = 0x10, 0x11, 0x12, 0x13, 0x14
T_IMPORT_FAILED, T_MECHANISM = 0x20, 0x21
SERVER_TYPES = {T_WELCOME, T_ERROR, T_SCANOUT, T_FRAME, T_RETIRE, T_SURFACE_GONE, T_MECHANISM}
CLIENT_ONLY_TYPES = {T_HELLO, T_RELEASE, T_IMPORT_FAILED}

# --- §6.1 error codes -----------------------------------------------------------------------------------------------

ERROR_NAMES = {
    1: 'E_PROTOCOL_VERSION', 2: 'E_MALFORMED', 3: 'E_UNKNOWN_TYPE', 4: 'E_TOO_LARGE', 5: 'E_TRUNCATED',
    6: 'E_HANDLE_COUNT', 7: 'E_HANDLE_TYPE', 8: 'E_UNSEALED', 9: 'E_BAD_GEOMETRY', 10: 'E_OUT_OF_BOUNDS',
    11: 'E_UNSUPPORTED_FORMAT', 12: 'E_NO_MECHANISM', 13: 'E_RELEASE_TIMEOUT', 14: 'E_PERMISSION',
    15: 'E_UNEXPECTED', 16: 'E_UNKNOWN_BUFFER', 17: 'E_BACKPRESSURE', 18: 'E_IMPORT_FAILED',
    19: 'E_POOL_EXHAUSTED', 20: 'E_SHUTDOWN', 21: 'E_LIMIT', 22: 'E_TIMEOUT', 23: 'E_PEER_CLOSED', 24: 'E_SYSTEM',
    25: 'E_INVALID_ARGUMENT', 26: 'E_CLOSED', 27: 'E_ADDRESS_IN_USE', 28: 'E_CONNECT', 29: 'E_NATIVE_UNAVAILABLE',
}
CODES = {name: num for num, name in ERROR_NAMES.items()}

# --- §5.4 formats: fourcc -> list of planes (bpp, xdiv, ydiv) ------------------------------------------------------


def fourcc(s: str) -> int:
    return int.from_bytes(s.encode('ascii'), 'little')


FORMATS = {
    fourcc('XR24'): [(4, 1, 1)],
    fourcc('AR24'): [(4, 1, 1)],
    fourcc('XB24'): [(4, 1, 1)],
    fourcc('AB24'): [(4, 1, 1)],
    fourcc('RG16'): [(2, 1, 1)],
    fourcc('NV12'): [(1, 1, 1), (2, 2, 2)],
}

TMAX_DIM = 16384
MAX_STRIDE = 262144
MAX_OFFSET = 1 << 48
F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW = 0x0001, 0x0002, 0x0004
F_GET_SEALS = getattr(fcntl, 'F_GET_SEALS', 1034)


def fourcc_str(v: int) -> str:
    b = v.to_bytes(4, 'little')
    try:
        return b.decode('ascii')
    except UnicodeDecodeError:
        return hex(v)


def progress(line: str):
    """One progress line on stderr, so a driver can wait for events (stdout carries only the final JSON)."""
    sys.stderr.write(f'doc_client: {line}\n')
    sys.stderr.flush()


class Violation(Exception):
    """The server broke the protocol; `code` is the §6.1 name the client reports."""

    def __init__(self, code: str, message: str):
        super().__init__(f'{code}: {message}')
        self.code = code
        self.message = message


class PeerEnded(Exception):
    """The server closed the connection cleanly between messages (E_PEER_CLOSED, local)."""


def close_fds(fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def is_int(v) -> bool:
    # JSON "integer": JS accepts 3 and 3.0 alike (Number.isInteger); bool is not an integer.
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    return isinstance(v, float) and v.is_integer()


# --- an imported buffer -----------------------------------------------------------------------------------------------


class Buffer:
    def __init__(self, surface_id, buffer_id, generation, width, height, fmt, planes, fd, mapping, inode):
        self.surface_id = surface_id
        self.buffer_id = buffer_id
        self.generation = generation
        self.width = width
        self.height = height
        self.format = fmt
        self.planes = planes  # list of (handle_index, stride, offset, size)
        self.fd = fd
        self.map = mapping
        self.inode = inode
        self.held = False
        self.forgotten = False

    def close(self):
        if self.map is not None:
            try:
                self.map.close()
            except Exception:
                pass
            self.map = None
        if self.fd is not None:
            close_fds([self.fd])
            self.fd = None


# --- the client -------------------------------------------------------------------------------------------------------


class Client:
    def __init__(self, args):
        self.args = args
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self.fdq: collections.deque[int] = collections.deque()
        self.welcomed = False
        self.mechanism = None
        self.reason = None
        self.limits = {'maxMessage': 65536, 'maxHandles': 8, 'releaseTimeoutMs': 2000, 'maxHeldFrames': 1}
        self.offers = ['shm.v1']
        self.buffers: dict[tuple[int, int], Buffer] = {}
        self.forgotten_held: dict[tuple[int, int], Buffer] = {}  # forgotten buffers with a held frame
        self.held: dict[int, tuple[int, int]] = {}  # surface_id -> (buffer_id, sequence)
        self.import_failed: set[tuple[int, int]] = set()
        self.frames = []
        self.errors = []
        self.server_error = None
        self.end = None
        self.failure = None
        self.frames_seen = 0
        self.hold_until = None  # monotonic deadline for the held first frame
        self.hold_frame = None  # (surface_id, buffer_id, sequence)
        self.done = False
        self.welcome_info = None
        self.warnings = []

    # -- output --

    def result(self):
        ok = (not self.errors and self.server_error is None and self.failure is None
              and self.frames_seen >= self.args.frames)
        return {
            'ok': ok,
            'mechanism': self.mechanism,
            'reason': self.reason,
            'frames': self.frames,
            'errors': self.errors,
            'server_error': self.server_error,
            'end': self.end,
            'failure': self.failure,
            'clientId': (self.welcome_info or {}).get('clientId'),
            'limits': self.limits,
        }

    # -- sending --

    def send(self, mtype, body=b''):
        data = HDR.pack(8 + len(body), mtype, 0, 0) + body
        self.sock.sendall(data, socket.MSG_NOSIGNAL)

    def send_error(self, code: str, text: str):
        # §3.3: ERROR code u32, error_flags u32 (bit 0 fatal), UTF-8 text truncated to 1024 UTF-16 units.
        t = text[:1024].encode('utf-8', 'replace')
        try:
            self.send(T_ERROR, struct.pack('<II', CODES[code], 1) + t)
        except OSError:
            pass

    # -- connect, credentials, HELLO --

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        s.settimeout(None)
        try:
            s.connect(self.args.path)
        except OSError as e:
            s.close()
            raise LocalFailure('E_CONNECT', f'connect({self.args.path}): {e}')
        self.sock = s
        # §1.4: server uid must be 0, our uid or allowed.
        try:
            cred = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize('3i'))
            _pid, uid, _gid = struct.unpack('3i', cred)
        except OSError:
            uid = -1
        if uid not in (0, os.getuid()):
            s.close()
            self.sock = None
            raise LocalFailure('E_PERMISSION', f'server uid {uid} is not allowed')

    def hello(self):
        def read_id(p):
            try:
                with open(p) as f:
                    v = f.read().strip()
                    return v or None
            except OSError:
                return None

        info = {
            'name': 'doc_client.py', 'pid': os.getpid(), 'platform': 'linux',
            'host': {'bootId': read_id('/proc/sys/kernel/random/boot_id'), 'machineId': read_id('/etc/machine-id')},
            'mechanisms': [{'name': n} for n in self.offers],
        }
        body = struct.pack('<IHH', MAGIC, PROTO_MIN, PROTO_MAX) + json.dumps(info, separators=(',', ':')).encode()
        self.send(T_HELLO, body)

    # -- receiving (§2.4, §2.5) --

    def recv_some(self):
        try:
            data, anc, flags, _ = self.sock.recvmsg(131072, socket.CMSG_SPACE(MAX_HANDLES * 4),
                                                    socket.MSG_CMSG_CLOEXEC)
        except (ConnectionResetError, BrokenPipeError) as e:
            if self.buf:
                raise Violation('E_TRUNCATED', f'recvmsg failed ({e}) with a partial message buffered')
            raise PeerEnded(str(e))
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                a = array.array('i')
                a.frombytes(payload[: len(payload) - len(payload) % a.itemsize])
                self.fdq.extend(a)
        if flags & socket.MSG_CTRUNC:
            raise Violation('E_HANDLE_COUNT', 'MSG_CTRUNC: more fds attached than room for 8')
        if len(self.fdq) > MAX_QUEUED_FDS:
            raise Violation('E_HANDLE_COUNT', f'{len(self.fdq)} fds queued (> 16)')
        if not data:
            if self.buf or self.fdq:
                raise Violation('E_TRUNCATED',
                                f'peer closed with {len(self.buf)} bytes and {len(self.fdq)} fds pending')
            raise PeerEnded('end of file')
        self.buf += data

    def messages(self):
        """Yield complete messages as (type, handles, flags, bytes, fds)."""
        while len(self.buf) >= 8:
            length, mtype, handles, flags = HDR.unpack_from(self.buf, 0)
            if length < 8:
                raise Violation('E_MALFORMED', f'length {length} < 8')
            if length > MAX_MESSAGE:
                raise Violation('E_TOO_LARGE', f'length {length} > 65536')
            if handles > MAX_HANDLES:
                raise Violation('E_HANDLE_COUNT', f'handles {handles} > 8')
            if len(self.buf) < length:
                break
            if handles > len(self.fdq):
                raise Violation('E_HANDLE_COUNT', f'message declares {handles} handles, {len(self.fdq)} queued')
            m = bytes(self.buf[:length])
            del self.buf[:length]
            fds = [self.fdq.popleft() for _ in range(handles)]
            yield mtype, handles, flags, m, fds
        if not self.buf and self.fdq:
            raise Violation('E_HANDLE_COUNT', f'{len(self.fdq)} fds that no message declares')

    # -- dispatch --

    def dispatch(self, mtype, handles, flags, m, fds):
        try:
            if mtype not in SERVER_TYPES and mtype not in CLIENT_ONLY_TYPES:
                raise Violation('E_UNKNOWN_TYPE', f'unknown message type 0x{mtype:02x}')
            if mtype in CLIENT_ONLY_TYPES:
                raise Violation('E_UNEXPECTED', f'client-only message type 0x{mtype:02x} from the server')
            if handles and mtype != T_SCANOUT:
                raise Violation('E_HANDLE_COUNT', f'{handles} fds on message type 0x{mtype:02x}')
            if flags != 0:
                raise Violation('E_MALFORMED', f'header flags 0x{flags:02x} != 0 on type 0x{mtype:02x}')
            if not self.welcomed and mtype not in (T_WELCOME, T_ERROR):
                raise Violation('E_UNEXPECTED', f'message type 0x{mtype:02x} before WELCOME')
            if mtype == T_WELCOME:
                self.on_welcome(m)
            elif mtype == T_ERROR:
                self.on_error(m)
            elif mtype == T_SCANOUT:
                self.on_scanout(m, fds)
                fds = []  # owned by the import now (or closed by it)
            elif mtype == T_FRAME:
                self.on_frame(m)
            elif mtype == T_RETIRE:
                self.on_retire(m)
            elif mtype == T_SURFACE_GONE:
                self.on_surface_gone(m)
            elif mtype == T_MECHANISM:
                self.on_mechanism(m)
        finally:
            close_fds(fds)

    def on_welcome(self, m):
        if self.welcomed:
            raise Violation('E_UNEXPECTED', 'second WELCOME')
        if len(m) < 16:
            raise Violation('E_MALFORMED', f'WELCOME length {len(m)} < 16')
        magic, version, _reserved = struct.unpack_from('<IHH', m, 8)
        if magic != MAGIC:
            raise Violation('E_MALFORMED', f'WELCOME magic 0x{magic:08x}')
        try:
            info = json.loads(m[16:].decode('utf-8', 'replace'))
        except ValueError as e:
            raise Violation('E_MALFORMED', f'WELCOME JSON: {e}')
        if not isinstance(info, dict):
            raise Violation('E_MALFORMED', 'WELCOME JSON is not an object')
        srv = info.get('server')
        if not (isinstance(srv, dict) and isinstance(srv.get('name'), str) and is_int(srv.get('pid'))
                and isinstance(srv.get('platform'), str) and isinstance(srv.get('host'), dict)):
            raise Violation('E_MALFORMED', 'WELCOME.server missing name/pid/platform/host')
        if not is_int(info.get('clientId')):
            raise Violation('E_MALFORMED', 'WELCOME.clientId is not an integer')
        if not isinstance(info.get('mechanism'), str) or not isinstance(info.get('reason'), str):
            raise Violation('E_MALFORMED', 'WELCOME.mechanism/reason not strings')
        if not isinstance(info.get('limits'), dict):
            raise Violation('E_MALFORMED', 'WELCOME.limits is not an object')
        if not (PROTO_MIN <= version <= PROTO_MAX):
            raise Violation('E_PROTOCOL_VERSION', f'WELCOME.version {version} outside {PROTO_MIN}..{PROTO_MAX}')
        if info['mechanism'] not in self.offers:
            raise Violation('E_UNEXPECTED', f'WELCOME.mechanism {info["mechanism"]!r} was not offered')
        for k in self.limits:
            v = info['limits'].get(k)
            if is_int(v) and v > 0:
                self.limits[k] = int(v)
        self.welcomed = True
        self.welcome_info = info
        self.mechanism = info['mechanism']
        self.reason = info['reason']
        progress(f'welcome clientId={info["clientId"]} mechanism={self.mechanism}')

    def on_error(self, m):
        if len(m) < 16:
            raise Violation('E_MALFORMED', f'ERROR length {len(m)} < 16')
        code, eflags = struct.unpack_from('<II', m, 8)
        text = m[16:].decode('utf-8', 'replace')
        name = ERROR_NAMES.get(code, 'E_UNEXPECTED')
        fatal = bool(eflags & 1)
        entry = {'code': code, 'name': name, 'fatal': fatal, 'message': text}
        print(f'doc_client: server ERROR {code} {name} fatal={fatal}: {text}', file=sys.stderr)
        if fatal:
            self.server_error = entry
            self.end = name
            self.done = True  # §3.3: end the session, do not answer
        else:
            self.warnings.append(entry)


    def on_scanout(self, m, fds):
        ok = False
        try:
            self._scanout(m, fds)
            ok = True
        finally:
            if not ok:
                close_fds(fds)

    def _scanout(self, m, fds):
        # §3.4 client checks, in order
        if len(m) < 64:
            raise Violation('E_MALFORMED', f'SCANOUT length {len(m)} < 64')
        (sid, bid, gen, width, height, fmt, modifier, plane_count, orientation, _r1, _r2,
         vx, vy, vw, vh) = struct.unpack_from('<6IQBBHI4I', m, 8)
        if not (1 <= plane_count <= 4):
            raise Violation('E_MALFORMED', f'SCANOUT plane_count {plane_count}')
        if len(m) != 64 + 24 * plane_count:
            raise Violation('E_MALFORMED', f'SCANOUT length {len(m)} != 64 + 24 x {plane_count}')
        planes = [struct.unpack_from('<IIQQ', m, 64 + 24 * i) for i in range(plane_count)]
        for i, (hi, _s, _o, _z) in enumerate(planes):
            if hi >= len(fds):
                raise Violation('E_HANDLE_COUNT', f'plane {i} handle_index {hi} >= handles {len(fds)}')
        if fmt not in FORMATS:
            raise Violation('E_UNSUPPORTED_FORMAT', f'format 0x{fmt:08x}')
        if self.mechanism != 'shm.v1':
            raise Violation('E_UNEXPECTED', f'SCANOUT under unsupported mechanism {self.mechanism}')
        # §5.3, arithmetic first
        if len(fds) != 1:
            raise Violation('E_HANDLE_COUNT', f'shm.v1 SCANOUT with {len(fds)} fds')
        if modifier != 0:
            raise Violation('E_BAD_GEOMETRY', f'modifier 0x{modifier:x} != 0')
        if not (1 <= width <= TMAX_DIM and 1 <= height <= TMAX_DIM):
            raise Violation('E_BAD_GEOMETRY', f'size {width}x{height}')
        fplanes = FORMATS[fmt]
        if plane_count != len(fplanes):
            raise Violation('E_BAD_GEOMETRY', f'{fourcc_str(fmt)} needs {len(fplanes)} planes, got {plane_count}')
        if not (vw >= 1 and vh >= 1 and vx + vw <= width and vy + vh <= height):
            raise Violation('E_BAD_GEOMETRY', f'visible rect {vx},{vy} {vw}x{vh} outside {width}x{height}')
        for i, ((hi, stride, offset, size), (bpp, xdiv, ydiv)) in enumerate(zip(planes, fplanes)):
            min_stride = math.ceil(width / xdiv) * bpp
            rows = math.ceil(height / ydiv)
            if not (min_stride <= stride <= MAX_STRIDE):
                raise Violation('E_BAD_GEOMETRY', f'plane {i} stride {stride} (min {min_stride}, max {MAX_STRIDE})')
            if size < stride * rows:
                raise Violation('E_BAD_GEOMETRY', f'plane {i} size {size} < {stride} x {rows}')
            if offset > MAX_OFFSET or size > MAX_OFFSET:
                raise Violation('E_OUT_OF_BOUNDS', f'plane {i} offset {offset} / size {size} > 2^48')
        fd = fds[0]
        # §5.3 on the fd
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Violation('E_HANDLE_TYPE', 'fd is not a regular file')
        try:
            link = os.readlink(f'/proc/self/fd/{fd}')
        except OSError as e:
            raise Violation('E_HANDLE_TYPE', f'readlink /proc/self/fd/{fd}: {e}')
        if not link.startswith('/memfd:'):
            raise Violation('E_HANDLE_TYPE', f'fd is not a memfd ({link})')
        try:
            seals = fcntl.fcntl(fd, F_GET_SEALS)
        except OSError as e:
            raise Violation('E_HANDLE_TYPE', f'F_GET_SEALS failed: {e}')
        if not seals & F_SEAL_SHRINK:
            raise Violation('E_UNSEALED', f'seals 0x{seals:x} lack F_SEAL_SHRINK')
        size_s = st.st_size
        for i, (hi, stride, offset, size) in enumerate(planes):
            if offset + size > size_s:
                raise Violation('E_OUT_OF_BOUNDS', f'plane {i} {offset}+{size} > object size {size_s}')
        key = (sid, bid)
        try:
            mapping = mmap.mmap(fd, size_s, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
        except (OSError, ValueError) as e:
            # §3.4 / §5.3 step 10: a local failure -> IMPORT_FAILED, not ERROR
            close_fds([fd])
            self.import_failed.add(key)
            reason = f'mmap: {e}'[:1024].encode('utf-8', 'replace')
            self.send(T_IMPORT_FAILED, struct.pack('<IIII', sid, bid, CODES['E_IMPORT_FAILED'], 0) + reason)
            return
        old = self.buffers.pop(key, None)
        if old is not None:  # §3.4: replaces the old import
            old.close()
        self.import_failed.discard(key)
        self.buffers[key] = Buffer(sid, bid, gen, width, height, fmt, planes, fd, mapping, st.st_ino)
        self.buffers[key].seals = seals
        self.buffers[key].link = link

    def on_frame(self, m):
        if len(m) < 40:
            raise Violation('E_MALFORMED', f'FRAME length {len(m)} < 40')
        sid, bid, seq, ptime, dcount, _r = struct.unpack_from('<IIQQII', m, 8)
        if dcount > 64:
            raise Violation('E_MALFORMED', f'FRAME damage_count {dcount} > 64')
        if len(m) != 40 + 16 * dcount:
            raise Violation('E_MALFORMED', f'FRAME length {len(m)} != 40 + 16 x {dcount}')
        key = (sid, bid)
        if key in self.import_failed and key not in self.buffers:
            # §4.3 race: release a FRAME of a buffer we reported, unseen
            self.send(T_RELEASE, struct.pack('<IIQ', sid, bid, seq))
            return
        b = self.buffers.get(key)
        if b is None:
            raise Violation('E_UNKNOWN_BUFFER', f'FRAME names unknown buffer {sid}/{bid}')
        if b.held:
            raise Violation('E_UNEXPECTED', f'FRAME for buffer {sid}/{bid} which is already held')
        if sid in self.held:
            # §3.5 / §7.3: the server never sends a FRAME of a surface while one is held
            raise Violation('E_UNEXPECTED', f'FRAME of surface {sid} while frame {self.held[sid]} is held')
        rects = [struct.unpack_from('<4I', m, 40 + 16 * i) for i in range(dcount)]
        for (x, y, w, h) in rects:
            if not (w >= 1 and h >= 1 and x + w <= b.width and y + h <= b.height):
                raise Violation('E_BAD_GEOMETRY', f'damage {x},{y} {w}x{h} outside {b.width}x{b.height}')
        b.held = True
        self.held[sid] = (bid, seq)
        self.frames_seen += 1
        # read the pixels while held
        hi, stride, offset, size = b.planes[0]
        bpp = FORMATS[b.format][0][0]
        mp = b.map
        px0 = list(mp[offset: offset + bpp])
        rec = {
            'sequence': seq, 'surface': sid, 'buffer': bid, 'generation': b.generation,
            'width': b.width, 'height': b.height, 'stride': stride, 'offset': offset, 'size': size,
            'format': fourcc_str(b.format), 'damage': [list(r) for r in rects], 'present_time_ns': ptime,
            'pixel0': px0, 'inode': b.inode, 'seals': b.seals, 'fd_link': b.link,
        }
        x, y = 10, 5
        if x < b.width and y < b.height:
            o = offset + y * stride + x * bpp
            rec['pixel_at'] = {'x': x, 'y': y, ('bgrx' if bpp == 4 else 'bytes'): list(mp[o: o + bpp])}
        # a cheap check that the whole visible image is readable, and its distinct byte values
        image = mp[offset: offset + stride * b.height]
        rec['distinct_bytes'] = sorted(set(image))[:8]
        self.frames.append(rec)
        progress(f'frame surface={sid} buffer={bid} sequence={seq}')
        if self.args.hold_first is not None and self.frames_seen == 1:
            self.hold_frame = (sid, bid, seq)
            self.hold_until = time.monotonic() + self.args.hold_first / 1000.0
        else:
            self.release(sid, bid, seq)

    def release(self, sid, bid, seq):
        self.held.pop(sid, None)
        key = (sid, bid)
        b = self.buffers.get(key)
        if b is not None:
            b.held = False
        fb = self.forgotten_held.pop(key, None)
        if fb is not None:
            fb.held = False
            fb.close()
        self.send(T_RELEASE, struct.pack('<IIQ', sid, bid, seq))
        progress(f'released surface={sid} buffer={bid} sequence={seq}')
        if self.frames_seen >= self.args.frames and not self.held:
            self.done = True

    def forget(self, key):
        b = self.buffers.pop(key, None)
        if b is None:
            return
        b.forgotten = True
        if b.held:
            self.forgotten_held[key] = b
        else:
            b.close()

    def on_retire(self, m):
        if len(m) != 16:
            raise Violation('E_MALFORMED', f'RETIRE length {len(m)} != 16')
        sid, bid = struct.unpack_from('<II', m, 8)
        self.import_failed.discard((sid, bid))
        self.forget((sid, bid))  # unknown buffer: ignored (§3.7)

    def on_surface_gone(self, m):
        if len(m) != 16:
            raise Violation('E_MALFORMED', f'SURFACE_GONE length {len(m)} != 16')
        sid, _r = struct.unpack_from('<II', m, 8)
        for key in [k for k in self.buffers if k[0] == sid]:
            self.forget(key)
        self.import_failed = {k for k in self.import_failed if k[0] != sid}
        # The server no longer expects a RELEASE for a held frame of sid; sending one is allowed (§3.8).

    def on_mechanism(self, m):
        if len(m) < 10:
            raise Violation('E_MALFORMED', f'MECHANISM length {len(m)} < 10')
        try:
            info = json.loads(m[8:].decode('utf-8', 'replace'))
        except ValueError as e:
            raise Violation('E_MALFORMED', f'MECHANISM JSON: {e}')
        if not (isinstance(info, dict) and isinstance(info.get('mechanism'), str)
                and isinstance(info.get('reason'), str)):
            raise Violation('E_MALFORMED', 'MECHANISM JSON lacks string mechanism/reason')
        if info['mechanism'] not in self.offers:
            raise Violation('E_UNEXPECTED', f'MECHANISM {info["mechanism"]!r} was not offered')
        for key in list(self.buffers):
            self.forget(key)
        self.import_failed.clear()
        self.mechanism = info['mechanism']
        self.reason = info['reason']

    # -- main loop --

    def run(self):
        overall = time.monotonic() + self.args.timeout
        welcome_deadline = time.monotonic() + 5.0  # §1.5: reference client gives up after 5000 ms
        self.connect()
        self.hello()
        while not self.done:
            now = time.monotonic()
            if self.hold_until is not None and now >= self.hold_until:
                sid, bid, seq = self.hold_frame
                self.hold_until = self.hold_frame = None
                try:
                    self.release(sid, bid, seq)
                except OSError:
                    pass  # server gone; the next read reports it
                continue
            if not self.welcomed and now >= welcome_deadline:
                self.send_error('E_TIMEOUT', 'no WELCOME within 5000 ms')
                raise LocalFailure('E_TIMEOUT', 'no WELCOME within 5000 ms')
            if now >= overall:
                raise LocalFailure('E_TIMEOUT', f'only {self.frames_seen} of {self.args.frames} frames '
                                                f'within {self.args.timeout} s')
            deadlines = [overall]
            if self.hold_until is not None:
                deadlines.append(self.hold_until)
            if not self.welcomed:
                deadlines.append(welcome_deadline)
            r, _, _ = select.select([self.sock], [], [], max(0.0, min(deadlines) - now))
            if not r:
                continue
            self.recv_some()
            for msg in self.messages():
                if self.done:
                    close_fds(msg[4])
                    continue
                self.dispatch(*msg)

    def shutdown(self):
        close_fds(self.fdq)
        self.fdq.clear()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        for b in list(self.buffers.values()) + list(self.forgotten_held.values()):
            b.close()
        self.buffers.clear()
        self.forgotten_held.clear()


class LocalFailure(Exception):
    def __init__(self, code, message):
        super().__init__(f'{code}: {message}')
        self.code = code
        self.message = message


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--path', required=True)
    ap.add_argument('--frames', type=int, required=True)
    ap.add_argument('--hold-first', type=int, default=None, metavar='MS')
    ap.add_argument('--timeout', type=float, default=30.0, help='overall seconds to wait for the frames')
    args = ap.parse_args()
    c = Client(args)
    try:
        c.run()
    except Violation as v:
        c.errors.append({'code': CODES[v.code], 'name': v.code, 'message': v.message})
        c.end = v.code
        if c.sock is not None:
            c.send_error(v.code, v.message)  # §6.3: SHOULD send a fatal ERROR before closing
    except PeerEnded as e:
        c.end = 'E_PEER_CLOSED'
        if c.frames_seen < args.frames:
            c.failure = {'name': 'E_PEER_CLOSED', 'message': f'{e} after {c.frames_seen} frames'}
    except LocalFailure as e:
        c.failure = {'name': e.code, 'message': e.message}
        c.end = e.code
    except OSError as e:
        c.failure = {'name': 'E_SYSTEM', 'message': str(e)}
        c.end = 'E_SYSTEM'
    finally:
        c.shutdown()
    res = c.result()
    res['warnings'] = c.warnings
    sys.stdout.write(json.dumps(res, separators=(',', ':')) + '\n')
    sys.stdout.flush()
    sys.exit(0 if res['ok'] else 1)


if __name__ == '__main__':
    main()
