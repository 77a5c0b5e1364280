#!/usr/bin/python3
"""surfacelink's GStreamer worker: H.264 encode and decode for remote streams.

Run by src/stream/h264.ts, one process per encoder or decoder:

  surfacelink_gst.py probe
      Prints one JSON object: the H.264 encoders present (hardware first, x264enc last),
      whether each reaches PLAYING and encodes a frame, and whether avdec_h264 exists.
  surfacelink_gst.py encode --width W --height H --format XRGB8888 --fps 30 --bitrate 8000
                            [--element x264enc] [--threads N] [--input copy|shared]
  surfacelink_gst.py decode

Framing (encode and decode modes). stdin and stdout carry records, each a 32-byte
little-endian header followed by `length` payload bytes:

  offset  type  field
   0      u8    kind (below)
   1      u8    flags: bit 0 = keyframe (KIND_AU)
   2      u16   reserved, 0
   4      u32   length of the payload
   8      u32   sequence  (KIND_BITRATE: kbit/s; KIND_BUFFER, KIND_FORGET: the buffer id)
  12      u32   width     (KIND_FRAME out of decode, KIND_BUFFER; 0 elsewhere)
  16      u32   height    (KIND_FRAME out of decode, KIND_BUFFER; 0 elsewhere)
  20      u32   token: any value; an output record carries the token of its input
  24      f64   presentMs

Into the worker: KIND_FRAME=1 (encode: width*height*4 bytes, tight rows, in --format),
KIND_AU=2 (decode: one Annex B access unit), KIND_KEYFRAME=3 (the next frame read is encoded
as an IDR with SPS/PPS), KIND_BITRATE=4, KIND_QUIT=5 (finish and exit 0; so does end of input).
Out of the worker: KIND_READY=16 (JSON: element, hardware, gstreamer, input, and `settings`: the
encoder's properties as set, `name=value` strings gst-launch takes) once the pipeline is PLAYING,
KIND_AU=2 (encode), KIND_FRAME=1 (decode: BGRx, tight rows, with width and height), KIND_DROP=17
(decode: that access unit gave no picture), KIND_DONE=19 (encode, shared input: the worker has
finished reading that frame's memory), KIND_ERROR=18 (JSON: message), after which the worker
exits non-zero.

Shared input (encode --input shared). fd 3 is a unix stream socket, and every input record comes
through it instead of stdin, in the same framing; records may carry fds (SCM_RIGHTS, attached to
their first byte). The producer's buffers are mapped here, not copied:

  KIND_BUFFER=6   sequence = buffer id, width, height = the picture; one fd (a memfd, or a dma-buf
                  when flags bit 0 of the payload is set), sent once per buffer per worker. Payload
                  (24 bytes): u64 size of the object, u32 offset of the picture's first pixel, u32
                  stride (bytes per row), u32 DRM fourcc (must be --format's), u32 flags (bit 0:
                  dma-buf). The fd is checked (its real size must hold the picture), wrapped once as
                  GstMemory (GstAllocators.FdAllocator / DmaBufAllocator, kept mapped) and kept
                  until KIND_FORGET.
  KIND_FORGET=7   sequence = buffer id: drop the memory (unmap, close the fd).
  KIND_SHARED=8   a frame in a known buffer: sequence, token, presentMs; payload (8 bytes): u32
                  buffer id, u32 0. It is pushed as a GstBuffer over that memory with a
                  GstVideoMeta (offset, stride): videoconvert reads the producer's pixels.
                  When videoconvert's output for it leaves (a pad probe), KIND_DONE goes out with
                  its tag: from then on the producer may reuse the buffer.
  KIND_PIPED=9    the frame's pixels were copied after all: the next record on stdin is a
                  KIND_FRAME with them (a bottom-up buffer, one without an fd, ...).
  KIND_KEYFRAME, KIND_BITRATE, KIND_QUIT as above, through the socket.

The sequence, token and presentMs of an input record come back on the record it produced:
the worker maps them through the buffer's PTS (a running frame index), which encoders and
decoders carry through unchanged.
Nothing but records is written to stdout: fd 1 is moved away at start and pointed at stderr,
so a library that prints cannot corrupt the stream.
"""

