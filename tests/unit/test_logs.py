import io
import json
import logging

from esl_controller.logs import (
    JsonFormatter,
    SecretMaskingFilter,
    call_id_var,
    mask_text,
    setup_logging,
)


def test_mask_text_patterns():
    text = (
        "auth ClueCon\nAuthorization: Bearer esk_abcdefghijklmnop x-api-key=esk_abcdefghijkl "
        'password=hunter2 {"token": "tok123456"}'
    )
    out = mask_text(text)
    for secret in ("ClueCon", "esk_abcdefghijklmnop", "hunter2", "tok123456"):
        assert secret not in out
    assert "auth ***" in out


def test_literal_secrets_masked_through_handler():
    stream = io.StringIO()
    handler = setup_logging("DEBUG", json_lines=True, stream=stream)
    try:
        handler.filters[0].add_secret("s3cr3t-value")
        token = call_id_var.set("call-1")
        logging.getLogger("esl_controller.test").info("sending %s to %s", "s3cr3t-value", "x")
        call_id_var.reset(token)
        line = json.loads(stream.getvalue().strip().splitlines()[-1])
        assert "s3cr3t-value" not in line["message"]
        assert line["callId"] == "call-1"
        assert line["logger"] == "esl_controller.test"
    finally:
        logging.getLogger("esl_controller").removeHandler(handler)


def test_json_formatter_exception():
    rec = logging.LogRecord(
        "esl_controller.x", logging.ERROR, __file__, 1, "boom %s", ("password=abc123",), None
    )
    SecretMaskingFilter().filter(rec)
    doc = json.loads(JsonFormatter().format(rec))
    assert doc["level"] == "ERROR" and "abc123" not in doc["message"]
