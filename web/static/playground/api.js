// Talking to the audioq API from the page: the key, uploads with progress,
// jobs (submit, then poll /v1/jobs/{id}) and the API's own error bodies.

const KEY_STORAGE = "audioq.apiKey";

/** An error body of the API ({statusCode, error, message, code}), or one we
 * make in the same shape when the network itself failed. */
export class ApiError extends Error {
  constructor(body, fallbackStatus = 0) {
    const b = body && typeof body === "object" ? body : {};
    super(b.message || "The API did not answer");
    this.statusCode = b.statusCode ?? fallbackStatus;
    this.error = b.error || "";
    this.code = b.code || "";
    this.body = b;
    this.retryAfterS = null; // the Retry-After header, seconds, when there was one
  }
}

/** Thrown when the page gave up on a job itself (another track was chosen). */
export class Abandoned extends Error {}

export function getKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

export function setKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

function headers(extra = {}) {
  const h = { ...extra };
  const key = getKey();
  if (key) h["x-api-key"] = key;
  return h;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function retryAfterMs(resp, fallback) {
  const s = Number(resp.headers.get("Retry-After"));
  return Number.isFinite(s) && s > 0 ? Math.min(s * 1000, 60000) : fallback;
}

async function parse(resp) {
  const text = await resp.text();
  const retry = Number(resp.headers.get("Retry-After"));
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!resp.ok) {
    const err = new ApiError(
      body || { statusCode: resp.status, error: resp.statusText, message: `HTTP ${resp.status}` },
      resp.status,
    );
    if (Number.isFinite(retry) && retry > 0) err.retryAfterS = retry;
    throw err;
  }
  return body;
}

/** A JSON call to the API; throws ApiError with the API's message. */
export async function call(method, path, { json, body, contentType, prefer } = {}) {
  const h = {};
  if (json !== undefined) h["Content-Type"] = "application/json";
  else if (contentType) h["Content-Type"] = contentType;
  if (prefer) h["Prefer"] = prefer;
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers: headers(h),
      body: json !== undefined ? JSON.stringify(json) : body,
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError({ message: `The API could not be reached (${e.message})` });
  }
  return { status: resp.status, body: await parse(resp), resp };
}

export function account() {
  return call("GET", "/v1/account").then((r) => r.body);
}

/** Upload a File as raw bytes; onProgress(sent, total) as bytes go out.
 * XMLHttpRequest because fetch() does not report upload progress. */
export function upload(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const name = encodeURIComponent(file.name || "upload");
    xhr.open("POST", `/v1/assets/upload?name=${name}`);
    const h = headers({
      "Content-Type": file.type && file.type.startsWith("audio/") ? file.type : "application/octet-stream",
    });
    for (const [k, v] of Object.entries(h)) xhr.setRequestHeader(k, v);
    xhr.responseType = "text";
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(body || { statusCode: xhr.status, message: `HTTP ${xhr.status}` }, xhr.status));
    };
    // The API refuses an oversized body from its Content-Length and closes
    // the connection; the browser may then see no answer at all.
    xhr.onerror = () =>
      reject(new ApiError({ message: "The upload was cut off by the server or the network" }));
    xhr.send(file);
  });
}

// Submissions refused with 429 (the key's rate, or its plan's jobs in flight
// per queue) are tried again after Retry-After, for at most this long.
const SUBMIT_PATIENCE_MS = 30 * 60 * 1000;

function checkAbort(signal) {
  if (signal?.aborted) throw new Abandoned("abandoned");
}

/** Run an operation and resolve with its result.
 *
 * Every operation is submitted with `Prefer: respond-async`, so fast and long
 * ones answer the same way (202 + job id); then /v1/jobs/{id} is polled
 * (every 0.5 s, easing to 1.5 s: a few jobs at once stay well inside every
 * plan's request rate). onUpdate(job) sees each state.
 *
 * A 429 at submission (too many requests, or the plan's limit of jobs in
 * flight on that queue) is not the end: onWait(error) is told (the page shows
 * the API's message) and the submission is tried again after Retry-After.
 * A 429 or 503 while polling waits the same way. A failed job rejects with
 * its error body; `signal` (an AbortSignal) stops everything. */
export async function run(op, payload, { onUpdate = () => {}, onWait = () => {}, signal, raw, contentType } = {}) {
  const started = Date.now();
  let submitted;
  for (;;) {
    checkAbort(signal);
    try {
      submitted = raw
        ? await call("POST", `/v1/${op}`, { body: raw, contentType, prefer: "respond-async" })
        : await call("POST", `/v1/${op}`, { json: payload, prefer: "respond-async" });
      break;
    } catch (e) {
      if (!(e instanceof ApiError) || e.statusCode !== 429 || Date.now() - started > SUBMIT_PATIENCE_MS) throw e;
      onWait(e);
      await sleep(Math.min((e.retryAfterS || 5) * 1000, 60000));
    }
  }
  let job = submitted.body;
  if (submitted.status === 200) {
    // Answered at once (e.g. a replayed Idempotency-Key): the result's fields
    // sit at the top level, next to the job's.
    const { job_id, asset_id, asset_expires_at, _meta, ...result } = job;
    onUpdate({ job_id, _meta, status: "completed", progress: 1 });
    return result;
  }
  onUpdate({ ...job, progress: job.status === "completed" ? 1 : 0 });
  // The job's own URL on this origin: Location may name AUDIOQ_PUBLIC_URL's host.
  const url = `/v1/jobs/${encodeURIComponent(job.job_id)}`;
  let delay = 500;
  for (;;) {
    await sleep(delay);
    checkAbort(signal);
    delay = Math.min(delay * 1.5, 1500);
    let resp;
    try {
      resp = await fetch(url, { headers: headers(), cache: "no-store" });
    } catch {
      delay = 2000; // a network blip: keep polling
      continue;
    }
    if (resp.status === 429 || resp.status === 503) {
      delay = retryAfterMs(resp, 2000);
      await resp.text();
      continue;
    }
    job = await parse(resp);
    onUpdate(job);
    if (job.status === "completed") return job.result;
    if (job.status === "failed" || job.status === "cancelled") {
      throw new ApiError(job.error || { message: `The job was ${job.status}` });
    }
  }
}
