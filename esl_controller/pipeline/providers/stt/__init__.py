"""Speech-to-text providers.

Embedded, offline (models shipped by pip packages, decoded in worker processes, see
:mod:`esl_controller.pipeline.workers`):

- :mod:`.whisper`: faster-whisper ``tiny.en`` int8, utterance at a time (the default). Assistant config
  ``{"provider": "custom-transcriber", "model": "whisper-tiny.en"}`` with no ``server``.
- :mod:`.sphinx`: pocketsphinx en-us, streaming partials and finals, and a JSGF grammar mode for yes/no
  menus (the ``sphinx`` extra). Assistant config ``{"provider": "custom-transcriber",
  "model": "pocketsphinx-en-us"}``.

Vapi's SDK turns transcriber providers it does not know into ``None``, so embedded engines are named
by ``model`` under the ``custom-transcriber`` provider. This package imports nothing heavy and no
gevent: worker processes import it.
"""
