/*
 * Shape "cn" of harness.ts: today's double fork written in C, so the forked
 * children never return into JavaScript. It separates "fork of a
 * multithreaded Bun process" from "the child runs JS (FFI return, JIT code,
 * VM traps) after fork". Compiled by harness.ts with the system cc into a
 * temporary .so; a measuring tool only, not part of the library.
 */
#define _GNU_SOURCE
#include <sys/syscall.h>
#include <unistd.h>

int fh_double_fork(int w, const char *path, char *const argv[], char *const envp[]) {
  pid_t p1 = fork();
  if (p1 != 0) return p1;
  setsid();
  pid_t p2 = fork();
  if (p2 != 0) {
    int frame = p2;
    (void)!write(w, &frame, 4);
    _exit(p2 > 0 ? 0 : 1);
  }
  dup2(w, 3);
  syscall(SYS_close_range, 4U, ~0U, 0);
  execve(path, argv, envp);
  _exit(127);
}