import collections
import json
import os
import socket
import struct
import sys
import threading

HEADER = struct.Struct('<BBHIIIIId')
assert HEADER.size == 32

KIND_FRAME = 1
KIND_AU = 2
KIND_KEYFRAME = 3
KIND_BITRATE = 4
KIND_QUIT = 5
KIND_BUFFER = 6
KIND_FORGET = 7
KIND_SHARED = 8
KIND_PIPED = 9
KIND_READY = 16
KIND_DROP = 17
KIND_ERROR = 18
KIND_DONE = 19

FLAG_KEYFRAME = 1

# KIND_BUFFER's payload: size, offset, stride, fourcc, flags; KIND_SHARED's: buffer id, 0.
BUFFER_INFO = struct.Struct('<QIIII')
SHARED_INFO = struct.Struct('<II')
BUFFER_FLAG_DMABUF = 1
# The socket of shared input (encode --input shared), passed by Node as fd 3.
SHARED_FD = 3

# Largest payload accepted: a 16384x16384 frame. Anything bigger is a framing error.
MAX_PAYLOAD = 16384 * 16384 * 4

PIPE_BYTES = 1 << 20

ENCODERS = ['vah264enc', 'vaapih264enc', 'nvh264enc', 'msdkh264enc', 'x264enc']
HARDWARE = set(ENCODERS[:-1])

# DRM format name -> GStreamer's name for the same memory order.
GST_FORMATS = {'XRGB8888': 'BGRx', 'ARGB8888': 'BGRA', 'XBGR8888': 'RGBx', 'ABGR8888': 'RGBA'}
# DRM format name -> its fourcc, as KIND_BUFFER carries it.
FOURCCS = {name: struct.unpack('<I', code.encode())[0]
           for name, code in (('XRGB8888', 'XR24'), ('ARGB8888', 'AR24'), ('XBGR8888', 'XB24'), ('ABGR8888', 'AB24'))}

# The PTS we stamp: a frame index, only ever compared for equality (tags map through it).
# It starts at 1000 hours because x264enc shifts any earlier timestamps up to there (its
# "min PTS", which keeps DTS positive): starting there, what comes out is what went in.
PTS_BASE = 1000 * 3600 * 1_000_000_000
PTS_STEP = 1_000_000


def load_gst():
    import gi
    gi.require_version('Gst', '1.0')
    gi.require_version('GstApp', '1.0')
    gi.require_version('GstVideo', '1.0')
    from gi.repository import Gst, GstApp, GstVideo  # noqa: F401 (GstApp registers AppSrc/AppSink methods)
    Gst.init(None)
    return Gst, GstVideo


class Output:
    """Writes records to the protocol fd; one writer at a time."""

    def __init__(self, fd):
        self.fd = fd
        self.lock = threading.Lock()

    def write(self, kind, payload=b'', flags=0, tag=(0, 0, 0.0), width=0, height=0):
        sequence, token, present_ms = tag
        header = HEADER.pack(kind, flags, 0, len(payload), sequence, width, height, token, present_ms)
        with self.lock:
            self._write_all(header)
            if payload:
                self._write_all(payload)

    def _write_all(self, data):
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]

    def json(self, kind, obj):
        self.write(kind, json.dumps(obj).encode())


def read_exact(stream, n):
    """n bytes, or None at end of input (a record cut short counts as the end)."""
    data = stream.read(n)
    if data is None or len(data) < n:
        return None
    return data


class SocketInput:
    """Records from the shared-input socket: its bytes as a stream (read), and the fds that
    came with them (SCM_RIGHTS) in arrival order (take_fd). An fd arrives with the first byte of
    its record, so once a whole KIND_BUFFER record has been read its fd is next in line."""

    def __init__(self, fileno):
        self.sock = socket.socket(fileno=fileno)
        self.sock.setblocking(True)
        self.data = bytearray()
        self.fds = collections.deque()

    def read(self, n):
        while len(self.data) < n:
            chunk, fds, flags, _addr = socket.recv_fds(self.sock, 1 << 16, 16)
            self.fds.extend(fds)
            if flags & socket.MSG_CTRUNC:
                raise RuntimeError('fds were lost in transit (MSG_CTRUNC)')
            if not chunk:
                break
            self.data += chunk
        out = bytes(self.data[:n])
        del self.data[:n]
        return out

    def take_fd(self):
        return self.fds.popleft() if self.fds else None


