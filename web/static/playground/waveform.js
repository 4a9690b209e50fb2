// Waveform peaks, computed in the browser from the file the person picked
// (no network, no CORS): the min/max of every block of about 2.9 ms, over all
// channels; drawing a view then reads the blocks, never the samples.
//
// Two ways in. A PCM WAV file is read in slices and its samples scanned as
// they are (no decoder, no resampling, never the whole file in memory): the
// fast path. Anything else goes through the browser's decoder
// (decodeAudioData), whose time grows with the file (see docs/playground.md).

// 44.1 kHz: most files need no resampling, and a transient keeps its peak
// (at 22.05 kHz the resampler's low-pass took up to half off a hi-hat's).
// The decoder holds the whole track as float32 meanwhile: 212 MB for 10
// minutes of stereo, dropped once the peaks are made.
export const DECODE_RATE = 44100;
export const BLOCK = 128; // samples at DECODE_RATE: 2.9 ms
const BLOCKS_PER_S = DECODE_RATE / BLOCK;
const SLICE_BLOCKS = 32768; // blocks read per slice of a WAV file (16 MB at 44.1 kHz stereo 16-bit)

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

/** Peaks of `file` (a File/Blob); `.method` says which way they were made. */
export async function computePeaks(file) {
  const wav = await wavPeaks(file);
  if (wav) {
    wav.method = "wav";
    return wav;
  }
  const peaks = await decodedPeaks(file);
  peaks.method = "decode";
  return peaks;
}

function ascii(view, at, n) {
  let s = "";
  for (let i = 0; i < n; i++) s += String.fromCharCode(view.getUint8(at + i));
  return s;
}

/** The RIFF/WAVE header: {format, channels, rate, bits, dataStart, dataLen} or null. */
async function wavHeader(file) {
  const head = new DataView(await file.slice(0, Math.min(file.size, 65536)).arrayBuffer());
  if (head.byteLength < 44 || ascii(head, 0, 4) !== "RIFF" || ascii(head, 8, 4) !== "WAVE") return null;
  let pos = 12;
  let fmt = null;
  while (pos + 8 <= head.byteLength) {
    const id = ascii(head, pos, 4);
    const size = head.getUint32(pos + 4, true);
    if (id === "fmt " && pos + 24 <= head.byteLength) {
      let format = head.getUint16(pos + 8, true);
      if (format === 0xfffe && pos + 34 <= head.byteLength) format = head.getUint16(pos + 32, true); // extensible
      fmt = {
        format,
        channels: head.getUint16(pos + 10, true),
        rate: head.getUint32(pos + 12, true),
        bits: head.getUint16(pos + 22, true),
      };
    } else if (id === "data") {
      if (!fmt) return null;
      // A streamed WAV may say 0 or 0xFFFFFFFF: then the data runs to the end.
      const dataStart = pos + 8;
      const dataLen = size === 0 || size === 0xffffffff ? file.size - dataStart : Math.min(size, file.size - dataStart);
      return { ...fmt, dataStart, dataLen };
    }
    pos += 8 + size + (size & 1);
  }
  return null; // no data chunk in the first 64 kB: let the decoder have it
}

async function wavPeaks(file) {
  const h = await wavHeader(file);
  if (!h || !h.channels || !h.rate) return null;
  const pcm = h.format === 1 && [16, 24, 32].includes(h.bits);
  const float = h.format === 3 && h.bits === 32;
  if (!pcm && !float) return null;
  const bytes = h.bits / 8;
  const frameBytes = bytes * h.channels;
  const frames = Math.floor(h.dataLen / frameBytes);
  const blockFrames = Math.max(1, Math.round(h.rate / BLOCKS_PER_S));
  const n = Math.ceil(frames / blockFrames);
  const min = new Float32Array(n);
  const max = new Float32Array(n);
  const sliceBytes = SLICE_BLOCKS * blockFrames * frameBytes;
  const per = blockFrames * h.channels; // values per block
  for (let b0 = 0; b0 < n; b0 += SLICE_BLOCKS) {
    const start = h.dataStart + b0 * blockFrames * frameBytes;
    const end = Math.min(start + sliceBytes, h.dataStart + frames * frameBytes);
    const buf = await file.slice(start, end).arrayBuffer();
    let x;
    let scale;
    if (float) [x, scale] = [new Float32Array(buf), 1];
    else if (h.bits === 16) [x, scale] = [new Int16Array(buf), 1 / 32768];
    else if (h.bits === 32) [x, scale] = [new Int32Array(buf), 1 / 2147483648];
    else [x, scale] = [int24(buf), 1 / 8388608];
    const blocks = Math.ceil(x.length / per);
    for (let k = 0; k < blocks; k++) {
      let mn = 0;
      let mx = 0;
      const stop = Math.min((k + 1) * per, x.length);
      for (let i = k * per; i < stop; i++) {
        const v = x[i];
        if (v < mn) mn = v;
        if (v > mx) mx = v;
      }
      min[b0 + k] = mn * scale;
      max[b0 + k] = mx * scale;
    }
  }
  return new Peaks(min, max, h.rate / blockFrames, frames / h.rate);
}

function int24(buf) {
  const b = new Uint8Array(buf);
  const out = new Int32Array(Math.floor(b.length / 3));
  for (let i = 0, j = 0; i < out.length; i++, j += 3) out[i] = ((b[j] | (b[j + 1] << 8) | (b[j + 2] << 16)) << 8) >> 8;
  return out;
}

/** Peaks through the browser's decoder (any format it can play). */
export async function decodedPeaks(file) {
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
