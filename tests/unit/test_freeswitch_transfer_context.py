"""The esl_transfer dialplan context the controller's number transfers land in."""

import re
import xml.etree.ElementTree as ET
from pathlib import Path

CONF = Path(__file__).resolve().parents[2] / "freeswitch_conf"


def test_transfer_context_bridges_through_the_call_gateway():
    root = ET.parse(CONF / "dialplan" / "esl_transfer.xml").getroot()
    context = root.find("context")
    assert context is not None and context.get("name") == "esl_transfer"
    first = context.find("extension")
    conds = first.findall("condition")
    gw_rule = re.compile(conds[0].get("expression"))
    assert conds[0].get("field") == "${esl_transfer_gateway}"
    assert gw_rule.match("gw_" + "0123456789abcdef" * 2) and not gw_rule.match("gw_../x")
    number = re.compile(conds[1].get("expression"))
    assert number.match("+14155550100") and number.match("4155550100")
    for bad in ("sip:x@y", "123;evil", "1 2", ""):
        assert not number.match(bad)
    bridge = [a.get("data") for a in conds[1].findall("action") if a.get("application") == "bridge"]
    assert bridge == ["sofia/gateway/${esl_transfer_gateway}/$1"]


def test_context_name_matches_the_controller_default():
    from esl_controller.config import FreeswitchSettings

    assert FreeswitchSettings().transfer_context == "esl_transfer"
    assert FreeswitchSettings().transfer_dialplan == "XML"