def gst_launch_value(value):
    """A property value as gst-launch-1.0 takes it (enums and flags by nick)."""
    from gi.repository import GObject
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, GObject.GFlags):
        return '+'.join(value.value_nicks) or '0'
    if isinstance(value, GObject.GEnum):
        return value.value_nick
    return str(value)


def changed_properties(element):
    """`name=value` for every property set away from the element's default, sorted: what a
    gst-launch-1.0 pipeline must say to configure the same element the same way."""
    from gi.repository import GObject
    out = []
    for spec in element.list_properties():
        if spec.name in ('name', 'parent'):
            continue
        if not (spec.flags & GObject.ParamFlags.READABLE and spec.flags & GObject.ParamFlags.WRITABLE):
            continue
        value = element.get_property(spec.name)
        if value != spec.default_value:
            out.append(f'{spec.name}={gst_launch_value(value)}')
    return sorted(out)


def describe_error(msg):
    """'element: message (debug)' for a bus ERROR message."""
    err, debug = msg.parse_error()
    return f'{msg.src.get_name()}: {err.message}' + (f' ({debug})' if debug else '')


def set_if_present(element, name, value):
    """Sets a property the element has (they differ between encoders and versions)."""
    if element.find_property(name) is None:
        return False
    element.set_property(name, value)
    return True


def configure_encoder(element_name, enc, bitrate, threads):
    """Low-latency settings: no B-frames, no lookahead, keyframes only on request, CBR-ish."""
    if element_name == 'x264enc':
        # tune=zerolatency (0x4) implies sliced threads, no lookahead, no frame delay.
        enc.set_property('tune', 'zerolatency')
        enc.set_property('speed-preset', 'ultrafast')
        enc.set_property('bframes', 0)
        enc.set_property('key-int-max', 0x7fffffff)
        enc.set_property('byte-stream', True)
        enc.set_property('bitrate', bitrate)
        enc.set_property('vbv-buf-capacity', 300)
        enc.set_property('threads', threads)
        set_if_present(enc, 'rc-lookahead', 0)
        set_if_present(enc, 'sync-lookahead', 0)
        set_if_present(enc, 'b-adapt', False)
    elif element_name == 'vah264enc':
        set_if_present(enc, 'b-frames', 0)
        set_if_present(enc, 'key-int-max', 1024)
        set_if_present(enc, 'rate-control', 'cbr')
        set_if_present(enc, 'bitrate', bitrate)
        set_if_present(enc, 'target-usage', 7)
    elif element_name == 'vaapih264enc':
        set_if_present(enc, 'max-bframes', 0)
        set_if_present(enc, 'keyframe-period', 0)
        set_if_present(enc, 'rate-control', 'cbr')
        set_if_present(enc, 'bitrate', bitrate)
        set_if_present(enc, 'tune', 'low-power')
    elif element_name == 'nvh264enc':
        set_if_present(enc, 'bframes', 0)
        set_if_present(enc, 'gop-size', -1)
        set_if_present(enc, 'zerolatency', True)
        set_if_present(enc, 'rc-lookahead', 0)
        set_if_present(enc, 'rc-mode', 'cbr')
        set_if_present(enc, 'bitrate', bitrate)
    elif element_name == 'msdkh264enc':
        set_if_present(enc, 'b-frames', 0)
        set_if_present(enc, 'gop-size', 0)
        set_if_present(enc, 'async-depth', 1)
        set_if_present(enc, 'rate-control', 'cbr')
        set_if_present(enc, 'bitrate', bitrate)


