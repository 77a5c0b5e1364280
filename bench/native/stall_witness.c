/* The C counterpart of bench/stall-witness.ts's Node witnesses: a single-threaded loop that sleeps
 * 5 ms, then reads its main thread's run-queue wait (/proc/self/schedstat, opened and read each
 * time as the Node witnesses do) and its CPU time (getrusage), and counts the intervals more than
 * 12 ms later than those explain. Prints one JSON object:
 * {"ticks":N,"stalls":N,"max_unexplained_ms":X}.
 * With "each", it also prints every such interval as it ends, on a line of its own:
 * "stall <start ms> <end ms> <unexplained ms>", CLOCK_MONOTONIC (the clock of Node's
 * process.hrtime): test/integration/chaos.test.ts runs one on the producer's CPU to tell the
 * machine's stalls from the producer's.
 * Usage: stall_witness seconds [each] */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The main thread's time spent runnable but not running, ms. */
static double run_queue_wait_ms(void) {
  char buf[128];
  int fd = open("/proc/self/schedstat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  buf[n > 0 ? n : 0] = 0;
  unsigned long long run = 0, wait = 0;
  if (sscanf(buf, "%llu %llu", &run, &wait) != 2) return 0;
  return wait / 1e6;
}

static double cpu_ms(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

int main(int argc, char **argv) {
  const double period = 5, late = 12;
  double seconds = argc > 1 ? atof(argv[1]) : 60;
  int each = argc > 2 && strcmp(argv[2], "each") == 0;
  if (!(seconds > 0) || (argc > 2 && !each)) {
    fprintf(stderr, "usage: stall_witness seconds [each]\n");
    return 2;
  }
  double start = now_ms(), last = start, last_wait = run_queue_wait_ms(), last_cpu = cpu_ms(), max = 0;
  long ticks = 0, stalls = 0;
  const struct timespec sleep_for = {0, (long)(period * 1e6)};
  while (last - start < seconds * 1e3) {
    nanosleep(&sleep_for, NULL);
    double t = now_ms(), wait = run_queue_wait_ms(), cpu = cpu_ms();
    double unexplained = (t - last) - period - (wait - last_wait) - (cpu - last_cpu);
    ticks++;
    if (unexplained > late) {
      stalls++;
      if (unexplained > max) max = unexplained;
      if (each) {
        printf("stall %.3f %.3f %.3f\n", last, t, unexplained);
        fflush(stdout);
      }
    }
    last = t;
    last_wait = wait;
    last_cpu = cpu;
  }
  printf("{\"ticks\":%ld,\"stalls\":%ld,\"max_unexplained_ms\":%.1f}\n", ticks, stalls, max);
  return 0;
}
