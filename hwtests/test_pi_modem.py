"""A USB voice modem on a real Pi answers and says what it is."""

import io

import pytest

from linebox.config import LineConfig
from linebox.hw.check import Report, check_modem


def test_the_modem_identifies_itself(modem_port):
    pytest.importorskip("linebox.hw.modem")
    out = io.StringIO()
    report = Report(out)
    check_modem(LineConfig(id=1, driver="modem", plan="us", rings=4, toll_saver_rings=0,
                            route="100", port=modem_port), report)
    status, _, detail = report.results[0]
    assert status == "OK", detail
