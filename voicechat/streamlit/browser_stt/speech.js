// Browser speech recognition (Web Speech API) for voicechat: interim text as state, final text as a trigger.
// Streamlit may call this function again with new data on every rerun; one controller per mount
// is kept on the parent element so recognition is not restarted by reruns.
const FATAL = new Set(["network", "not-allowed", "service-not-allowed", "audio-capture", "language-not-supported"]);

function makeController(parentElement) {
  const SR = window.SpeechRecognition || window.webkitSpeechRecognition;
  const status = document.createElement("div");
  status.className = "vc-stt-status";
  parentElement.appendChild(status);
  const ctl = { rec: null, enabled: false, lang: "", failed: null, seq: 0, api: null, restartTimer: null };

  function report(error) {
    ctl.failed = error;
    status.textContent = "";
    ctl.api.setStateValue("error", error);
  }

  function stop() {
    clearTimeout(ctl.restartTimer);
    const rec = ctl.rec;
    ctl.rec = null;
    if (rec) {
      rec.onend = null;
      try { rec.abort(); } catch (e) { /* already stopped */ }
    }
    status.textContent = "";
  }

  function start() {
    if (!SR) { report("unsupported"); return; }
    const rec = new SR();
    rec.continuous = true;
    rec.interimResults = true;
    rec.maxAlternatives = 1;
    rec.lang = ctl.lang;
    rec.onresult = (event) => {
      let interim = "";
      let final = "";
      for (let i = event.resultIndex; i < event.results.length; i++) {
        const text = event.results[i][0].transcript;
        if (event.results[i].isFinal) final += text; else interim += text;
      }
      ctl.api.setStateValue("interim", interim);
      if (final.trim()) {
        ctl.seq += 1;
        ctl.api.setTriggerValue("final", { text: final.trim(), seq: ctl.seq });
      }
    };
    rec.onerror = (event) => {
      if (FATAL.has(event.error)) { stop(); report(event.error); }
      // "no-speech" and "aborted" are routine: onend restarts recognition.
    };
    rec.onend = () => {
      if (ctl.rec === rec && ctl.enabled && !ctl.failed) {
        ctl.restartTimer = setTimeout(() => { if (ctl.rec === rec) { try { rec.start(); } catch (e) { report("start-failed"); } } }, 250);
      }
    };
    ctl.rec = rec;
    try {
      rec.start();
      status.textContent = "🎙️ " + (ctl.label || "");
    } catch (e) {
      report("start-failed");
    }
  }

  ctl.update = (data, api) => {
    ctl.api = api;
    ctl.label = data.label || "";
    if (!SR) { if (!ctl.failed) report("unsupported"); return; }
    const want = Boolean(data.enabled) && !ctl.failed;
    if (!want) { ctl.enabled = false; stop(); return; }
    if (ctl.rec && ctl.lang === data.lang) return;
    stop();
    ctl.enabled = true;
    ctl.lang = data.lang || "en-US";
    start();
  };
  ctl.destroy = () => { ctl.enabled = false; stop(); };
  return ctl;
}

export default function (component) {
  const { data, setStateValue, setTriggerValue, parentElement } = component;
  if (!parentElement.__voicechatStt) parentElement.__voicechatStt = makeController(parentElement);
  const ctl = parentElement.__voicechatStt;
  ctl.update(data || {}, { setStateValue, setTriggerValue });
  return () => { ctl.destroy(); delete parentElement.__voicechatStt; };
}
