// voicechat notebook bridge (anywidget ESM, no build step).
//
// initialize() runs once per widget model and owns the audio: microphone capture through an
// AudioWorklet (16 kHz mono Int16 chunks of ~100 ms sent to the kernel as binary buffers),
// reply playback through WebAudio with a small jitter buffer, and optional browser speech
// recognition with automatic fallback to server STT. render() runs once per view and draws the
// mic button and level meter; views and the model-level app talk only through the model's
// traits and a registry keyed by the widget's instance_id.
//
// NOTE model.send(content, callbacks, buffers): the buffers are the THIRD argument. Passing
// them second silently drops them.

const TARGET_RATE = 16000;
const HOLD_CHUNKS = 30; // ~3 s of microphone kept while browser recognition is on trial
const FATAL_STT_ERRORS = new Set([
  "network", "not-allowed", "service-not-allowed", "audio-capture", "language-not-supported", "bad-grammar",
]);

// Runs in the audio rendering thread: low-pass (windowed sinc), resample to 16 kHz by linear
// interpolation between filtered samples, quantise to Int16, post one chunk every chunkSamples.
const WORKLET_SOURCE = `
class VoicechatCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions;
    this.step = sampleRate / o.targetRate;
    this.chunk = o.chunkSamples;
    this.out = new Int16Array(this.chunk);
    this.n = 0;
    this.t = 1;
    this.prev = 0;
    this.sq = 0;
    const taps = 31, mid = (taps - 1) / 2, fc = Math.min(0.45 * o.targetRate, 7200) / sampleRate;
    this.h = new Float32Array(taps);
    let sum = 0;
    for (let i = 0; i < taps; i++) {
      const x = i - mid;
      const sinc = x === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * x) / (Math.PI * x);
      this.h[i] = sinc * (0.54 - 0.46 * Math.cos((2 * Math.PI * i) / (taps - 1)));
      sum += this.h[i];
    }
    for (let i = 0; i < taps; i++) this.h[i] /= sum;
    this.ring = new Float32Array(taps);
    this.pos = 0;
  }
  emit(v) {
    const s = Math.max(-1, Math.min(1, v));
    this.sq += s * s;
    this.out[this.n++] = s < 0 ? s * 32768 : s * 32767;
    if (this.n === this.chunk) {
      const level = Math.sqrt(this.sq / this.chunk);
      this.port.postMessage({ pcm: this.out.buffer, level }, [this.out.buffer]);
      this.out = new Int16Array(this.chunk);
      this.n = 0;
      this.sq = 0;
    }
  }
  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (!ch) return true;
    const h = this.h, ring = this.ring, taps = h.length;
    for (let i = 0; i < ch.length; i++) {
      ring[this.pos] = ch[i];
      this.pos = (this.pos + 1) % taps;
      let y = 0;
      for (let k = 0, j = this.pos; k < taps; k++, j = (j + 1) % taps) y += h[k] * ring[j];
      while (this.t <= 1) {
        this.emit(this.prev + (y - this.prev) * this.t);
        this.t += this.step;
      }
      this.t -= 1;
      this.prev = y;
    }
    return true;
  }
}
registerProcessor("voicechat-capture", VoicechatCapture);
`;

function registry() {
  if (!globalThis.__voicechat_apps) globalThis.__voicechat_apps = new Map();
  return globalThis.__voicechat_apps;
}

// Test and debugging hooks: how much reply audio the page actually played.
function stats() {
  if (!globalThis.__voicechat) {
    globalThis.__voicechat = { played_energy: 0, played_chunks: 0, sent_chunks: 0, flushes: 0, stt_errors: [] };
    globalThis.__voicechat_played_energy = 0;
  }
  return globalThis.__voicechat;
}

function toInt16(buf) {
  if (buf instanceof DataView) return new Int16Array(buf.buffer, buf.byteOffset, buf.byteLength >> 1);
  if (ArrayBuffer.isView(buf)) return new Int16Array(buf.buffer, buf.byteOffset, buf.byteLength >> 1);
  return new Int16Array(buf);
}

