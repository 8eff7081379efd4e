// Main-thread side of the audio worklets: a PCM16 player with a jitter buffer, and a microphone capture
// that yields PCM16 frames at the transport rate. Used by the web-call page and by live listen.

const loaded = new WeakMap();

async function ensureWorklet(ctx, url) {
  if (!loaded.has(ctx)) loaded.set(ctx, ctx.audioWorklet.addModule(url));
  return loaded.get(ctx);
}

/** A player for interleaved PCM16 LE at `inputRate` with `channels` channels. */
export async function createPlayer(ctx, workletUrl, { inputRate = 16000, channels = 1, startMs = 80, maxMs = 2000 } = {}) {
  await ensureWorklet(ctx, workletUrl);
  const node = new AudioWorkletNode(ctx, "pcm-player", {
    numberOfInputs: 0,
    numberOfOutputs: 1,
    outputChannelCount: [Math.max(1, Math.min(2, channels))],
    processorOptions: { inputRate, channels, startMs, maxMs },
  });
  node.connect(ctx.destination);
  let underruns = 0;
  node.port.onmessage = (ev) => {
    if (ev.data && ev.data.type === "drained") underruns = ev.data.underruns;
  };
  return {
    /** Queue PCM16 bytes (ArrayBuffer); odd trailing bytes are dropped. */
    push(buffer) {
      const bytes = buffer.byteLength - (buffer.byteLength % (2 * channels));
      if (bytes <= 0) return;
      const copy = buffer.slice(0, bytes);
      node.port.postMessage({ type: "pcm", pcm: copy }, [copy]);
    },
    /** Drop everything buffered at once (barge-in). */
    clear() {
      node.port.postMessage({ type: "clear" });
    },
    get underruns() {
      return underruns;
    },
    close() {
      node.port.onmessage = null;
      node.disconnect();
    },
  };
}

/** Capture `stream` as PCM16 mono frames (ArrayBuffer) at `targetRate`; onFrame(buffer, level). */
export async function startCapture(ctx, workletUrl, stream, { targetRate = 16000, frameMs = 20, onFrame }) {
  await ensureWorklet(ctx, workletUrl);
  const source = ctx.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(ctx, "pcm-capture", {
    numberOfInputs: 1,
    numberOfOutputs: 0,
    channelCount: 1,
    channelCountMode: "explicit",
    processorOptions: { targetRate, frameMs },
  });
  node.port.onmessage = (ev) => onFrame(ev.data.pcm, ev.data.level);
  source.connect(node);
  return {
    stop() {
      node.port.onmessage = null;
      try {
        source.disconnect();
      } catch {
        /* already disconnected */
      }
      for (const t of stream.getTracks()) t.stop();
    },
  };
}
