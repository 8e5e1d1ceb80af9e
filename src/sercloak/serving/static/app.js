// sercloak browser client: audio -> log-mel -> per-user normalisation -> cloak, in plain JS.
// Mirrors sercloak/serving/client.py: centred frames, periodic Hamming window, an exact DFT
// (n_fft need not be a power of two), the bundle's mel filterbank, 10*log10(max(P, amin)).
"use strict";

const demo = { client: null, logMel: null, cloaked: null, result: null, refused: null };
window.sercloakDemo = demo;
const $ = (id) => document.getElementById(id);

// Where the emotion service is: this page's own origin, or (when `sercloak client` serves
// the page from the user's machine) the one its config.json names.
let SERVICE = "";
let LOCAL = false; // served by `sercloak client`, which checked the bundle itself
const api = (path) => (SERVICE ? `${SERVICE}/${path}` : path);

// A service started with --api-key-file wants "Authorization: Bearer KEY" on every call
// but /healthz and this page: the key is asked for here and kept for this tab only.
const KEY = "sercloak-api-key";
// The bundle exporter's Ed25519 public key, pinned by the user: kept in this browser.
const PIN = "sercloak-trusted-key";
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
$("pin-use").addEventListener("click", () => {
  localStorage.setItem(PIN, $("pin").value.trim());
  $("pin").value = "";
  start();
});
$("pin-forget").addEventListener("click", () => { localStorage.removeItem(PIN); start(); });
for (const box of ["allow-unverified", "allow-unprotected"]) {
  $(box).addEventListener("change", () => start());
}

// Nothing is computed or sent with a bundle that fails a check: the page fails closed.
class Refusal extends Error {}
function stop(why) { // from now on nothing is computed or sent with this bundle
  demo.client = null;
  demo.refused = why;
  $("status").textContent = `Refused: ${why}`;
}
function refuse(why) {
  stop(why);
  throw new Refusal(why);
}

async function start() {
  demo.refused = null;
  const config = await fetch("config.json").then((r) => (r.ok ? r.json() : null), () => null);
  SERVICE = config ? config.server : "";
  LOCAL = Boolean(config && config.checked_here);
  $("pinned").textContent = localStorage.getItem(PIN) ? "a key is pinned" : "no key pinned";
  const health = await (await fetch(api("healthz"))).json();
  if (health.api_key_required && !sessionStorage.getItem(KEY)) {
    askForKey("This service needs an API key: enter it above.");
    return;
  }
  await loadClient().catch((e) => {
    if (!(e instanceof Refusal)) $("status").textContent = `Cannot load the bundle: ${e}`;
  });
}

