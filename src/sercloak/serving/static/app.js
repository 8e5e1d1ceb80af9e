// sercloak browser client: audio -> log-mel -> per-user normalisation -> cloak, in plain JS.
// Mirrors sercloak/serving/client.py: centred frames, periodic Hamming window, an exact DFT
// (n_fft need not be a power of two), the bundle's mel filterbank, 10*log10(max(P, amin)).
"use strict";

const demo = { client: null, logMel: null, cloaked: null, result: null };
window.sercloakDemo = demo;
const $ = (id) => document.getElementById(id);

// A service started with --api-key-file wants "Authorization: Bearer KEY" on every call
// but /healthz and this page: the key is asked for here and kept for this tab only.
const KEY = "sercloak-api-key";
function authHeaders() {
  const key = sessionStorage.getItem(KEY);
  return key ? { Authorization: `Bearer ${key}` } : {};
}
function askForKey(why) {
  $("key-form").hidden = false;
  $("status").textContent = why;
}
$("key-use").addEventListener("click", () => {
  sessionStorage.setItem(KEY, $("api-key").value.trim());
  $("api-key").value = "";
  $("key-form").hidden = true;
  start();
});

async function start() {
  const health = await (await fetch("healthz")).json();
  if (health.api_key_required && !sessionStorage.getItem(KEY)) {
    askForKey("This service needs an API key: enter it above.");
    return;
  }
  await loadClient().catch((e) => { $("status").textContent = `Cannot load the bundle: ${e}`; });
}

async function loadClient() {
  const response = await fetch("v1/client", { headers: authHeaders() });
  if (response.status === 401) {
    sessionStorage.removeItem(KEY);
    askForKey(`The service refused the key: ${(await response.json()).detail}`);
    return;
  }
  if (!response.ok) throw new Error(`v1/client: ${response.status}`);
  const c = await response.json();
  $("bundle-id").textContent = c.bundle_id;
  if (c.browser === false) {  // e.g. a split network's bundle: the Python client runs it
    $("status").textContent = c.message;
    return;
  }
  const f = c.features;
  // DFT tables: bin k of frame x is sum_n x[n] (cos - i sin)(2 pi k n / N)
  const nBins = f.n_fft / 2 + 1;
  c.cos = new Float64Array(nBins * f.n_fft);
  c.sin = new Float64Array(nBins * f.n_fft);
  for (let k = 0; k < nBins; k++) {
    for (let n = 0; n < f.n_fft; n++) {
      const a = (2 * Math.PI * ((k * n) % f.n_fft)) / f.n_fft;
      c.cos[k * f.n_fft + n] = Math.cos(a);
      c.sin[k * f.n_fft + n] = Math.sin(a);
    }
  }
  c.window = new Float64Array(f.n_fft);
  const left = Math.floor((f.n_fft - f.win_length) / 2);
  for (let n = 0; n < f.win_length; n++) {
    c.window[left + n] = 0.54 - 0.46 * Math.cos((2 * Math.PI * n) / f.win_length);
  }
  demo.client = c;
  const m = c.measured;
  $("measured").textContent = `emotion UAR ${m.emotion_uar_speaker.mean}% (speaker-balanced), ` +
    `gender UAR of the attacker chosen on validation ${m.gender_uar_speaker.mean}% ` +
    `(chance ${m.gender_uar_speaker.chance.mean}%, p = ${m.gender_uar_speaker.chance.p})`;
  $("status").textContent = "Ready: drop a file or record.";
}

function logMel(wave) {
  const c = demo.client, f = c.features;
  const nFft = f.n_fft, hop = f.hop_length, half = nFft / 2, nBins = nFft / 2 + 1;
  const nFrames = 1 + Math.floor(wave.length / hop);
  const frame = new Float64Array(nFft), power = new Float64Array(nBins);
  const out = [];
  for (let t = 0; t < nFrames; t++) {
    for (let n = 0; n < nFft; n++) {
      const i = t * hop + n - half; // centred frames, zeros beyond both ends
      frame[n] = (i >= 0 && i < wave.length ? wave[i] : 0) * c.window[n];
    }
    for (let k = 0; k < nBins; k++) {
      let re = 0, im = 0;
      const row = k * nFft;
      for (let n = 0; n < nFft; n++) {
        re += frame[n] * c.cos[row + n];
        im -= frame[n] * c.sin[row + n];
      }
      power[k] = re * re + im * im;
    }
    const mels = new Float64Array(f.n_mels);
    for (let m = 0; m < f.n_mels; m++) {
      let s = 0;
      const w = c.filterbank[m];
      for (let k = 0; k < nBins; k++) s += w[k] * power[k];
      mels[m] = 10 * Math.log10(Math.max(s, f.amin));
    }
    out.push(mels);
  }
  return out;
}

function padToSegment(feats) {
  const f = demo.client.features, floor = 10 * Math.log10(f.amin);
  const out = feats.slice();
  while (out.length < f.segment_frames) out.push(new Float64Array(f.n_mels).fill(floor));
  return out;
}

// per-user normalisation without a history: the utterance's own speech statistics
// (frames within 40 dB of the loudest), as the Python client does for a first utterance
function normalise(feats) {
  const n = feats[0].length;
  const level = feats.map((r) => r.reduce((a, b) => a + b, 0) / n);
  const top = Math.max(...level);
  const speech = feats.filter((_, i) => level[i] >= top - 40);
  const mean = new Float64Array(n), sq = new Float64Array(n);
  for (const r of speech) for (let m = 0; m < n; m++) { mean[m] += r[m]; sq[m] += r[m] * r[m]; }
  const std = new Float64Array(n);
  for (let m = 0; m < n; m++) {
    mean[m] /= speech.length;
    std[m] = Math.max(Math.sqrt(Math.max(sq[m] / speech.length - mean[m] ** 2, 0)), 1.0);
  }
  return feats.map((r) => r.map((v, m) => (v - mean[m]) / std[m]));
}

