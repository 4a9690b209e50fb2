// Waveform peaks, computed in the browser from the file the person picked
// (no network, no CORS): decode once, keep the min/max of every block of
// BLOCK samples, drop the samples. Drawing a view then reads the blocks.

// 22.05 kHz keeps everything up to 11 kHz in the drawing and needs half the
// memory of a 44.1 kHz decode (a 10-minute stereo track: 106 MB, briefly).
export const DECODE_RATE = 22050;
export const BLOCK = 64; // samples: 2.9 ms at 22.05 kHz

export class Peaks {
  constructor(min, max, rate, duration) {
    this.min = min; // Float32Array, one value per block (over all channels)
    this.max = max;
    this.rate = rate; // blocks per second
    this.duration = duration;
  }

  /** Min/max per pixel column for the view [t0, t1] over `width` columns. */
  columns(t0, t1, width) {
    const lo = new Float32Array(width);
    const hi = new Float32Array(width);
    const n = this.min.length;
    const per = ((t1 - t0) * this.rate) / width; // blocks per column
    for (let c = 0; c < width; c++) {
      let a = Math.floor((t0 * this.rate) + c * per);
      let b = Math.max(a + 1, Math.floor((t0 * this.rate) + (c + 1) * per));
      if (b <= 0 || a >= n) continue;
      a = Math.max(a, 0);
      b = Math.min(b, n);
      let mn = 0;
      let mx = 0;
      for (let i = a; i < b; i++) {
        if (this.min[i] < mn) mn = this.min[i];
        if (this.max[i] > mx) mx = this.max[i];
      }
      lo[c] = mn;
      hi[c] = mx;
    }
    return { lo, hi };
  }
}

/** Decode `file` (a File/Blob) and compute its peaks. */
export async function computePeaks(file) {
  const bytes = await file.arrayBuffer();
  const ctx = new OfflineAudioContext(1, 1, DECODE_RATE);
  const audio = await ctx.decodeAudioData(bytes);
  const n = Math.ceil(audio.length / BLOCK);
  const min = new Float32Array(n);
  const max = new Float32Array(n);
  for (let ch = 0; ch < audio.numberOfChannels; ch++) {
    const x = audio.getChannelData(ch);
    for (let k = 0; k < n; k++) {
      let mn = min[k];
      let mx = max[k];
      const end = Math.min((k + 1) * BLOCK, x.length);
      for (let i = k * BLOCK; i < end; i++) {
        const v = x[i];
        if (v < mn) mn = v;
        if (v > mx) mx = v;
      }
      min[k] = mn;
      max[k] = mx;
    }
  }
  return new Peaks(min, max, audio.sampleRate / BLOCK, audio.duration);
}
