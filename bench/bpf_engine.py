"""Classic BPF costs: the userspace engine, and compiling expressions.

    python3 bench/bpf_engine.py            # 5 runs of each measurement
    python3 bench/bpf_engine.py --quick

Measured, with the best of the runs reported in ns:

* BPFProgram.match() called from Python, per call;
* zcap's bpf_run() called from C in a loop (a Cython module that cimports
  zcap._bpf, built into a temporary directory at start-up), per packet, next
  to libpcap's bpf_filter() called the same way;
* compile_filter(), per expression, and `tcpdump -ddd` as a subprocess.

The program is `ip and udp dst port 53` (11 instructions), on a DNS query it
accepts (9 instructions run) and on a TCP segment it rejects (5 run).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
EXPRESSION = "ip and udp dst port 53"
MODULE = "bpf_bench_loop"
SOURCE = '''
# cython: language_level=3
from libc.stdint cimport uint32_t
from zcap._bpf cimport BPFProgram, BPFAux, bpf_aux_clear, bpf_run

cdef extern from "<pcap/pcap.h>" nogil:
    struct bpf_insn:
        pass
    unsigned int bpf_filter(const bpf_insn *pc, const unsigned char *pkt,
                            unsigned int wirelen, unsigned int buflen)

def zcap_loop(BPFProgram prog, const unsigned char[::1] pkt, long n):
    """Run bpf_run n times without the GIL; the sum of the results."""
    cdef BPFAux aux
    cdef long i
    cdef unsigned long total = 0
    cdef uint32_t length = pkt.shape[0]
    bpf_aux_clear(&aux)
    with nogil:
        for i in range(n):
            total += bpf_run(prog.insns, prog.n, &pkt[0], length, length, &aux)
    return total

def libpcap_loop(BPFProgram prog, const unsigned char[::1] pkt, long n):
    """The same loop over libpcap's bpf_filter()."""
    cdef long i
    cdef unsigned long total = 0
    cdef uint32_t length = pkt.shape[0]
    with nogil:
        for i in range(n):
            total += bpf_filter(<const bpf_insn *>prog.insns, &pkt[0], length, length)
    return total
'''


def build_loop_module(out_dir: Path):
    """Compile SOURCE into out_dir and import it (quietly, in a subprocess)."""
    (out_dir / f"{MODULE}.pyx").write_text(SOURCE)
    script = f"""
from Cython.Build import cythonize
from setuptools import Extension, setup
includes = [{str(REPO_ROOT / "zcap" / "includes")!r}, {str(REPO_ROOT)!r}]
ext = Extension({MODULE!r}, [{str(out_dir / (MODULE + ".pyx"))!r}], include_dirs=includes,
                libraries=["pcap"], extra_compile_args=["-O2"])
setup(name={MODULE!r}, ext_modules=cythonize([ext], include_path=includes, quiet=True,
      build_dir={str(out_dir / "c")!r}),
      script_args=["build_ext", "--build-lib", {str(out_dir)!r}, "--build-temp", {str(out_dir / "tmp")!r}])
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building the C loop failed:\n{proc.stdout}\n{proc.stderr}")
    sys.path.insert(0, str(out_dir))
    return importlib.import_module(MODULE)


def packets() -> dict[str, bytes]:
    eth = b"\x00\x11\x22\x33\x44\x55\x02\x00\x00\x00\x00\x01\x08\x00"

    def ipv4(proto: int, l4: bytes) -> bytes:
        return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0,
                           bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + l4

    dns = struct.pack("!HHHH", 40000, 53, 8 + 30, 0) + bytes(30)
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 0x50, 0x02, 8192, 0, 0)
    return {"accepted (DNS query)": eth + ipv4(17, dns), "rejected (TCP)": eth + ipv4(6, tcp)}


def calls(fn: Callable[[bytes], int], arg: bytes, count: int) -> None:
    """Call fn(arg) count times: the Python-level loop around match()."""
    for _ in range(count):
        fn(arg)


def best_ns(fn: Callable[[], object], per_run: int, runs: int) -> float:
    """Best-of-runs nanoseconds per operation; fn does per_run operations."""
    fn()
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter_ns()
        fn()
        best = min(best, (time.perf_counter_ns() - start) / per_run)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations and runs")
    args = parser.parse_args()
    runs, n = (3, 200_000) if args.quick else (5, 1_000_000)

    from zcap.bpf import compile_filter

    prog = compile_filter(EXPRESSION)
    print(f"program: {EXPRESSION!r}, {len(prog)} instructions\n")
    with tempfile.TemporaryDirectory(prefix="zcap-bpf-bench-") as tmp:
        loop = build_loop_module(Path(tmp))
        print("| packet | match() from Python | bpf_run() from C | libpcap bpf_filter() from C |")
        print("|---|---|---|---|")
        match = prog.match
        for name, pkt in packets().items():
            py = best_ns(functools.partial(calls, match, pkt, n // 10), n // 10, runs)
            c = best_ns(functools.partial(loop.zcap_loop, prog, pkt, n), n, runs)
            pcap = best_ns(functools.partial(loop.libpcap_loop, prog, pkt, n), n, runs)
            assert loop.zcap_loop(prog, pkt, 1) == loop.libpcap_loop(prog, pkt, 1) == match(pkt)
            print(f"| {name} | {py:.0f} ns | {c:.1f} ns | {pcap:.1f} ns |")

    compile_us = best_ns(lambda: [compile_filter("tcp port 80 and host 10.0.0.1") for _ in range(200)],
                         200, runs) / 1000
    print(f"\ncompile_filter('tcp port 80 and host 10.0.0.1'): {compile_us:.0f} µs")
    tcpdump = shutil.which("tcpdump")
    if tcpdump:
        cmd = [tcpdump, "-ddd", "-y", "EN10MB", "tcp port 80 and host 10.0.0.1"]
        sub_us = best_ns(lambda: [subprocess.run(cmd, capture_output=True, check=True) for _ in range(20)],
                         20, runs) / 1000
        print(f"tcpdump -ddd subprocess:                         {sub_us:.0f} µs")


if __name__ == "__main__":
    main()