async function bundleFile(name) {
  // the bundle's files come from where the page came from: this machine under
  // `sercloak client`, else the service (which needs the key)
  const response = await fetch(`v1/bundle/files/${name}`, { headers: LOCAL ? {} : authHeaders() });
  if (response.status === 401) {
    sessionStorage.removeItem(KEY);
    askForKey(`The service refused the key: ${(await response.json()).detail}`);
    throw new Refusal("no key");
  }
  if (response.status === 404) return null;
  if (!response.ok) throw new Error(`${name}: ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

const fromBase64 = (text) => Uint8Array.from(atob(text.trim()), (c) => c.charCodeAt(0));
const hex = (buffer) => Array.from(new Uint8Array(buffer),
  (b) => b.toString(16).padStart(2, "0")).join("");

async function checkSignature(manifestBytes) {
  const pinned = localStorage.getItem(PIN);
  if (!pinned) {
    if (LOCAL || $("allow-unverified").checked) return false;
    $("pin-form").hidden = false;
    refuse("no key is pinned to check this bundle's signature with: pin the exporter's " +
      "public key above (or tick 'use it unverified', and trust this server)");
  }
  const signature = await bundleFile("manifest.sig");
  if (signature === null) refuse("the bundle is not signed, and a key is pinned");
  if (!crypto.subtle) refuse("this browser cannot check signatures here (not a secure context: use https)");
  let valid = false;
  try {
    const key = await crypto.subtle.importKey("raw", fromBase64(pinned), { name: "Ed25519" },
      false, ["verify"]);
    valid = await crypto.subtle.verify({ name: "Ed25519" }, key,
      fromBase64(new TextDecoder().decode(signature)), manifestBytes);
  } catch (e) {
    refuse(`the signature cannot be checked (${e.message})`);
  }
  if (!valid) {
    refuse("the bundle's signature does not verify with the pinned key: tampered, or " +
      "signed by someone else");
  }
  return true;
}

async function checkedFile(manifest, name) {
  const bytes = await bundleFile(name);
  if (bytes === null || !(name in manifest.files)) refuse(`the bundle lacks ${name}`);
  if (hex(await crypto.subtle.digest("SHA-256", bytes)) !== manifest.files[name]) {
    refuse(`${name} does not match its hash in the manifest`);
  }
  return bytes;
}

// .npy: magic, version, header length, a Python dict header, little-endian data
function parseNpy(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.subarray(start, start + headerLength));
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(",").filter((d) => d.trim())
    .map(Number);
  const data = bytes.slice(start + headerLength);
  if (descr === "<f4") return { shape, data: new Float32Array(data.buffer) };
  const unicode = /^<U(\d+)$/.exec(descr); // a 0-d unicode array: the cloak's JSON header
  if (unicode) {
    const codes = new Uint32Array(data.buffer, 0, Number(unicode[1]));
    return { shape, text: String.fromCodePoint(...codes.filter((c) => c !== 0)) };
  }
  throw new Error(`an array of ${descr}`);
}

// .npz: a zip of .npy files, stored (np.savez); read through the central directory
function parseNpz(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let end = bytes.length - 22;
  while (end >= 0 && view.getUint32(end, true) !== 0x06054b50) end--;
  if (end < 0) throw new Error("not a zip file");
  let at = view.getUint32(end + 16, true);
  const out = {};
  for (let i = 0; i < view.getUint16(end + 10, true); i++) {
    if (view.getUint16(at + 10, true) !== 0) throw new Error("a compressed .npz");
    const size = view.getUint32(at + 20, true), nameLength = view.getUint16(at + 28, true);
    const name = new TextDecoder().decode(bytes.subarray(at + 46, at + 46 + nameLength));
    const local = view.getUint32(at + 42, true);
    const data = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
    out[name.replace(/\.npy$/, "")] = parseNpy(bytes.slice(data, data + size));
    at += 46 + nameLength + view.getUint16(at + 30, true) + view.getUint16(at + 32, true);
  }
  return out;
}

// rows of numbers as a float32 .npy file (version 1.0, little-endian): what is sent
function npy(rowsOfNumbers) {
  const n = rowsOfNumbers.length, m = rowsOfNumbers[0].length;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${n}, ${m}), }`;
  header += " ".repeat(63 - ((10 + header.length) % 64)) + "\n"; // aligned to 64 bytes
  const out = new Uint8Array(10 + header.length + 4 * n * m);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]); // \x93NUMPY, version 1.0
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  const data = new Float32Array(out.buffer, 10 + header.length, n * m);
  rowsOfNumbers.forEach((r, i) => data.set(r, i * m));
  return out;
}

function rows(array) { // a (rows, cols) array as a list of rows; a vector as itself
  if (array.shape.length < 2) return Array.from(array.data);
  const [n, m] = array.shape;
  return Array.from({ length: n }, (_, i) => Array.from(array.data.subarray(i * m, (i + 1) * m)));
}

// the rules of sercloak/serving/client.py and bundle.py, written here rather than read from
// the server: the server is who this page checks. Each protection's design; noise below
// MIN_NOISE everywhere and no suppressed cell protects nothing; what is sent must move at
// least MIN_NOISY_SHARE of its cells suppressed or under noise of MIN_NOISE_TO_SPREAD of each
// feature's spread.
const PROTECTION_DESIGN = { cloak: "spectrogram", voicenorm: "spectrogram",
  "voicenorm+cloak": "spectrogram", split: "embedding", "voicenorm+split": "embedding",
  label: "label" };
const MIN_NOISE = 1e-2, MIN_NOISY_SHARE = 0.5, MIN_NOISE_TO_SPREAD = 0.1;
function cloakStrength(k) {
  const flat = (a) => (Array.isArray(a[0]) ? a.flat() : a);
  const arrays = ["mu", "sigma", "offset_sigma", "mu_s", "mask", "feat_mean", "feat_std"];
  const finite = arrays.every((name) => flat(k[name]).every(Number.isFinite));
  const noise = Math.max(...flat(k.sigma).map(Math.abs), ...flat(k.offset_sigma).map(Math.abs));
  const suppresses = k.suppressed && flat(k.mask).some((v) => v < 0.5);
  return { finite, noise, suppresses };
}

function noisyShare(clean) { // the share of cells suppressed or under enough noise
  const k = demo.client.cloak, window = demo.client.features.segment_frames;
  const cell = Array.isArray(k.sigma[0]), at = (a, t) => (cell ? a[t % window] : a);
  const n = clean[0].length;
  let noisy = 0;
  for (let m = 0; m < n; m++) {
    const column = clean.map((r) => r[m]);
    const mean = column.reduce((a, b) => a + b, 0) / column.length;
    const spread = Math.sqrt(column.reduce((a, v) => a + (v - mean) ** 2, 0) / column.length);
    clean.forEach((_, t) => {
      const mask = k.suppressed ? at(k.mask, t)[m] : 1;
      const scale = Math.hypot(at(k.sigma, t)[m], at(k.offset_sigma, t)[m]) * k.feat_std[m];
      if (mask < 0.5 || scale * mask >= MIN_NOISE_TO_SPREAD * spread) noisy++;
    });
  }
  return noisy / (clean.length * n);
}