function gauss() { // Box-Muller
  const u = 1 - Math.random(), v = Math.random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

function applyCloak(feats) {
  const k = demo.client.cloak, f = demo.client.features, n = f.n_mels;
  const window = f.segment_frames, cell = Array.isArray(k.sigma[0]);
  const at = (a, t) => (cell ? a[t % window] : a);
  const factor = 1 + k.warp * (2 * Math.random() - 1); // one warp per utterance
  const etas = {};
  return feats.map((row, t) => {
    let x = row;
    if (k.warp) { // output bin m reads input bin m * factor (linear, edge beyond the last)
      x = row.map((_, m) => {
        const p = Math.min(Math.max(m * factor, 0), n - 1), lo = Math.floor(p);
        const hi = Math.min(lo + 1, n - 1), frac = p - lo;
        return row[lo] * (1 - frac) + row[hi] * frac;
      });
    }
    const w = Math.floor(t / window);
    if (!etas[w]) etas[w] = Array.from({ length: n }, gauss);
    const sigma = at(k.sigma, t), tau = at(k.offset_sigma, t), mask = at(k.mask, t);
    const mu = at(k.mu, t), muS = at(k.mu_s, t);
    return x.map((v, m) => {
      let z = (v - k.feat_mean[m]) / k.feat_std[m];
      const noise = sigma[m] * gauss() + tau[m] * etas[w][m];
      z = k.suppressed ? (z + noise) * mask[m] + muS[m] : z + noise + mu[m];
      return z * k.feat_std[m] + k.feat_mean[m];
    });
  });
}

function draw(canvas, feats) {
  const frames = feats.length, mels = feats[0].length;
  canvas.width = frames; canvas.height = mels;
  const g = canvas.getContext("2d"), image = g.createImageData(frames, mels);
  let lo = Infinity, hi = -Infinity;
  for (const r of feats) for (const v of r) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  for (let t = 0; t < frames; t++) {
    for (let m = 0; m < mels; m++) {
      const v = Math.round((255 * (feats[t][m] - lo)) / (hi - lo || 1));
      const i = 4 * ((mels - 1 - m) * frames + t);
      image.data[i] = v; image.data[i + 1] = Math.round(v * 0.6); image.data[i + 2] = 255 - v;
      image.data[i + 3] = 255;
    }
  }
  g.putImageData(image, 0, 0);
}

async function decode(arrayBuffer) {
  const rate = demo.client.features.sample_rate;
  // decoding in a context at the features' rate resamples any input to it
  const probe = new OfflineAudioContext(1, 1, rate);
  const audio = await probe.decodeAudioData(arrayBuffer);
  const mono = new OfflineAudioContext(1, audio.length, rate);
  const source = mono.createBufferSource();
  source.buffer = audio; source.connect(mono.destination); source.start();
  return (await mono.startRendering()).getChannelData(0);
}

async function analyse(arrayBuffer) {
  const c = demo.client;
  $("status").textContent = "Computing log-mel and the cloak here…";
  const wave = await decode(arrayBuffer);
  demo.wave = wave;
  demo.logMel = logMel(wave);
  let feats = padToSegment(demo.logMel);
  if (c.features.normalise === "user") feats = normalise(feats);
  demo.cloaked = applyCloak(feats);
  draw($("clean"), feats);
  draw($("cloaked"), demo.cloaked);
  $("status").textContent = `Sending ${demo.cloaked.length} cloaked frames (no audio)…`;
  const response = await fetch("v1/emotion", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Bundle-Id": c.bundle_id,
               ...authHeaders() },
    body: JSON.stringify({ features: demo.cloaked.map((r) => Array.from(r)) }),
  });
  const answer = await response.json();
  if (!response.ok) { $("status").textContent = `The service refused: ${answer.detail}`; return; }
  demo.result = answer;
  const table = $("probabilities");
  table.innerHTML = "";
  for (const [label, p] of Object.entries(answer.utterance.probabilities)) {
    const row = table.insertRow();
    row.insertCell().textContent = label;
    row.insertCell().innerHTML = `<div class="bar" style="width:${Math.round(300 * p)}px"></div>`;
    row.insertCell().textContent = p.toFixed(3);
  }
  $("status").textContent = `Emotion: ${answer.utterance.label} ` +
    `(${answer.windows.length} windows of 2 s).`;
}

$("file").addEventListener("change", async (e) => {
  if (e.target.files.length) analyse(await e.target.files[0].arrayBuffer());
});
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", async (e) => {
  e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files.length) analyse(await e.dataTransfer.files[0].arrayBuffer());
});
$("record").addEventListener("click", async () => {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const recorder = new MediaRecorder(stream), chunks = [];
  recorder.ondataavailable = (e) => chunks.push(e.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((t) => t.stop());
    analyse(await new Blob(chunks).arrayBuffer());
  };
  $("status").textContent = "Recording 4 s…";
  recorder.start();
  setTimeout(() => recorder.stop(), 4000);
});
start().catch((e) => { $("status").textContent = `Cannot reach the service: ${e}`; });