class VoiceApp {
  constructor(model) {
    this.model = model;
    this.id = model.get("instance_id");
    this.ctx = this.stream = this.source = this.node = this.workletReady = null; // capture
    this.seq = this.level = 0;
    this.views = new Set(); // update functions of the rendered views
    this.sources = new Set(); // playback: scheduled AudioBufferSourceNodes
    this.nextTime = 0;
    this.flushed = [0, 0]; // [gen, turn] dropped so far
    this.gain = this.analyser = this.meterTimer = null;
    this.recognizer = this.sttFailed = null; // browser speech recognition
    this.sttRestarts = 0;
    const restart = () => {
      this.sttFailed = null; // a new language or mode gets a new chance at browser recognition
      if (this.model.get("listening")) { this.stopMic(); this.startMic(); }
    };
    this.handlers = [
      ["change:listening", () => this.listeningChanged()], ["change:echo_cancellation", restart],
      ["change:stt_mode", restart], ["change:language", restart], ["msg:custom", (m, b) => this.custom(m, b)],
    ];
    for (const [event, fn] of this.handlers) model.on(event, fn);
    registry().set(this.id, this);
    stats();
  }

  dispose() {
    for (const [event, fn] of this.handlers) this.model.off(event, fn);
    this.stopMic();
    this.flush();
    if (this.meterTimer) clearInterval(this.meterTimer);
    if (this.ctx) this.ctx.close().catch(() => {});
    registry().delete(this.id);
  }

  setTrait(name, value) {
    if (this.model.get(name) !== value) { this.model.set(name, value); this.model.save_changes(); }
  }

  refreshViews() { for (const v of this.views) v(); }

