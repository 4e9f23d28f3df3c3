"use strict";
// #/sweeps: the sweeps, newest first.  #/sweeps/<id>: one sweep — its trials table (sorted by
// any column), a parallel-coordinates plot (an axis per hyperparameter and the metric, a line
// per trial, the best highlighted, pruned ones faint and only as far as they went), the
// metric against each hyperparameter, and the validation curves of the top trials; live
// while it runs.  Fields a sweep of a search may add (a member's trial, pruned_epoch, the
// status "pruned") are shown when present.

const SweepsPage = (() => {
  function show(view, page) {
    let token = null;
    const body = h("tbody", {id: "sweeps"});
    const older = h("button", {id: "older-sweeps", type: "button", hidden: true}, "Older →");
    older.addEventListener("click", () => load(true));
    view.replaceChildren(h("h1", {}, "Sweeps"), h("div", {class: "table-wrap"}, h("table", {},
      h("thead", {}, h("tr", {}, ["sweep", "owner", "state", "members", "succeeded", "failed", "cancelled", "metric",
                                  "best", "submitted", "duration"].map((name) => h("th", {}, name)))), body)),
      h("div", {class: "pager"}, older));

    async function load(more = false) {
      try {
        const listing = await apiJson("/v1/sweeps?limit=50" + (more && token ? "&page_token=" + encodeURIComponent(token) : ""),
                                      {signal: page.signal});
        clearUnreachable();
        const rows = listing.sweeps.map((sweep) => h("tr", {"data-state": sweep.state},
          h("td", {}, sweepLink(sweep.id)), h("td", {}, sweep.owner || ""), h("td", {}, statusBadge(sweep.state)),
          h("td", {class: "num"}, sweep.size), h("td", {class: "num"}, sweep.counts.succeeded),
          h("td", {class: "num"}, sweep.counts.failed), h("td", {class: "num"}, sweep.counts.cancelled),
          h("td", {}, sweep.metric),
          h("td", {}, sweep.best ? [fmtNumber(sweep.best.value), " (member ", jobLink(sweep.best.job_id), ")"] : "–"),
          h("td", {}, fmtTime(sweep.created_at)),
          h("td", {class: "num"}, fmtDuration((sweep.finished_at || Date.now() / 1000) - sweep.created_at))));
        if (more) body.append(...rows); else body.replaceChildren(...rows);
        token = listing.next_page_token;
        older.hidden = !token;
      } catch (err) { report(err); }
    }

    load();
    page.every(5000, () => { if (!token) load(); });  // (while only the newest page is shown)
  }

  return {show};
})();

