"""Run pcapy-ng's unmodified tests/pcapytests.py against zcap.compat.pcapy.

    python run_suite.py WORKDIR [IFACE]

Copies pcapytests.py and 96pings.pcap into WORKDIR (the suite opens and
writes files relative to its working directory), aliases the shim as
`pcapy`, and executes the file as it is: its module-level runner runs the
enabled tests.  With IFACE, its two disabled live tests (named with a
leading underscore, and written for a hard-coded 'vboxnet0') then run on
IFACE; set ZCAP_NETNS for an interface in a network namespace.  The last
line printed is JSON: {test name: "ok" | "FAIL: ..." | "ERROR: ..."}.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SUITE = "pcapytests.py"


class _Recorder(unittest.TextTestResult):
    outcomes: dict[str, str] = {}

    def addSuccess(self, test):  # noqa: N802 - unittest's names
        super().addSuccess(test)
        self.outcomes[test._testMethodName] = "ok"

    def addFailure(self, test, err):  # noqa: N802
        super().addFailure(test, err)
        self.outcomes[test._testMethodName] = "FAIL: " + str(err[1])

    def addError(self, test, err):  # noqa: N802
        super().addError(test, err)
        self.outcomes[test._testMethodName] = f"ERROR: {err[0].__name__}: {err[1]}"


class _Runner(unittest.TextTestRunner):
    def __init__(self, *args, **kwargs):
        kwargs["resultclass"] = _Recorder
        super().__init__(*args, **kwargs)


def main(argv: list[str]) -> int:
    workdir = argv[0]
    iface = argv[1] if len(argv) > 1 else None
    for name in (SUITE, "96pings.pcap"):
        shutil.copy(os.path.join(HERE, name), workdir)
    os.chdir(workdir)

    import zcap.compat.pcapy
    sys.modules["pcapy"] = zcap.compat.pcapy
    # The file runs its suite when executed; record each outcome as it does.
    unittest.TextTestRunner = _Runner
    module = {"__name__": "pcapytests", "__file__": os.path.join(workdir, SUITE)}
    with open(SUITE) as f:
        code = compile(f.read(), SUITE, "exec")
    try:
        exec(code, module)
    except SystemExit:
        pass                       # the file exits 1 when a test failed
    if iface is not None:
        cls = module["TestPcapy"]
        cls._IFACE = iface
        suite = unittest.TestSuite([cls("_testLiveCapture"), cls("_testSendPacket")])
        _Runner(verbosity=2).run(suite)
    print(json.dumps(_Recorder.outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
