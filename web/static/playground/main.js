// The playground page: key -> file -> upload -> analyses drawn on one
// timeline; stems and master with synchronized players. See docs/playground.md.

import * as api from "./api.js";
import { SyncGroup } from "./player.js";
import { Timeline, fmtTime } from "./timeline.js";
import { computePeaks } from "./waveform.js";

const $ = (id) => document.getElementById(id);

// What the page knows and has drawn; tests and curious people read it from
// the console as window.playground.state.
const state = {
  account: null,
  file: null,
  fileUrl: null,
  asset: null,
  duration: 0,
  results: {},
  jobs: {},
  errors: [],
  notices: [], // 429s the page waited out: {op, statusCode, code, message}
  timings: {},
  abort: new AbortController(), // aborted when another track is chosen
  pendingUpload: false,
};

const groups = {}; // "original" | "stems" | "master" -> SyncGroup
let timeline = null;

// ---- errors -----------------------------------------------------------------

function showError(err, where) {
  const e = err instanceof api.ApiError ? err : new api.ApiError({ message: String(err?.message || err) });
  state.errors.push({ where, statusCode: e.statusCode, error: e.error, code: e.code, message: e.message });
  const li = document.createElement("li");
  li.dataset.status = String(e.statusCode || "");
  li.dataset.code = e.code;
  const msg = document.createElement("strong");
  msg.className = "error-message";
  msg.textContent = e.message;
  const meta = document.createElement("span");
  meta.className = "error-meta";
  const parts = [e.statusCode ? `${e.statusCode} ${e.error}`.trim() : "", e.code, where].filter(Boolean);
  meta.textContent = ` (${parts.join(" · ")})`;
  li.append(msg, meta);
  $("error-list").appendChild(li);
  $("errors").hidden = false;
}

function clearErrors() {
  $("error-list").replaceChildren();
  $("errors").hidden = true;
}

// ---- key ----------------------------------------------------------------------

async function useKey(key) {
  api.setKey(key);
  const status = $("key-status");
  status.dataset.ok = "";
  if (!key) {
    status.textContent = "no key";
    state.account = null;
    return false;
  }
  status.textContent = "checking…";
  try {
    state.account = await api.account();
    showAccount();
    if (state.pendingUpload && state.file) startUpload();
    return true;
  } catch (e) {
    state.account = null;
    if (e.statusCode === 401) api.setKey(""); // keep only a key the API knows (not one typed wrong)
    status.textContent = e.message;
    status.dataset.ok = "false";
    showError(e, "checking the key");
    return false;
  }
}

function showAccount() {
  const a = state.account;
  if (!a) return;
  const status = $("key-status");
  status.dataset.ok = "true";
  const credits = a.plan === "enterprise" ? "no credit billing" : `${a.credits.toLocaleString("en")} credits`;
  status.textContent = `✓ ${a.name} · ${a.plan} plan · ${credits}`;
}

async function refreshAccount() {
  try {
    state.account = await api.account();
    showAccount();
  } catch {
    // the balance is informative only
  }
}

// ---- file, waveform, upload ---------------------------------------------------

function resetForFile(file) {
  for (const g of Object.values(groups)) g.dispose();
  for (const k of Object.keys(groups)) delete groups[k];
  if (state.fileUrl) URL.revokeObjectURL(state.fileUrl);
  state.abort.abort(); // the previous track's jobs: stop polling and retrying
  Object.assign(state, {
    file, asset: null, duration: 0, results: {}, jobs: {}, notices: [], timings: {}, abort: new AbortController(),
  });
  state.fileUrl = URL.createObjectURL(file);
  $("jobs").replaceChildren();
  $("stems").replaceChildren();
  $("master-result").hidden = true;
  for (const id of ["stems-status", "master-status", "upload-status"]) $(id).textContent = "";
  for (const id of ["stems-progress", "master-progress", "upload-progress"]) $(id).value = 0;
  for (const id of ["sum-key", "sum-tempo", "sum-lufs"]) $(id).textContent = "—";
  $("sum-track").textContent = `${file.name} · ${(file.size / 1e6).toFixed(1)} MB`;
  $("stems-run").disabled = true;
  $("master-run").disabled = true;
  newTimeline();
  const orig = $("original-audio");
  orig.src = state.fileUrl;
  groups.original = new SyncGroup("original", [{ name: "original", el: orig }]);
  orig.addEventListener("loadedmetadata", () => setDuration(orig.duration), { once: true });
  setListenOptions();
  $("listen").value = "original";
  $("play").disabled = false;
}

