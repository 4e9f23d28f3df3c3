"use strict";
// The single page's routes (#/jobs, #/jobs/<id>, #/sweeps, #/sweeps/<id>, #/submit) and the
// token prompt.  Each visit to a page gets a context whose signal, timers and resize
// handler end when the page is left, so no stream or poll of a page outlives it.

const ROUTES = [
  [/^#\/jobs\/([\w-]+)$/, JobPage, "jobs"],
  [/^#\/sweeps\/([\w-]+)$/, SweepPage, "sweeps"],
  [/^#\/sweeps$/, SweepsPage, "sweeps"],
  [/^#\/submit$/, SubmitPage, "submit"],
  [/^#\/jobs(?:\?.*)?$/, JobsPage, "jobs"],
];

let current = null;  // the page on show: {abort, timers, resize}

function pageContext() {
  const controller = new AbortController();
  const context = {
    signal: controller.signal, timers: [], resize: null,
    every(ms, run) { context.timers.push(setInterval(run, ms)); },
    stop() { context.timers.forEach(clearInterval); context.timers = []; },  // (its data will not change)
    onResize(run) { context.resize = run; },
    leave() { controller.abort(); context.stop(); },
  };
  return context;
}

async function route() {
  if (current) current.leave();
  current = null;
  const hash = location.hash || "#/jobs";
  const [pattern, page, nav] = ROUTES.find(([re]) => re.test(hash)) || ROUTES[ROUTES.length - 1];
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("here", link.dataset.nav === nav);
  const view = document.getElementById("view");
  if (!session.token) { askForToken(); view.replaceChildren(); return; }
  const context = current = pageContext();
  try { await loadMe(); } catch (err) { report(err); if (err instanceof Refused) { view.replaceChildren(); return; } }
  if (context !== current) return;  // (left while asking)
  showError("");
  const match = hash.match(pattern) || [];
  const query = new URLSearchParams((hash.split("?")[1]) || "");
  window.scrollTo(0, 0);
  page.show(view, context, match[1] !== undefined && page !== JobsPage ? decodeURIComponent(match[1]) : query);
}

// The token prompt: shown when no token is kept, or when the server refused the one in use
function askForToken(why) {
  session.me = null;
  if (current) { current.leave(); current = null; }
  document.getElementById("view").replaceChildren();  // (what the last token showed is not this one's)
  document.getElementById("login").hidden = false;
  document.getElementById("login-why").textContent = why || "Enter the token from the server's data directory (DATA_DIR/token) or one `numbamlp serve token create` printed. It is kept in this browser.";
  document.getElementById("who").textContent = why ? "the token was refused" : "";
  document.getElementById("change-token").hidden = true;
  document.getElementById("token").focus();
}

function useToken() {
  session.token = document.getElementById("token").value.trim();
  session.me = null;
  localStorage.setItem(TOKEN_KEY, session.token);
  if (!session.token) { askForToken(); return; }
  document.getElementById("login").hidden = true;
  document.getElementById("change-token").hidden = false;
  route();
}

document.getElementById("token").value = session.token;
document.getElementById("save-token").addEventListener("click", useToken);
document.getElementById("token").addEventListener("keydown", (event) => { if (event.key === "Enter") useToken(); });
document.getElementById("change-token").addEventListener("click", () => askForToken());
document.getElementById("change-token").hidden = !session.token;
document.getElementById("login").hidden = Boolean(session.token);
window.addEventListener("hashchange", route);
let resizing = null;
window.addEventListener("resize", () => {  // (charts are laid out for their width: drawn again once it settles)
  clearTimeout(resizing);
  resizing = setTimeout(() => { if (current && current.resize) current.resize(); }, 150);
});
route();