def encoder_caps(element_name):
    # Constrained baseline is what every browser decodes; hardware encoders pick their profile
    # (still without B-frames), as not all of them offer constrained baseline.
    if element_name == 'x264enc':
        return 'video/x-h264,profile=constrained-baseline,stream-format=byte-stream,alignment=au'
    return 'video/x-h264,stream-format=byte-stream,alignment=au'


def raw_for_encoder(element_name):
    # x264 would otherwise take 4:4:4 from videoconvert; hardware encoders all take NV12.
    return 'video/x-raw,format=I420' if element_name == 'x264enc' else 'video/x-raw,format=NV12'


class Worker:
    """The shared plumbing of encode and decode: appsrc -> ... -> appsink, tags via PTS."""

    def __init__(self, Gst, out):
        self.Gst = Gst
        self.out = out
        self.tags = {}
        # Shared-input frames whose KIND_DONE is owed, by PTS (encode).
        self.done = {}
        self.tags_lock = threading.Lock()
        self.next_pts = PTS_BASE
        self.last_size = (0, 0)
        self.failed = threading.Event()
        self.pipeline = None
        self.src = None
        self.sink = None

    def start(self, description, configure=None):
        Gst = self.Gst
        self.pipeline = Gst.parse_launch(description)
        self.src = self.pipeline.get_by_name('src')
        self.sink = self.pipeline.get_by_name('sink')
        if configure is not None:
            configure(self.pipeline)
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            raise RuntimeError(self.bus_error() or 'the pipeline did not start')
        threading.Thread(target=self.pull_loop, daemon=True).start()

    def bus_error(self):
        msg = self.pipeline.get_bus().pop_filtered(self.Gst.MessageType.ERROR)
        return None if msg is None else describe_error(msg)

    def fail(self, message):
        if self.failed.is_set():
            return
        self.failed.set()
        try:
            self.out.json(KIND_ERROR, {'message': message})
        finally:
            os._exit(3)

    def new_buffer(self, size):
        return self.Gst.Buffer.new_allocate(None, size, None)

    def read_record(self, stdin):
        """(kind, payload, tag) of the next input record, or None at end of input."""
        header = read_exact(stdin, HEADER.size)
        if header is None:
            return None
        kind, _flags, _r, length, sequence, width, height, token, present_ms = HEADER.unpack(header)
        # Only KIND_BUFFER gives these a meaning on input (the picture's size).
        self.last_size = (width, height)
        self.check_length(kind, length)
        payload = read_exact(stdin, length) if length else b''
        if payload is None:
            return None
        return kind, payload, (sequence, token, present_ms)

    def check_length(self, kind, length):
        if length > MAX_PAYLOAD:
            self.fail(f'record of {length} bytes is too large')

    def push(self, data, tag):
        # A copy GStreamer owns. (new_wrapped would hand it the Python object's own memory,
        # which Python frees or reuses while the frame may still be queued.)
        buf = self.new_buffer(len(data))
        buf.fill(0, data)
        self.push_buffer(buf, tag)

    def push_buffer(self, buf, tag, done=False):
        """Stamps `buf` with the next PTS, remembers its tag (and, with `done`, that KIND_DONE is
        owed once it is converted), and pushes it; returns the PTS."""
        Gst = self.Gst
        pts = self.next_pts
        self.next_pts += PTS_STEP
        buf.pts = pts
        buf.dts = pts
        buf.duration = PTS_STEP
        with self.tags_lock:
            self.tags[pts] = tag
            if done:
                self.done[pts] = tag
        self.prepare(pts)
        if self.src.push_buffer(buf) != Gst.FlowReturn.OK:
            self.fail(self.bus_error() or 'appsrc refused a buffer (pipeline stopped)')
        return pts

    def prepare(self, pts):
        pass

    def take_tag(self, pts):
        """The tag of the input with this PTS; earlier untaken inputs are returned as dropped."""
        with self.tags_lock:
            tag = self.tags.pop(pts, None)
            dropped = [(p, self.tags.pop(p)) for p in sorted(self.tags) if p < pts] if self.tags else []
        return tag, dropped

    def pull_loop(self):
        Gst = self.Gst
        bus = self.pipeline.get_bus()
        while True:
            sample = self.sink.try_pull_sample(100 * Gst.MSECOND)
            if sample is not None:
                self.emit(sample)
                continue
            msg = bus.pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.EOS)
            if msg is not None and msg.type == Gst.MessageType.ERROR:
                self.fail(describe_error(msg))
            if self.sink.is_eos():
                os._exit(0)

    def emit(self, sample):
        raise NotImplementedError

    def quit(self):
        self.src.end_of_stream()


