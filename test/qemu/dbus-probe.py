#!/usr/bin/python3
"""A reference D-Bus display listener for QEMU's `-display dbus,p2p=yes`, for tests.

    /usr/bin/python3 test/qemu/dbus-probe.py QMP_SOCKET [--map]

Uses GLib's GDBus (python3-gi), the same D-Bus implementation QEMU uses, so that the test guest
and the test helpers can be checked against real QEMU without surfacelink's own D-Bus code.

It connects to QMP, hands QEMU one end of a socketpair (getfd + add_client @dbus-display), then
closes QMP again (QEMU's QMP socket takes one client at a time). On that p2p connection it calls
Console_0.RegisterListener with a second socketpair and serves org.qemu.Display1.Listener on it.
With --map it also declares org.qemu.Display1.Listener.Unix.Map (QEMU >= 9.2 then sends
ScanoutMap/UpdateMap with a memfd when the console surface has one).

stdout: one JSON object per line: {"ev": "ready"}, {"ev": "Scanout", "w", "h", "stride", "format"},
{"ev": "Update", "x", "y", "w", "h"}, {"ev": "ScanoutMap", ...}, {"ev": "UpdateMap", ...},
{"ev": "CursorDefine", "w", "h", "hotX", "hotY", "data": base64 of the ARGB32 bytes},
{"ev": "MouseSet", "x", "y", "on"}, {"ev": "Disable"}, {"ev": "dumped", "path", "w", "h"},
{"ev": "error", "message"}.
stdin: "dump PATH" writes the listener's current picture (B,G,R,X rows, w*4 bytes each) to PATH;
EOF or "quit" ends the probe.
"""
import array
import base64
import json
import mmap
import os
import socket
import sys

import gi

gi.require_version("Gio", "2.0")
from gi.repository import Gio, GLib  # noqa: E402

