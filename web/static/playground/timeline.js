// One shared, zoomable timeline: a lane per result, all on the same time axis.
//
// Each lane body is an SVG (the waveform a canvas). Marks are placed in
// seconds inside a group whose transform maps seconds to pixels for the
// current view, so zooming and panning only rewrite one attribute per lane;
// strokes keep their width (vector-effect: non-scaling-stroke). Text
// (bar numbers, chord and section names, the time ruler) is laid out in
// pixels again for each view, showing only what fits.

const SVG = "http://www.w3.org/2000/svg";
const HEADER_PX = 132;
const CHAR_PX = 7; // a label's width per character, about, at the lanes' font size
const NOTE_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"];

export const LANES = [
  { id: "ruler", title: "Time", height: 22 },
  { id: "beats", title: "Beats", height: 44 },
  { id: "waveform", title: "Waveform", height: 96 },
  { id: "sections", title: "Sections", height: 30 },
  { id: "chords", title: "Chords", height: 30 },
  { id: "notes", title: "Notes", height: 120 },
  { id: "melody", title: "Melody", height: 90 },
  { id: "loudness", title: "Loudness", height: 130 },
];

function el(name, attrs = {}, parent = null) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

export function midiName(m) {
  return NOTE_NAMES[((m % 12) + 12) % 12] + (Math.floor(m / 12) - 1);
}

/** "A:min" -> "Am", "C:maj" -> "C", "N" -> "N.C." (no chord). */
export function chordName(label) {
  if (!label || label === "N" || label === "X") return "N.C.";
  const [root, quality = "maj"] = label.split(":");
  const suffix = { maj: "", min: "m", dim: "dim", aug: "aug", "7": "7", maj7: "maj7", min7: "m7" }[quality];
  return root + (suffix ?? quality);
}

export function fmtTime(t, decimals = 1) {
  if (!Number.isFinite(t)) t = 0;
  const m = Math.floor(t / 60);
  const s = t - m * 60;
  return `${m}:${s.toFixed(decimals).padStart(decimals ? decimals + 3 : 2, "0")}`;
}

const SECTION_COLORS = ["#5b8def", "#e8a23b", "#52b788", "#c77dff", "#ef6f6c", "#48bfe3", "#b5838d"];

export class Timeline {
  constructor(root, { onSeek = () => {}, onView = () => {} } = {}) {
    this.root = root;
    this.onSeek = onSeek;
    this.onView = onView;
    this.duration = 0;
    this.t0 = 0;
    this.t1 = 1;
    this.width = 600;
    this.lanes = {};
    this.data = {};
    this.peaks = null;
    this.playhead = null;
    this.pending = false;
    this.build();
  }

  // ---- structure ---------------------------------------------------------

  build() {
    const grid = document.createElement("div");
    grid.className = "lanes";
    this.root.appendChild(grid);
    this.grid = grid;
    for (const lane of LANES) {
      const head = document.createElement("div");
      head.className = "lane-head";
      head.id = `head-${lane.id}`;
      const title = document.createElement("span");
      title.className = "lane-title";
      title.textContent = lane.title;
      const info = document.createElement("span");
      info.className = "lane-info";
      info.id = `info-${lane.id}`;
      head.append(title, info);
      const body = document.createElement("div");
      body.className = "lane-body";
      body.id = `lane-${lane.id}`;
      body.dataset.lane = lane.id;
      body.style.height = `${lane.height}px`;
      head.style.height = `${lane.height}px`;
      let svg = null;
      let canvas = null;
      if (lane.id === "waveform") {
        canvas = document.createElement("canvas");
        canvas.setAttribute("role", "img");
        canvas.setAttribute("aria-label", "Waveform");
        body.appendChild(canvas);
      }
      svg = el("svg", { class: "lane-svg", height: lane.height, role: "img", "aria-labelledby": head.id });
      const scaled = el("g", { class: "scaled" }, svg); // marks in seconds
      const pixels = el("g", { class: "pixels" }, svg); // text in pixels
      body.appendChild(svg);
      const empty = document.createElement("span");
      empty.className = "lane-empty";
      empty.textContent = "";
      body.appendChild(empty);
      grid.append(head, body);
      this.lanes[lane.id] = { ...lane, head, body, svg, scaled, pixels, canvas, info, empty };
    }
    this.playhead = document.createElement("div");
    this.playhead.className = "playhead";
    this.playhead.id = "playhead";
    this.playhead.hidden = true;
    grid.appendChild(this.playhead);
    this.attachInput();
    new ResizeObserver(() => this.resize()).observe(grid);
    this.resize();
  }