  // Created synchronously inside the click handler where possible: autoplay policy.
  ensureContext() {
    if (!this.ctx) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      this.ctx = new Ctx({ latencyHint: "interactive" });
      this.gain = this.ctx.createGain();
      this.analyser = this.ctx.createAnalyser();
      this.analyser.fftSize = 1024;
      this.gain.connect(this.analyser);
      this.analyser.connect(this.ctx.destination);
    }
    if (this.ctx.state === "suspended") this.ctx.resume().catch(() => {});
    return this.ctx;
  }

  listeningChanged() {
    if (this.model.get("listening")) this.startMic();
    else this.stopMic();
    this.refreshViews();
  }

  // ------------------------------------------------------------------ microphone
  async startMic() {
    if (this.stream || this.starting) return;
    this.starting = true;
    this.setTrait("mic_state", "starting");
    this.refreshViews();
    try {
      const ctx = this.ensureContext();
      const ec = !!this.model.get("echo_cancellation");
      const gum = navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: ec, noiseSuppression: ec, autoGainControl: ec, channelCount: 1 },
      });
      if (!this.workletReady) {
        const url = URL.createObjectURL(new Blob([WORKLET_SOURCE], { type: "application/javascript" }));
        this.workletReady = ctx.audioWorklet.addModule(url);
      }
      const [stream] = await Promise.all([gum, this.workletReady, ctx.resume()]);
      if (!this.model.get("listening")) {
        stream.getTracks().forEach((t) => t.stop());
        this.setTrait("mic_state", "off");
        return;
      }
      this.stream = stream;
      const chunkSamples = Math.round((TARGET_RATE * (this.model.get("chunk_ms") || 100)) / 1000);
      this.source = ctx.createMediaStreamSource(stream);
      this.node = new AudioWorkletNode(ctx, "voicechat-capture", {
        numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1,
        channelCountMode: "explicit", channelInterpretation: "speakers",
        processorOptions: { targetRate: TARGET_RATE, chunkSamples },
      });
      this.node.port.onmessage = (ev) => this.chunk(ev.data);
      const mute = ctx.createGain();
      mute.gain.value = 0;
      this.source.connect(this.node);
      this.node.connect(mute);
      mute.connect(ctx.destination); // keeps the node pulled by the graph in every browser
      this.setTrait("mic_state", "on");
      this.startRecognition();
    } catch (err) {
      const name = err && err.name;
      const why = name === "NotAllowedError" ? "microphone permission denied"
        : name === "NotFoundError" ? "no microphone found" : String(err && err.message || err);
      this.setTrait("mic_state", "error: " + why);
      this.setTrait("listening", false);
    } finally {
      this.starting = false;
      this.refreshViews();
    }
  }

  stopMic() {
    this.stopRecognition();
    if (this.node) { this.node.port.onmessage = null; this.node.disconnect(); this.node = null; }
    if (this.source) { this.source.disconnect(); this.source = null; }
    if (this.stream) { this.stream.getTracks().forEach((t) => t.stop()); this.stream = null; }
    this.level = 0;
    this.held = [];
    if (!this.starting && !String(this.model.get("mic_state")).startsWith("error")) this.setTrait("mic_state", "off");
  }

  sendsAudio() {
    return this.model.get("stt_mode") !== "browser" || this.sttFailed !== null;
  }

  chunk({ pcm, level }) {
    this.level = level;
    for (const v of this.views) v(level);
    if (!this.stream) return;
    if (this.sendsAudio()) this.sendChunk(pcm);
    else this.held = [...(this.held || []).slice(-(HOLD_CHUNKS - 1)), pcm]; // replayed on fallback
  }

  sendChunk(pcm) {
    this.model.send({ type: "audio", rate: TARGET_RATE, seq: this.seq++ }, undefined, [pcm]);
    stats().sent_chunks += 1;
  }

  // ------------------------------------------------------------------ browser speech recognition
  startRecognition() {
    if (this.model.get("stt_mode") !== "browser") { this.setTrait("stt_state", "server"); return; }
    if (this.sttFailed) { this.setTrait("stt_state", "fallback: " + this.sttFailed); return; }
    const Rec = window.SpeechRecognition || window.webkitSpeechRecognition;
    if (!Rec) { this.recognitionFailed("unsupported"); return; }
    const rec = new Rec();
    rec.continuous = true;
    rec.interimResults = true;
    rec.lang = this.model.get("language") || "en-US";
    rec.onresult = (ev) => {
      for (let i = ev.resultIndex; i < ev.results.length; i++) {
        const r = ev.results[i];
        this.model.send({ type: "transcript", text: r[0].transcript, final: r.isFinal });
      }
    };
    rec.onerror = (ev) => {
      stats().stt_errors.push(ev.error);
      if (FATAL_STT_ERRORS.has(ev.error)) this.recognitionFailed(ev.error);
    };
    rec.onend = () => {
      // Chrome ends recognition after a silence: restart it, unless it keeps ending at once.
      if (this.recognizer !== rec || this.sttFailed) return;
      this.sttRestarts = performance.now() - this.sttStarted < 1000 ? this.sttRestarts + 1 : 0;
      if (this.sttRestarts > 3) { this.recognitionFailed("ended"); return; }
      try { this.sttStarted = performance.now(); rec.start(); } catch (e) { this.recognitionFailed("restart failed"); }
    };
    this.recognizer = rec;
    try {
      this.sttStarted = performance.now();
      rec.start();
      this.setTrait("stt_state", "browser");
    } catch (e) {
      this.recognitionFailed("start failed");
    }
  }

  recognitionFailed(reason) {
    // From now on the microphone chunks go to the kernel: server STT takes over at once.
    // The last couple of seconds, held while the browser was to recognise them, go first, so the
    // words said before the failure are not lost.
    this.sttFailed = reason;
    this.stopRecognition();
    for (const pcm of this.held || []) this.sendChunk(pcm);
    this.held = [];
    this.setTrait("stt_state", "fallback: " + reason);
  }

  stopRecognition() {
    const rec = this.recognizer;
    this.recognizer = null;
    if (rec) { rec.onend = null; rec.onresult = null; try { rec.abort(); } catch (e) { /* already stopped */ } }
  }

  // ------------------------------------------------------------------ playback
  custom(msg, buffers) {
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "audio" && buffers && buffers.length) this.play(msg, toInt16(buffers[0]));
    else if (msg.type === "flush") this.flush(msg.gen, msg.turn);
  }

  isFlushed(gen, turn) {
    const [g, t] = this.flushed;
    return gen < g || (gen === g && turn <= t);
  }

  play(msg, pcm) {
    if (this.isFlushed(msg.gen, msg.turn) || pcm.length === 0) return;
    const ctx = this.ensureContext();
    const data = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) data[i] = pcm[i] / 32768;
    const buf = ctx.createBuffer(1, data.length, msg.rate);
    buf.copyToChannel(data, 0);
    const src = ctx.createBufferSource();
    src.buffer = buf;
    src.connect(this.gain);
    const jitter = (this.model.get("jitter_ms") || 120) / 1000;
    if (this.nextTime < ctx.currentTime + 0.01) this.nextTime = ctx.currentTime + jitter; // (re)prime
    src.start(this.nextTime);
    this.nextTime += buf.duration;
    this.sources.add(src);
    src.onended = () => this.sources.delete(src);
    stats().played_chunks += 1;
    this.startMeter();
  }

  flush(gen, turn) {
    if (gen !== undefined) {
      const [g, t] = this.flushed;
      if (gen > g || (gen === g && turn > t)) this.flushed = [gen, turn];
    }
    for (const s of this.sources) { s.onended = null; try { s.stop(); } catch (e) { /* not started */ } }
    this.sources.clear();
    this.nextTime = 0;
    stats().flushes += 1;
  }

  startMeter() {
    if (this.meterTimer) return;
    const buf = new Float32Array(this.analyser.fftSize);
    this.meterTimer = setInterval(() => {
      this.analyser.getFloatTimeDomainData(buf);
      let e = 0;
      for (let i = 0; i < buf.length; i++) e += buf[i] * buf[i];
      const rms = Math.sqrt(e / buf.length);
      const s = stats();
      s.played_energy += rms;
      globalThis.__voicechat_played_energy = s.played_energy;
      if (this.sources.size === 0 && rms < 1e-4) { clearInterval(this.meterTimer); this.meterTimer = null; }
    }, 50);
  }
}

