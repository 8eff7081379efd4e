"""Delivery target resolution (Vapi's order plus webhook endpoints) and the outbound URL policy."""

import pytest

from esl_controller.webhooks.targets import UrlPolicy, check_url, resolve_targets

# ------------------------------------------------------------------------------------- resolution

ASSISTANT = {"id": "asst-1", "server": {"url": "https://a.test/hook", "timeoutSeconds": 5}}
NUMBER = {"id": "pn-1", "server": {"url": "https://pn.test/hook", "credentialId": "cred-pn"}}
TOOL = {"id": "tool-1", "server": {"url": "https://tool.test/hook", "headers": {"X-T": "1"}}}


def ep(id_, url, scope="account", scope_id=None, events=(), enabled=True):
    return {
        "id": id_,
        "url": url,
        "scope": scope,
        "scopeId": scope_id,
        "events": list(events),
        "enabled": enabled,
    }


def urls(targets):
    return [(t.source, t.url) for t in targets]


def test_tool_calls_go_to_the_tool_server_first_and_only():
    targets = resolve_targets(
        "tool-calls",
        assistant=ASSISTANT,
        phone_number=NUMBER,
        tool=TOOL,
        endpoints=[ep("e1", "https://acct.test")],
    )
    assert urls(targets) == [("tool", "https://tool.test/hook")]
    assert targets[0].headers == (("X-T", "1"),)


def test_tool_calls_without_tool_server_fall_back_to_assistant():
    targets = resolve_targets(
        "tool-calls", assistant=ASSISTANT, phone_number=NUMBER, tool={"id": "tool-1"}
    )
    assert urls(targets) == [("assistant", "https://a.test/hook")]
    assert targets[0].timeout_seconds == 5


def test_phone_number_server_when_assistant_has_none():
    targets = resolve_targets("status-update", assistant={"id": "asst-1"}, phone_number=NUMBER)
    assert urls(targets) == [("phone-number", "https://pn.test/hook")]
    assert targets[0].credential_id == "cred-pn"
    assert targets[0].timeout_seconds == 20


def test_assistant_server_wins_over_phone_number_for_async_messages():
    targets = resolve_targets("end-of-call-report", assistant=ASSISTANT, phone_number=NUMBER)
    assert urls(targets) == [("assistant", "https://a.test/hook")]


def test_legacy_server_url_and_secret():
    targets = resolve_targets(
        "hang", assistant={"id": "a", "serverUrl": "https://old.test", "serverUrlSecret": "zz"}
    )
    assert targets[0].url == "https://old.test" and targets[0].secret == "zz"
    assert "zz" not in repr(targets[0])


def test_endpoints_fan_out_by_scope_and_events():
    endpoints = [
        ep("acct", "https://acct.test"),
        ep("asst", "https://asst-ep.test", "assistant", "asst-1", events=["end-of-call-report"]),
        ep("other", "https://other.test", "assistant", "asst-9"),
        ep("pn", "https://pn-ep.test", "phone-number", "pn-1", events=["status-update"]),
        ep("off", "https://off.test", enabled=False),
        ep("dup", "https://a.test/hook"),
    ]
    eocr = resolve_targets(
        "end-of-call-report", assistant=ASSISTANT, phone_number=NUMBER, endpoints=endpoints
    )
    assert urls(eocr) == [
        ("assistant", "https://a.test/hook"),
        ("endpoint", "https://asst-ep.test"),
        ("endpoint", "https://acct.test"),
    ]
    assert [t.endpoint_id for t in eocr[1:]] == ["asst", "acct"]
    assert eocr[1].scope == "assistant"
    status = resolve_targets(
        "status-update", assistant=ASSISTANT, phone_number=NUMBER, endpoints=endpoints
    )
    assert urls(status) == [
        ("assistant", "https://a.test/hook"),
        ("endpoint", "https://pn-ep.test"),
        ("endpoint", "https://acct.test"),
    ]


def test_server_messages_filter_primary_and_unsubscribed_endpoints():
    assistant = {**ASSISTANT, "serverMessages": ["end-of-call-report"]}
    endpoints = [
        ep("acct", "https://acct.test"),
        ep("sub", "https://sub.test", events=["speech-update"]),
    ]
    targets = resolve_targets("speech-update", assistant=assistant, endpoints=endpoints)
    # the assistant did not ask for speech-update; an endpoint that subscribed explicitly still gets it
    assert urls(targets) == [("endpoint", "https://sub.test")]
    assert (
        resolve_targets(
            "transcript", assistant=assistant, endpoints=endpoints, transcript_type="final"
        )
        == ()
    )


