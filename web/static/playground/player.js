// Several <audio> elements played as one: the stems of a separation, or the
// original and its master for A/B listening.
//
// <audio> elements play presigned S3 links from another origin without any
// CORS header (WebAudio decoding would need one), so this works against any
// S3 server the API is pointed at. The price is that elements are only
// roughly in step; every 250 ms the followers are compared to the first
// element and re-seeked when they drift more than 50 ms.

const DRIFT_S = 0.05;

function waitFor(el, event, timeoutMs = 5000) {
  return new Promise((resolve) => {
    const done = () => {
      el.removeEventListener(event, done);
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    el.addEventListener(event, done);
  });
}

export class SyncGroup {
  /** tracks: [{name, el}] (the first is the clock the others follow). */
  constructor(name, tracks) {
    this.name = name;
    this.tracks = tracks;
    this.muted = new Set();
    this.soloed = new Set();
    this.volumes = new Map();
    this.timer = null;
    this.resyncs = 0;
    for (const t of tracks) t.el.preload = "auto";
    this.applyGains();
  }

  get leader() {
    return this.tracks[0].el;
  }

  get time() {
    return this.leader.currentTime;
  }

  get duration() {
    const d = this.leader.duration;
    return Number.isFinite(d) ? d : 0;
  }

  get playing() {
    return !this.leader.paused;
  }

  async seek(t) {
    const waits = [];
    for (const { el } of this.tracks) {
      if (Math.abs(el.currentTime - t) > 0.001) {
        waits.push(waitFor(el, "seeked"));
        el.currentTime = t;
      }
    }
    await Promise.all(waits);
  }

  async play(from = null) {
    if (from !== null) await this.seek(from);
    else await this.seek(this.time); // line the followers up first
    await Promise.all(this.tracks.map(({ el }) => el.play()));
    clearInterval(this.timer);
    this.timer = setInterval(() => this.resync(), 250);
  }

  pause() {
    for (const { el } of this.tracks) el.pause();
    clearInterval(this.timer);
    this.timer = null;
  }

  resync() {
    const t = this.leader.currentTime;
    for (const { el } of this.tracks.slice(1)) {
      if (!el.paused && Math.abs(el.currentTime - t) > DRIFT_S) {
        el.currentTime = t;
        this.resyncs++;
      }
    }
  }

  /** Largest distance (s) of a follower from the leader, for tests and display. */
  spread() {
    const t = this.leader.currentTime;
    return Math.max(0, ...this.tracks.map(({ el }) => Math.abs(el.currentTime - t)));
  }

  setMute(name, on) {
    if (on) this.muted.add(name);
    else this.muted.delete(name);
    this.applyGains();
  }

  setSolo(name, on) {
    if (on) this.soloed.add(name);
    else this.soloed.delete(name);
    this.applyGains();
  }

  /** Volume 0..1 of one track (level matching). */
  setVolume(name, v) {
    this.volumes.set(name, Math.min(1, Math.max(0, v)));
    this.applyGains();
  }

  /** Only `name` is heard (A/B switching; the others keep playing, silent). */
  only(name) {
    this.muted = new Set(this.tracks.map((t) => t.name).filter((n) => n !== name));
    this.applyGains();
  }

  audible(name) {
    return this.soloed.size ? this.soloed.has(name) : !this.muted.has(name);
  }

  applyGains() {
    for (const { name, el } of this.tracks) {
      el.muted = !this.audible(name);
      el.volume = this.volumes.get(name) ?? 1;
    }
  }

  dispose() {
    this.pause();
    for (const { el } of this.tracks) {
      el.removeAttribute("src");
      el.load();
    }
  }
}
