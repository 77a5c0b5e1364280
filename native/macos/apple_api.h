// The one header of hand-written Apple prototypes and constants that the macOS addon uses and
// that the cross-build SDK (Zig's macOS libc headers) lacks: CoreFoundation and IOSurface (no
// framework headers at all) and the bootstrap server calls (no <servers/bootstrap.h>).
//
// Each declaration was written from the Apple page named in the comment above it. The two
// frameworks are not linked: apple_api.cc dlopen()s them by absolute path at first use and
// dlsym()s every symbol below, so the addon links libSystem only and still loads (and runs
// everything else) on a system where a framework or a symbol is missing; AppleApiMissingReason()
// then says which dlopen/dlsym failed. Data symbols (the kIOSurface* keys, kCFBooleanTrue, the
// dictionary callbacks) are dlsym()ed too: dlsym returns the address of the variable.
//
// Types are declared in namespace surfacelink::apple with the ABI the SDK gives them (an opaque
// CF or IOSurface reference is a pointer to an incomplete struct; CFIndex is a signed long).
// UNVERIFIED: compiled and linked only; nothing here has run on a Mac.
#pragma once

#include <MacTypes.h>
#include <mach/mach.h>

#include <cstddef>
#include <cstdint>

namespace surfacelink {
namespace apple {

// ---------------------------------------------------------------------------------------------
// CoreFoundation types (CFBase.h, CFNumber.h, CFDictionary.h)

// https://developer.apple.com/documentation/corefoundation/cftyperef
using CFTypeRef = const void*;
// https://developer.apple.com/documentation/corefoundation/cfindex
using CFIndex = long;
// Boolean (unsigned char) and OSType (FourCharCode, a UInt32) come from <MacTypes.h>, which the
// SDK has.
using ::Boolean;
using ::OSType;
// https://developer.apple.com/documentation/corefoundation/cfallocator (CFAllocatorRef; NULL = the default allocator)
using CFAllocatorRef = const struct SlCFAllocator*;
// https://developer.apple.com/documentation/corefoundation/cfstring (CFStringRef)
using CFStringRef = const struct SlCFString*;
// https://developer.apple.com/documentation/corefoundation/cfdictionary (CFDictionaryRef)
using CFDictionaryRef = const struct SlCFDictionary*;
// https://developer.apple.com/documentation/corefoundation/cfnumber (CFNumberRef)
using CFNumberRef = const struct SlCFNumber*;
// https://developer.apple.com/documentation/corefoundation/cfboolean (CFBooleanRef)
using CFBooleanRef = const struct SlCFBoolean*;
// https://developer.apple.com/documentation/corefoundation/cfdictionarykeycallbacks
// Only ever used through a pointer to kCFTypeDictionaryKeyCallBacks: left opaque.
struct CFDictionaryKeyCallBacks;
// https://developer.apple.com/documentation/corefoundation/cfdictionaryvaluecallbacks (opaque, as above)
struct CFDictionaryValueCallBacks;

// https://developer.apple.com/documentation/corefoundation/cfnumbertype (typedef CFIndex CFNumberType)
using CFNumberType = CFIndex;
// https://developer.apple.com/documentation/corefoundation/cfnumbertype/sint32type
constexpr CFNumberType kCFNumberSInt32Type = 3;
// https://developer.apple.com/documentation/corefoundation/cfnumbertype/sint64type
constexpr CFNumberType kCFNumberSInt64Type = 4;

// ---------------------------------------------------------------------------------------------
// IOSurface types (IOSurfaceTypes.h, IOSurfaceRef.h)

// https://developer.apple.com/documentation/iosurface/iosurfaceref (an opaque CF type)
using IOSurfaceRef = struct SlIOSurface*;
// https://developer.apple.com/documentation/iosurface/iosurfaceid (uint32_t)
using IOSurfaceID = uint32_t;
// https://developer.apple.com/documentation/iosurface/iosurfacelockoptions (CF_OPTIONS(uint32_t, ...))
using IOSurfaceLockOptions = uint32_t;
// https://developer.apple.com/documentation/iosurface/iosurfacelockoptions/readonly
constexpr IOSurfaceLockOptions kIOSurfaceLockReadOnly = 0x00000001;

// ---------------------------------------------------------------------------------------------
// The framework entry points, filled by dlsym. Member names are the C symbol names.

struct Api {
  // --- CoreFoundation.framework ---

