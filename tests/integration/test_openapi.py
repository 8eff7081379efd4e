"""The OpenAPI document covers every route of the app, with schemas for the documented ones."""

import re


def test_every_route_is_documented(app, anon):
    doc = anon.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        assert path in doc["paths"], path
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in doc["paths"][path], (method, path)


def test_schemas_are_camel_case(anon):
    doc = anon.get("/openapi.json").get_json()
    create = doc["paths"]["/assistant"]["post"]
    ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    props = doc["components"]["schemas"][ref]["properties"]
    assert "firstMessageMode" in props and "first_message_mode" not in props
    assert create["responses"]["201"]
    assert doc["paths"]["/health"]["get"]["security"] == []