function render({ model, el }) {
  const app = registry().get(model.get("instance_id"));
  el.classList.add("vc-bridge");
  const button = document.createElement("button");
  button.className = "vc-mic";
  button.type = "button";
  const meter = document.createElement("span");
  meter.className = "vc-meter";
  const bar = document.createElement("span");
  meter.appendChild(bar);
  const note = document.createElement("span");
  note.className = "vc-mic-note";
  el.append(button, meter, note);

  const update = (level) => {
    const on = !!model.get("listening");
    button.textContent = on ? "■ Stop listening" : "🎤 Start listening";
    button.classList.toggle("vc-on", on);
    if (typeof level === "number") bar.style.width = Math.min(100, Math.round(level * 400)) + "%";
    if (!on) bar.style.width = "0%";
    const mic = model.get("mic_state") || "off";
    const stt = model.get("stt_state") || "";
    note.textContent = mic.startsWith("error") ? mic : stt.startsWith("fallback") ? "browser STT unavailable (" +
      stt.slice(10) + "): server STT" : mic === "starting" ? "starting microphone…" : "";
  };
  button.addEventListener("click", () => {
    // Runs inside the user gesture: create/resume the AudioContext here (autoplay policy).
    if (app) app.ensureContext();
    model.set("listening", !model.get("listening"));
    model.save_changes();
  });
  const onChange = () => update();
  const events = ["change:listening", "change:mic_state", "change:stt_state"];
  for (const e of events) model.on(e, onChange);
  if (app) app.views.add(update);
  update();
  return () => {
    for (const e of events) model.off(e, onChange);
    if (app) app.views.delete(update);
  };
}

function initialize({ model }) {
  const app = new VoiceApp(model);
  return () => app.dispose();
}

export default { initialize, render };
