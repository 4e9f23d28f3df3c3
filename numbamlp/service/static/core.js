"use strict";
// What every page shares: the token kept in this browser, API calls (a 401 brings the token
// prompt back), a job's event stream, formatting, and small DOM helpers.  Pages build their
// DOM from data with h() and text nodes, never from HTML strings, so nothing a job holds
// (an error, a column name) can become markup.

const TOKEN_KEY = "numbamlp-token";
const UPLOADS_KEY = "numbamlp-uploads";  // the data sets uploaded from this browser (the API lists none)
const FINAL = new Set(["succeeded", "failed", "cancelled", "pruned"]);

const session = {
  token: localStorage.getItem(TOKEN_KEY) || "",
  me: null,  // {name, role} of the token in use (GET /v1/me)
};

class Refused extends Error {}  // a 401: the token prompt is on the page again

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

// ---------------------------------------------------------------- the API
async function api(path, options = {}) {
  const headers = Object.assign({Authorization: "Bearer " + session.token}, options.headers || {});
  const response = await fetch(path, Object.assign({}, options, {headers}));
  if (response.status === 401) {
    askForToken("The server refused this token (401): enter the token again.");
    throw new Refused("401");
  }
  return response;
}

// The answer's JSON, or ApiError with the server's one-line detail
async function apiJson(path, options) {
  const response = await api(path, options);
  let body = null;
  try { body = await response.json(); } catch (err) { body = null; }
  if (!response.ok) throw new ApiError(response.status, body ? detailOf(body) : `HTTP ${response.status}`);
  return body;
}

function postJson(path, payload, headers = {}) {
  return apiJson(path, {method: "POST", body: JSON.stringify(payload),
                       headers: Object.assign({"Content-Type": "application/json"}, headers)});
}

function detailOf(body) { return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail); }

// A key for Idempotency-Key: crypto.randomUUID exists only in secure contexts (https or
// localhost), and the service may be opened over plain http on a LAN address.
function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function loadMe() {
  if (session.me === null) session.me = await apiJson("/v1/me");
  document.getElementById("who").textContent = `signed in as ${session.me.name} (${session.me.role})`;
  return session.me;
}

// Whether the token in use may cancel this job: a submit token only its own (the server
// says 403 otherwise: no button it could not use)
// Whether this token may cancel what ``owner`` submitted (an admin anything, a submitter its own)
function mayCancelOf(owner) {
  const me = session.me;
  return !me || me.role === "admin" || (me.role === "submit" && owner === me.name);
}

function mayCancel(job) {
  return !FINAL.has(job.status) && mayCancelOf(job.owner);
}

// ---------------------------------------------------------------- errors on the page
function showError(text) {
  text = text || "";  // (a 422 may quote a huge input: the line stays readable)
  document.getElementById("error").textContent = text.length > 500 ? text.slice(0, 500) + " …" : text;
}

// What a failed call says on the page: nothing for a 401 (the prompt says it)
function report(err) {
  if (err instanceof Refused || err.name === "AbortError") return;
  if (err instanceof ApiError) showError(err.message);
  else showError("cannot reach the server (" + err.message + "); retrying every 2 s");
}

function clearUnreachable() {
  if (document.getElementById("error").textContent.startsWith("cannot reach the server")) showError("");
}

// ---------------------------------------------------------------- event streams
// A job's Server-Sent Events through fetch (EventSource cannot send the token): onEpoch(epoch,
// metrics) for each stored epoch, onEnd(end) once the job has ended.  Resolves true when the
// "end" event came, false when the stream was cut short (the caller follows again later).
async function followEvents(jobId, {signal, onEpoch, onEnd}) {
  const response = await api(`/v1/jobs/${encodeURIComponent(jobId)}/events`, {signal});
  if (!response.ok) throw new ApiError(response.status, detailOf(await response.json()));
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return false;
    buffer += decoder.decode(value, {stream: true});
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const kind = (block.match(/^event: (.*)$/m) || [])[1];
      const data = (block.match(/^data: (.*)$/m) || [])[1];
      const id = (block.match(/^id: (.*)$/m) || [])[1];
      if (kind === "epoch" && onEpoch) onEpoch(Number(id), JSON.parse(data));
      if (kind === "end") {  // (the server ends the stream after it)
        if (onEnd) onEnd(JSON.parse(data));
        return true;
      }
    }
  }
}