LISTENER_XML = """
<node>
  <interface name="org.qemu.Display1.Listener">
    <method name="Scanout">
      <arg type="u" direction="in"/><arg type="u" direction="in"/><arg type="u" direction="in"/>
      <arg type="u" direction="in"/><arg type="ay" direction="in"/>
    </method>
    <method name="Update">
      <arg type="i" direction="in"/><arg type="i" direction="in"/><arg type="i" direction="in"/>
      <arg type="i" direction="in"/><arg type="u" direction="in"/><arg type="u" direction="in"/>
      <arg type="ay" direction="in"/>
    </method>
    <method name="Disable"/>
    <method name="MouseSet">
      <arg type="i" direction="in"/><arg type="i" direction="in"/><arg type="i" direction="in"/>
    </method>
    <method name="CursorDefine">
      <arg type="i" direction="in"/><arg type="i" direction="in"/><arg type="i" direction="in"/>
      <arg type="i" direction="in"/><arg type="ay" direction="in"/>
    </method>
    <property name="Interfaces" type="as" access="read"/>
  </interface>
  <interface name="org.qemu.Display1.Listener.Unix.Map">
    <method name="ScanoutMap">
      <arg type="h" direction="in"/><arg type="u" direction="in"/><arg type="u" direction="in"/>
      <arg type="u" direction="in"/><arg type="u" direction="in"/><arg type="u" direction="in"/>
    </method>
    <method name="UpdateMap">
      <arg type="i" direction="in"/><arg type="i" direction="in"/><arg type="i" direction="in"/>
      <arg type="i" direction="in"/>
    </method>
  </interface>
</node>
"""
PATH = "/org/qemu/Display1/Listener"


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Qmp:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""
        self.read()  # greeting
        self.execute("qmp_capabilities")

    def read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("QMP closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, cmd, args=None, fds=None):
        msg = json.dumps({"execute": cmd, "arguments": args or {}}).encode() + b"\n"
        if fds:
            self.sock.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        else:
            self.sock.sendall(msg)
        while True:
            r = self.read()
            if "error" in r:
                raise RuntimeError(f"QMP {cmd}: {r['error']}")
            if "return" in r:
                return r["return"]


def stream_for(fd):
    return Gio.Socket.new_from_fd(fd).connection_factory_create_connection()


class Probe:
    def __init__(self, qmp_path, use_map):
        self.use_map = use_map
        self.fb = bytearray()
        self.w = self.h = self.stride = 0
        self.map = None  # (mmap, offset) for ScanoutMap
        self.loop = GLib.MainLoop()
        self.node = Gio.DBusNodeInfo.new_for_xml(LISTENER_XML)

        # The p2p "bus": QEMU is the D-Bus server, we authenticate as client and send no Hello.
        ctl_ours, ctl_qemu = socket.socketpair()
        qmp = Qmp(qmp_path)
        qmp.execute("getfd", {"fdname": "dbusprobe"}, fds=[ctl_qemu.fileno()])
        qmp.execute("add_client", {"protocol": "@dbus-display", "fdname": "dbusprobe"})
        qmp.sock.close()
        ctl_qemu.close()
        self.ctl = Gio.DBusConnection.new_sync(
            stream_for(ctl_ours.detach()), None, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT, None, None
        )

        # The listener connection: QEMU authenticates as server once it has our fd.
        lis_ours, lis_qemu = socket.socketpair()
        self.lis_ours = lis_ours.detach()
        flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.DELAY_MESSAGE_PROCESSING
        Gio.DBusConnection.new(stream_for(self.lis_ours), None, flags, None, None, self.on_listener_conn)
        fds = Gio.UnixFDList.new()
        fds.append(lis_qemu.fileno())
        lis_qemu.close()
        self.ctl.call_with_unix_fd_list(
            None, "/org/qemu/Display1/Console_0", "org.qemu.Display1.Console", "RegisterListener",
            GLib.Variant("(h)", (0,)), None, Gio.DBusCallFlags.NONE, -1, fds, None, self.on_registered,
        )
        GLib.io_add_watch(sys.stdin.fileno(), GLib.IO_IN | GLib.IO_HUP, self.on_stdin)

    def on_listener_conn(self, _src, res):
        try:
            self.lis = Gio.DBusConnection.new_finish(res)
            for iface in self.node.interfaces:
                self.lis.register_object(PATH, iface, self.on_call, self.on_get_property, None)
            self.lis.start_message_processing()
            self.lis.connect("closed", lambda *_: self.quit("listener connection closed"))
        except GLib.Error as e:
            self.quit(f"listener connection: {e.message}")

    def on_registered(self, conn, res):
        try:
            conn.call_with_unix_fd_list_finish(res)
            emit({"ev": "ready"})
        except GLib.Error as e:
            self.quit(f"RegisterListener: {e.message}")

    def on_get_property(self, _conn, _sender, _path, _iface, name):
        if name == "Interfaces":
            return GLib.Variant("as", ["org.qemu.Display1.Listener.Unix.Map"] if self.use_map else [])
        return None

    def on_call(self, _conn, _sender, _path, _iface, method, params, invocation):
        try:
            self.handle(method, params, invocation)
        except Exception as e:  # report, never leave QEMU waiting for a reply
            emit({"ev": "error", "message": f"{method}: {e!r}"})
        invocation.return_value(None)

    def handle(self, method, p, invocation):
        if method == "Scanout":
            w, h, stride, fmt = (p.get_child_value(i).unpack() for i in range(4))
            data = p.get_child_value(4).get_data_as_bytes().get_data()
            self.map = None
            self.resize(w, h)
            for y in range(h):
                self.fb[y * w * 4 : (y + 1) * w * 4] = data[y * stride : y * stride + w * 4]
            emit({"ev": "Scanout", "w": w, "h": h, "stride": stride, "format": fmt})
        elif method == "Update":
            x, y, w, h, stride, fmt = (p.get_child_value(i).unpack() for i in range(6))
            data = p.get_child_value(6).get_data_as_bytes().get_data()
            for row in range(h):
                if y + row >= self.h:
                    break
                n = min(w, self.w - x) * 4
                o = ((y + row) * self.w + x) * 4
                self.fb[o : o + n] = data[row * stride : row * stride + n]
            emit({"ev": "Update", "x": x, "y": y, "w": w, "h": h, "format": fmt})
        elif method == "ScanoutMap":
            _h, offset, w, h, stride, fmt = (p.get_child_value(i).unpack() for i in range(6))
            fd = invocation.get_message().get_unix_fd_list().get(0)
            size = offset + stride * h
            self.map = (mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ), offset, stride)
            os.close(fd)
            self.resize(w, h)
            self.copy_map(0, 0, w, h)
            emit({"ev": "ScanoutMap", "w": w, "h": h, "stride": stride, "offset": offset, "format": fmt})
        elif method == "UpdateMap":
            x, y, w, h = (p.get_child_value(i).unpack() for i in range(4))
            self.copy_map(x, y, w, h)
            emit({"ev": "UpdateMap", "x": x, "y": y, "w": w, "h": h})
        elif method == "CursorDefine":
            w, h, hx, hy = (p.get_child_value(i).unpack() for i in range(4))
            data = p.get_child_value(4).get_data_as_bytes().get_data()
            emit({"ev": "CursorDefine", "w": w, "h": h, "hotX": hx, "hotY": hy,
                  "data": base64.b64encode(data).decode()})
        elif method == "MouseSet":
            x, y, on = (p.get_child_value(i).unpack() for i in range(3))
            emit({"ev": "MouseSet", "x": x, "y": y, "on": on})
        elif method == "Disable":
            emit({"ev": "Disable"})
        else:
            emit({"ev": "error", "message": f"unexpected call {method}"})

    def resize(self, w, h):
        if (w, h) != (self.w, self.h):
            self.w, self.h = w, h
            self.fb = bytearray(w * h * 4)

    def copy_map(self, x, y, w, h):
        m, offset, stride = self.map
        for row in range(y, min(y + h, self.h)):
            n = min(w, self.w - x) * 4
            src = offset + row * stride + x * 4
            self.fb[(row * self.w + x) * 4 : (row * self.w + x) * 4 + n] = m[src : src + n]

    def on_stdin(self, fd, _cond):
        line = os.read(fd, 4096).decode()
        if not line:
            self.quit(None)
            return False
        for cmd in line.splitlines():
            if cmd.startswith("dump "):
                path = cmd[5:].strip()
                with open(path, "wb") as f:
                    f.write(self.fb)
                emit({"ev": "dumped", "path": path, "w": self.w, "h": self.h})
            elif cmd.strip() == "quit":
                self.quit(None)
                return False
        return True

    def quit(self, error):
        if error:
            emit({"ev": "error", "message": error})
        self.loop.quit()


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: dbus-probe.py QMP_SOCKET [--map]")
    try:
        probe = Probe(sys.argv[1], "--map" in sys.argv[2:])
    except Exception as e:
        emit({"ev": "error", "message": f"setup: {e}"})
        sys.exit(1)
    probe.loop.run()


if __name__ == "__main__":
    main()