class Encoder(Worker):
    def __init__(self, Gst, GstVideo, out, args):
        super().__init__(Gst, out)
        self.GstVideo = GstVideo
        self.args = args
        self.frame_bytes = args.width * args.height * 4
        self.keyframe_next = False
        self.force_pts = set()
        # Shared input: the producer's buffers, by id: (GstMemory over its fd, offset, stride).
        self.shared = {}
        self.allocators = None
        self.gst_format = None
        # Frames are copied into pooled GstBuffers: no fresh 8 MB allocation (and its page
        # faults) per 1080p frame. (The read itself must be bytes: PyGObject copies a
        # bytearray or memoryview into a GstBuffer element by element, 50x slower.)
        self.pool = None

    def new_buffer(self, size):
        if self.pool is None:
            pool = self.Gst.BufferPool.new()
            config = pool.get_config()
            self.Gst.BufferPool.config_set_params(config, None, self.frame_bytes, 2, 0)
            pool.set_config(config)
            pool.set_active(True)
            self.pool = pool
        ret, buf = self.pool.acquire_buffer(None)
        if ret != self.Gst.FlowReturn.OK:
            self.fail(f'no buffer from the pool ({ret})')
        return buf

    def run(self, stdin):
        a = self.args
        fmt = GST_FORMATS[a.format]
        raw = (f'video/x-raw,format={fmt},width={a.width},height={a.height},framerate={a.fps}/1,'
               'pixel-aspect-ratio=1/1,colorimetry=sRGB')
        shared = a.input == 'shared'
        if shared:
            self.load_allocators()
        self.start(
            f'appsrc name=src format=time is-live=false block=true max-bytes={self.frame_bytes * 2} caps="{raw}" '
            f'! videoconvert name=convert n-threads={a.threads} ! {raw_for_encoder(a.element)} '
            f'! {a.element} name=enc ! {encoder_caps(a.element)} '
            '! appsink name=sink sync=false max-buffers=16 enable-last-sample=false',
            self.configure)
        pipeline = self.pipeline
        self.out.json(KIND_READY, {
            'element': a.element, 'hardware': a.element in HARDWARE, 'gstreamer': self.Gst.version_string(),
            'input': a.input,
            'settings': {'encoder': changed_properties(self.enc),
                         'convert': changed_properties(pipeline.get_by_name('convert'))}})
        source = SocketInput(SHARED_FD) if shared else stdin
        while True:
            record = self.read_record(source)
            if record is None:
                return
            kind, payload, tag = record
            if kind == KIND_FRAME and not shared:
                self.push(payload, tag)
            elif kind == KIND_SHARED and shared:
                buffer_id, _reserved = SHARED_INFO.unpack(payload)
                self.push_shared(buffer_id, tag)
            elif kind == KIND_PIPED and shared:
                piped = self.read_record(stdin)
                if piped is None:
                    return
                if piped[0] != KIND_FRAME:
                    self.fail(f'expected a frame on stdin after KIND_PIPED; got kind {piped[0]}')
                self.push(piped[1], tag)
            elif kind == KIND_BUFFER and shared:
                self.add_buffer(tag[0], payload, source.take_fd(), self.last_size)
            elif kind == KIND_FORGET and shared:
                self.shared.pop(tag[0], None)
            elif kind == KIND_KEYFRAME:
                self.keyframe_next = True
            elif kind == KIND_BITRATE:
                set_if_present(self.enc, 'bitrate', max(1, tag[0]))
            elif kind == KIND_QUIT:
                return
            else:
                self.fail(f'unexpected record kind {kind}')

    def load_allocators(self):
        import gi
        gi.require_version('GstAllocators', '1.0')
        from gi.repository import GstAllocators
        self.GstAllocators = GstAllocators
        self.allocators = (GstAllocators.FdAllocator.new(), GstAllocators.DmaBufAllocator.new())
        self.gst_format = self.GstVideo.VideoFormat.from_string(GST_FORMATS[self.args.format])

    def add_buffer(self, buffer_id, payload, fd, picture):
        """KIND_BUFFER: wraps the fd once as GstMemory, after checking it can hold the picture."""
        a = self.args
        if fd is None:
            self.fail(f'buffer {buffer_id} came without its fd')
        try:
            size, offset, stride, fourcc, flags = BUFFER_INFO.unpack(payload)
            width, height = picture
            # The kernel's size, not the claimed one: mapping past the end would fault.
            real = os.lseek(fd, 0, os.SEEK_END)
            problem = None
            if (width, height) != (a.width, a.height):
                problem = f'picture {width}x{height}; the encoder is {a.width}x{a.height}'
            elif fourcc != FOURCCS[a.format]:
                problem = f'fourcc {fourcc:#x}; the encoder takes {a.format}'
            elif stride < width * 4 or offset + stride * (height - 1) + width * 4 > min(size, real):
                problem = f'offset {offset} stride {stride} do not fit {width}x{height} in {min(size, real)} bytes'
            if problem is not None:
                raise ValueError(problem)
            A = self.GstAllocators
            # Kept mapped from the first frame until KIND_FORGET; the memory owns (and closes) the fd.
            keep = A.FdMemoryFlags.KEEP_MAPPED
            if flags & BUFFER_FLAG_DMABUF:
                mem = A.DmaBufAllocator.alloc_with_flags(self.allocators[1], fd, real, keep)
            else:
                mem = A.FdAllocator.alloc(self.allocators[0], fd, real, keep)
            if mem is None:
                raise ValueError('the allocator refused the fd')
        except Exception as e:
            os.close(fd)
            self.fail(f'shared buffer {buffer_id}: {e}')
            return
        self.shared[buffer_id] = (mem, offset, stride)

    def push_shared(self, buffer_id, tag):
        """KIND_SHARED: a GstBuffer over the buffer's memory, its layout in a GstVideoMeta."""
        entry = self.shared.get(buffer_id)
        if entry is None:
            self.fail(f'frame in unknown buffer {buffer_id}')
        mem, offset, stride = entry
        a = self.args
        buf = self.Gst.Buffer.new()
        buf.append_memory(mem)
        self.GstVideo.buffer_add_video_meta_full(
            buf, self.GstVideo.VideoFrameFlags.NONE, self.gst_format, a.width, a.height, 1,
            [offset, 0, 0, 0], [stride, 0, 0, 0])
        self.push_buffer(buf, tag, done=True)

    def check_length(self, kind, length):
        # A frame is checked before it is read: exactly one picture of the size given at start.
        if kind == KIND_FRAME and length != self.frame_bytes:
            self.fail(f'frame of {length} bytes; expected {self.frame_bytes}')
        if kind == KIND_BUFFER and length != BUFFER_INFO.size:
            self.fail(f'buffer record of {length} bytes; expected {BUFFER_INFO.size}')
        if kind == KIND_SHARED and length != SHARED_INFO.size:
            self.fail(f'shared frame record of {length} bytes; expected {SHARED_INFO.size}')
        super().check_length(kind, length)

    def configure(self, pipeline):
        self.enc = pipeline.get_by_name('enc')
        configure_encoder(self.args.element, self.enc, self.args.bitrate, self.args.threads)
        # A keyframe request must apply to one exact frame: the event goes just before that
        # frame's buffer, pushed from videoconvert's src pad in the streaming thread.
        pipeline.get_by_name('convert').get_static_pad('src').add_probe(
            self.Gst.PadProbeType.BUFFER, self.on_convert_output)

    def prepare(self, pts):
        if self.keyframe_next:
            self.keyframe_next = False
            with self.tags_lock:
                self.force_pts.add(pts)

    def on_convert_output(self, pad, info):
        buf = info.get_buffer()
        with self.tags_lock:
            forced = buf.pts in self.force_pts
            if forced:
                self.force_pts.discard(buf.pts)
            done = self.done.pop(buf.pts, None) if self.done else None
        if forced:
            event = self.GstVideo.video_event_new_downstream_force_key_unit(
                self.Gst.CLOCK_TIME_NONE, self.Gst.CLOCK_TIME_NONE, self.Gst.CLOCK_TIME_NONE, True, 0)
            pad.push_event(event)
        if done is not None:
            # videoconvert has written its own (I420/NV12) copy: the producer's memory is free again.
            self.out.write(KIND_DONE, b'', 0, done)
        return self.Gst.PadProbeReturn.OK

    def emit(self, sample):
        buf = sample.get_buffer()
        tag, _dropped = self.take_tag(buf.pts)
        keyframe = not buf.has_flags(self.Gst.BufferFlags.DELTA_UNIT)
        self.out.write(KIND_AU, buf.extract_dup(0, buf.get_size()), FLAG_KEYFRAME if keyframe else 0, tag or (0, 0, 0.0))