  resize() {
    const w = Math.max(100, Math.floor(this.grid.clientWidth - HEADER_PX));
    if (w === this.width && this.lanes.ruler.svg.getAttribute("width")) return;
    this.width = w;
    for (const lane of Object.values(this.lanes)) lane.svg.setAttribute("width", w);
    this.render();
  }

  setStatus(laneId, text) {
    this.lanes[laneId].empty.textContent = text;
  }

  setInfo(laneId, text) {
    this.lanes[laneId].info.textContent = text;
  }

  // ---- view --------------------------------------------------------------

  get k() {
    return this.width / Math.max(1e-6, this.t1 - this.t0); // pixels per second
  }

  setDuration(d) {
    if (!(d > 0)) return;
    this.duration = d;
    this.fit();
  }

  fit() {
    this.setView(0, this.duration || 1);
  }

  setView(t0, t1) {
    const d = this.duration || 1;
    const span = Math.min(d, Math.max(0.25, t1 - t0));
    t0 = Math.min(Math.max(0, t0), d - span);
    this.t0 = t0;
    this.t1 = t0 + span;
    this.render();
    this.onView(this.t0, this.t1);
  }

  zoom(factor, center = (this.t0 + this.t1) / 2) {
    const span = (this.t1 - this.t0) / factor;
    const frac = (center - this.t0) / (this.t1 - this.t0);
    this.setView(center - frac * span, center - frac * span + span);
  }

  timeAt(clientX) {
    const r = this.lanes.ruler.body.getBoundingClientRect();
    return this.t0 + (clientX - r.left) / this.k;
  }

