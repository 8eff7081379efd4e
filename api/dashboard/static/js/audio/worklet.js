// AudioWorklet processors (loaded with audioWorklet.addModule; self-contained, no imports).
//
// "pcm-capture": the microphone, mixed to mono, low-passed and resampled from the context rate to the
//   transport rate, posted to the main thread as Int16Array chunks of `frameMs` (default 20 ms), with the
//   chunk's RMS level (0..1) for a meter. Sends silence-free: it posts what the mic gives (mute is done by
//   the page, which then sends zeros so the far end keeps its clock).
// "pcm-player": a jitter buffer for PCM16 received at `inputRate` with `channels` interleaved channels.
//   Starts playing once `startMs` is buffered, plays gap-free after that, re-primes after an underrun,
//   drops everything at once on {type: "clear"}, and caps latency at `maxMs` (oldest audio dropped).

/** A streaming resampler: windowed-sinc low-pass (when downsampling) + linear interpolation. */
class Resampler {
  constructor(fromRate, toRate) {
    this.step = fromRate / toRate; // input samples per output sample
    this.pos = 0; // fractional read position into `buf`
    this.buf = new Float32Array(0);
    this.taps = null;
    if (toRate < fromRate) {
      const cutoff = (0.45 * toRate) / fromRate; // cycles per input sample
      const n = 31;
      const taps = new Float32Array(n);
      let sum = 0;
      for (let i = 0; i < n; i++) {
        const x = i - (n - 1) / 2;
        const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
        const w = 0.54 - 0.46 * Math.cos((2 * Math.PI * i) / (n - 1)); // Hamming
        taps[i] = sinc * w;
        sum += taps[i];
      }
      for (let i = 0; i < n; i++) taps[i] /= sum;
      this.taps = taps;
      this.hist = new Float32Array(n - 1);
    }
  }

  _filter(input) {
    const taps = this.taps;
    const n = taps.length;
    const joined = new Float32Array(this.hist.length + input.length);
    joined.set(this.hist, 0);
    joined.set(input, this.hist.length);
    const out = new Float32Array(input.length);
    for (let i = 0; i < input.length; i++) {
      let acc = 0;
      for (let k = 0; k < n; k++) acc += taps[k] * joined[i + k];
      out[i] = acc;
    }
    this.hist = joined.slice(joined.length - (n - 1));
    return out;
  }

  process(input) {
    const x = this.taps ? this._filter(input) : input;
    const buf = new Float32Array(this.buf.length + x.length);
    buf.set(this.buf, 0);
    buf.set(x, this.buf.length);
    const out = [];
    let pos = this.pos;
    while (pos + 1 < buf.length) {
      const i = Math.floor(pos);
      const f = pos - i;
      out.push(buf[i] * (1 - f) + buf[i + 1] * f);
      pos += this.step;
    }
    const keep = Math.floor(pos);
    this.buf = buf.slice(keep);
    this.pos = pos - keep;
    return Float32Array.from(out);
  }
}

class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions || {};
    this.targetRate = o.targetRate || 16000;
    this.frame = Math.round((this.targetRate * (o.frameMs || 20)) / 1000);
    this.resampler = new Resampler(sampleRate, this.targetRate);
    this.pending = new Int16Array(this.frame);
    this.fill = 0;
    this.sq = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0 || !input[0]) return true;
    const len = input[0].length;
    const mono = new Float32Array(len);
    for (const ch of input) for (let i = 0; i < len; i++) mono[i] += ch[i] / input.length;
    const res = this.resampler.process(mono);
    for (let i = 0; i < res.length; i++) {
      const s = Math.max(-1, Math.min(1, res[i]));
      this.sq += s * s;
      this.pending[this.fill++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.fill === this.frame) {
        const level = Math.sqrt(this.sq / this.frame);
        this.port.postMessage({ pcm: this.pending.buffer, level }, [this.pending.buffer]);
        this.pending = new Int16Array(this.frame);
        this.fill = 0;
        this.sq = 0;
      }
    }
    return true;
  }
}

class PcmPlayer extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions || {};
    this.channels = o.channels || 1;
    this.startSamples = Math.round((sampleRate * (o.startMs || 80)) / 1000);
    this.maxSamples = Math.round((sampleRate * (o.maxMs || 2000)) / 1000);
    this.resamplers = [];
    for (let c = 0; c < this.channels; c++) this.resamplers.push(new Resampler(o.inputRate || 16000, sampleRate));
    this.queue = []; // per entry: array of Float32Array per channel
    this.buffered = 0;
    this.offset = 0; // read offset into queue[0]
    this.playing = false;
    this.underruns = 0;
    this.port.onmessage = (ev) => this.onMessage(ev.data);
  }

  onMessage(msg) {
    if (msg.type === "clear") {
      this.queue = [];
      this.buffered = 0;
      this.offset = 0;
      this.playing = false;
      this.port.postMessage({ type: "cleared" });
      return;
    }
    if (msg.type !== "pcm") return;
    const pcm = new Int16Array(msg.pcm);
    const frames = Math.floor(pcm.length / this.channels);
    const chans = [];
    for (let c = 0; c < this.channels; c++) {
      const x = new Float32Array(frames);
      for (let i = 0; i < frames; i++) x[i] = pcm[i * this.channels + c] / 0x8000;
      chans.push(this.resamplers[c].process(x));
    }
    if (chans[0].length === 0) return;
    this.queue.push(chans);
    this.buffered += chans[0].length;
    while (this.buffered > this.maxSamples && this.queue.length > 1) {
      const dropped = this.queue.shift();
      this.buffered -= dropped[0].length - this.offset;
      this.offset = 0;
    }
  }

  process(_inputs, outputs) {
    const out = outputs[0];
    const len = out[0].length;
    if (!this.playing && this.buffered >= this.startSamples) this.playing = true;
    if (!this.playing) return true;
    let written = 0;
    while (written < len && this.queue.length) {
      const head = this.queue[0];
      const n = Math.min(len - written, head[0].length - this.offset);
      for (let c = 0; c < out.length; c++) {
        const src = head[Math.min(c, head.length - 1)];
        out[c].set(src.subarray(this.offset, this.offset + n), written);
      }
      written += n;
      this.offset += n;
      this.buffered -= n;
      if (this.offset >= head[0].length) {
        this.queue.shift();
        this.offset = 0;
      }
    }
    if (written < len) {
      // underrun: the rest of this block stays silent; wait for startMs again before resuming
      this.playing = false;
      if (written > 0 || this.queue.length === 0) {
        this.underruns++;
        this.port.postMessage({ type: "drained", underruns: this.underruns });
      }
    }
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
registerProcessor("pcm-player", PcmPlayer);