  // https://developer.apple.com/documentation/corefoundation/cfdictionarycreate(_:_:_:_:_:_:)
  CFDictionaryRef (*CFDictionaryCreate)(CFAllocatorRef allocator, const void** keys, const void** values,
                                        CFIndex numValues, const CFDictionaryKeyCallBacks* keyCallBacks,
                                        const CFDictionaryValueCallBacks* valueCallBacks);
  // https://developer.apple.com/documentation/corefoundation/cfnumbercreate(_:_:_:)
  CFNumberRef (*CFNumberCreate)(CFAllocatorRef allocator, CFNumberType theType, const void* valuePtr);
  // https://developer.apple.com/documentation/corefoundation/cfretain
  CFTypeRef (*CFRetain)(CFTypeRef cf);
  // https://developer.apple.com/documentation/corefoundation/cfrelease (cf must not be NULL)
  void (*CFRelease)(CFTypeRef cf);
  // https://developer.apple.com/documentation/corefoundation/kcfbooleantrue
  // (a const CFBooleanRef variable; this is its address)
  const CFBooleanRef* kCFBooleanTrue;
  // https://developer.apple.com/documentation/corefoundation/kcftypedictionarykeycallbacks (the variable's address)
  const CFDictionaryKeyCallBacks* kCFTypeDictionaryKeyCallBacks;
  // https://developer.apple.com/documentation/corefoundation/kcftypedictionaryvaluecallbacks (the variable's address)
  const CFDictionaryValueCallBacks* kCFTypeDictionaryValueCallBacks;

  // --- IOSurface.framework: functions ---

  // https://developer.apple.com/documentation/iosurface/iosurfacecreate(_:) (returns +1, or NULL)
  IOSurfaceRef (*IOSurfaceCreate)(CFDictionaryRef properties);
  // https://developer.apple.com/documentation/iosurface/iosurfacelookup(_:) (lookup and retain: +1, or NULL)
  IOSurfaceRef (*IOSurfaceLookup)(IOSurfaceID csid);
  // https://developer.apple.com/documentation/iosurface/iosurfacegetid(_:)
  IOSurfaceID (*IOSurfaceGetID)(IOSurfaceRef buffer);
  // https://developer.apple.com/documentation/iosurface/iosurfacelock(_:_:_:) (seed may be NULL)
  kern_return_t (*IOSurfaceLock)(IOSurfaceRef buffer, IOSurfaceLockOptions options, uint32_t* seed);
  // https://developer.apple.com/documentation/iosurface/iosurfaceunlock(_:_:_:) (same options as the lock)
  kern_return_t (*IOSurfaceUnlock)(IOSurfaceRef buffer, IOSurfaceLockOptions options, uint32_t* seed);
  // https://developer.apple.com/documentation/iosurface/iosurfacegetbaseaddress(_:)
  void* (*IOSurfaceGetBaseAddress)(IOSurfaceRef buffer);
  // https://developer.apple.com/documentation/iosurface/iosurfacegetwidth(_:)
  size_t (*IOSurfaceGetWidth)(IOSurfaceRef buffer);
  // https://developer.apple.com/documentation/iosurface/iosurfacegetheight(_:)
  size_t (*IOSurfaceGetHeight)(IOSurfaceRef buffer);
  // https://developer.apple.com/documentation/iosurface/iosurfacegetbytesperrow(_:)
  size_t (*IOSurfaceGetBytesPerRow)(IOSurfaceRef buffer);
  // https://developer.apple.com/documentation/iosurface/iosurfacegetbytesperelement(_:)
  size_t (*IOSurfaceGetBytesPerElement)(IOSurfaceRef buffer);
  // https://developer.apple.com/documentation/iosurface/iosurfacegetpixelformat(_:)
  OSType (*IOSurfaceGetPixelFormat)(IOSurfaceRef buffer);
  // https://developer.apple.com/documentation/iosurface/iosurfacegetallocsize(_:)
  size_t (*IOSurfaceGetAllocSize)(IOSurfaceRef buffer);
  // https://developer.apple.com/documentation/iosurface/iosurfacegetplanecount(_:) (0 for a non-planar surface)
  size_t (*IOSurfaceGetPlaneCount)(IOSurfaceRef buffer);
  // https://developer.apple.com/documentation/iosurface/iosurfaceincrementusecount(_:) (per process)
  void (*IOSurfaceIncrementUseCount)(IOSurfaceRef buffer);
  // https://developer.apple.com/documentation/iosurface/iosurfacedecrementusecount(_:) (per process)
  void (*IOSurfaceDecrementUseCount)(IOSurfaceRef buffer);
  // https://developer.apple.com/documentation/iosurface/iosurfacegetusecount(_:) (this process's count)
  int32_t (*IOSurfaceGetUseCount)(IOSurfaceRef buffer);
  // https://developer.apple.com/documentation/iosurface/iosurfaceisinuse(_:) (any process in the system)
  Boolean (*IOSurfaceIsInUse)(IOSurfaceRef buffer);
  // https://developer.apple.com/documentation/iosurface/iosurfacecreatemachport(_:)
  // A new send right to the caller; deallocate it with mach_port_deallocate.
  mach_port_t (*IOSurfaceCreateMachPort)(IOSurfaceRef buffer);
  // https://developer.apple.com/documentation/iosurface/iosurfacelookupfrommachport(_:)
  // +1, or NULL; the port is not consumed (the caller still owns its send right).
  IOSurfaceRef (*IOSurfaceLookupFromMachPort)(mach_port_t port);