function newTimeline() {
  const root = $("timeline");
  root.querySelector(".lanes")?.remove();
  root.dataset.ready = "false";
  timeline = new Timeline(root, {
    onSeek: (t) => playFrom(t),
    onView: (t0, t1) => updateScroll(t0, t1),
  });
  for (const lane of ["beats", "sections", "chords", "notes", "melody", "loudness"]) {
    timeline.setStatus(lane, "waiting for the upload");
  }
  timeline.setStatus("waveform", "decoding in the browser…");
  window.playground.timeline = timeline;
}

function setDuration(d) {
  if (!(d > 0) || state.duration) return;
  state.duration = d;
  timeline.setDuration(d);
  $("scroll").disabled = false;
  updateClock();
}

async function handleFile(file) {
  if (!file) return;
  clearErrors();
  resetForFile(file);
  drawWaveform(file);
  if (!api.getKey()) {
    state.pendingUpload = true;
    $("upload-status").textContent = "enter your API key (step 1) to upload";
    $("api-key").focus();
    return;
  }
  startUpload();
}

async function drawWaveform(file) {
  const t0 = performance.now();
  try {
    const peaks = await computePeaks(file);
    if (state.file !== file) return;
    const t1 = performance.now();
    setDuration(peaks.duration);
    timeline.setPeaks(peaks);
    state.timings.peaks_ms = Math.round(t1 - t0);
    state.timings.waveform_ms = Math.round(performance.now() - t0);
    state.timings.method = peaks.method;
    timeline.setInfo("waveform", `drawn in ${(state.timings.waveform_ms / 1000).toFixed(2)} s`);
  } catch (e) {
    // Not an API error: the API may still decode what the browser cannot.
    state.timings.waveform_error = String(e.message || e);
    timeline.setStatus("waveform", "this browser cannot decode the file to draw it");
  }
}

async function startUpload() {
  state.pendingUpload = false;
  const file = state.file;
  const bar = $("upload-progress");
  const status = $("upload-status");
  status.textContent = "uploading…";
  $("drop").dataset.state = "uploading";
  try {
    const asset = await api.upload(file, (sent, total) => {
      bar.value = total ? sent / total : 0;
      status.textContent = `${(sent / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB sent`;
    });
    if (state.file !== file) return;
    bar.value = 1;
    state.asset = asset;
    status.textContent = `uploaded · ${asset.asset_id}`;
    status.dataset.assetId = asset.asset_id;
    $("drop").dataset.state = "uploaded";
    setDuration(asset.duration_s);
    $("stems-run").disabled = false;
    $("master-run").disabled = false;
    runAnalyses();
  } catch (e) {
    $("drop").dataset.state = "failed";
    bar.value = 0;
    status.textContent = "upload refused";
    for (const lane of ["beats", "sections", "chords", "notes", "melody", "loudness"]) {
      timeline.setStatus(lane, "");
    }
    showError(e, "uploading");
  }
}

// ---- jobs --------------------------------------------------------------------

function jobRow(op, label) {
  const li = document.createElement("li");
  li.dataset.op = op;
  li.dataset.status = "submitting";
  const name = document.createElement("span");
  name.className = "job-name";
  name.textContent = label;
  const bar = document.createElement("progress");
  bar.max = 1;
  bar.value = 0;
  bar.setAttribute("aria-label", `${label} progress`);
  const status = document.createElement("span");
  status.className = "job-status";
  status.textContent = "submitting";
  li.append(name, bar, status);
  $("jobs").appendChild(li);
  let credits;
  return {
    update(job) {
      li.dataset.status = job.status;
      bar.value = job.status === "completed" ? 1 : job.progress || 0;
      credits = job._meta?.credits_used ?? credits;
      status.textContent =
        job.status + (job.progress && job.status === "running" ? ` ${Math.round(job.progress * 100)} %` : "") +
        (credits !== undefined ? ` · ${credits} credits` : "");
      state.jobs[op] = { ...(state.jobs[op] || {}), status: job.status, progress: job.progress };
      if (job.job_id) state.jobs[op].job_id = job.job_id;
    },
    /** The API refused the submission for now (429): its message, and a retry. */
    wait(e) {
      li.dataset.status = "waiting";
      li.dataset.code = e.code;
      status.textContent = `waiting (${e.message})`;
      state.notices.push({ op, statusCode: e.statusCode, code: e.code, message: e.message });
      state.jobs[op] = { ...(state.jobs[op] || {}), status: "waiting" };
    },
    fail(e) {
      li.dataset.status = "failed";
      status.textContent = `failed: ${e.message}`;
      state.jobs[op] = { ...(state.jobs[op] || {}), status: "failed" };
    },
  };
}

