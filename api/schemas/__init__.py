"""pydantic request/response models; camelCase on the wire, unknown fields rejected."""
