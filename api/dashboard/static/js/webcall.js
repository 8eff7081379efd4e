// The web-call page: microphone -> AudioWorklet -> PCM16 at the transport rate -> WebSocket; the
// assistant's PCM16 -> jitter buffer -> speakers, cut at once on {"type":"clear"}; live transcripts of
// both sides; mute and hang up. Access is by the per-call token in this page's URL (?token=...), which
// is passed on to the call's WebSocket; no API key is involved.

import { createPlayer, startCapture } from "./audio/pcm.js";

const RATE = 16000;
const FORMAT = "pcm_s16le";
const HANGUP_WAIT_MS = 3000;

const main = document.getElementById("main");
const stateLine = document.getElementById("state");
const startButton = document.getElementById("start");
const muteButton = document.getElementById("mute");
const hangupButton = document.getElementById("hangup");
const list = document.getElementById("transcript");
const partialLine = document.getElementById("partial");
const level = document.getElementById("level");

const session = {
  ws: null, ctx: null, player: null, capture: null,
  muted: false, ended: false, endedReason: null, bytesIn: 0, bytesOut: 0,
};

function setState(name, text, kind = "") {
  main.dataset.state = name;
  stateLine.textContent = text;
  stateLine.className = `notice ${kind}`.trim();
}

function say(role, text) {
  if (!text) return;
  const who = role === "user" ? "You" : "Assistant";
  const li = document.createElement("li");
  li.className = role === "user" ? "user" : "assistant";
  li.dataset.role = role;
  const tag = document.createElement("span");
  tag.className = "who";
  tag.textContent = who;
  li.append(tag, document.createTextNode(text));
  list.append(li);
  list.scrollTop = list.scrollHeight;
}

function socketUrl() {
  const base = main.dataset.wsUrl;
  if (!base) return null;
  const url = new URL(base, location.href);
  const token = new URLSearchParams(location.search).get("token");
  // only the token this page was opened with counts (the server strips any stored one)
  url.searchParams.delete("token");
  if (token) url.searchParams.set("token", token);
  url.searchParams.set("sampleRate", String(RATE));
  url.searchParams.set("format", FORMAT);
  return url.toString();
}

function micError(err) {
  const name = err && err.name;
  if (name === "NotAllowedError" || name === "SecurityError")
    return "Microphone access was denied. Allow the microphone for this page in your browser's site settings, then press “Start call” again.";
  if (name === "NotFoundError" || name === "OverconstrainedError") return "No microphone was found. Connect one and try again.";
  if (name === "NotReadableError") return "The microphone is in use by another application.";
  return `The microphone could not be opened: ${err && err.message ? err.message : err}`;
}

async function start() {
  const url = socketUrl();
  if (!url) {
    setState("error", "This web call has no connection address yet. Ask for a new call link.", "error");
    return;
  }
  startButton.disabled = true;
  setState("starting", "Opening the microphone…");
  let stream;
  try {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) throw Object.assign(new Error("this browser (or an insecure http page) has no microphone access"), { name: "SecurityError" });
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
  } catch (err) {
    setState("mic-denied", micError(err), "error");
    startButton.disabled = false;
    return;
  }
  try {
    session.ctx = new AudioContext({ latencyHint: "interactive" });
    await session.ctx.resume();
    session.player = await createPlayer(session.ctx, main.dataset.worklet, { inputRate: RATE, channels: 1, startMs: 60 });
  } catch (err) {
    for (const t of stream.getTracks()) t.stop();
    setState("error", `Audio could not start in this browser: ${err.message}`, "error");
    startButton.disabled = false;
    return;
  }
  setState("connecting", "Connecting…");
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  session.ws = ws;
  let opened = false;

  ws.onopen = async () => {
    opened = true;
    ws.send(JSON.stringify({ type: "start", sampleRate: RATE, format: FORMAT }));
    try {
      session.capture = await startCapture(session.ctx, main.dataset.worklet, stream, {
        targetRate: RATE,
        onFrame(pcm, rms) {
          if (ws.readyState !== WebSocket.OPEN) return;
          const data = session.muted ? new ArrayBuffer(pcm.byteLength) : pcm;
          ws.send(data);
          session.bytesOut += data.byteLength;
          level.style.width = `${session.muted ? 0 : Math.min(100, Math.round(rms * 400))}%`;
        },
      });
    } catch (err) {
      setState("error", `The microphone could not be read: ${err.message}`, "error");
      ws.close();
      return;
    }
    setState("live", "Connected. Speak when you are ready.");
    muteButton.disabled = false;
    hangupButton.disabled = false;
    hangupButton.focus();
  };

  ws.onmessage = (ev) => {
    if (ev.data instanceof ArrayBuffer) {
      session.bytesIn += ev.data.byteLength;
      session.player.push(ev.data);
      return;
    }
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return;
    }
    onMessage(msg);
  };

  ws.onerror = () => {
    if (!opened) setState("error", "Could not connect to the call. The link may have expired or the call ended.", "error");
  };

  ws.onclose = (ev) => {
    stopAudio();
    muteButton.disabled = true;
    hangupButton.disabled = true;
    if (session.ended) return;
    if (!opened) {
      setState("error", "Could not connect to the call. The link may have expired or the call ended.", "error");
    } else {
      setState("lost", `The connection was lost${ev.code && ev.code !== 1006 ? ` (code ${ev.code})` : ""}. The call cannot be resumed from this page.`, "error");
    }
  };
}