/** Run `op` for the current asset with a row in the jobs list. */
async function runJob(op, label, options = {}, onUpdate = () => {}) {
  const row = jobRow(op, label);
  const asset = state.asset;
  try {
    const result = await api.run(op, { asset_id: asset.asset_id, ...options }, {
      onUpdate: (job) => {
        row.update(job);
        onUpdate(job);
      },
      onWait: (e) => row.wait(e),
      signal: state.abort.signal,
    });
    row.update({ status: "completed", progress: 1 });
    refreshAccount();
    return result;
  } catch (e) {
    if (!(e instanceof api.Abandoned)) {
      row.fail(e);
      showError(e, label);
    }
    throw e;
  }
}

function runAnalyses() {
  const file = state.file;
  const current = () => state.file === file;
  const lanes = { "op-analyze": ["beats", "chords", "loudness"], "op-pitch": ["melody"],
    "op-transcribe": ["notes"], "op-segments": ["sections"] };
  for (const [box, ls] of Object.entries(lanes)) {
    for (const l of ls) timeline.setStatus(l, $(box).checked ? "analysing…" : "not requested");
  }
  const tasks = [];
  if ($("op-analyze").checked) {
    tasks.push(runJob("analyze/upload", "beats, chords, key, loudness").then((r) => current() && showAnalysis(r)));
  }
  if ($("op-pitch").checked) {
    tasks.push(runJob("pitch", "melody").then((r) => current() && showPitch(r)));
  }
  if ($("op-transcribe").checked) {
    tasks.push(runJob("transcribe", "notes").then((r) => current() && showNotes(r)));
  }
  if ($("op-segments").checked) {
    tasks.push(runJob("segment-transcribe", "sections").then((r) => current() && showSections(r)));
  }
  Promise.allSettled(tasks).then((all) => {
    if (!current()) return;
    $("timeline").dataset.ready = "true";
    state.analysesDone = all.map((a) => a.status);
  });
}

function pct(x) {
  return `${Math.round(x * 100)} %`;
}

function showAnalysis(r) {
  state.results.analysis = r;
  setDuration(r.duration_s);
  $("sum-key").textContent = `${r.key.key} · Camelot ${r.key.camelot} · confidence ${pct(r.key.confidence)}`;
  $("sum-key").dataset.camelot = r.key.camelot;
  $("sum-tempo").textContent =
    `${r.beatgrid.tempo.toFixed(1)} BPM · ${r.beatgrid.time_signature} · confidence ${pct(r.bpm.confidence)}`;
  const l = r.lufs;
  const f = (v, unit) => (v === null ? "—" : `${v.toFixed(1)} ${unit}`);
  $("sum-lufs").textContent = `${f(l.integrated_lufs, "LUFS")} integrated · true peak ${f(l.true_peak_dbtp, "dBTP")}` +
    ` · range ${f(l.loudness_range_lu, "LU")}`;
  $("sum-track").textContent = `${state.file.name} · ${fmtTime(r.duration_s)} · ${r.sample_rate} Hz · ` +
    `${r.channels === 1 ? "mono" : r.channels === 2 ? "stereo" : `${r.channels} channels`}`;
  timeline.setBeatgrid(r.beatgrid);
  timeline.setChords(r.chords);
  timeline.setLoudness(r.lufs, "original");
}

function showPitch(r) {
  state.results.pitch = r;
  timeline.setPitch(r);
}

function showNotes(r) {
  state.results.transcribe = r;
  timeline.setNotes(r.notes);
  if (r.midi) timeline.setInfo("notes", `${timeline.lanes.notes.info.textContent}`);
}

function showSections(r) {
  state.results.segments = r;
  timeline.setSections(r.segments);
}

// ---- stems ------------------------------------------------------------------