  // --- IOSurface.framework: property keys (CFStringRef variables; their addresses) ---

  // https://developer.apple.com/documentation/iosurface/kiosurfacewidth (CFNumber)
  const CFStringRef* kIOSurfaceWidth;
  // https://developer.apple.com/documentation/iosurface/kiosurfaceheight (CFNumber)
  const CFStringRef* kIOSurfaceHeight;
  // https://developer.apple.com/documentation/iosurface/kiosurfacebytesperelement (CFNumber)
  const CFStringRef* kIOSurfaceBytesPerElement;
  // https://developer.apple.com/documentation/iosurface/kiosurfacebytesperrow (CFNumber)
  const CFStringRef* kIOSurfaceBytesPerRow;
  // https://developer.apple.com/documentation/iosurface/kiosurfacepixelformat (CFNumber, an OSType)
  const CFStringRef* kIOSurfacePixelFormat;
  // https://developer.apple.com/documentation/iosurface/kiosurfaceisglobal (CFBoolean)
  // Deprecated in macOS 10.11 (still exported and honoured): any task may IOSurfaceLookup the
  // surface by its 32-bit ID. Only for the UTM-compatible global mode (iosurface.cc says why).
  const CFStringRef* kIOSurfaceIsGlobal;
};

// The loaded entry points, or null when a framework or a symbol is missing. Loads on first
// use (thread-safe); the frameworks are never unloaded.
const Api* GetApi();

}  // namespace apple

// Why GetApi() is null ("dlopen(/System/Library/Frameworks/…) failed: …" or "dlsym(…) failed
// in …"), or null when everything loaded. Loads on first use.
const char* AppleApiMissingReason();

}  // namespace surfacelink

// ---------------------------------------------------------------------------------------------
// Bootstrap server (launchd's client side, in libxpc; exported by libSystem, which the addon links).
// No developer.apple.com page documents these. Written from the launch(3) man page that macOS
// ships (`man 3 launch`: bootstrap_check_in; a copy: https://www.manpagez.com/man/3/launch/) and
// from Apple's last open-source launchd, launchd-842.92.1, liblaunch/bootstrap.h
//   (https://opensource.apple.com/source/launchd/launchd-842.92.1/liblaunch/bootstrap.h.auto.html,
//    tarball: https://opensource.apple.com/tarballs/launchd/),
// where `name_t` is `char[128]` (a `const char*` parameter here; names are at most 127 bytes).
// `bootstrap_port` itself is declared by <mach/mach_init.h> (through <mach/mach.h>).
// launch(3): when a job destroys a checked-in receive right, it "will be sent back to launchd
// rather than being closed", and launchd keeps advertising the name (until the process exits, for
// a name this process checked in on its own: UNVERIFIED for such dynamic names).
extern "C" {
// bootstrap.h: the receive right of the service `service_name` in *sp; for a name no launchd.plist
// declares, launchd creates it for this process (a "dynamic" check-in, as Chromium's
// MachPortRendezvousServer does).
kern_return_t bootstrap_check_in(mach_port_t bp, const char* service_name, mach_port_t* sp);
// bootstrap.h: a send right to the service registered as `service_name`, in *sp.
kern_return_t bootstrap_look_up(mach_port_t bp, const char* service_name, mach_port_t* sp);
}

namespace surfacelink {
namespace apple {
// bootstrap.h's error codes (BOOTSTRAP_*), same source as above.
constexpr kern_return_t kBootstrapNotPrivileged = 1100;   // BOOTSTRAP_NOT_PRIVILEGED
constexpr kern_return_t kBootstrapNameInUse = 1101;       // BOOTSTRAP_NAME_IN_USE
constexpr kern_return_t kBootstrapUnknownService = 1102;  // BOOTSTRAP_UNKNOWN_SERVICE
constexpr kern_return_t kBootstrapServiceActive = 1103;   // BOOTSTRAP_SERVICE_ACTIVE
constexpr kern_return_t kBootstrapBadCount = 1104;        // BOOTSTRAP_BAD_COUNT
constexpr kern_return_t kBootstrapNoMemory = 1105;        // BOOTSTRAP_NO_MEMORY
constexpr kern_return_t kBootstrapNoChildren = 1106;      // BOOTSTRAP_NO_CHILDREN
// bootstrap.h: BOOTSTRAP_MAX_NAME_LEN (the size of name_t, NUL included).
constexpr size_t kBootstrapMaxNameLen = 128;
}  // namespace apple
}  // namespace surfacelink