  attachInput() {
    let drag = null;
    this.grid.addEventListener("pointerdown", (e) => {
      const body = e.target.closest(".lane-body");
      if (!body || e.button !== 0) return;
      drag = { x: e.clientX, t0: this.t0, t1: this.t1, moved: false, id: e.pointerId };
      body.setPointerCapture(e.pointerId);
    });
    this.grid.addEventListener("pointermove", (e) => {
      if (!drag || e.pointerId !== drag.id) return;
      const dx = e.clientX - drag.x;
      if (Math.abs(dx) > 4) drag.moved = true;
      if (drag.moved) {
        const dt = dx / this.k;
        this.setView(drag.t0 - dt, drag.t1 - dt);
      }
    });
    this.grid.addEventListener("pointerup", (e) => {
      if (!drag || e.pointerId !== drag.id) return;
      const wasClick = !drag.moved;
      drag = null;
      if (wasClick && this.duration) {
        const t = Math.min(Math.max(0, this.timeAt(e.clientX)), this.duration);
        this.onSeek(t);
      }
    });
    this.grid.addEventListener(
      "wheel",
      (e) => {
        if (!this.duration) return;
        if (e.ctrlKey || e.metaKey) {
          e.preventDefault();
          this.zoom(Math.exp(-e.deltaY * 0.002), this.timeAt(e.clientX));
        } else if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
          e.preventDefault();
          const dt = ((e.shiftKey ? e.deltaY : e.deltaX) / this.width) * (this.t1 - this.t0);
          this.setView(this.t0 + dt, this.t1 + dt);
        }
      },
      { passive: false },
    );
  }

  // ---- data --------------------------------------------------------------

  setPeaks(peaks) {
    this.peaks = peaks;
    this.lanes.waveform.body.dataset.blocks = String(peaks.min.length);
    this.setStatus("waveform", "");
    this.renderWaveform();
  }

  setBeatgrid(bg) {
    this.data.beatgrid = bg;
    const g = this.lanes.beats.scaled;
    g.replaceChildren();
    const beats = el("g", { class: "beats" }, g);
    for (const t of bg.beats) el("line", { class: "beat", x1: t, x2: t, y1: 30, y2: 44, "data-t": t }, beats);
    const downs = el("g", { class: "downbeats" }, g);
    for (const t of bg.downbeats) {
      el("line", { class: "downbeat", x1: t, x2: t, y1: 14, y2: 44, "data-t": t }, downs);
    }
    this.setInfo("beats", `${bg.tempo.toFixed(1)} BPM · ${bg.time_signature}`);
    this.lanes.beats.body.dataset.beats = String(bg.beats.length);
    this.lanes.beats.body.dataset.downbeats = String(bg.downbeats.length);
    this.setStatus("beats", "");
    this.render();
  }

  setChords(chords) {
    this.data.chords = chords;
    const g = this.lanes.chords.scaled;
    g.replaceChildren();
    for (const c of chords) {
      const r = el(
        "rect",
        {
          class: c.label === "N" ? "chord none" : "chord",
          x: c.start,
          width: Math.max(0, c.end - c.start),
          y: 3,
          height: 24,
          "data-label": c.label,
        },
        g,
      );
      el("title", {}, r).textContent = `${chordName(c.label)} (${c.label}) ${fmtTime(c.start)}–${fmtTime(c.end)}`;
    }
    this.setStatus("chords", "");
    this.render();
  }

  setSections(segments) {
    this.data.sections = segments;
    const g = this.lanes.sections.scaled;
    g.replaceChildren();
    const letters = [...new Set(segments.map((s) => s.label.replace(/'+$/, "")))].sort();
    for (const s of segments) {
      const base = s.label.replace(/'+$/, "");
      const r = el(
        "rect",
        {
          class: s.label === base ? "section" : "section variant",
          x: s.start,
          width: Math.max(0, s.end - s.start),
          y: 3,
          height: 24,
          fill: SECTION_COLORS[letters.indexOf(base) % SECTION_COLORS.length],
          "data-label": s.label,
        },
        g,
      );
      el("title", {}, r).textContent = `section ${s.label} ${fmtTime(s.start)}–${fmtTime(s.end)}`;
    }
    this.setInfo("sections", `${segments.length} sections`);
    this.setStatus("sections", "");
    this.render();
  }

  setNotes(notes) {
    this.data.notes = notes;
    const lane = this.lanes.notes;
    const g = lane.scaled;
    g.replaceChildren();
    if (!notes.length) {
      this.setStatus("notes", "no notes found");
      this.render();
      return;
    }
    let lo = Math.min(...notes.map((n) => n.midi)) - 1;
    let hi = Math.max(...notes.map((n) => n.midi)) + 1;
    if (hi - lo < 12) {
      const mid = (hi + lo) / 2;
      lo = Math.floor(mid - 6);
      hi = lo + 12;
    }
    const row = lane.height / (hi - lo + 1);
    this.data.notesRange = { lo, hi, row };
    const grid = el("g", { class: "grid" }, g);
    this.data.notesOctaves = [];
    for (let m = Math.ceil(lo / 12) * 12; m <= hi; m += 12) {
      const y = (hi - m + 1) * row; // the bottom edge of C's row
      el("line", { class: "octave", x1: 0, x2: this.duration || 1, y1: y, y2: y }, grid);
      this.data.notesOctaves.push([midiName(m), y]);
    }
    const rects = el("g", { class: "notes" }, g);
    for (const n of notes) {
      const r = el(
        "rect",
        {
          class: "note",
          x: n.start,
          width: Math.max(0.01, n.end - n.start),
          y: (hi - n.midi) * row,
          height: Math.max(1, row - 0.5),
          "fill-opacity": (0.35 + 0.65 * ((n.velocity ?? 100) / 127)).toFixed(2),
          "data-midi": n.midi,
        },
        rects,
      );
      el("title", {}, r).textContent = `${midiName(n.midi)} (MIDI ${n.midi}) velocity ${n.velocity}`;
    }
    this.setInfo("notes", `${notes.length} notes · ${midiName(lo + 1)}–${midiName(hi - 1)}`);
    lane.body.dataset.notes = String(notes.length);
    this.setStatus("notes", "");
    this.render();
  }

  setPitch(pitch) {
    this.data.pitch = pitch;
    const lane = this.lanes.melody;
    const g = lane.scaled;
    g.replaceChildren();
    const midi = pitch.f0_hz.map((f) => (f ? 69 + 12 * Math.log2(f / 440) : null));
    const voiced = midi.filter((m) => m !== null);
    if (!voiced.length) {
      this.setStatus("melody", "no voiced frames");
      lane.body.dataset.points = "0";
      this.render();
      return;
    }
    const sorted = [...voiced].sort((a, b) => a - b);
    const lo = Math.floor(sorted[Math.floor(sorted.length * 0.01)]) - 2;
    const hi = Math.ceil(sorted[Math.floor(sorted.length * 0.99)]) + 2;
    const y = (m) => Math.min(lane.height, Math.max(0, ((hi - m) / (hi - lo)) * (lane.height - 8) + 4));
    const grid = el("g", { class: "grid" }, g);
    this.data.melodyOctaves = [];
    for (let m = Math.ceil(lo / 12) * 12; m <= hi; m += 12) {
      el("line", { class: "octave", x1: 0, x2: this.duration || 1, y1: y(m), y2: y(m) }, grid);
      this.data.melodyOctaves.push([midiName(m), y(m)]);
    }
    // One polyline per voiced run: unvoiced frames (null) break the contour.
    let pts = [];
    let count = 0;
    const flush = () => {
      if (pts.length) {
        el("polyline", { class: "contour", points: pts.join(" ") }, g);
        count += pts.length;
      }
      pts = [];
    };
    midi.forEach((m, i) => {
      if (m === null) flush();
      else pts.push(`${(i * pitch.hop_s).toFixed(4)},${y(m).toFixed(1)}`);
    });
    flush();
    this.data.melodyRange = { lo, hi };
    lane.body.dataset.points = String(count);
    this.setInfo("melody", `${midiName(Math.round(lo + 2))}–${midiName(Math.round(hi - 2))}`);
    this.setStatus("melody", "");
    this.render();
  }

  /** The loudness lane: `which` is "original" or "master". */
  setLoudness(lufs, which = "original", ceiling = null) {
    this.data[`lufs_${which}`] = { lufs, ceiling };
    this.drawLoudness();
  }

  drawLoudness() {
    const lane = this.lanes.loudness;
    const g = lane.scaled;
    g.replaceChildren();
    const sets = ["original", "master"].map((w) => [w, this.data[`lufs_${w}`]]).filter(([, v]) => v);
    if (!sets.length) return;
    const all = [];
    for (const [, { lufs, ceiling }] of sets) {
      for (const v of lufs.short_term_lufs?.values || []) if (v !== null) all.push(v);
      if (lufs.integrated_lufs !== null) all.push(lufs.integrated_lufs);
      if (lufs.true_peak_dbtp !== null) all.push(lufs.true_peak_dbtp);
      if (ceiling !== null) all.push(ceiling);
    }
    // Room above the highest line for its label; 0 dB always in view.
    const top = Math.max(0, Math.ceil(Math.max(...all))) + 4;
    const bottom = Math.max(-70, Math.floor((Math.min(...all) - 4) / 6) * 6);
    const h = lane.height;
    const y = (db) => ((top - db) / (top - bottom)) * (h - 10) + 5;
    this.data.loudnessScale = { top, bottom };
    const grid = el("g", { class: "grid" }, g);
    for (let db = top - (top % 6); db >= bottom; db -= 6) {
      el("line", { class: "db", x1: 0, x2: this.duration || 1, y1: y(db), y2: y(db), "data-db": db }, grid);
    }
    const info = [];
    for (const [which, { lufs, ceiling }] of sets) {
      const st = lufs.short_term_lufs;
      const group = el("g", { class: `loudness ${which}` }, g);
      let count = 0;
      if (st && st.values) {
        // The value for the 3 s window ending at start_s + k*hop_s is drawn
        // at that time, as a live meter shows it; silence (null) breaks the line.
        let pts = [];
        const flush = () => {
          if (pts.length) el("polyline", { class: `st-lufs ${which}`, points: pts.join(" ") }, group);
          count += pts.length;
          pts = [];
        };
        st.values.forEach((v, k) => {
          if (v === null) flush();
          else pts.push(`${(st.start_s + k * st.hop_s).toFixed(3)},${y(v).toFixed(2)}`);
        });
        flush();
      }
      lane.body.dataset[`points${which === "master" ? "Master" : ""}`] = String(count);
      const span = { x1: 0, x2: this.duration || 1 };
      if (lufs.integrated_lufs !== null) {
        el("line", { class: `integrated ${which}`, ...span, y1: y(lufs.integrated_lufs),
          y2: y(lufs.integrated_lufs), "data-db": lufs.integrated_lufs }, group);
      }
      const peak = which === "master" && ceiling !== null ? ceiling : lufs.true_peak_dbtp;
      if (peak !== null) {
        el("line", { class: `peak ${which}`, ...span, y1: y(peak), y2: y(peak), "data-db": peak }, group);
      }
      info.push(which === "master" ? "+ master" : "short-term (3 s)");
    }
    this.loudnessY = y;
    this.setInfo("loudness", info.join(" "));
    this.setStatus("loudness", "");
    this.render();
  }

  // ---- drawing -----------------------------------------------------------

  render() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.renderNow();
    });
  }

  renderNow() {
    const k = this.k;
    const m = `matrix(${k} 0 0 1 ${-this.t0 * k} 0)`;
    for (const lane of Object.values(this.lanes)) lane.scaled.setAttribute("transform", m);
    this.renderRuler();
    this.renderBarNumbers();
    this.renderBoxLabels("chords", this.data.chords, (c) => chordName(c.label));
    this.renderBoxLabels("sections", this.data.sections, (s) => s.label);
    this.renderLoudnessLabels();
    this.renderAxisLabels("notes", this.data.notesOctaves);
    this.renderAxisLabels("melody", this.data.melodyOctaves);
    this.renderWaveform();
    this.root.dataset.view = `${this.t0.toFixed(3)},${this.t1.toFixed(3)}`;
  }

  x(t) {
    return (t - this.t0) * this.k;
  }

  renderRuler() {
    const g = this.lanes.ruler.pixels;
    g.replaceChildren();
    if (!this.duration) return;
    const span = this.t1 - this.t0;
    const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600];
    const step = steps.find((s) => (s / span) * this.width >= 70) || 600;
    for (let t = Math.ceil(this.t0 / step) * step; t <= this.t1; t += step) {
      const x = this.x(t);
      el("line", { class: "tick", x1: x, x2: x, y1: 14, y2: 22 }, g);
      el("text", { class: "time", x: x + 3, y: 11 }, g).textContent = fmtTime(t, step < 1 ? 1 : 0);
    }
  }

  renderBarNumbers() {
    const g = this.lanes.beats.pixels;
    g.replaceChildren();
    const bg = this.data.beatgrid;
    if (!bg) return;
    const downs = bg.downbeats;
    const barPx = downs.length > 1 ? ((downs[downs.length - 1] - downs[0]) / (downs.length - 1)) * this.k : 50;
    // Number every bar when there is room, else every 2nd, 4th, 8th ...
    let every = 1;
    while (barPx * every < 22) every *= 2;
    downs.forEach((t, i) => {
      if (i % every !== 0 || t < this.t0 - 1 || t > this.t1) return;
      el("text", { class: "bar-number", x: this.x(t) + 2, y: 11, "data-bar": i + 1 }, g).textContent =
        String(i + 1);
    });
  }

  renderBoxLabels(laneId, items, text) {
    const g = this.lanes[laneId].pixels;
    g.replaceChildren();
    if (!items) return;
    for (const it of items) {
      if (it.end < this.t0 || it.start > this.t1) continue;
      const label = text(it);
      const x0 = Math.max(this.x(it.start), 0);
      const x1 = Math.min(this.x(it.end), this.width);
      if (x1 - x0 < label.length * CHAR_PX + 6) continue; // does not fit: the box's tooltip has it
      el("text", { class: "label", x: x0 + 4, y: 20, "data-label": it.label }, g).textContent = label;
    }
  }

  /** Pitch names on the octave lines, at the left edge. */
  renderAxisLabels(laneId, marks) {
    const g = this.lanes[laneId].pixels;
    g.replaceChildren();
    for (const [text, y] of marks || []) {
      el("text", { class: "axis", x: 3, y: y > 12 ? y - 2 : y + 10 }, g).textContent = text;
    }
  }

  renderLoudnessLabels() {
    const g = this.lanes.loudness.pixels;
    g.replaceChildren();
    const y = this.loudnessY;
    if (!y) return;
    const s = this.data.loudnessScale;
    for (let db = s.top - (s.top % 6); db >= s.bottom; db -= 6) {
      el("text", { class: "axis", x: 3, y: y(db) > 12 ? y(db) - 2 : y(db) + 10 }, g).textContent = `${db} dB`;
    }
    const labels = [];
    for (const which of ["original", "master"]) {
      const d = this.data[`lufs_${which}`];
      if (!d) continue;
      const name = which === "master" ? "master " : "";
      if (d.lufs.integrated_lufs !== null) {
        labels.push([y(d.lufs.integrated_lufs), `${name}integrated ${d.lufs.integrated_lufs.toFixed(1)} LUFS`,
          `integrated ${which}`]);
      }
      const peak = which === "master" && d.ceiling !== null ? d.ceiling : d.lufs.true_peak_dbtp;
      if (peak !== null) {
        const what = which === "master" && d.ceiling !== null ? "ceiling" : "true peak";
        labels.push([y(peak), `${name}${what} ${peak.toFixed(1)} dBTP`, `peak ${which}`]);
      }
    }
    // Right-aligned, pushed apart so that lines close together stay readable.
    labels.sort((a, b) => a[0] - b[0]);
    let last = -Infinity;
    for (const [yy, text, cls] of labels) {
      const ty = Math.max(yy - 2, last + 11);
      last = ty;
      el("text", { class: `line-label ${cls}`, x: this.width - 4, y: ty, "text-anchor": "end" }, g).textContent =
        text;
    }
  }

  renderWaveform() {
    const lane = this.lanes.waveform;
    const c = lane.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = this.width;
    const h = lane.height;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
      c.style.width = `${w}px`;
      c.style.height = `${h}px`;
    }
    const ctx = c.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    if (!this.peaks || !this.duration) return;
    const { lo, hi } = this.peaks.columns(this.t0, this.t1, w);
    const mid = h / 2;
    const amp = h / 2 - 2;
    ctx.fillStyle = getComputedStyle(lane.body).getPropertyValue("--wave").trim() || "#3b6fd8";
    ctx.beginPath();
    let drawn = 0;
    for (let x = 0; x < w; x++) {
      const top = mid - hi[x] * amp;
      const bot = mid - lo[x] * amp;
      if (hi[x] === 0 && lo[x] === 0) continue;
      ctx.rect(x, top, 1, Math.max(1, bot - top));
      drawn++;
    }
    ctx.fill();
    ctx.fillStyle = "rgba(0,0,0,0.15)";
    ctx.fillRect(0, mid, w, 1);
    lane.body.dataset.columns = String(drawn);
  }

  setPlayhead(t) {
    if (t === null || !this.duration) {
      this.playhead.hidden = true;
      return;
    }
    const x = this.x(t);
    this.playhead.hidden = x < 0 || x > this.width;
    this.playhead.style.transform = `translateX(${HEADER_PX + x}px)`;
    this.playhead.dataset.t = t.toFixed(3);
  }

  /** Keep `t` in view while playing (page-turn when it leaves the right edge). */
  follow(t) {
    if (t > this.t1 || t < this.t0) {
      const span = this.t1 - this.t0;
      this.setView(t - span * 0.05, t + span * 0.95);
    }
  }
}