async function separate(ev) {
  ev.preventDefault();
  if (!state.asset) return;
  const n = $("stems-count").value;
  const format = $("stems-format").value;
  const btn = $("stems-run");
  btn.disabled = true;
  $("stems").replaceChildren();
  groups.stems?.dispose();
  delete groups.stems;
  setListenOptions();
  const bar = $("stems-progress");
  const status = $("stems-status");
  status.textContent = "submitting…";
  try {
    const file = state.file;
    const r = await runJob(`separate/${n}`, `stems (${n})`, { format }, (job) => {
      bar.value = job.progress || 0;
      status.textContent = `${job.status} ${Math.round((job.progress || 0) * 100)} %`;
    });
    if (state.file !== file) return; // another track was chosen meanwhile
    state.results.stems = r;
    bar.value = 1;
    status.textContent = `done · ${r.model}`;
    buildStems(r);
  } catch (e) {
    if (!(e instanceof api.Abandoned)) status.textContent = "failed (see the message above)";
  } finally {
    btn.disabled = !state.asset;
  }
}

function toggle(button, on) {
  button.setAttribute("aria-pressed", on ? "true" : "false");
}

function buildStems(r) {
  const box = $("stems");
  const tracks = [];
  for (const [name, link] of Object.entries(r.stems)) {
    const row = document.createElement("div");
    row.className = "stem";
    row.dataset.stem = name;
    const label = document.createElement("span");
    label.className = "stem-name";
    label.textContent = name;
    const mute = document.createElement("button");
    mute.type = "button";
    mute.className = "mute";
    mute.textContent = "Mute";
    mute.setAttribute("aria-label", `Mute ${name}`);
    toggle(mute, false);
    const solo = document.createElement("button");
    solo.type = "button";
    solo.className = "solo";
    solo.textContent = "Solo";
    solo.setAttribute("aria-label", `Solo ${name}`);
    toggle(solo, false);
    const audio = document.createElement("audio");
    audio.preload = "auto";
    audio.src = link;
    audio.dataset.stem = name;
    const dl = document.createElement("a");
    dl.href = link;
    dl.target = "_blank";
    dl.rel = "noopener";
    dl.className = "download";
    dl.textContent = `Download ${name}.${r.format}`;
    row.append(label, mute, solo, dl, audio);
    box.appendChild(row);
    tracks.push({ name, el: audio });
    mute.addEventListener("click", () => {
      const on = mute.getAttribute("aria-pressed") !== "true";
      toggle(mute, on);
      groups.stems.setMute(name, on);
      markAudible();
    });
    solo.addEventListener("click", () => {
      const on = solo.getAttribute("aria-pressed") !== "true";
      toggle(solo, on);
      groups.stems.setSolo(name, on);
      markAudible();
    });
  }
  groups.stems = new SyncGroup("stems", tracks);
  markAudible();
  setListenOptions();
  switchListen("stems");
}

function markAudible() {
  for (const row of $("stems").querySelectorAll(".stem")) {
    row.dataset.audible = groups.stems.audible(row.dataset.stem) ? "true" : "false";
  }
}

// ---- master -------------------------------------------------------------------

async function master(ev) {
  ev.preventDefault();
  if (!state.asset) return;
  const target = Number($("target-lufs").value);
  const ceiling = Number($("ceiling").value);
  const format = $("master-format").value;
  const btn = $("master-run");
  btn.disabled = true;
  groups.master?.dispose();
  delete groups.master;
  setListenOptions();
  $("master-result").hidden = true;
  const bar = $("master-progress");
  const status = $("master-status");
  status.textContent = "submitting…";
  try {
    // Sent as typed: the API checks the ranges and says what is wrong.
    const file = state.file;
    const r = await runJob("master", "master", { target_lufs: target, ceiling_dbtp: ceiling, format }, (job) => {
      bar.value = job.progress || 0;
      status.textContent = `${job.status} ${Math.round((job.progress || 0) * 100)} %`;
    });
    if (state.file !== file) return; // another track was chosen meanwhile
    state.results.master = r;
    bar.value = 1;
    status.textContent = `done · gain ${r.gain_db >= 0 ? "+" : ""}${r.gain_db.toFixed(1)} dB`;
    buildMaster(r, ceiling);
    measureMaster(r, ceiling);
  } catch (e) {
    if (!(e instanceof api.Abandoned)) status.textContent = "failed (see the message above)";
  } finally {
    btn.disabled = !state.asset;
  }
}

function buildMaster(r, ceiling) {
  const f = (v, u) => (v === null || v === undefined ? "—" : `${v.toFixed(1)} ${u}`);
  $("m-in-lufs").textContent = f(r.input.integrated_lufs, "LUFS");
  $("m-in-tp").textContent = f(r.input.true_peak_dbtp, "dBTP");
  $("m-out-lufs").textContent = f(r.mastered.integrated_lufs, "LUFS");
  $("m-out-tp").textContent = `${f(r.mastered.true_peak_dbtp, "dBTP")} (ceiling ${ceiling.toFixed(1)})`;
  $("master-download").href = r.output;
  $("master-download").textContent = `Download master (.${r.format})`;
  $("master-result").hidden = false;
  const a = new Audio(state.fileUrl);
  const b = new Audio(r.output);
  a.dataset.ab = "original";
  b.dataset.ab = "master";
  groups.master = new SyncGroup("master", [
    { name: "original", el: a },
    { name: "master", el: b },
  ]);
  applyLevelMatch();
  selectAB("original");
  setListenOptions();
  switchListen("master");
}