def test_synchronous_message_uses_the_first_target_only():
    endpoints = [ep("acct", "https://acct.test"), ep("t", "https://tool-ep.test", "tool", "tool-1")]
    targets = resolve_targets(
        "tool-calls", assistant={"id": "asst-1"}, tool={"id": "tool-1"}, endpoints=endpoints
    )
    assert urls(targets) == [("endpoint", "https://tool-ep.test")]
    req = resolve_targets("assistant-request", phone_number={"id": "pn-1"}, endpoints=endpoints)
    assert urls(req) == [("endpoint", "https://acct.test")]
    assert resolve_targets("assistant-request", phone_number={"id": "pn-1"}) == ()


def test_tool_scoped_endpoint_gets_only_tool_calls():
    endpoints = [ep("t", "https://tool-ep.test", "tool", "tool-1")]
    assert (
        resolve_targets(
            "status-update", assistant={"id": "a"}, tool={"id": "tool-1"}, endpoints=endpoints
        )
        == ()
    )


# ------------------------------------------------------------------------------------- URL policy


def resolver(table):
    def resolve(host, port):
        if host not in table:
            raise OSError("Name or service not known")
        return table[host]

    return resolve


DNS = resolver(
    {
        "hooks.example.test": ["203.0.113.10"],
        "localhost": ["127.0.0.1", "::1"],
        "meta.evil.test": ["169.254.169.254"],
        "mixed.evil.test": ["203.0.113.11", "10.1.2.3"],
        "mapped.evil.test": ["::ffff:169.254.169.254"],
        "v6.evil.test": ["fe80::1%eth0"],
        "ec2v6.evil.test": ["fd00:ec2::254"],
        "internal.corp.test": ["10.0.0.5"],
        "metadata.google.internal": ["169.254.169.254"],
        "empty.test": [],
        # a resolver that hands back the C library's reading of a numeric host name
        "2130706433": ["127.0.0.1"],
    }
)

DEFAULT = UrlPolicy.build()
STRICT = UrlPolicy.build(deny_private=True)


@pytest.mark.parametrize(
    ("url", "policy", "allowed", "reason_part"),
    [
        ("https://hooks.example.test/x", DEFAULT, True, "allowed"),
        ("http://127.0.0.1:8080/hook", DEFAULT, True, "allowed"),
        ("http://localhost:8080/hook", DEFAULT, True, "allowed"),
        ("http://[::1]:8080/hook", DEFAULT, True, "allowed"),
        ("ftp://hooks.example.test/x", DEFAULT, False, "scheme 'ftp'"),
        ("file:///etc/passwd", DEFAULT, False, "scheme 'file'"),
        ("https:///nohost", DEFAULT, False, "no host"),
        ("http://169.254.169.254/latest/meta-data", DEFAULT, False, "metadata"),
        ("http://169.254.1.1/", DEFAULT, False, "link-local"),
        ("http://[fe80::1]/", DEFAULT, False, "link-local"),
        ("http://[fd00:ec2::254]/", DEFAULT, False, "metadata"),
        ("http://[::ffff:169.254.169.254]/", DEFAULT, False, "metadata"),
        ("http://[::ffff:a9fe:a9fe]/", DEFAULT, False, "metadata"),
        ("http://[64:ff9b::a9fe:a9fe]/", DEFAULT, False, "metadata"),
        ("http://2852039166/", DEFAULT, False, "metadata"),  # decimal 169.254.169.254
        ("http://0251.0376.0251.0376/", DEFAULT, False, "metadata"),  # octal
        ("http://0xa9.0xfe.0xa9.0xfe/", DEFAULT, False, "metadata"),  # hex
        ("http://169.254.43518/", DEFAULT, False, "metadata"),  # short form
        ("http://meta.evil.test/", DEFAULT, False, "metadata"),
        ("http://mapped.evil.test/", DEFAULT, False, "metadata"),
        ("http://v6.evil.test/", DEFAULT, False, "link-local"),
        ("http://ec2v6.evil.test/", DEFAULT, False, "metadata"),
        ("http://metadata.google.internal/computeMetadata/v1/", DEFAULT, False, "metadata service"),
        ("http://METADATA.google.internal./", DEFAULT, False, "metadata service"),
        ("http://0.0.0.0/", DEFAULT, False, "not a unicast"),
        ("http://[::]/", DEFAULT, False, "not a unicast"),
        ("http://224.0.0.1/", DEFAULT, False, "not a unicast"),
        ("http://nowhere.test/", DEFAULT, False, "does not resolve"),
        ("http://empty.test/", DEFAULT, False, "no address"),
        ("http://internal.corp.test/", DEFAULT, True, "allowed"),
        ("http://internal.corp.test/", STRICT, False, "private"),
        ("http://mixed.evil.test/", DEFAULT, True, "allowed"),
        ("http://mixed.evil.test/", STRICT, False, "10.1.2.3"),
        ("http://127.0.0.1/", STRICT, False, "private"),
        ("http://2130706433/", STRICT, False, "private"),  # decimal 127.0.0.1
        ("http://0x7f.1/", STRICT, False, "private"),
        ("http://[::ffff:127.0.0.1]/", STRICT, False, "private"),
        ("http://[::1]/", STRICT, False, "private"),
        ("http://[fd12::1]/", STRICT, False, "private"),
        ("http://192.168.1.10/", STRICT, False, "private"),
        ("http://100.64.0.1/", STRICT, False, "private"),
        ("https://hooks.example.test/", STRICT, True, "allowed"),
        ("http://hooks.example.test@169.254.169.254/", DEFAULT, False, "metadata"),
        ("http://hooks.example.test:99999/", DEFAULT, False, "malformed"),
        ("javascript:alert(1)", DEFAULT, False, "scheme"),
    ],
)
def test_url_policy_table(url, policy, allowed, reason_part):
    decision = check_url(url, policy, DNS)
    assert decision.allowed is allowed, decision.reason
    assert reason_part in decision.reason


