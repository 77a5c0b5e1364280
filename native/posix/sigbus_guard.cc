// The SIGBUS guard (sigbus_guard.h): a signal-safe registry of guarded mappings and the one
// SA_SIGINFO handler that consults it.
#include "sigbus_guard.h"

#include <sched.h>
#include <signal.h>
#include <sys/mman.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <mutex>

#ifndef MAP_ANONYMOUS
#define MAP_ANONYMOUS MAP_ANON
#endif

namespace surfacelink {

namespace {

static_assert(std::atomic<uintptr_t>::is_always_lock_free, "the handler needs lock-free atomics");
static_assert(std::atomic<size_t>::is_always_lock_free, "the handler needs lock-free atomics");
static_assert(std::atomic<uint32_t>::is_always_lock_free, "the handler needs lock-free atomics");
static_assert(std::atomic<bool>::is_always_lock_free, "the handler needs lock-free atomics");
static_assert(std::atomic<int>::is_always_lock_free, "the handler needs lock-free atomics");

// A slot's life: kFree -> kClaimed (GuardMapping fills it in) -> kActive (the handler may use it)
// -> kRetiring (UnguardMapping waits for handlers still inside) -> kFree.
enum : uint32_t { kFree = 0, kClaimed = 1, kActive = 2, kRetiring = 3 };

struct Slot {
  std::atomic<uint32_t> state{kFree};
  // Handlers currently looking at this slot (on any thread).
  std::atomic<uint32_t> users{0};
  std::atomic<uintptr_t> base{0};
  std::atomic<size_t> length{0};
  std::atomic<bool> truncated{false};
};

Slot g_slots[kSigbusGuardSlots];
// Slots [0, g_high) may be in use: the handler and FindGuardedMapping scan no further.
std::atomic<int> g_high{0};
// The SIGBUS action before ours; written once, before our handler is installed.
struct sigaction g_previous;
std::atomic<bool> g_installed{false};
std::mutex g_install_mutex;

bool IsDefault(const struct sigaction& action) {
  return (action.sa_flags & SA_SIGINFO) == 0 ? action.sa_handler == SIG_DFL
                                             : reinterpret_cast<void*>(action.sa_sigaction) == nullptr;
}

bool IsIgnore(const struct sigaction& action) {
  return (action.sa_flags & SA_SIGINFO) == 0 && action.sa_handler == SIG_IGN;
}

// Not ours: give the signal to whoever had it before (V8's trap handler on macOS chains on in
// turn), or let it do what it did before we were installed.
void Chain(int sig, siginfo_t* info, void* context) {
  const struct sigaction& prev = g_previous;
  bool sent = info == nullptr || info->si_code <= 0;  // kill()/raise(), not a fault
  if (IsIgnore(prev)) {
    if (sent) return;  // ignored before: still ignored
    // A fault cannot be ignored: with the old action back, it happens again and the kernel kills.
    ::sigaction(sig, &prev, nullptr);
    return;
  }
  if (IsDefault(prev)) {
    ::sigaction(sig, &prev, nullptr);
    // A fault happens again when we return, now with the default action (the process dies as it
    // always would have); a sent signal is sent again (it is blocked until we return).
    if (sent) ::raise(sig);
    return;
  }
  if ((prev.sa_flags & SA_SIGINFO) != 0)
    prev.sa_sigaction(sig, info, context);
  else
    prev.sa_handler(sig);
}

void Handler(int sig, siginfo_t* info, void* context) {
  int saved_errno = errno;
  if (info != nullptr && info->si_code > 0) {
    uintptr_t address = reinterpret_cast<uintptr_t>(info->si_addr);
    int high = g_high.load();
    for (int i = 0; i < high; i++) {
      Slot& s = g_slots[i];
      if (s.state.load() != kActive) continue;
      // Announce ourselves before checking again: UnguardMapping marks the slot retiring, then
      // waits for users to drop to zero, so a slot seen active here stays mapped until we leave.
      s.users.fetch_add(1);
      bool handled = false;
      if (s.state.load() == kActive) {
        uintptr_t base = s.base.load();
        size_t length = s.length.load();
        if (address >= base && address - base < length) {
          void* zeros = ::mmap(reinterpret_cast<void*>(base), length, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
          if (zeros != MAP_FAILED) {
            s.truncated.store(true);
            handled = true;
          }
        }
      }
      s.users.fetch_sub(1);
      if (handled) {
        errno = saved_errno;
        return;  // the faulting access restarts and now reads (or writes) zero pages
      }
    }
  }
  errno = saved_errno;
  Chain(sig, info, context);
}

bool InstallOnce() {
  if (g_installed.load(std::memory_order_acquire)) return true;
  std::lock_guard<std::mutex> lock(g_install_mutex);
  if (g_installed.load()) return true;
  // Read the previous action first, so the handler never sees it half written.
  if (::sigaction(SIGBUS, nullptr, &g_previous) != 0) return false;
  struct sigaction action {};
  action.sa_sigaction = Handler;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  if (::sigaction(SIGBUS, &action, nullptr) != 0) return false;
  g_installed.store(true, std::memory_order_release);
  return true;
}

}  // namespace

int GuardMapping(void* base, size_t length) {
  if (!InstallOnce()) return kGuardNoHandler;
  for (int i = 0; i < kSigbusGuardSlots; i++) {
    Slot& s = g_slots[i];
    uint32_t expected = kFree;
    if (!s.state.compare_exchange_strong(expected, kClaimed)) continue;
    s.base.store(reinterpret_cast<uintptr_t>(base));
    s.length.store(length);
    s.truncated.store(false);
    int high = g_high.load();
    while (high < i + 1 && !g_high.compare_exchange_weak(high, i + 1)) {
    }
    s.state.store(kActive);
    return i;
  }
  return kGuardFull;
}

void UnguardMapping(int slot) {
  if (slot < 0 || slot >= kSigbusGuardSlots) return;
  Slot& s = g_slots[slot];
  s.state.store(kRetiring);
  // A handler on another thread may be replacing this range right now: let it finish, or its
  // MAP_FIXED could land on whatever is mapped at these addresses after our munmap.
  while (s.users.load() != 0) sched_yield();
  s.base.store(0);
  s.length.store(0);
  s.state.store(kFree);
}

int FindGuardedMapping(const void* address) {
  uintptr_t a = reinterpret_cast<uintptr_t>(address);
  int high = g_high.load();
  for (int i = 0; i < high; i++) {
    Slot& s = g_slots[i];
    if (s.state.load() != kActive) continue;
    uintptr_t base = s.base.load();
    if (a >= base && a - base < s.length.load()) return i;
  }
  return -1;
}

bool GuardedMappingTruncated(int slot) {
  return slot >= 0 && slot < kSigbusGuardSlots && g_slots[slot].truncated.load();
}

}  // namespace surfacelink
