// One call: details, controls, live listen, transcript, timeline, recording, costs, structured outputs, pcap.

import { api, apiOptional, ApiError } from "../api.js";
import { createPlayer } from "../audio/pcm.js";
import {
  badge, clear, duration, errorList, field, h, money, notAvailable, panel, pretty, saveBlob, seconds, time, toast, TZ,
} from "../util.js";

const LIVE = new Set(["queued", "ringing", "in-progress", "forwarding"]);
const REFRESH_MS = 3000;
const WORKLET = new URL("../audio/worklet.js", import.meta.url).href;

export async function callPage(main, callId) {
  const stops = [];
  const title = h("h1", "Call ", h("code", callId));
  main.append(h("p", h("a", { href: "#/calls" }, "← All calls")), title);
  let call;
  try {
    call = await api(`/call/${callId}`);
  } catch (err) {
    main.append(err instanceof ApiError && err.status === 404 ? h("p.notice.error", "This call does not exist.") : errorList(err));
    return null;
  }
  const grid = h("div.grid");
  main.append(grid);

  const [details, detailsBody] = panel("Details");
  const [controls, controlsBody] = panel("Live control");
  const [transcript, transcriptBody] = panel("Transcript");
  const [timeline, timelineBody] = panel("Timeline", { id: "timeline-panel" });
  const [recording, recordingBody] = panel("Recording");
  const [costs, costsBody] = panel("Cost breakdown");
  const [outputs, outputsBody] = panel("Structured outputs");
  const [files, filesBody] = panel("Packet capture");
  transcript.id = "transcript-panel";
  grid.append(details, controls, transcript, timeline, recording, costs, outputs, files);

  function renderDetails() {
    const customer = call.customer || {};
    const rows = [
      ["Status", badge(call.status)],
      ["Type", call.type],
      ["Created", time(call.createdAt)],
      ["Started", time(call.startedAt)],
      ["Ended", time(call.endedAt)],
      ["Duration", call.startedAt ? duration(call.startedAt, call.endedAt) : "—"],
      ["Ended reason", call.endedReason || "—"],
      ["Assistant", call.assistantId ? h("code", call.assistantId) : (call.assistant && call.assistant.name) || "—"],
      ["Phone number", call.phoneNumberId ? h("code", call.phoneNumberId) : "—"],
      ["Customer", customer.number || customer.sipUri || customer.name || "—"],
      ["Cost", call.cost !== undefined ? money(call.cost) : "—"],
    ];
    clear(detailsBody).append(
      h("dl.kv", rows.flatMap(([k, v]) => [h("dt", k), h("dd", v)])),
      h("p.muted", `Times in ${TZ}.`),
    );
  }

  // ------------------------------------------------------------------ live control
  let listen = null;
  function renderControls() {
    clear(controlsBody);
    if (!LIVE.has(call.status)) {
      controlsBody.append(h("p.muted", `The call is ${call.status}: no live control.`));
      if (listen) listen.stop();
      return;
    }
    const result = h("div", { "aria-live": "polite" });
    const send = async (body, what) => {
      clear(result);
      try {
        await api(`/call/${callId}/control`, { method: "POST", body });
        toast(`${what}: sent`);
        result.append(h("p.muted", `${what}: accepted`));
      } catch (err) {
        result.append(err instanceof ApiError && err.status === 404 ? notAvailable("Live control") : errorList(err));
      }
    };
    const [sayField, sayInput] = field("Say", h("input", { type: "text", maxlength: 2000, placeholder: "Text the assistant speaks now" }));
    const sayForm = h("form.actions", sayField, h("button", { type: "submit" }, "Say"));
    sayForm.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (sayInput.value.trim()) send({ type: "say", content: sayInput.value.trim() }, "Say");
    });
    const [dstField, dstInput] = field("Transfer to (E.164 number or sip: URI)", h("input", { type: "text", placeholder: "+15551234567" }));
    const transferForm = h("form.actions", dstField, h("button.secondary", { type: "submit" }, "Transfer"));
    transferForm.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const v = dstInput.value.trim();
      if (!v) return;
      const destination = /^sips?:/i.test(v) ? { type: "sip", sipUri: v } : { type: "number", number: v };
      send({ type: "transfer", destination }, "Transfer");
    });
    const endButton = h("button.danger", { type: "button" }, "End call");
    endButton.addEventListener("click", () => {
      if (confirm("End this call now?")) send({ type: "end-call" }, "End call");
    });
    controlsBody.append(sayForm, transferForm, h("p", endButton), result, renderListen());
  }

  function renderListen() {
    const url = call.monitor && call.monitor.listenUrl;
    const box = h("div#listen", { "data-bytes": "0" }, h("h3", "Live listen"));
    if (!url) {
      box.append(notAvailable("Live listen"));
      return box;
    }
    const button = h("button.secondary", { type: "button", "aria-pressed": "false" }, "Listen");
    const status = h("span.muted", { "aria-live": "polite" });
    button.addEventListener("click", async () => {
      if (listen) {
        listen.stop();
        return;
      }
      listen = await startListen(url, status, box, () => {
        listen = null;
        button.textContent = "Listen";
        button.setAttribute("aria-pressed", "false");
      });
      if (listen) {
        button.textContent = "Stop listening";
        button.setAttribute("aria-pressed", "true");
      }
    });
    box.append(h("p.actions", button, status), h("p.muted", "Both sides, 16 kHz stereo (customer left, assistant right)."));
    return box;
  }

  // ------------------------------------------------------------------ transcript and timeline
  let timelineItems = null;
  async function loadTimeline() {
    const tl = await apiOptional(`/call/${callId}/timeline`).catch((err) => ({ error: err }));
    clear(timelineBody);
    if (tl === null) {
      timelineBody.append(notAvailable("The timeline"));
      timelineItems = null;
      return;
    }
    if (tl.error) {
      timelineBody.append(errorList(tl.error));
      return;
    }
    timelineItems = tl.items || [];
    if (!timelineItems.length) timelineBody.append(h("p.muted", "No events yet."));
    else
      timelineBody.append(
        h(
          "ol.timeline",
          timelineItems.map((it) =>
            h(
              "li",
              { "data-type": it.type },
              h("span.t", `+${Number(it.secondsFromStart || 0).toFixed(2)} s`),
              h("span", it.type === "event" ? `${it.source || ""} ${it.kind || ""}`.trim() : it.type),
              h("span", describe(it)),
            ),
          ),
        ),
        tl.truncated ? h("p.muted", "Timeline truncated.") : null,
      );
  }

  function renderTranscript() {
    clear(transcriptBody);
    const art = call.artifact || {};
    let messages = art.messages || call.messages;
    if ((!messages || !messages.length) && timelineItems) {
      messages = timelineItems.filter((i) => i.type === "message").map((i) => ({ role: i.role, message: i.message, secondsFromStart: i.callSecondsFromStart }));
    }
    messages = (messages || []).filter((m) => ["user", "bot", "assistant", "system"].includes(m.role) && (m.message || m.content));
    if (messages.length) {
      transcriptBody.append(
        h(
          "ol.transcript",
          messages.map((m) =>
            h(`li.${m.role}`, h("span.who", `${m.role === "bot" ? "assistant" : m.role}${m.secondsFromStart != null ? ` · ${seconds(m.secondsFromStart)}` : ""}`), m.message || m.content),
          ),
        ),
      );
    } else if (art.transcript || call.transcript) {
      transcriptBody.append(h("pre", art.transcript || call.transcript));
    } else {
      transcriptBody.append(h("p.muted", LIVE.has(call.status) ? "Nothing said yet." : "No transcript stored."));
    }
  }

  // ------------------------------------------------------------------ recording, costs, outputs, pcap
  function renderRecording() {
    clear(recordingBody);
    const art = call.artifact || {};
    const has = art.stereoRecordingUrl || art.recordingUrl || call.stereoRecordingUrl || call.recordingUrl || (art.recording && Object.keys(art.recording).length);
    if (LIVE.has(call.status)) {
      recordingBody.append(h("p.muted", "The recording is available once the call has ended."));
      return;
    }
    const load = h("button.secondary", { type: "button" }, "Load stereo recording");
    const out = h("div");
    load.addEventListener("click", async () => {
      clear(out).append(h("p.muted", "Loading…"));
      try {
        let blob = await apiOptional(`/call/${callId}/recording/stereo`, { blob: true });
        let label = "Stereo recording (customer left, assistant right)";
        if (blob === null) {
          blob = await apiOptional(`/call/${callId}/recording`, { blob: true });
          label = "Recording (mono)";
        }
        clear(out);
        if (blob === null) {
          out.append(notAvailable("A recording of this call"));
          return;
        }
        const url = URL.createObjectURL(blob);
        stops.push(() => URL.revokeObjectURL(url));
        out.append(h("p", label), h("audio", { controls: true, src: url, preload: "auto", "aria-label": label }));
      } catch (err) {
        clear(out).append(errorList(err));
      }
    });
    recordingBody.append(has ? null : h("p.muted", "The call record names no recording; the server may still have one."), h("p", load), out);
  }

  async function loadCosts() {
    const c = await apiOptional(`/call/${callId}/costs`).catch((err) => ({ error: err }));
    clear(costsBody);
    if (c === null) return costsBody.append(notAvailable("Costs"));
    if (c.error) return costsBody.append(errorList(c.error));
    const items = c.costs || [];
    costsBody.append(
      h("p", h("strong", money(c.cost, c.currency)), c.complete === false ? h("span.muted", " (incomplete: some prices are missing from the rate card)") : null),
      items.length
        ? h(
            "table",
            h("thead", h("tr", ["Type", "Provider / model", "Usage", "Cost"].map((t) => h("th", { scope: "col" }, t)))),
            h(
              "tbody",
              items.map((it) =>
                h(
                  "tr",
                  h("td", it.type),
                  h("td", [it.provider, it.model].filter(Boolean).join(" / ") || "—"),
                  h("td", usageOf(it)),
                  h("td", money(it.cost, c.currency)),
                ),
              ),
            ),
          )
        : h("p.muted", "No cost items."),
      c.message ? h("p.muted", c.message) : null,
    );
    return null;
  }

  function renderOutputs() {
    clear(outputsBody);
    const art = call.artifact || {};
    const so = art.structuredOutputs || (call.analysis && call.analysis.structuredData);
    if (!so || (typeof so === "object" && !Object.keys(so).length)) {
      outputsBody.append(h("p.muted", "No structured outputs for this call."));
      return;
    }
    const entries = Array.isArray(so) ? so.map((v, i) => [v.name || String(i), v]) : Object.entries(so);
    outputsBody.append(
      h("dl.kv", entries.flatMap(([k, v]) => [h("dt", (v && v.name) || k), h("dd", h("pre", pretty(v && v.result !== undefined ? v.result : v)))])),
    );
  }

  function renderPcap() {
    clear(filesBody);
    const button = h("button.secondary", { type: "button" }, "Download pcap");
    const out = h("div", { "aria-live": "polite" });
    button.addEventListener("click", async () => {
      clear(out);
      try {
        const blob = await apiOptional(`/call/${callId}/pcap`, { blob: true });
        if (blob === null) out.append(notAvailable("A packet capture of this call"));
        else saveBlob(blob, `${callId}.pcap`);
      } catch (err) {
        out.append(errorList(err));
      }
    });
    filesBody.append(h("p.muted", "SIP and RTP of the call, when capture was on."), h("p", button), out);
  }

  async function refresh(first) {
    if (!first) {
      try {
        call = await api(`/call/${callId}`);
      } catch (err) {
        return;
      }
    }
    renderDetails();
    await loadTimeline();
    renderTranscript();
    if (first || !LIVE.has(call.status)) {
      renderRecording();
      renderOutputs();
      renderPcap();
      await loadCosts();
    }
  }

  await refresh(true);
  renderControls();
  let wasLive = LIVE.has(call.status);
  const timer = setInterval(async () => {
    if (!wasLive || document.visibilityState !== "visible") return;
    await refresh(false);
    if (!LIVE.has(call.status)) {
      wasLive = false;
      renderControls();
    }
  }, REFRESH_MS);
  return () => {
    clearInterval(timer);
    if (listen) listen.stop();
    for (const s of stops) s();
  };
}