def test_allowed_addresses_are_returned_for_pinning():
    decision = check_url("http://localhost:9000/", DEFAULT, DNS)
    assert decision.addresses == ("127.0.0.1", "::1")
    assert decision.port == 9000 and decision.host == "localhost"
    assert check_url("https://hooks.example.test/", DEFAULT, DNS).port == 443


def test_deny_list_by_cidr_and_host():
    policy = UrlPolicy.build(deny=["203.0.113.0/24", "*.blocked.test", "exact.test"])
    dns = resolver(
        {
            "a.blocked.test": ["198.51.100.1"],
            "exact.test": ["198.51.100.2"],
            "x.test": ["203.0.113.9"],
        }
    )
    assert "deny list" in check_url("http://a.blocked.test/", policy, dns).reason
    assert "deny list" in check_url("http://exact.test/", policy, dns).reason
    assert "deny list" in check_url("http://x.test/", policy, dns).reason
    assert "deny list" in check_url("http://[::ffff:203.0.113.9]/", policy, dns).reason


def test_allow_list_lifts_builtin_and_private_denials_but_not_the_deny_list():
    policy = UrlPolicy.build(
        allow=["10.0.0.0/8", "hooks.internal.test"], deny=["10.9.0.0/16"], deny_private=True
    )
    dns = resolver({"hooks.internal.test": ["192.168.5.5"], "z.test": ["10.9.1.1"]})
    assert check_url("http://10.1.1.1/", policy, dns).allowed
    assert check_url("http://hooks.internal.test/", policy, dns).allowed
    assert not check_url("http://10.9.0.1/", policy, dns).allowed
    assert not check_url("http://z.test/", policy, dns).allowed
    assert not check_url("http://192.168.1.1/", policy, dns).allowed


def test_allow_list_only():
    policy = UrlPolicy.build(allow=["*.partner.test", "198.51.100.0/24"], allow_list_only=True)
    dns = resolver(
        {
            "api.partner.test": ["203.0.113.1"],
            "other.test": ["203.0.113.2"],
            "ok.test": ["198.51.100.7"],
        }
    )
    assert check_url("https://api.partner.test/", policy, dns).allowed
    assert not check_url(
        "https://partner.test/", policy, resolver({"partner.test": ["203.0.113.1"]})
    ).allowed
    assert "not in the allow list" in check_url("https://other.test/", policy, dns).reason
    assert check_url("https://ok.test/", policy, dns).allowed


def test_bad_policy_entries_are_rejected():
    with pytest.raises(ValueError, match="deny list"):
        UrlPolicy.build(deny=["http://x.test/path"])


def test_pure_modules_import_no_io_frameworks():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import esl_controller.webhooks.messages, esl_controller.webhooks.signing\n"
        "import esl_controller.webhooks.targets, esl_controller.observe.costs\n"
        "bad = [m for m in ('gevent', 'flask', 'peewee') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "", out.stdout