// Finished jobs' epochs, kept once read (a finished job's history never changes): the
// sweep page draws its top trials again at each refresh without asking again
const finishedHistories = new Map();  // job id → [[epoch, metrics], ...], the latest read last
const HISTORIES_KEPT = 100;

async function jobHistory(jobId, signal) {
  if (finishedHistories.has(jobId)) return finishedHistories.get(jobId);
  const epochs = [];
  const ended = await followEvents(jobId, {signal, onEpoch: (epoch, metrics) => epochs.push([epoch, metrics])});
  if (ended) {
    finishedHistories.set(jobId, epochs);
    if (finishedHistories.size > HISTORIES_KEPT) finishedHistories.delete(finishedHistories.keys().next().value);
  }
  return epochs;
}

// ---------------------------------------------------------------- formatting
function fmtNumber(value, digits = 4) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value) && Math.abs(value) < 1e6) return String(value);
  const size = Math.abs(value);
  if (size !== 0 && (size >= 1e5 || size < 1e-3)) return value.toExponential(2);
  return String(Number(value.toPrecision(digits)));
}

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !(seconds >= 0)) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${String(Math.floor(seconds % 60)).padStart(2, "0")} s`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}

function fmtTime(at) {
  if (!at) return "–";
  const d = new Date(at * 1000), two = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

function fmtValue(value) {  // a config or grid value: numbers short, lists and objects as JSON
  if (typeof value === "number") return fmtNumber(value);
  if (value === null || value === undefined) return "–";
  return typeof value === "string" ? value : JSON.stringify(value);
}

// Time in the queue and time training, from the job's timestamps (the server's clock; "now"
// is this browser's, close enough for a job still waiting or running)
function queueTime(job) {
  const now = Date.now() / 1000;
  if (job.started_at) return job.started_at - job.created_at;
  return job.status === "queued" ? now - job.created_at : null;
}

function runTime(job) {
  if (!job.started_at) return null;
  return (job.finished_at || (FINAL.has(job.status) ? job.started_at : Date.now() / 1000)) - job.started_at;
}

// A classifier's test accuracy, a regressor's test R², as "0.9667" or "R² 0.4312"
function scoreText(job) {
  if (job.test_accuracy !== null && job.test_accuracy !== undefined) return fmtNumber(job.test_accuracy);
  const r2 = job.scores ? job.scores.test_r2 : null;
  return r2 === null || r2 === undefined ? "" : "R² " + fmtNumber(r2);
}

// The settings a row shows of a job's config
function keySettings(config) {
  const model = config.model || {}, optimizer = config.optimizer || {};
  return {
    hidden: model.hidden ? model.hidden.join("×") : (model.layers ? model.layers.join("×") : "–"),
    activation: model.activation || "–", optimizer: optimizer.name || "–", lr: optimizer.lr,
    batch: config.batch_size, epochs: config.epochs,
  };
}

// ---------------------------------------------------------------- DOM
// h("td", {class: "id"}, "text", child, ...): attributes set as attributes, except on… handlers
// and a few properties; strings become text nodes; null children are skipped.
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "value" || name === "checked" || name === "disabled") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

function statusBadge(status) { return h("span", {class: `status status-${status}`}, status); }

function jobLink(id) { return h("a", {href: `#/jobs/${id}`}, id); }

function sweepLink(id) { return id ? h("a", {href: `#/sweeps/${id}`}, id) : "–"; }

async function downloadModel(jobId) {
  // fetched with the token, then handed to the browser as a file (a plain link sends no token)
  const response = await api(`/v1/jobs/${encodeURIComponent(jobId)}/model`);
  if (!response.ok) throw new ApiError(response.status, detailOf(await response.json()));
  const link = h("a", {href: URL.createObjectURL(await response.blob()), download: `${jobId}.safetensors`});
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

async function cancelJob(jobId) {
  return apiJson(`/v1/jobs/${encodeURIComponent(jobId)}/cancel`, {method: "POST"});
}

async function cancelSweep(sweepId) {
  return apiJson(`/v1/sweeps/${encodeURIComponent(sweepId)}/cancel`, {method: "POST"});
}

// A Cancel button: disabled once clicked (one request), ``cancel()`` asked, a refusal said
// on the page, then ``after()`` (the page reads what it shows again)
function cancelButton(cancel, after, label = "Cancel", attributes = {}) {
  return h("button", {class: "cancel", type: "button", ...attributes, onclick: async (event) => {
    event.target.disabled = true;
    try { await cancel(); } catch (err) { report(err); }
    after();
  }}, label);
}