function usageOf(it) {
  const parts = [];
  if (it.minutes != null) parts.push(`${Number(it.minutes).toFixed(2)} min`);
  if (it.promptTokens != null) parts.push(`${it.promptTokens} prompt tok`);
  if (it.completionTokens != null) parts.push(`${it.completionTokens} completion tok`);
  if (it.characters != null) parts.push(`${it.characters} chars`);
  return parts.join(", ") || "—";
}

function describe(it) {
  switch (it.type) {
    case "message":
      return `${it.role}: ${it.message || ""}`;
    case "webhook-job":
      return `${it.messageType} → ${it.status}${it.lastError ? ` (${it.lastError})` : ""}`;
    case "webhook-attempt":
      return `attempt ${it.number ?? ""} ${it.statusCode ?? it.error ?? ""}`;
    case "event": {
      const d = it.data || {};
      const text = d.message || d.text || d.reason || d.transcript;
      return text ? String(text) : Object.keys(d).length ? JSON.stringify(d).slice(0, 200) : "";
    }
    case "transcript":
      return it.transcript ? String(it.transcript).slice(0, 400) : it.summary || "";
    case "artifact":
      return [it.kind, it.url || it.name].filter(Boolean).join(" ");
    default:
      return it.message || it.kind || "";
  }
}

