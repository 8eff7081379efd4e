"""Model (LLM) providers, one module per vendor. ``scripted`` is the embedded offline one."""
