"""Builds the voice pipeline of an answered call (I/O: reads the database, opens files).

``PipelineFactory(settings, box=..., web=...)`` is the controller's ``SessionDeps.pipeline_factory``:
called once per answered call with its ``CallSession``, it returns a ``calls.media.MediaPipeline``
(the ``Conversation`` with its port, recorder and live-listen tap) or None.

* the assistant: ``call.data.assistant`` (inline), else the Assistant row; ``assistantOverrides``
  (and their ``variableValues``) from ``call.data``;
* providers: ``model`` / ``voice`` / ``transcriber`` blocks with their credentials attached
  (Credential rows opened with the SecretBox) and built with their fallbacks; embedded offline
  providers when a block is absent (scripted model, espeak-ng, whisper tiny.en);
* tools: the toolset of the assistant's model block run by a ``ToolRunner``;
* the port: the web-call client's ``WebCallPort`` for web calls, else a ``ForkMediaPort``;
* the VAD: ``startSpeakingPlan.vad`` picks webrtcvad (default) or Silero (``media.silero``);
* recording (``artifactPlan.recordingEnabled``, default true): ``<data_dir>/recordings/<id>.mono.wav``
  and ``.stereo.wav``, Artifact rows, ``artifact.recordingUrl`` / ``stereoRecordingUrl``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from esl_controller.calls.media import (
    HEARD_FRAMES_KEPT,
    PLAY_AUDIO,
    ForkMediaPort,
    MediaPipeline,
    WebCallBridge,
    on_play_audio_event,
)
from esl_controller.pipeline.ports import PipelineNotice

log = logging.getLogger("esl_controller.calls.pipeline")

FORK_RATE = 16000
#: (assistant config) -> (stt, llm, tts); tests replace the provider build with it
ProviderBuild = Callable[[Any], tuple[Any, Any, Any]]


class PipelineFactory:
    def __init__(
        self,
        settings: Any,
        *,
        box: Any = None,
        web: WebCallBridge | None = None,
        hub: Any = None,
        providers: ProviderBuild | None = None,
        conversation_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.box = box
        self.web = web
        self.hub = hub
        self.providers = providers
        self.conversation_kwargs = dict(conversation_kwargs or {})
        self.built: dict[str, MediaPipeline] = {}
        #: the recording process (``media.recording_writer = "process"``; it starts with the first
        #: recording), or None: recordings on the hub with the process-wide writer thread
        self.recording_writer: Any = None
        if settings.media.recording_writer == "process":
            from esl_controller.media.recording_process import RecordingProcess

            self.recording_writer = RecordingProcess()

    def stop(self, timeout: float = 5.0) -> None:
        """After the calls: let the recording writer finish every file."""
        if self.recording_writer is not None and not self.recording_writer.stop(timeout):
            log.warning("recording writer: not finished within %.1f s", timeout)

    def __call__(self, session: Any) -> MediaPipeline | None:
        from esl_controller.pipeline.assistant import AssistantConfig, AssistantConfigError

        call_id = session.call_id
        row, body, overrides = self._load(call_id)
        if row is None:
            log.warning("call %s: no call row; no pipeline", call_id)
            return None
        try:
            config = AssistantConfig.from_dict(body, overrides)
        except (AssistantConfigError, ValueError, TypeError) as exc:
            self._fail(session, "pipeline-error-assistant-invalid", f"assistant: {exc}")
            return None
        t0 = time.monotonic()

        def clock() -> float:
            return time.monotonic() - t0

        if session.state.direction == "web":
            port = self.web.ports.get(call_id) if self.web is not None else None
            if port is None:
                log.warning("call %s: web call answered without a client", call_id)
                return None
        else:
            port = ForkMediaPort(session, FORK_RATE, clock=clock)
            sock = session.socket
            if sock is not None and getattr(sock, "control", "") == "full":
                try:
                    sock.subscribe((), (PLAY_AUDIO,))
                    sock.add_handler(lambda item: _socket_item(session, item))
                except Exception as exc:  # noqa: BLE001 - the inbound connection also carries it
                    log.info("call %s: play_audio subscription failed (%s)", call_id, exc)
        try:
            stt, llm, tts = self._providers(config, body, overrides)
        except Exception as exc:  # noqa: BLE001 - any provider build trouble ends the call clearly
            log.warning("call %s: providers: %s", call_id, exc)
            self._fail(session, "pipeline-error-provider-unavailable", str(exc)[:300])
            return None
        runner = self._tool_runner(session, row, body)
        if runner is False:
            return None
        from esl_controller.pipeline.conversation import Conversation

        kwargs: dict[str, Any] = dict(self.conversation_kwargs)
        if runner is not None:
            kwargs["tool_runner"] = runner
        if "vad_confidence" not in kwargs:
            kwargs["vad_confidence"] = _vad_confidence(call_id, config, port.sample_rate)
        conversation = Conversation(
            config,
            port,
            stt=stt,
            llm=llm,
            tts=tts,
            call_id=call_id,
            clock=clock,
            **kwargs,
        )
        mixer = self._background(body, overrides, session.state.direction, port.sample_rate)
        if mixer is not None:
            if isinstance(port, ForkMediaPort):
                port.background = mixer
            elif hasattr(port, "background"):
                port.background = mixer
        runners = [runner]
        conversation.handoff_resolver = self._handoff_resolver(session, row.id, runners)
        recorder, on_stop = self._recorder(row, body, overrides, port.sample_rate)

        def stopped() -> None:
            for r in runners:
                if r is not None:
                    r.close()
            if on_stop is not None:
                on_stop()

        pipeline = MediaPipeline(
            conversation,
            port,
            call_id=call_id,
            clock=clock,
            recorder=recorder,
            hub=self.hub,
            on_stop=stopped,
        )
        if isinstance(port, ForkMediaPort):
            port.on_assistant = pipeline.add_assistant
        else:
            _tap_web_port(port, pipeline)
        self.built[call_id] = pipeline
        return pipeline

    # ------------------------------------------------------------------ parts
    def _load(self, call_id: str) -> tuple[Any, dict[str, Any], dict[str, Any] | None]:
        from esl_controller.calls.persist import transaction
        from esl_controller.db.models import Assistant, Call

        with transaction():
            row = Call.get_or_none(Call.id == call_id)
            if row is None:
                return None, {}, None
            data = dict(row.data or {})
            body = data.get("assistant") if isinstance(data.get("assistant"), Mapping) else None
            if body is None and row.assistant_id:
                a = Assistant.get_or_none(Assistant.id == row.assistant_id)
                body = dict(a.data or {}) if a is not None else None
            overrides = data.get("assistantOverrides")
            return (
                row,
                dict(body or {}),
                dict(overrides) if isinstance(overrides, Mapping) else None,
            )

    def _credentials(self) -> list[dict[str, Any]]:
        if self.box is None:
            return []
        from esl_controller.calls.persist import transaction
        from esl_controller.db.models import Credential

        out = []
        with transaction():
            for c in Credential.select():
                try:
                    secret = self.box.open(c.secret_blob)
                except Exception:  # noqa: BLE001 - an unreadable credential is skipped, never logged
                    continue
                out.append({**(c.data or {}), **secret, "id": c.id, "provider": c.provider})
        return out

    def _providers(
        self, config: Any, body: Mapping[str, Any], overrides: Mapping[str, Any] | None
    ) -> tuple[Any, Any, Any]:
        if self.providers is not None:
            return self.providers(config)
        from esl_controller.pipeline.providers import hosted, registry

        creds = self._credentials()
        model = hosted.attach_credential(config.model or None, creds)
        voice = hosted.attach_credential(config.voice or None, creds)
        transcriber = hosted.attach_credential(config.transcriber or None, creds)
        try:
            stt = hosted.build_with_fallbacks("stt", transcriber)
        except registry.UnknownProvider:
            if transcriber:
                raise
            log.warning("no speech-to-text provider: the assistant will not hear the caller")
            stt = None
        return (
            stt,
            hosted.build_with_fallbacks("llm", model),
            hosted.build_with_fallbacks("tts", voice),
        )

    def _background(
        self,
        body: Mapping[str, Any],
        overrides: Mapping[str, Any] | None,
        direction: str,
        rate: int,
    ) -> Any:
        """``backgroundSound`` as a ``BackgroundMixer`` (None: off, or a URL that is not a stored file)."""
        from esl_controller.media import background as bg

        value = (overrides or {}).get("backgroundSound", body.get("backgroundSound"))
        choice = bg.setting(value, direction)
        if choice == "off":
            return None
        if choice == "office":
            return bg.BackgroundMixer(bg.office_bed(rate))
        file_id = bg.file_id_from_url(choice, self.settings.public_url)
        if file_id is None:
            log.warning("backgroundSound %r is not a stored /file URL: not fetched", choice[:200])
            return None
        try:
            return bg.BackgroundMixer(bg.wav_bed(self._file_bytes(file_id), rate))
        except (LookupError, OSError, ValueError) as exc:
            log.warning("backgroundSound file %s not used: %s", file_id, exc)
            return None

    def _file_bytes(self, file_id: str) -> bytes:
        from esl_controller.calls.persist import transaction
        from esl_controller.db.models import File
        from esl_controller.storage import BlobStore, files_root

        with transaction():
            row = File.get_or_none(File.id == file_id)
        if row is None:
            raise LookupError("no such file")
        return BlobStore(files_root(self.settings.data_dir)).path(row.sha256).read_bytes()

    def _handoff_resolver(self, session: Any, call_id: str, runners: list[Any]) -> Callable:
        """The conversation's handoff resolver: the next assistant by id or name among the stored
        assistants (or inline), its providers and tools; ``Call.assistant_id`` and ``call.data`` updated
        and a ``transfer-update`` server message queued."""

        def resolve(command: Any) -> Any:
            from esl_controller.pipeline.assistant import AssistantConfig
            from esl_controller.pipeline.conversation import HandoffTarget

            row, body, stored_id = self._find_assistant(call_id, command)
            config = AssistantConfig.from_dict(body, None)
            stt, llm, tts = self._providers(config, body, None)
            runner = self._tool_runner(session, row, body, fail=False)
            runners.append(runner)
            info = {"assistantId": stored_id, "assistantName": body.get("name")}
            self._record_handoff(session, call_id, body, stored_id)
            return HandoffTarget(
                config, stt, llm, tts, runner, {k: v for k, v in info.items() if v}
            )

        return resolve

    def _find_assistant(self, call_id: str, command: Any) -> tuple[Any, dict[str, Any], Any]:
        from esl_controller.calls.persist import transaction
        from esl_controller.db.models import Assistant, Call

        with transaction():
            row = Call.get_or_none(Call.id == call_id)
            if row is None:
                raise LookupError("the call is gone")
            if command.assistant is not None:
                return row, dict(command.assistant), None
            q = Assistant.select().where(Assistant.org_id == row.org_id)
            if command.assistant_id:
                found = q.where(Assistant.id == command.assistant_id).first()
            else:
                found = q.where(Assistant.name == command.assistant_name).first()
            if found is None:
                wanted = command.assistant_id or command.assistant_name
                raise LookupError(f"no assistant {wanted!r}")
            return row, {"name": found.name, **dict(found.data or {})}, found.id

    def _record_handoff(
        self, session: Any, call_id: str, body: Mapping[str, Any], stored_id: Any
    ) -> None:
        from esl_controller.calls.persist import transaction
        from esl_controller.db.models import Call
        from esl_controller.webhooks import messages as wm

        with transaction():
            row = Call.get_or_none(Call.id == call_id)
            if row is None:
                return
            data = dict(row.data or {})
            previous = {"assistantId": row.assistant_id, "name": _name(data, row)}
            if stored_id is not None:
                data.pop("assistant", None)
            else:
                data["assistant"] = dict(body)
            data.pop("assistantOverrides", None)
            history = list(data.get("handoffs") or [])
            history.append(
                {"from": previous, "to": {"assistantId": stored_id, "name": body.get("name")}}
            )
            data["handoffs"] = history[-20:]
            Call.update(data=data, assistant_id=stored_id).where(Call.id == call_id).execute()
            row = Call.get_by_id(call_id)
            emitter = getattr(getattr(session.deps, "lifecycle", None), "_emitter", None)
            if emitter is None:
                return
            to = {"name": body.get("name"), "id": stored_id}
            try:
                emitter.emit(
                    row,
                    "transfer-update",
                    lambda ctx: wm.transfer_update(
                        ctx,
                        None,
                        to_assistant={k: v for k, v in to.items() if v},
                        from_assistant={k: v for k, v in previous.items() if v},
                    ),
                )
            except Exception:  # noqa: BLE001 - the server message is best effort
                log.exception("call %s: transfer-update not queued", call_id)

    def _tool_runner(
        self, session: Any, row: Any, body: Mapping[str, Any], *, fail: bool = True
    ) -> Any:
        """A ToolRunner (None: no tools; False: the toolset is broken and the call ends; with
        ``fail=False`` a broken toolset raises ValueError instead)."""
        model = body.get("model") if isinstance(body.get("model"), Mapping) else {}
        if not (model.get("tools") or model.get("toolIds") or body.get("endCallFunctionEnabled")):
            return None
        from esl_controller.calls.persist import transaction
        from esl_controller.calls.serialize import call_to_wire
        from esl_controller.pipeline.tools.runner import (
            ToolRunner,
            box_unseal,
            db_credential_loader,
            db_tool_loader,
        )
        from esl_controller.pipeline.tools.spec import ToolsetError, build_toolset
        from esl_controller.webhooks.messages import MessageContext

        try:
            with transaction():
                toolset = build_toolset(model, db_tool_loader(), assistant=body)
                wire = call_to_wire(row)
        except ToolsetError as exc:
            if not fail:
                raise ValueError(f"tools: {exc}") from exc
            self._fail(session, "pipeline-error-tools-invalid", f"tools: {exc}")
            return False
        context = MessageContext(call=wire, assistant=body, customer=wire.get("customer"))
        box = self.box
        return ToolRunner(
            context,
            toolset,
            credentials=db_credential_loader(box) if box is not None else None,
            unseal=box_unseal(box) if box is not None else None,
            assistant=body,
        )

    def _recorder(
        self,
        row: Any,
        body: Mapping[str, Any],
        overrides: Mapping[str, Any] | None,
        rate: int,
    ) -> tuple[Any, Callable[[], None] | None]:
        plan = dict(body.get("artifactPlan") or {})
        plan.update(dict((overrides or {}).get("artifactPlan") or {}))
        plan.update(dict((row.data or {}).get("artifactPlan") or {}))
        if plan.get("recordingEnabled") is False:
            return None, None
        from esl_controller.media.recorder import CallRecorder

        directory = self.settings.data_path / "recordings"
        directory.mkdir(parents=True, exist_ok=True)
        mono = directory / f"{row.id}.mono.wav"
        stereo = directory / f"{row.id}.stereo.wav"
        try:
            if self.recording_writer is not None:
                recorder = self.recording_writer.recorder(rate, str(mono), str(stereo))
            else:
                recorder = CallRecorder(rate, str(mono), str(stereo))
        except OSError as exc:
            log.warning("call %s: cannot record (%s)", row.id, exc)
            return None, None
        public, org = self.settings.public_url, row.org_id
        try:
            _artifacts(row.id, org, public, mono, stereo, "writing")
        except Exception:  # noqa: BLE001 - the call goes on; the files are still written
            log.exception("call %s: recording artifacts not stored", row.id)

        def seal() -> None:
            _artifacts(row.id, org, public, mono, stereo, "sealed")

        return recorder, seal

    def _fail(self, session: Any, reason: str, message: str) -> None:
        session.notify(
            PipelineNotice("error", {"endedReason": reason, "message": message, "fatal": True})
        )


def _vad_confidence(call_id: str, config: Any, rate: int) -> Any:
    """``startSpeakingPlan.vad`` ("webrtc" default, "silero"; see ``media.silero``) as the VAD's
    confidence function (None: webrtcvad). An unusable choice falls back to webrtcvad, logged."""
    from esl_controller.media import silero

    try:
        return silero.confidence_for(silero.vad_choice(config.start_speaking_plan), rate)
    except (ValueError, OSError, ImportError) as exc:
        log.warning("call %s: VAD falls back to webrtcvad: %s", call_id, exc)
        return None


def _name(data: Mapping[str, Any], row: Any) -> Any:
    inline = data.get("assistant")
    return inline.get("name") if isinstance(inline, Mapping) else None


def _socket_item(session: Any, item: Any) -> None:
    if getattr(item, "subclass", None) == PLAY_AUDIO:
        on_play_audio_event(session.deps.registry, item)


def _tap_web_port(port: Any, pipeline: MediaPipeline) -> None:
    """Web calls: what the client is sent also goes to the recording (at the call time the client hears
    it) and the listeners."""
    playout = port.playout
    clock = pipeline.clock
    port.heard_frames = deque(maxlen=HEARD_FRAMES_KEPT)

    def heard(frame: bytes, at: float) -> None:
        port.heard_frames.append(frame)
        to_call_time = clock() - time.monotonic()  # the playout's clock is time.monotonic
        pipeline.add_assistant(frame, at + to_call_time)

    playout.on_heard = heard


def _artifacts(
    call_id: str, org_id: str, public_url: str, mono: Any, stereo: Any, status: str
) -> None:
    """Artifact rows of the recordings and the call's ``artifact.recordingUrl`` fields."""
    from esl_controller.calls.persist import transaction
    from esl_controller.db.models import Artifact, Call

    with transaction():
        for kind, path in (("recording-mono", mono), ("recording-stereo", stereo)):
            size = path.stat().st_size if path.exists() else 0
            art = Artifact.get_or_none((Artifact.call == call_id) & (Artifact.kind == kind))
            if art is None:
                Artifact.create(
                    org_id=org_id,
                    call=call_id,
                    kind=kind,
                    path=str(path),
                    bytes=size,
                    mimetype="audio/wav",
                    status=status,
                )
            else:
                Artifact.update(bytes=size, status=status).where(Artifact.id == art.id).execute()
        row = Call.get_or_none(Call.id == call_id)
        if row is None:
            return
        data = dict(row.data or {})
        artifact = dict(data.get("artifact") or {})
        want = {
            "recordingUrl": f"{public_url}/call/{call_id}/recording",
            "stereoRecordingUrl": f"{public_url}/call/{call_id}/recording/stereo",
        }
        if all(artifact.get(k) == v for k, v in want.items()):
            return
        artifact.update(want)
        data["artifact"] = artifact
        Call.update(data=data).where(Call.id == call_id).execute()
