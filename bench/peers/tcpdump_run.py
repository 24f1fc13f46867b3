"""tcpdump as a consumer: `tcpdump -w /dev/null` with a large -B, timed from outside.

tcpdump cannot speak the drain handshake, so it is driven with signals:

1. start `tcpdump -i IFACE -w /dev/null -B KiB -c N` in the namespace and
   wait for its "listening on" line (its ring exists from then on);
2. SIGSTOP it, send the N frames, wait for libpcap's 1 s block timeout to
   retire the last block;
3. read its CPU time so far (/proc/PID/schedstat, ns), SIGCONT it, and wait
   for it to exit after the Nth packet (-c N);
4. its CPU time at exit comes from wait4()'s rusage.  The difference is the
   drain plus tcpdump's exit (closing the socket frees the ring's pages), so
   the same is measured with -c 1 and one frame, and subtracted.

CPU time rather than wall time: tcpdump's exit waits for an RCU grace period
(closing a packet socket), which is sleep, not work.  A reader that drains a
full ring never sleeps, so for it CPU time and wall time agree.  Its own
exit statistics ("packets captured / dropped by kernel") are checked: all N
captured, none dropped.  Live mode (live.py): tcpdump runs without -c and is
stopped with SIGINT, after which it prints the same statistics.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Optional

from drain_child import read_chunk

STARTUP_TIMEOUT = 30.0
EXIT_TIMEOUT = 300.0
LIBPCAP_TIMEOUT_MS = 1000          # tcpdump's pcap_set_timeout()


class TcpdumpError(RuntimeError):
    pass


@dataclass
class TcpdumpStats:
    captured: int
    received: int
    dropped: int


def cpu_ns(pid: int) -> int:
    """CPU time of all threads of a live process so far, in ns (schedstat)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:          # a thread that just exited
            continue
    return total


def process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


class Tcpdump:
    """A running tcpdump in a namespace; ended by its pid on exit, also on failure."""

    def __init__(self, netns: str, iface: str, buffer_bytes: int, count: Optional[int]) -> None:
        # -Z root: no switch to the "tcpdump" user (a Debian default that may not exist)
        cmd = ["ip", "netns", "exec", netns, "tcpdump", "-i", iface, "-n", "-w", "/dev/null",
               "-Z", "root", "-B", str(math.ceil(buffer_bytes / 1024))]
        if count is not None:
            cmd += ["-c", str(count)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.stderr = b""
        self.rusage_ns: Optional[int] = None
        try:
            self._wait_for_listening()
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _wait_for_listening(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        fd = self.proc.stderr.fileno()
        while b"listening on" not in self.stderr:
            chunk = read_chunk(fd, deadline)
            if chunk is None:
                raise TcpdumpError(f"tcpdump did not start listening: {self.stderr.decode()!r}")
            if not chunk:
                raise TcpdumpError(f"tcpdump exited: {self.stderr.decode()!r}")
            self.stderr += chunk

    def stop(self) -> None:
        """SIGSTOP, and wait until the kernel shows it stopped."""
        self.proc.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while process_state(self.pid) != "T":
            if time.monotonic() > deadline:
                raise TcpdumpError("tcpdump did not stop")
            time.sleep(0.001)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def interrupt(self) -> None:
        """SIGINT: tcpdump stops capturing, prints its statistics and exits."""
        self.proc.send_signal(signal.SIGINT)

    def wait_exit(self, timeout: float = EXIT_TIMEOUT) -> TcpdumpStats:
        """Reap it (keeping its CPU time from wait4) and parse its statistics."""
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                raise TcpdumpError(f"tcpdump did not exit within {timeout:.0f} s")
            time.sleep(0.0005)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.rusage_ns = round((usage.ru_utime + usage.ru_stime) * 1e9)
        self.stderr += self.proc.stderr.read()
        return self._stats()

    def _stats(self) -> TcpdumpStats:
        text = self.stderr.decode(errors="replace")
        numbers = {}
        for key, pattern in (("captured", r"(\d+) packets? captured"),
                             ("received", r"(\d+) packets? received by filter"),
                             ("dropped", r"(\d+) packets? dropped by kernel")):
            match = re.search(pattern, text)
            if not match:
                raise TcpdumpError(f"no {key!r} count in tcpdump's output: {text!r}")
            numbers[key] = int(match.group(1))
        return TcpdumpStats(**numbers)

    def close(self) -> None:
        if self.proc.returncode is None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()

    def __enter__(self) -> Tcpdump:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