function onMessage(msg) {
  switch (msg.type) {
    case "transcript": {
      const role = msg.role === "user" ? "user" : "assistant";
      if (msg.transcriptType === "final") {
        say(role, msg.transcript);
        partialLine.textContent = "";
      } else partialLine.textContent = `${role === "user" ? "You" : "Assistant"}: ${msg.transcript || ""}`;
      break;
    }
    case "speech-update":
      if (!session.ended && msg.role === "assistant") setState("live", msg.status === "started" ? "The assistant is speaking…" : "Listening…");
      break;
    case "clear":
      session.player.clear(); // barge-in: drop whatever is still buffered, now
      break;
    case "error":
      if (msg.message) setState(main.dataset.state || "live", `Problem: ${msg.message}`, "error");
      break;
    case "call-ended":
      ended(msg.endedReason || "ended");
      break;
    default:
      break;
  }
}

const REASONS = {
  "customer-ended-call": "you hung up",
  "assistant-ended-call": "the assistant ended the call",
  "manually-canceled": "an operator ended the call",
  "exceeded-max-duration": "the call reached its time limit",
  "silence-timed-out": "nobody spoke for too long",
  "assistant-forwarded-call": "the assistant tried to transfer the call",
  "worker-shutdown": "the server is shutting down",
};

function ended(reason) {
  session.ended = true;
  session.endedReason = reason;
  main.dataset.endedReason = reason;
  setState("ended", `The call has ended: ${REASONS[reason] ? `${REASONS[reason]} (${reason})` : reason}.`, "ended");
  muteButton.disabled = true;
  hangupButton.disabled = true;
  if (session.capture) session.capture.stop();
  session.capture = null;
}

function stopAudio() {
  if (session.capture) session.capture.stop();
  session.capture = null;
  level.style.width = "0";
  if (session.ctx) {
    const ctx = session.ctx;
    // let the last buffered words play before closing the context
    setTimeout(() => ctx.close().catch(() => {}), 1500);
  }
}

function hangup() {
  const ws = session.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  hangupButton.disabled = true;
  setState("ending", "Hanging up…");
  ws.send(JSON.stringify({ type: "hangup" }));
  setTimeout(() => {
    if (ws.readyState === WebSocket.OPEN) {
      if (!session.ended) ended("customer-ended-call");
      ws.close(1000, "hangup");
    }
  }, HANGUP_WAIT_MS);
}

function toggleMute() {
  session.muted = !session.muted;
  muteButton.setAttribute("aria-pressed", String(session.muted));
  muteButton.textContent = session.muted ? "Unmute" : "Mute";
  if (!session.ended) setState("live", session.muted ? "You are muted." : "Connected. Speak when you are ready.");
}

if (startButton) {
  const status = main.dataset.status;
  if (status === "ended") {
    ended(main.dataset.endedReason || "ended");
    startButton.disabled = true;
  } else if (!main.dataset.wsUrl) {
    setState("error", "This web call has no connection address yet. Ask for a new call link.", "error");
    startButton.disabled = true;
  } else if (!new URLSearchParams(location.search).get("token")) {
    setState("idle", "This link has no access token; the call may refuse the connection.", "error");
  }
  startButton.addEventListener("click", start);
  muteButton.addEventListener("click", toggleMute);
  hangupButton.addEventListener("click", hangup);
  window.addEventListener("pagehide", () => {
    if (session.ws && session.ws.readyState === WebSocket.OPEN) session.ws.send(JSON.stringify({ type: "hangup" }));
  });
}

// for tests and support: counters only (never the socket or its token)
window.webCallStats = () => ({
  bytesIn: session.bytesIn,
  bytesOut: session.bytesOut,
  ended: session.ended,
  endedReason: session.endedReason,
  underruns: session.player ? session.player.underruns : 0,
});