async function loadClient() {
  demo.client = null;
  const manifestBytes = await bundleFile("manifest.json");
  if (manifestBytes === null) refuse("the bundle has no manifest");
  const verified = await checkSignature(manifestBytes);
  const manifest = JSON.parse(new TextDecoder().decode(manifestBytes));
  $("bundle-id").textContent = manifest.bundle_id + (verified ? " (signature checked)" : "");
  const kind = (manifest.protection || {}).kind;
  if (!$("allow-unprotected").checked) {
    if (!(kind in PROTECTION_DESIGN)) {
      refuse(`the bundle states no protection (${kind}): nothing would protect what is sent`);
    }
    if (manifest.design !== PROTECTION_DESIGN[kind]) {
      refuse(`its protection ${kind} is not one its design ${manifest.design} runs`);
    }
  }
  const needsPython = { split: "a split network's device part", voicenorm: "voice normalisation",
    label: "the emotion model itself (it sends the label alone)" };
  const part = Object.keys(needsPython).find((word) => (kind || "").includes(word));
  if (part) {
    const why = needsPython[part];
    $("status").textContent = `This bundle's client runs ${why}, which this page does not: ` +
      "use the Python client (`sercloak predict FILE --bundle BUNDLE --server URL`).";
    return;
  }
  const filterbank = parseNpy(await checkedFile(manifest, "client/mel_filterbank.npy"));
  const npz = parseNpz(await checkedFile(manifest, "client/cloak.npz"));
  const meta = JSON.parse(npz.meta.text);
  const cloak = { warp: Number(meta.cloak_config.warp || 0), suppressed: Boolean(meta.suppressed) };
  for (const name of ["mu", "sigma", "mu_s", "mask", "feat_mean", "feat_std"]) {
    cloak[name] = rows(npz[name]);
  }
  cloak.offset_sigma = npz.offset_sigma ? rows(npz.offset_sigma) :
    cloak.sigma.map((r) => (Array.isArray(r) ? r.map(() => 0) : 0));
  const strength = cloakStrength(cloak);
  if (!strength.finite && !$("allow-unprotected").checked) {
    refuse("the bundle's cloak has values that are not finite");
  }
  if (strength.noise < MIN_NOISE && !strength.suppresses && !$("allow-unprotected").checked) {
    refuse(`the bundle's cloak adds no noise (σ below ${MIN_NOISE} everywhere) and ` +
      "suppresses nothing: it would send clean features");
  }
  const c = { bundle_id: manifest.bundle_id, features: manifest.features,
              measured: manifest.measured || {}, filterbank: rows(filterbank), cloak };
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
  if (c === null) { // refused or not loaded: nothing is computed, nothing is sent
    $("status").textContent = `Refused: ${demo.refused || "the bundle is not loaded"}`;
    return;
  }
  $("status").textContent = "Computing log-mel and the cloak here…";
  const wave = await decode(arrayBuffer);
  demo.wave = wave;
  demo.logMel = logMel(wave);
  let feats = padToSegment(demo.logMel);
  if (c.features.normalise === "user") feats = normalise(feats);
  demo.cloaked = applyCloak(feats);
  const share = noisyShare(feats);
  const finite = demo.cloaked.every((r) => r.every(Number.isFinite));
  if ((!finite || share < MIN_NOISY_SHARE) && !$("allow-unprotected").checked) {
    stop(finite ? `only ${Math.round(100 * share)}% of what would be sent is under noise of ` +
      `a tenth of its spread or suppressed (at least ${100 * MIN_NOISY_SHARE}% needed): it ` +
      "would send nearly clean features; nothing sent" :
      "the cloaked features are not finite; nothing sent");
    return;
  }
  draw($("clean"), feats);
  draw($("cloaked"), demo.cloaked);
  $("status").textContent = `Sending ${demo.cloaked.length} cloaked frames (no audio)…`;
  const response = await fetch(api("v1/emotion"), {
    method: "POST",
    headers: { "Content-Type": "application/x-npy", "X-Bundle-Id": c.bundle_id,
               ...authHeaders() },
    body: npy(demo.cloaked),
  });
  const answer = await response.json();
  if (!response.ok) { $("status").textContent = `The service refused: ${answer.detail}`; return; }
  demo.result = answer;
  const table = $("probabilities");
  table.innerHTML = "";
  for (const [label, p] of Object.entries(answer.utterance.probabilities)) {
    const row = table.insertRow();
    row.insertCell().textContent = label;
    const bar = document.createElement("div"); // no inline style: the CSP allows none
    bar.className = "bar";
    bar.style.width = `${Math.round(300 * p)}px`;
    row.insertCell().appendChild(bar);
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
