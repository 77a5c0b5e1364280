/* The floor for a frame handoff: one message carrying one fd (SCM_RIGHTS) goes to another
 * process over a socketpair, which closes the fd and answers with a small message.
 * Prints one JSON object: {"iterations":N,"p50_ns":...,"p99_ns":...,"mean_ns":...}.
 * Usage: fd_roundtrip [iterations] */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void* a, const void* b) {
  uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
  return x < y ? -1 : x > y;
}

static int send_fd(int sock, int fd) {
  char payload[32] = {0};
  struct iovec iov = {payload, sizeof payload};
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
  struct msghdr msg = {0};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof fd);
  return sendmsg(sock, &msg, MSG_NOSIGNAL) == (ssize_t)sizeof payload ? 0 : -1;
}

static int recv_fd(int sock) {
  char payload[32];
  struct iovec iov = {payload, sizeof payload};
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
  struct msghdr msg = {0};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
  if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) <= 0) return -1;
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (c == NULL || c->cmsg_type != SCM_RIGHTS) return -1;
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return fd;
}

int main(int argc, char** argv) {
  int iterations = argc > 1 ? atoi(argv[1]) : 20000;
  int warmup = iterations / 10;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) { perror("socketpair"); return 1; }
  int memfd = memfd_create("fd_roundtrip", MFD_CLOEXEC);
  if (memfd < 0 || ftruncate(memfd, 4096) != 0) { perror("memfd"); return 1; }
  pid_t child = fork();
  if (child == 0) {
    close(sv[0]);
    char reply[16] = {0};
    for (;;) {
      int fd = recv_fd(sv[1]);
      if (fd < 0) _exit(0);
      close(fd);
      if (send(sv[1], reply, sizeof reply, MSG_NOSIGNAL) != (ssize_t)sizeof reply) _exit(1);
    }
  }
  close(sv[1]);
  uint64_t* samples = calloc((size_t)iterations, sizeof *samples);
  char reply[16];
  for (int i = -warmup; i < iterations; i++) {
    uint64_t t0 = now_ns();
    if (send_fd(sv[0], memfd) != 0) { perror("sendmsg"); return 1; }
    if (recv(sv[0], reply, sizeof reply, MSG_WAITALL) != (ssize_t)sizeof reply) { perror("recv"); return 1; }
    if (i >= 0) samples[i] = now_ns() - t0;
  }
  close(sv[0]);
  waitpid(child, NULL, 0);
  double sum = 0;
  for (int i = 0; i < iterations; i++) sum += (double)samples[i];
  qsort(samples, (size_t)iterations, sizeof *samples, cmp_u64);
  printf("{\"iterations\":%d,\"p50_ns\":%llu,\"p99_ns\":%llu,\"mean_ns\":%.0f}\n", iterations,
         (unsigned long long)samples[iterations / 2], (unsigned long long)samples[(iterations * 99) / 100],
         sum / iterations);
  free(samples);
  return 0;
}
