"""Run a command and print its wall seconds, CPU seconds, peak resident size and exit code, for ``run_measured``.

Run by path (``python -I -S launcher.py COMMAND...``), never imported by the measurement: it must stay a small
process of its own, with only built-in modules. It forks the command rather than the benchmark doing so, because
a child forked straight from the benchmark would inherit the benchmark's resident size as its starting peak
(Linux keeps the pre-exec high-water mark in ``ru_maxrss``). The command's stdin and stdout are the null device;
its stderr is the launcher's. Printed, one line: ``wall_seconds cpu_seconds ru_maxrss exit_code`` (``ru_maxrss``:
kibibytes on Linux, bytes on macOS; CPU: the child's user + system time).
"""

import os
import sys
import time


def main(command: list[str]) -> None:
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(os.devnull, os.O_RDWR), 0)
        os.dup2(os.open(os.devnull, os.O_RDWR), 1)
        os.execvp(command[0], command)
    _, status, usage = os.wait4(pid, 0)
    print(time.perf_counter() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss,
          os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main(sys.argv[1:])
