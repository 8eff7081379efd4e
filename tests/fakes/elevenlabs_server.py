"""A fake ElevenLabs streaming TTS server.

``POST /v1/text-to-speech/{voice_id}/stream?output_format=pcm_<rate>`` with ``xi-api-key`` answers chunked raw
s16le mono PCM at that rate: real espeak-ng speech of the ``text``. A missing key is a 401 with ElevenLabs'
``{"detail": {"status": ..., "message": ...}}`` error body. Knobs as in :mod:`tests.fakes._http`.
"""

from __future__ import annotations

import gevent

from tests.fakes._http import FakeHTTPServer, Knobs, Reply, Request, stream_pieces

RATES = {
    "pcm_8000": 8000,
    "pcm_16000": 16000,
    "pcm_22050": 22050,
    "pcm_24000": 24000,
    "pcm_44100": 44100,
}


class FakeElevenLabs:
    def __init__(self, *, api_key: str = "xi-test-key", knobs: Knobs | None = None) -> None:
        self.api_key = api_key
        self.knobs = knobs or Knobs()
        self.failures = 0
        self.server = FakeHTTPServer(self._handle)

    @property
    def requests(self) -> list[Request]:
        return self.server.requests

    @property
    def base_url(self) -> str:
        return self.server.url

    def __enter__(self) -> FakeElevenLabs:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    def _handle(self, req: Request, reply: Reply) -> None:
        from esl_controller.pipeline.providers.tts import espeak_ng

        k = self.knobs
        if k.latency:
            gevent.sleep(k.latency)
        parts = req.path.strip("/").split("/")
        if (
            req.method != "POST"
            or len(parts) != 4
            or parts[:2] != ["v1", "text-to-speech"]
            or parts[3] != "stream"
        ):
            reply.send_json(404, {"detail": {"status": "not_found", "message": req.path}})
            return
        if req.headers.get("xi-api-key") != self.api_key:
            reply.send_json(
                401, {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}
            )
            return
        if k.fail_status and self.failures < k.fail_times:
            self.failures += 1
            reply.send_json(
                k.fail_status, {"detail": {"status": "busy", "message": "fake failure"}}
            )
            return
        fmt = (req.query.get("output_format") or ["mp3_44100_128"])[0]
        if fmt not in RATES:
            reply.send_json(422, {"detail": {"status": "invalid_output_format", "message": fmt}})
            return
        body = req.json()
        rate = RATES[fmt]
        audio = espeak_ng.synthesize(body["text"], sample_rate=rate).audio
        reply.start(200, {"Content-Type": "audio/pcm", "request-id": f"el_{len(self.requests)}"})
        step = rate // 10 * 2 + 1  # odd-sized chunks, as a network would cut them
        stream_pieces(k, reply, [audio[i : i + step] for i in range(0, len(audio), step)])