const SweepPage = (() => {
  const TOP = 5;  // trials whose validation curves are overlaid
  const ENDED = new Set(["done", "cancelled", "failed"]);  // a sweep's states that change no more
  const lowerIsBetter = (metric) => /(_loss|_mse|_mae)$/.test(metric);
  // A search's member may say more as a trial: {number, status, pruned_epoch, repeat_of}
  // (or, flat, trial and pruned_epoch); a grid sweep's members say none of it.
  const trialOf = (m) => (m.trial && typeof m.trial === "object" ? m.trial : {number: m.trial, pruned_epoch: m.pruned_epoch});
  const prunedEpoch = (m) => trialOf(m).pruned_epoch ?? null;
  const memberStatus = (m) => trialOf(m).status || m.status;

  function show(view, page, sweepId) {
    let sweep = null, shown = "", sort = {key: null, descending: false}, topShown = "";
    const summary = h("dl", {class: "meta"});
    const actions = h("div", {class: "actions", id: "sweep-actions"});
    const table = h("table", {id: "trials", class: "trials"});
    const parallel = h("div", {id: "parallel", class: "chart-box wide-chart"});
    const scatters = h("div", {id: "scatters", class: "scatters"});
    const curves = h("div", {id: "top-curves", class: "chart-box wide-chart"});
    view.replaceChildren(h("h1", {}, "Sweep ", h("span", {class: "mono"}, sweepId)), actions, summary,
      h("section", {}, h("h2", {}, "Trials"), h("p", {class: "hint"}, "Click a column's title to sort by it."),
        h("div", {class: "table-wrap"}, table)),
      h("section", {}, h("h2", {}, "Parallel coordinates"),
        h("p", {class: "hint"}, "One line per trial: the best thick and orange, pruned trials faint and dashed, " +
                                "only as far as they went; trials still training stop before the metric."), parallel),
      h("section", {}, h("h2", {}, "The metric against each hyperparameter"), scatters),
      h("section", {}, h("h2", {}, `Validation curves of the top ${TOP} trials`), curves));

    async function load() {
      try {
        sweep = await apiJson(`/v1/sweeps/${encodeURIComponent(sweepId)}`, {signal: page.signal});
      } catch (err) {
        report(err);
        if (err instanceof ApiError && err.status === 404) page.stop();
        return;
      }
      clearUnreachable();
      const text = JSON.stringify(sweep);
      if (text !== shown) {  // (drawn again only when it changed: a click never meets a new header)
        shown = text;
        render();
      }
      if (ENDED.has(sweep.state)) page.stop();
    }

    // The trials table's columns: [key, title, value(member)], those of the sweep's members
    function columns() {
      const members = sweep.members;
      const keys = [...new Set(members.flatMap((m) => Object.keys(m.grid || {})))];
      const has = (read) => members.some((m) => read(m) !== undefined && read(m) !== null);
      const regression = members.some((m) => m.config && m.config.task === "regression");
      return [
        ["member", "member", (m) => m.member],
        // (a search's trial number, where it is not the member's index)
        ...(members.some((m) => (trialOf(m).number ?? m.member) !== m.member) ? [["trial", "trial", (m) => trialOf(m).number]] : []),
        ["job", "job", (m) => m.id],
        ["status", "status", memberStatus],
        ...keys.map((key) => ["grid:" + key, key, (m) => (m.grid ? m.grid[key] : null)]),
        ["metric", sweep.metric, (m) => m.metric_value],
        ["val_loss", "val_loss", (m) => m.val_loss],
        ["test", regression ? "test_r2" : "test_accuracy", (m) => (regression ? (m.scores || {}).test_r2 : m.test_accuracy)],
        ["epochs", "epochs", (m) => m.epochs],
        ...(has(prunedEpoch) ? [["pruned_epoch", "pruned at epoch", prunedEpoch]] : []),
        ...(has((m) => trialOf(m).repeat_of) ? [["repeat_of", "repeats trial", (m) => trialOf(m).repeat_of]] : []),
        ["duration", "duration", (m) => runTime(m)],
      ];
    }

    function kind(member) {
      if (sweep.best && member.id === sweep.best.job_id) return "best";
      if (memberStatus(member) === "pruned" || prunedEpoch(member) !== null) return "pruned";
      if (member.status === "failed" || member.status === "cancelled") return "ended";
      return FINAL.has(member.status) ? "" : "pending";
    }

    function render() {
      const best = sweep.best;
      const item = (name, value) => [h("dt", {}, name), h("dd", {}, value)];
      const counts = Object.entries(sweep.counts).filter(([, n]) => n).map(([s, n]) => `${n} ${s}`).join(", ");
      summary.replaceChildren(...item("state", statusBadge(sweep.state)), ...item("owner", sweep.owner || "–"),
        ...item("members", `${sweep.size} (${counts})`), ...item("metric", sweep.metric),
        ...item("best", best ? [fmtNumber(best.value), " — member ", String(best.member), ", job ", jobLink(best.job_id)] : "none yet"),
        ...item("submitted", fmtTime(sweep.created_at)),
        ...item("duration", fmtDuration((sweep.finished_at || Date.now() / 1000) - sweep.created_at)),
        ...(sweep.search ? searchItems(sweep.search, item) : []));
      // Cancel: a search stops after its step and asks no more trials; a grid sweep's
      // unfinished members are cancelled (the owner's or an admin's to do)
      const asked = sweep.search && sweep.search.cancel_requested;
      actions.replaceChildren(...(mayCancelOf(sweep.owner) && !ENDED.has(sweep.state) && !asked
        ? [cancelButton(() => cancelSweep(sweepId), load, "Cancel sweep", {id: "cancel-sweep"})]
        : asked && !ENDED.has(sweep.state) ? [h("span", {class: "hint"}, "cancel asked")] : []));
      renderTable();
      drawPlots();
      showTopCurves();
    }

    function renderTable() {
      const cols = columns();
      const members = [...sweep.members];
      const chosen = cols.find(([key]) => key === sort.key);
      if (chosen) {
        const value = chosen[2];
        members.sort((a, b) => {  // (missing values last, whichever the direction)
          const va = value(a), vb = value(b);
          const missing = (va === null || va === undefined) - (vb === null || vb === undefined);
          if (missing) return missing;
          const order = Plot.compareValues(va, vb);
          return sort.descending ? -order : order;
        });
      }
      const head = h("tr", {}, cols.map(([key, title]) => {
        const sorted = sort.key === key ? (sort.descending ? "descending" : "ascending") : null;
        return h("th", {"aria-sort": sorted, "data-key": key},
          h("button", {type: "button", class: "sort", onclick: () => {
            sort = {key, descending: sort.key === key ? !sort.descending : lowerIsBetter(title) ? false : key === "metric"};
            renderTable();
          }}, title, sorted ? (sort.descending ? " ▼" : " ▲") : ""));
      }));
      const cell = (key, value) => {
        if (key === "job") return h("td", {class: "mono"}, jobLink(value));
        if (key === "status") return h("td", {}, statusBadge(value));
        if (key === "duration") return h("td", {class: "num"}, fmtDuration(value));
        return h("td", {class: typeof value === "number" ? "num" : null}, fmtValue(value));
      };
      table.replaceChildren(h("thead", {}, head), h("tbody", {}, members.map((m) =>
        h("tr", {class: kind(m) || null, "data-member": m.member}, cols.map(([key, , value]) => cell(key, value(m)))))));
    }

    function drawPlots() {
      const members = sweep.members;
      const keys = [...new Set(members.flatMap((m) => Object.keys(m.grid || {})))];
      const title = (m) => `member ${m.member} (${memberStatus(m)}): ` +
        keys.map((key) => `${key}=${fmtValue(m.grid ? m.grid[key] : null)}`).join(", ") + `, ${sweep.metric} ${fmtNumber(m.metric_value)}`;
      const lines = members.map((m) => ({kind: kind(m), title: title(m)}));
      const short = (key) => key.split(".").pop();
      if (!keys.length) {
        parallel.replaceChildren(h("p", {}, "This sweep's members carry no grid values (a sweep an earlier server stored)."));
      } else {
        const axes = [...keys.map((key) => ({name: key, title: short(key), values: members.map((m) => (m.grid ? m.grid[key] : null))})),
                      {name: sweep.metric, title: sweep.metric, values: members.map((m) => m.metric_value)}];
        parallel.replaceChildren(Plot.parallelCoordinates({width: parallel.clientWidth || 700, axes, lines}));
      }
      const width = Math.min(420, Math.max(260, (scatters.clientWidth || 700) / Math.min(3, Math.max(1, keys.length)) - 12));
      scatters.replaceChildren(...keys.map((key) => h("figure", {class: "scatter-box"}, Plot.scatter({
        width, xLabel: key, yLabel: sweep.metric,
        points: members.map((m, k) => ({x: m.grid ? m.grid[key] : null, y: m.metric_value, kind: lines[k].kind, title: lines[k].title})),
      }))));
    }

    async function showTopCurves(force = false) {
      // ranked as the sweep's best is: by the metric, ties to the lower val_loss, then the lower
      // member; pruned trials (never the best) left out
      const sign = lowerIsBetter(sweep.metric) ? 1 : -1;
      const top = sweep.members.filter((m) => m.metric_value !== null && m.metric_value !== undefined && kind(m) !== "pruned")
        .sort((a, b) => sign * (a.metric_value - b.metric_value) || (a.val_loss ?? Infinity) - (b.val_loss ?? Infinity)
                        || a.member - b.member).slice(0, TOP);
      const ids = top.map((m) => m.id).join(",");
      if (ids === topShown && !force) return;
      topShown = ids;
      if (!top.length) {
        curves.replaceChildren(Plot.lineChart({width: curves.clientWidth || 700, series: [], xLabel: "epoch",
                                               yLabel: sweep.metric, empty: "no trial has succeeded yet"}));
        return;
      }
      try {
        const histories = [];
        for (const m of top) histories.push(await jobHistory(m.id, page.signal));  // (one stream at a time)
        if (ids !== topShown) return;  // (a newer top is being drawn)
        // the best in orange, as in the plots above; the others in the palette's other colours
        const others = Plot.COLORS.filter((c) => c !== "#E69F00");
        let next = 0;
        const series = top.map((m, i) => {
          const best = sweep.best && m.id === sweep.best.job_id;
          return {name: `member ${m.member}` + (best ? " (best)" : ""), color: best ? "#E69F00" : others[next++ % others.length],
                  points: histories[i].map(([n, metrics]) => [n, metrics[sweep.metric] ?? null]), width: best ? 3 : 2};
        });
        curves.replaceChildren(Plot.lineChart({width: curves.clientWidth || 700, height: 300, series, xLabel: "epoch",
                                               yLabel: sweep.metric}));
      } catch (err) { topShown = ""; report(err); }
    }

    load();
    page.every(2000, load);
    page.onResize(() => { if (sweep) { drawPlots(); showTopCurves(true); } });
  }

  // A search's settings and its trials by status (GET /v1/sweeps/{id}'s "search")
  function searchItems(search, item) {
    const settings = [search.search, `${search.trials} trials`];
    if (search.prune && search.prune !== "none") settings.push(`pruned by ${search.prune} from epoch ${search.min_epochs}`);
    const byStatus = Object.entries(search.trials_by_status || {}).filter(([, n]) => n).map(([s, n]) => `${n} ${s}`).join(", ");
    return [...item("search", settings.join(", ")), ...item("trials", byStatus || "none yet"),
            ...(search.error ? item("error", h("span", {class: "reason"}, search.error)) : [])];
  }

  return {show};
})();