/** Level matching: the louder of the two is turned down by the difference in
 * integrated loudness (an <audio> element cannot be turned up). */
function applyLevelMatch() {
  const g = groups.master;
  const r = state.results.master;
  if (!g || !r) return;
  const diff = (r.mastered.integrated_lufs ?? 0) - (r.input.integrated_lufs ?? 0);
  const on = $("level-match").checked && Number.isFinite(diff);
  const masterDb = on && diff > 0 ? -diff : 0;
  const originalDb = on && diff < 0 ? diff : 0;
  g.setVolume("master", 10 ** (masterDb / 20));
  g.setVolume("original", 10 ** (originalDb / 20));
  $("ab-gain").textContent = on
    ? `playing ${masterDb < 0 ? "the master" : "the original"} ${Math.abs(diff).toFixed(1)} dB lower`
    : "not level-matched";
  $("ab-gain").dataset.masterDb = masterDb.toFixed(2);
  $("ab-gain").dataset.originalDb = originalDb.toFixed(2);
}

function selectAB(which) {
  groups.master?.only(which);
  toggle($("ab-a"), which === "original");
  toggle($("ab-b"), which === "master");
  state.ab = which;
}

/** The master's own short-term loudness curve: read the file (a cross-origin
 * fetch: needs the bucket to answer CORS, which SeaweedFS and MinIO do by
 * default) and measure it with the same meter, /v1/lufs. */
async function measureMaster(r, ceiling) {
  const status = $("master-curve-status");
  status.textContent = "measuring the master's loudness curve (/v1/lufs, 1 credit)…";
  let blob;
  try {
    const resp = await fetch(r.output, { mode: "cors", credentials: "omit", cache: "no-store" });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    blob = await resp.blob();
  } catch (e) {
    status.textContent = `The master's loudness curve needs the storage to allow cross-origin reads (${e.message}); ` +
      "its levels are in the table.";
    return;
  }
  try {
    const type = blob.type && blob.type.startsWith("audio/") ? blob.type : "application/octet-stream";
    const lufs = await api.run("lufs", null, { raw: blob, contentType: type, signal: state.abort.signal });
    if (state.results.master !== r) return; // a newer master or another track meanwhile
    state.results.masterLufs = lufs;
    timeline.setLoudness(lufs, "master", ceiling);
    status.textContent = "The loudness lane shows both curves: original and master.";
    refreshAccount();
  } catch (e) {
    if (e instanceof api.Abandoned) return;
    status.textContent = `The master's loudness curve could not be measured: ${e.message}`;
    showError(e, "measuring the master");
  }
}

// ---- transport ---------------------------------------------------------------

function setListenOptions() {
  const sel = $("listen");
  sel.disabled = !groups.original;
  for (const opt of sel.options) opt.disabled = !groups[opt.value];
  if (!groups[sel.value]) sel.value = "original";
}

function activeGroup() {
  return groups[$("listen").value] || groups.original;
}

function switchListen(name) {
  const before = activeGroup();
  const wasPlaying = before?.playing;
  const t = before ? before.time : 0;
  $("listen").value = name;
  for (const [n, g] of Object.entries(groups)) if (n !== name) g.pause();
  if (wasPlaying) playFrom(t);
  updateClock();
}

async function playFrom(t) {
  const g = activeGroup();
  if (!g) return;
  for (const other of Object.values(groups)) if (other !== g) other.pause();
  try {
    await g.play(t);
  } catch (e) {
    showError(new api.ApiError({ message: `The browser would not play this: ${e.message}` }), "playback");
  }
  updateClock();
}

function togglePlay() {
  const g = activeGroup();
  if (!g) return;
  if (g.playing) g.pause();
  else playFrom(g.time >= (state.duration || g.duration) - 0.05 ? 0 : g.time);
  updateClock();
}