/** Live listen: the listen WebSocket streams PCM16 LE, 16 kHz, 2 channels; played with a jitter buffer. */
async function startListen(url, status, box, onStop) {
  let ctx;
  try {
    ctx = new AudioContext();
    await ctx.resume();
  } catch (err) {
    status.textContent = `Audio is not available: ${err.message}`;
    return null;
  }
  const player = await createPlayer(ctx, WORKLET, { inputRate: 16000, channels: 2, startMs: 120 });
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    try {
      ws.close();
    } catch {
      /* closed */
    }
    player.close();
    ctx.close();
    onStop();
  };
  let bytes = 0;
  ws.onopen = () => (status.textContent = "Listening…");
  ws.onmessage = (ev) => {
    if (ev.data instanceof ArrayBuffer) {
      player.push(ev.data);
      bytes += ev.data.byteLength;
      box.dataset.bytes = String(bytes);
    } else {
      let msg = {};
      try {
        msg = JSON.parse(ev.data);
      } catch {
        /* not JSON: ignored */
      }
      if (msg.type === "call-ended") status.textContent = "The call ended.";
    }
  };
  ws.onerror = () => (status.textContent = "Live listen connection failed.");
  ws.onclose = () => {
    if (!stopped && !status.textContent.startsWith("The call ended")) status.textContent = "Live listen ended.";
    stop();
  };
  return { stop };
}
