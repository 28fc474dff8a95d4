/*
 * The native floor for time to ready: a C daemon that detaches the way
 * daemon(7) says (fork, setsid, fork), binds its HTTP port, and tells the
 * waiting launcher through a readiness pipe, like bun-daemon's `start`.
 *
 *   cdaemon PORT PIDFILE   prints "started cdaemon (pid N)" once listening
 *
 * Compiled by scripts/bench.ts at bench time when a C compiler is present.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int listen_on(int port) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 128) < 0) return -1;
  return s;
}

static void serve(int s) {
  char req[4096], res[256];
  for (;;) {
    int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) continue;
    /* One read is enough for the benchmark's GET; answer and close. */
    if (read(c, req, sizeof req) > 0) {
      char body[64];
      int bl = snprintf(body, sizeof body, "hello from %d\n", (int)getpid());
      int n = snprintf(res, sizeof res, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", bl, body);
      if (write(c, res, (size_t)n) < 0) { /* the client went away */ }
    }
    close(c);
  }
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: cdaemon PORT PIDFILE\n");
    return 2;
  }
  int port = atoi(argv[1]);
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return 1;
  pid_t first = fork();
  if (first < 0) return 1;
  if (first > 0) {
    /* Launcher: reap the intermediate child, then wait for the daemon's pid. */
    close(p[1]);
    waitpid(first, NULL, 0);
    int32_t pid = 0;
    ssize_t n;
    do n = read(p[0], &pid, sizeof pid); while (n < 0);
    if (n != sizeof pid) {
      fprintf(stderr, "cdaemon: failed to start\n");
      return 1;
    }
    printf("started cdaemon (pid %d)\n", pid);
    return 0;
  }
  close(p[0]);
  setsid();
  pid_t second = fork();
  if (second != 0) _exit(second < 0);
  umask(022);
  if (chdir("/") < 0) _exit(1);
  signal(SIGPIPE, SIG_IGN);
  /* Failing here closes the pipe without a pid: the launcher reports it. */
  int s = listen_on(port);
  if (s < 0) _exit(1);
  int pf = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (pf < 0) _exit(1);
  dprintf(pf, "%d\n", (int)getpid());
  close(pf);
  int dn = open("/dev/null", O_RDWR);
  dup2(dn, 0);
  dup2(dn, 1);
  dup2(dn, 2);
  if (dn > 2) close(dn);
  int32_t me = getpid();
  if (write(p[1], &me, sizeof me) != sizeof me) _exit(1);
  close(p[1]);
  serve(s);
  return 0;
}
