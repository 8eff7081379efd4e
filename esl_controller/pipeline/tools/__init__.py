"""Tools during a call: the model's tool list (``spec``), templated API requests (``templating``), which tool
messages to say when (``messages``) and the runner that carries tool calls out (``runner``)."""

from esl_controller.pipeline.tools.messages import ToolMessage
from esl_controller.pipeline.tools.spec import ToolDef, Toolset, ToolsetError, build_toolset

__all__ = ["ToolDef", "ToolMessage", "Toolset", "ToolsetError", "build_toolset"]