function updateClock() {
  const g = activeGroup();
  const t = g ? g.time : 0;
  $("clock").textContent = `${fmtTime(t)} / ${fmtTime(state.duration || g?.duration || 0)}`;
  $("clock").dataset.t = t.toFixed(3);
  const playing = !!g?.playing;
  $("play").textContent = playing ? "❚❚ Pause" : "▶ Play";
  $("play").setAttribute("aria-label", playing ? "Pause" : "Play");
  $("play").dataset.playing = String(playing);
}

function tick() {
  const g = activeGroup();
  if (g && timeline && state.duration) {
    const t = g.time;
    if (g.playing) timeline.follow(t);
    timeline.setPlayhead(t > 0 || g.playing ? t : null);
    if (g.playing || $("clock").dataset.t !== t.toFixed(3)) updateClock();
  }
  requestAnimationFrame(tick);
}

function updateScroll(t0, t1) {
  const s = $("scroll");
  const span = t1 - t0;
  const room = Math.max(0, state.duration - span);
  s.value = room ? String(Math.round((t0 / room) * 1000)) : "0";
  s.disabled = room === 0;
}

// ---- legend --------------------------------------------------------------------

function buildLegend() {
  const items = [
    ["beat", "beat"],
    ["downbeat", "downbeat (bar number above)"],
    ["wave", "waveform (peaks, in the browser)"],
    ["section", "section (A, B, A' = varied repeat)"],
    ["chord", "chord"],
    ["note", "note (darker = louder)"],
    ["contour", "melody (f0)"],
    ["st-original", "short-term loudness (3 s)"],
    ["integrated", "integrated loudness"],
    ["peak", "true peak"],
    ["st-master", "master: loudness, integrated, ceiling"],
    ["playhead", "playhead"],
  ];
  const box = $("legend");
  for (const [cls, text] of items) {
    const span = document.createElement("span");
    span.className = "legend-item";
    const sw = document.createElement("i");
    sw.className = `swatch sw-${cls}`;
    sw.setAttribute("aria-hidden", "true");
    span.append(sw, document.createTextNode(text));
    box.appendChild(span);
  }
}

// ---- wiring --------------------------------------------------------------------

function init() {
  window.playground = { state, groups, timeline: null };
  buildLegend();
  newTimeline();
  timeline.setStatus("waveform", "choose a file");

  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    clearErrors();
    useKey($("api-key").value.trim());
  });
  $("key-forget").addEventListener("click", () => {
    $("api-key").value = "";
    useKey("");
  });
  $("errors-clear").addEventListener("click", clearErrors);

  const input = $("file");
  input.addEventListener("change", () => {
    handleFile(input.files[0]);
    input.value = ""; // so that choosing the same file again (after an error) starts over
  });
  const drop = $("drop");
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const ev of ["dragleave", "drop"]) drop.addEventListener(ev, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    handleFile(e.dataTransfer.files[0]);
  });
  // A file dropped anywhere else would make the browser leave the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());

  $("play").addEventListener("click", togglePlay);
  $("listen").addEventListener("change", () => switchListen($("listen").value));
  $("zoom-in").addEventListener("click", () => timeline.zoom(2));
  $("zoom-out").addEventListener("click", () => timeline.zoom(0.5));
  $("zoom-fit").addEventListener("click", () => timeline.fit());
  $("scroll").addEventListener("input", () => {
    const span = timeline.t1 - timeline.t0;
    const t0 = (Number($("scroll").value) / 1000) * Math.max(0, state.duration - span);
    timeline.setView(t0, t0 + span);
  });
  // Space plays and pauses, the arrow keys jump 5 s (not while typing or
  // on a control, where these keys already mean something).
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, select, button, textarea, a") || e.ctrlKey || e.metaKey || e.altKey) return;
    const g = activeGroup();
    if (e.code === "Space") togglePlay();
    else if ((e.code === "ArrowLeft" || e.code === "ArrowRight") && g && state.duration) {
      const t = Math.min(state.duration, Math.max(0, g.time + (e.code === "ArrowLeft" ? -5 : 5)));
      if (g.playing) playFrom(t);
      else g.seek(t).then(updateClock);
    } else return;
    e.preventDefault();
  });

  $("stems-form").addEventListener("submit", separate);
  $("master-form").addEventListener("submit", master);
  $("ab-a").addEventListener("click", () => selectAB("original"));
  $("ab-b").addEventListener("click", () => selectAB("master"));
  $("level-match").addEventListener("change", applyLevelMatch);

  const saved = api.getKey();
  if (saved) {
    $("api-key").value = saved;
    useKey(saved);
  }
  requestAnimationFrame(tick);
}

init();