class Decoder(Worker):
    def run(self, stdin):
        # max-threads=1: libav's frame threading holds frames back (one per thread); slice
        # threading would not, but x264's zerolatency streams are small enough for one core.
        self.start(
            'appsrc name=src format=time is-live=false block=true max-bytes=8388608 '
            'caps="video/x-h264,stream-format=byte-stream,alignment=au" '
            '! avdec_h264 name=dec max-threads=1 '
            '! videoconvert ! video/x-raw,format=BGRx '
            '! appsink name=sink sync=false max-buffers=4 enable-last-sample=false',
            # Corrupt or out-of-sync input is dropped (and reported), never fatal: the viewer
            # asks for a keyframe instead.
            lambda pipeline: set_if_present(pipeline.get_by_name('dec'), 'max-errors', -1))
        self.out.json(KIND_READY, {'element': 'avdec_h264', 'gstreamer': self.Gst.version_string()})
        while True:
            record = self.read_record(stdin)
            if record is None:
                return
            kind, payload, tag = record
            if kind == KIND_AU:
                if payload:
                    self.push(payload, tag)
            elif kind == KIND_QUIT:
                return
            else:
                self.fail(f'unexpected record kind {kind}')

    def emit(self, sample):
        buf = sample.get_buffer()
        s = sample.get_caps().get_structure(0)
        width = s.get_value('width')
        height = s.get_value('height')
        tag, dropped = self.take_tag(buf.pts)
        for _pts, dropped_tag in dropped:
            self.out.write(KIND_DROP, b'', 0, dropped_tag)
        self.out.write(KIND_FRAME, buf.extract_dup(0, width * height * 4), 0, tag or (0, 0, 0.0), width, height)


