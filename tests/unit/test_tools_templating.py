"""apiRequest templating: values filled in safely (pure)."""

from urllib.parse import parse_qs, urlsplit

import pytest

from esl_controller.pipeline.tools.templating import (
    TemplateError,
    model_schema,
    render,
    render_body,
    render_headers,
    render_url,
)

VARS = {"customer": {"number": "+15550100"}, "apiHost": "api.example.com", "year": "2025"}


def test_render_variables_filters_and_missing_names():
    assert render("Hi {{ customer.number }}", VARS) == "Hi +15550100"
    assert render("{{name | default: 'there'}}", VARS) == "there"
    assert render('{{name | default: "a | b"}}', VARS) == "a | b"
    assert render("{{missing}}!", VARS) == "!"
    assert render("{{x | upcase}}", {"x": "ab"}) == "AB"
    assert render("{{x | url_encode}}", {"x": "a b/c"}) == "a%20b%2Fc"
    assert render("{{x | json}}", {"x": {"a": 1}}) == '{"a":1}'
    assert render("{{flag}}", {"flag": True}) == "true"
    with pytest.raises(TemplateError):
        render("{{x | nope}}", {"x": 1})
    with pytest.raises(TemplateError):
        render("{{ 1 + 2 }}", {})


def test_url_values_are_encoded_into_path_and_query():
    url = render_url(
        "https://{{apiHost}}/v1/orders/{{orderId}}?q={{q}}&year={{year}}",
        VARS,
        {"orderId": "../admin?x=1#frag", "q": "a&b=c d"},
    )
    parts = urlsplit(url)
    assert parts.hostname == "api.example.com"
    assert parts.path == "/v1/orders/..%2Fadmin%3Fx%3D1%23frag"
    assert parse_qs(parts.query) == {"q": ["a&b=c d"], "year": ["2025"]}
    assert parts.fragment == ""


@pytest.mark.parametrize(
    "evil",
    ["@evil.example", "evil.example/", "x@evil.example:80", "a#@evil.example", "%40evil", "a\r\nb"],
)
def test_arguments_never_move_the_host(evil):
    url = render_url("http://api.example.com/{{p}}", {}, {"p": evil})
    assert urlsplit(url).netloc == "api.example.com"
    url = render_url("http://api.example.com/x?a={{p}}", {}, {"p": evil})
    assert urlsplit(url).netloc == "api.example.com"
    assert urlsplit(url).path == "/x"
    with pytest.raises(TemplateError, match="host part"):
        render_url("http://api.example.com{{p}}", {}, {"p": evil})


def test_arguments_in_the_host_are_refused():
    with pytest.raises(TemplateError, match="host part"):
        render_url("https://{{host}}/x", {}, {"host": "evil.example"})
    with pytest.raises(TemplateError, match="host part"):
        render_url("https://api.{{region}}.example.com/x", {"region": "eu"}, {"region": "evil"})
    # a call variable may fill the host
    assert urlsplit(render_url("https://{{apiHost}}/x", VARS, {})).hostname == "api.example.com"


def test_a_variable_cannot_smuggle_a_different_host():
    with pytest.raises(TemplateError):
        render_url("https://{{h}}/x", {"h": "good.example/@evil.example"}, {})
    with pytest.raises(TemplateError):
        render_url("https://{{h}}/x", {"h": "good.example@evil.example"}, {})
    with pytest.raises(TemplateError):
        render_url("https://{{h}}/x", {"h": "good.example#"}, {})


def test_relative_or_odd_urls_are_refused():
    with pytest.raises(TemplateError):
        render_url("/relative/{{x}}", {}, {"x": 1})
    with pytest.raises(TemplateError):
        render_url("http:///nohost", {}, {})


def test_headers_from_schema_and_plain_dict():
    spec = {
        "type": "object",
        "properties": {
            "X-Customer": {"type": "string", "value": "{{customer.number}}"},
            "X-Order": {"type": "string", "value": "{{orderId}}"},
            "X-Model-Chosen": {"type": "string"},
        },
    }
    assert render_headers(spec, VARS, {"orderId": "42"}) == {
        "X-Customer": "+15550100",
        "X-Order": "42",
    }
    assert render_headers({"X-A": "{{year}}"}, VARS, {}) == {"X-A": "2025"}


def test_header_injection_is_refused():
    with pytest.raises(TemplateError, match="line break"):
        render_headers({"X-A": "{{v}}"}, {}, {"v": "ok\r\nX-Admin: 1"})
    with pytest.raises(TemplateError, match="header name"):
        render_headers({"Bad Name": "x"}, {}, {})


def test_body_static_values_override_arguments_and_keep_types():
    spec = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "source": {"type": "string", "value": "phone {{customer.number}}"},
            "customer": {"type": "object", "value": "{{customer}}"},
        },
        "required": ["city", "source"],
    }
    body = render_body(spec, VARS, {"city": '"}, "admin": true', "source": "forged"})
    assert body == {
        "city": '"}, "admin": true',
        "source": "phone +15550100",
        "customer": {"number": "+15550100"},
    }
    schema = model_schema(spec)
    assert schema == {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
