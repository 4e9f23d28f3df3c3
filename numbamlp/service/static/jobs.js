"use strict";
// #/jobs: the jobs, newest first, one page at a time (the API's page_token: the page never
// holds more than a page, however many jobs are stored), filtered by status and owner.  The
// page refreshes every 2 s; the loss curves of running jobs follow their event streams.

const JobsPage = (() => {
  // Live curves stream over at most this many connections at once: a browser opens 6 to one
  // host, and the list, Cancel and Submit need the others (with a stream per running job, 6
  // running jobs froze the page).  The other jobs' curves follow as streams end.
  const MAX_STREAMS = 4;
  const PAGE_SIZES = [25, 50, 100, 200];
  const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];
  const COLUMNS = [["job"], ["owner"], ["status"], ["sweep", "wide"], ["stack", "wide"], ["hidden"], ["activation", "wide"],
                   ["optimizer", "wide"], ["lr"], ["batch", "wide"], ["epoch"], ["queued", "wide"], ["duration"],
                   ["loss"], ["curve"], ["score", null, "test accuracy; a regressor's test R²"], [""]];

  function show(view, page, query) {
    const filters = {status: query.get("status") || "", owner: query.get("owner") || "",
                     limit: PAGE_SIZES.includes(Number(query.get("limit"))) ? Number(query.get("limit")) : 50};
    let tokens = [null];  // the page token of each page up to the one shown (null: the newest)
    let next = null, busy = false, listed = [];
    const streams = new Map();  // job id → {losses, epoch, open, ended}
    const rows = new Map();  // job id → {signature, tr}: a row is rebuilt only when its job changed

    const status = h("select", {id: "status-filter", "aria-label": "status"},
      h("option", {value: ""}, "any status"), STATUSES.map((s) => h("option", {value: s}, s)));
    status.value = filters.status;
    const owner = h("input", {id: "owner-filter", size: 14, placeholder: "everyone", value: filters.owner,
                              "aria-label": "owner"});
    const size = h("select", {id: "page-size", "aria-label": "jobs a page"},
      PAGE_SIZES.map((n) => h("option", {value: n}, `${n} a page`)));
    size.value = String(filters.limit);
    const body = h("tbody", {id: "jobs"});
    const info = h("span", {id: "page-info"});
    const newer = h("button", {id: "newer", type: "button", disabled: true}, "← Newer");
    const older = h("button", {id: "older", type: "button", hidden: true}, "Older →");

    function filtered() {  // a new filter starts from the newest page; the hash keeps it for a reload
      filters.status = status.value; filters.owner = owner.value.trim(); filters.limit = Number(size.value);
      tokens = [null];
      const params = new URLSearchParams(Object.entries(filters).filter(([k, v]) => v && !(k === "limit" && v === 50)));
      history.replaceState(null, "", "#/jobs" + (params.toString() ? "?" + params : ""));
      refresh(true);
    }
    status.addEventListener("change", filtered);
    owner.addEventListener("change", filtered);
    size.addEventListener("change", filtered);
    older.addEventListener("click", () => { if (next) { tokens.push(next); refresh(true); } });
    newer.addEventListener("click", () => { if (tokens.length > 1) { tokens.pop(); refresh(true); } });

    view.replaceChildren(
      h("h1", {}, "Jobs"),
      h("div", {class: "toolbar", id: "filters"},
        h("label", {}, "Status ", status), h("label", {}, "Owner ", owner),
        h("button", {id: "only-mine", type: "button", onclick: () => {
          if (session.me) { owner.value = session.me.name; filtered(); }
        }}, "Only mine"),
        h("label", {}, size)),
      h("div", {class: "table-wrap"}, h("table", {class: "jobs-table"},
        h("thead", {}, h("tr", {}, COLUMNS.map(([name, wide, about]) => h("th", {class: wide ? "wide" : null, title: about}, name)))),
        body)),
      h("div", {class: "pager"}, newer, info, older));

    async function refresh(moved = false) {
      if (busy && !moved) return;  // (a slow answer: the next tick asks again)
      busy = true;
      const shownTokens = tokens;
      const params = new URLSearchParams({limit: filters.limit});
      if (filters.status) params.set("status", filters.status);
      if (filters.owner) params.set("owner", filters.owner);
      const token = tokens[tokens.length - 1];
      if (token) params.set("page_token", token);
      try {
        const listing = await apiJson("/v1/jobs?" + params, {signal: page.signal});
        if (shownTokens !== tokens || token !== tokens[tokens.length - 1]) return;  // (a newer request is on its way)
        clearUnreachable();
        next = listing.next_page_token;
        render(listing.jobs);
        const first = (tokens.length - 1) * filters.limit;
        info.textContent = listing.jobs.length ? `jobs ${first + 1}–${first + listing.jobs.length}` : "no jobs";
        newer.disabled = tokens.length === 1;
        older.hidden = !next;
      } catch (err) { report(err); }
      finally { busy = false; }
    }

    function render(jobs) {
      const trs = jobs.map((job) => {
        const signature = JSON.stringify([job, session.me]);
        let entry = rows.get(job.id);
        if (!entry || entry.signature !== signature) {
          entry = {signature, tr: row(job), job};
          rows.set(job.id, entry);
        }
        updateTimes(entry.tr, job);
        return entry.tr;
      });
      const same = trs.length === body.children.length && trs.every((tr, i) => body.children[i] === tr);
      if (!same) body.replaceChildren(...trs);  // (rows kept as they are keep focus, hover and clicks)
      const shown = new Set(jobs.map((job) => job.id));
      for (const id of rows.keys()) if (!shown.has(id)) rows.delete(id);
      listed = jobs;
      followMore();
      for (const job of jobs) draw(job.id);
    }

    function followMore() {  // running jobs' curves first, then finished jobs' replayed histories
      for (const job of listed) if (job.status === "running") follow(job);
      for (const job of listed) if (job.status === "succeeded" || job.status === "failed") follow(job);
    }

    function row(job) {
      const settings = keySettings(job.config);
      const statusCell = h("td", {class: "status-cell"}, statusBadge(job.status));
      if (job.error) {  // why a job failed, as text
        statusCell.append(h("div", {class: "reason"}, job.error.length > 300 ? job.error.slice(0, 300) + " …" : job.error));
      }
      const actions = h("td", {class: "actions"});
      if (mayCancel(job)) {
        actions.append(cancelButton(() => cancelJob(job.id), refresh));
      }
      if (job.status === "succeeded") {
        actions.append(h("a", {href: "#", class: "download", onclick: (event) => {
          event.preventDefault();
          downloadModel(job.id).catch(report);
        }}, "model"));
      }
      const svg = Plot.el("svg", {class: "spark", viewBox: "0 0 120 28", "aria-hidden": "true"}, Plot.el("polyline"));
      const wide = (text, cls) => h("td", {class: "wide" + (cls ? " " + cls : "")}, text);
      return h("tr", {id: "job-" + job.id, "data-status": job.status},
        h("td", {class: "id"}, jobLink(job.id)), h("td", {class: "owner"}, job.owner || ""), statusCell,
        h("td", {class: "wide"}, sweepLink(job.sweep_id)),
        h("td", {class: "wide mono", title: job.stack ? `stack ${job.stack.id}` : null},
          job.stack ? `${job.stack.id.slice(0, 6)} (${job.stack.size})` : "–"),
        h("td", {class: "hidden-sizes"}, settings.hidden), wide(settings.activation), wide(settings.optimizer),
        h("td", {class: "num"}, fmtNumber(settings.lr)), wide(settings.batch, "num"),
        h("td", {class: "epoch num"}), wide("", "queue-time num"), h("td", {class: "duration num"}),
        h("td", {class: "loss num"}), h("td", {}, svg), h("td", {class: "accuracy num"}, scoreText(job)), actions);
    }

    function updateTimes(tr, job) {  // (a queued or running job's times grow between refreshes)
      tr.querySelector(".queue-time").textContent = fmtDuration(queueTime(job));
      tr.querySelector(".duration").textContent = fmtDuration(runTime(job));
    }

    async function follow(job) {
      if (streams.has(job.id)) return;
      if ([...streams.values()].filter((entry) => entry.open).length >= MAX_STREAMS) return;  // (a later refresh)
      const entry = {losses: [], epoch: null, open: true, ended: false, total: job.config.epochs};
      streams.set(job.id, entry);
      const epoch = (n, metrics) => { entry.losses.push(metrics.loss); entry.epoch = n; draw(job.id); };
      try {  // (a finished job's stream replays its history and ends; a running job's, as it trains)
        const ended = FINAL.has(job.status) ? null : () => refresh();
        entry.ended = await followEvents(job.id, {signal: page.signal, onEpoch: epoch, onEnd: ended});
      } catch (err) { /* aborted, or the server went away: a later refresh follows again */ }
      entry.open = false;
      if (!entry.ended) streams.delete(job.id);
      else draw(job.id);
      // a freed connection: the next curve starts (after a failure, the next refresh tries again)
      if (entry.ended && !page.signal.aborted) followMore();
    }

    function draw(id) {
      const entry = streams.get(id), tr = document.getElementById("job-" + id);
      if (!entry || !tr) return;
      tr.querySelector("polyline").setAttribute("points", spark(entry.losses));
      tr.querySelector(".epoch").textContent = entry.epoch === null ? "" : `${entry.epoch}/${entry.total}`;
      tr.querySelector(".loss").textContent = entry.losses.length ? fmtNumber(entry.losses[entry.losses.length - 1]) : "";
    }

    refresh();
    page.every(2000, () => refresh());
  }

  // the loss per epoch as polyline points, scaled into the 120 × 28 box
  function spark(losses) {
    const finite = losses.filter(Number.isFinite);
    if (finite.length === 0) return "";
    const top = Math.max(...finite), bottom = Math.min(...finite), span = top - bottom || 1;
    const step = losses.length > 1 ? 120 / (losses.length - 1) : 0;
    return losses.map((loss, i) => Number.isFinite(loss) ? `${(i * step).toFixed(1)},${(2 + 24 * (top - loss) / span).toFixed(1)}` : "")
      .filter(Boolean).join(" ");
  }

  return {show};
})();