def probe_element(Gst, name, timeout_s):
    """Whether `name` encodes one small frame: exists, reaches PLAYING, produces output."""
    if Gst.ElementFactory.find(name) is None:
        return False, 'not installed'
    caps = encoder_caps(name)
    try:
        pipeline = Gst.parse_launch(
            f'videotestsrc num-buffers=2 ! video/x-raw,width=320,height=240,framerate=30/1 ! videoconvert '
            f'! {raw_for_encoder(name)} ! {name} name=enc ! {caps} ! fakesink name=sink')
    except Exception as e:  # a missing plugin in the chain, or a bad caps string
        return False, f'cannot build a pipeline: {e}'
    configure_encoder(name, pipeline.get_by_name('enc'), 1000, 1)
    try:
        if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            msg = pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR)
            return False, 'did not reach PLAYING' + (f': {msg.parse_error()[0].message}' if msg else '')
        msg = pipeline.get_bus().timed_pop_filtered(int(timeout_s * Gst.SECOND), Gst.MessageType.ERROR | Gst.MessageType.EOS)
        if msg is None:
            return False, f'no output within {timeout_s} s'
        if msg.type == Gst.MessageType.ERROR:
            err, _debug = msg.parse_error()
            return False, f'failed: {err.message}'
        return True, 'encodes'
    finally:
        pipeline.set_state(Gst.State.NULL)


def probe(out_fd):
    result = {'python': sys.executable, 'gstreamer': None, 'candidates': [], 'decoder': False, 'missing': []}
    try:
        Gst, _GstVideo = load_gst()
    except Exception as e:  # no gi, no typelibs, no libgstreamer
        result['error'] = f'cannot load GStreamer through PyGObject: {e}'
        os.write(out_fd, json.dumps(result).encode())
        return
    result['gstreamer'] = Gst.version_string()
    result['missing'] = [n for n in ('appsrc', 'appsink', 'videoconvert', 'videotestsrc') if Gst.ElementFactory.find(n) is None]
    for name in ENCODERS:
        usable, reason = probe_element(Gst, name, 5) if not result['missing'] else (False, 'base plugins missing')
        result['candidates'].append({'element': name, 'usable': usable, 'hardware': name in HARDWARE, 'reason': reason})
    result['decoder'] = Gst.ElementFactory.find('avdec_h264') is not None
    os.write(out_fd, json.dumps(result).encode())


def keep_heap():
    """Keeps freed memory in the heap (glibc), so each frame's buffers land in pages already mapped.

    A copied frame is read into a new 8 MB bytes object (1080p), and decoded frames are extracted into
    new ones; freed, glibc gives the top of the heap back to the kernel (trim) and the next frame faults
    ~2,000 fresh pages in. On kernels where a minor fault is slow (~15 us measured on a VM of this
    project's kind) that was 16-20 ms of worker CPU per frame: the copy path fell to 0.3x the bare
    pipeline. A fixed mmap threshold (glibc's maximum, 32 MiB: frames come from the heap) and a trim
    threshold of 1 GiB keep them: about 85 faults per frame instead of 1,060.
    """
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)   # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: its allocator decides


def main():
    import argparse
    parser = argparse.ArgumentParser(description='surfacelink GStreamer worker')
    sub = parser.add_subparsers(dest='mode', required=True)
    sub.add_parser('probe')
    e = sub.add_parser('encode')
    e.add_argument('--width', type=int, required=True)
    e.add_argument('--height', type=int, required=True)
    e.add_argument('--format', choices=sorted(GST_FORMATS), default='XRGB8888')
    e.add_argument('--fps', type=int, default=30)
    e.add_argument('--bitrate', type=int, default=8000, help='kbit/s')
    e.add_argument('--element', choices=ENCODERS, default='x264enc')
    e.add_argument('--threads', type=int, default=0, help='0: automatic')
    e.add_argument('--input', choices=['copy', 'shared'], default='copy',
                   help='shared: records (and the buffers\' fds) come through the socket on fd 3')
    sub.add_parser('decode')
    args = parser.parse_args()

    # Keep the protocol to ourselves: anything else that writes to fd 1 lands on stderr.
    out_fd = os.dup(1)
    os.dup2(2, 1)

    if args.mode == 'probe':
        probe(out_fd)
        return
    keep_heap()
    # Bigger pipes: a 1080p frame is 8 MB, which 64 KiB pipes pass in 127 wake-ups.
    for fd in (0, out_fd):
        try:
            import fcntl
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except (ImportError, AttributeError, OSError):
            pass  # not Linux, or over /proc/sys/fs/pipe-max-size: the default works, slower
    out = Output(out_fd)
    try:
        Gst, GstVideo = load_gst()
        worker = Encoder(Gst, GstVideo, out, args) if args.mode == 'encode' else Decoder(Gst, out)
        worker.run(sys.stdin.buffer)
    except Exception as e:
        out.json(KIND_ERROR, {'message': f'{type(e).__name__}: {e}'})
        os._exit(3)
    # End of input: let what is queued drain, then leave (pull_loop exits on EOS).
    if worker.src is not None and not worker.failed.is_set():
        worker.quit()
        threading.Event().wait(10)
    os._exit(0)


if __name__ == '__main__':
    main()
