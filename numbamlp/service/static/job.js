"use strict";
// #/jobs/<id>: one job.  Its loss and validation curves (from its event stream: the history,
// then each epoch as it ends), its times, stack and stack-mates, final metrics and
// configuration; download its model, predict from a pasted or chosen CSV file, cancel it.

const JobPage = (() => {
  const METRIC_NAMES = {accuracy: "accuracy", loss: "loss", balanced_accuracy: "balanced accuracy", f1: "F1",
                        macro_f1: "macro F1", roc_auc: "ROC AUC", average_precision: "average precision",
                        log_loss: "log loss", r2: "R²", mse: "MSE", mae: "MAE"};
  // the validation scores a curve is drawn for, when the events carry them
  const SCORE_CURVES = [["val_accuracy", "validation accuracy"], ["val_balanced_accuracy", "validation balanced accuracy"],
                        ["val_f1", "validation F1"], ["val_macro_f1", "validation macro F1"], ["val_r2", "validation R²"]];
  const PREDICT_ROWS = 5000;  // rows sent from the page at most (the command line sends any file)

  function show(view, page, jobId) {
    let job = null, redrawing = false, following = false, reloading = false;
    const epochs = [];  // [[epoch, metrics], ...] as the stream gives them
    const title = h("h1", {}, "Job ", h("span", {class: "mono"}, jobId));
    const actions = h("div", {class: "actions toolbar"});
    const meta = h("dl", {class: "meta"});
    const lossChart = h("div", {id: "loss-chart", class: "chart-box"});
    const scoreChart = h("div", {id: "score-chart", class: "chart-box"});
    const metrics = h("div", {id: "metrics"});
    const settings = h("div", {id: "settings"});
    const mates = h("div", {id: "stack-mates"}, "…");
    const predict = h("div", {id: "predict-box"});
    view.replaceChildren(title, actions, meta,
      h("section", {}, h("h2", {}, "Curves"), h("div", {class: "charts"}, lossChart, scoreChart)),
      h("section", {}, h("h2", {}, "Final metrics"), metrics),
      h("section", {}, h("h2", {}, "Stack"), mates),
      h("section", {}, h("h2", {}, "Predict"), predict),
      h("section", {}, h("h2", {}, "Configuration"), settings));

    async function load() {
      try {
        job = await apiJson(`/v1/jobs/${encodeURIComponent(jobId)}`, {signal: page.signal});
      } catch (err) {
        report(err);
        if (err instanceof ApiError && err.status === 404) { title.append(" — not found"); page.stop(); }
        return;
      }
      clearUnreachable();
      render();
      if (!following) follow();
      if (FINAL.has(job.status)) page.stop();  // (nothing more will change)
    }

    async function follow() {
      following = true;
      try {
        const ended = await followEvents(jobId, {signal: page.signal, onEnd: () => load(), onEpoch: (n, m) => {
          const last = epochs.length ? epochs[epochs.length - 1][0] : 0;
          if (n > last) { epochs.push([n, m]); redraw(); }  // (a stream followed again replays from the start)
          if (job && job.status === "queued" && !reloading) {  // (it started: its status and stack, now)
            reloading = true;
            load().finally(() => { reloading = false; });
          }
        }});
        if (ended) return;
      } catch (err) { if (err.name === "AbortError") return; }
      following = false;  // (cut short: the next load follows again)
    }

    function render() {
      title.replaceChildren("Job ", h("span", {class: "mono"}, job.id), " ", statusBadge(job.status));
      // each part rebuilt only when what it shows changed: a click never meets a new button,
      // an opened <details> stays open
      changed(actions, [job.status, job.cancel_requested, session.me], () => {
        actions.replaceChildren();
        if (mayCancel(job) && !job.cancel_requested) {
          actions.append(cancelButton(() => cancelJob(job.id), load));
        }
        if (job.status === "succeeded") {
          actions.append(h("button", {id: "download", type: "button", onclick: () => downloadModel(job.id).catch(report)},
                           "Download model"));
        }
      });
      const item = (name, value, id) => [h("dt", {}, name), h("dd", {id}, value)];
      meta.replaceChildren(
        ...item("owner", job.owner || "–"), ...item("sweep", sweepLink(job.sweep_id)),
        ...item("stack", job.stack ? `${job.stack.id} (${job.stack.size} ${job.stack.size === 1 ? "model" : "models"}` +
          (job.stack.joined_at_epoch == null ? ")" : `; joined at its epoch ${job.stack.joined_at_epoch}, in a slot another job left)`) : "–"),
        ...item("submitted", fmtTime(job.created_at)), ...item("started", fmtTime(job.started_at)),
        ...item("finished", fmtTime(job.finished_at)), ...item("queue time", fmtDuration(queueTime(job))),
        ...item("duration", fmtDuration(runTime(job))),
        ...item("epochs", "", "epochs-done"),
        ...(job.error ? item("error", h("span", {class: "reason"}, job.error)) : []));
      changed(metrics, job.scores, () => metrics.replaceChildren(metricsTable(job)));
      changed(predict, job.status === "succeeded", () => predict.replaceChildren(job.status === "succeeded" ? predictForm(jobId)
        : h("p", {}, "Its model predicts once the job has succeeded.")));
      changed(settings, job.config, () => settings.replaceChildren(settingsTable(job.config),
        h("details", {}, h("summary", {}, "The whole configuration (JSON)"),
          h("pre", {id: "config-json"}, JSON.stringify(job.config, null, 2)))));
      if (mates.dataset.stack !== (job.stack ? job.stack.id : "") || job.trial) showMates();
      redraw();
    }

    function redraw() {  // (once a frame, however many epochs arrive)
      if (redrawing) return;
      redrawing = true;
      requestAnimationFrame(() => { redrawing = false; drawCurves(); });
    }

    function drawCurves() {
      const series = (key) => epochs.map(([n, m]) => [n, m[key] ?? null]);
      const has = (key) => epochs.some(([, m]) => m[key] !== undefined && m[key] !== null);
      const losses = [{name: "training loss", points: series("loss")}];
      if (has("val_loss")) losses.push({name: "validation loss", points: series("val_loss")});
      const width = lossChart.clientWidth || 600;
      lossChart.replaceChildren(Plot.lineChart({width, series: losses, xLabel: "epoch", yLabel: "loss",
                                                empty: job && !FINAL.has(job.status) ? "waiting for the first epoch" : "no epochs"}));
      const scores = SCORE_CURVES.filter(([key]) => has(key)).map(([key, name]) => ({name, points: series(key)}));
      const regression = job && job.config.task === "regression";
      scoreChart.replaceChildren(Plot.lineChart({width: scoreChart.clientWidth || 600, series: scores, xLabel: "epoch",
        yLabel: regression ? "validation R²" : "validation score",
        empty: epochs.length ? "no validation rows (data.val_fraction is 0)" : "waiting for the first epoch"}));
      const done = document.getElementById("epochs-done");
      if (job && done) done.textContent = `${epochs.length ? epochs[epochs.length - 1][0] : 0} of ${job.config.epochs}`;
    }

    async function showMates() {
      mates.dataset.stack = job.stack ? job.stack.id : "";
      if (job.trial) {  // (a search's trial trains in the search's own stacks, not the scheduler's)
        const t = job.trial;
        mates.replaceChildren(h("p", {id: "trial"}, `Trial ${t.number} of search `, sweepLink(job.sweep_id),
          `: ${t.status || job.status}`, t.pruned_epoch != null ? `, pruned at epoch ${t.pruned_epoch}` : "",
          t.repeat_of != null ? `, the outcome of trial ${t.repeat_of}, whose settings it repeats` : "",
          ". It trains in the search's stacks: see the search for the others."));
        return;
      }
      if (!job.stack) { mates.replaceChildren("Not trained yet: a queued job joins a stack when it starts."); return; }
      if (job.stack.size === 1) { mates.replaceChildren(`Stack ${job.stack.id}: a stack of one, this job alone.`); return; }
      mates.replaceChildren(`Stack ${job.stack.id} of ${job.stack.size}: looking for its other members…`);
      try {
        const found = await findMates(job, page.signal);
        const table = h("table", {class: "mates"},
          h("thead", {}, h("tr", {}, ["job", "owner", "status", "hidden", "optimizer", "lr", "seed", "test accuracy (R²)"]
            .map((name) => h("th", {}, name)))),
          h("tbody", {}, found.map((mate) => {
            const s = keySettings(mate.config);
            return h("tr", {class: mate.id === job.id ? "this" : null}, h("td", {}, jobLink(mate.id)),
              h("td", {}, mate.owner || ""), h("td", {}, statusBadge(mate.status)), h("td", {}, s.hidden),
              h("td", {}, s.optimizer), h("td", {class: "num"}, fmtNumber(s.lr)), h("td", {class: "num"}, mate.config.seed),
              h("td", {class: "num"}, scoreText(mate)));
          })));
        mates.replaceChildren(h("p", {}, `Stack ${job.stack.id}: ${job.stack.size} models trained as one.`),
          h("div", {class: "table-wrap"}, table));
      } catch (err) { report(err); }
    }

    load();
    page.every(2000, load);
    page.onResize(drawCurves);
  }

  // The jobs of a job's stack (itself included), oldest first: GET /v1/jobs?stack=
  async function findMates(job, signal) {
    const found = new Map([[job.id, job]]);
    let token = null;
    do {
      const listing = await apiJson(`/v1/jobs?limit=1000&stack=${encodeURIComponent(job.stack.id)}` +
        (token ? "&page_token=" + encodeURIComponent(token) : ""), {signal});
      for (const mate of listing.jobs) found.set(mate.id, mate);
      token = listing.next_page_token;
    } while (token);
    return [...found.values()].sort((a, b) => a.created_at - b.created_at);
  }

  // build() when ``shown`` differs from what ``node`` shows now
  function changed(node, shown, build) {
    const text = JSON.stringify(shown);
    if (node.dataset.shown !== text) { node.dataset.shown = text; build(); }
  }

  function metricsTable(job) {
    const scores = job.scores || {};
    const given = (key) => scores[key] !== null && scores[key] !== undefined;  // (a metric undefined for both: no row)
    const names = [...new Set(Object.keys(scores).filter(given).map((key) => key.replace(/^(val|test)_/, "")))];
    if (!names.length) {
      return h("p", {}, job.status === "succeeded" ? "No metrics were stored." : "Metrics come once the job has succeeded.");
    }
    return h("div", {class: "table-wrap"}, h("table", {class: "metrics"},
      h("thead", {}, h("tr", {}, h("th", {}, "metric"), h("th", {}, "validation"), h("th", {}, "test"))),
      h("tbody", {}, names.map((name) => h("tr", {"data-metric": name}, h("td", {}, METRIC_NAMES[name] || name),
        h("td", {class: "num"}, fmtNumber(scores["val_" + name])), h("td", {class: "num"}, fmtNumber(scores["test_" + name])))))));
  }

  function settingsTable(config) {
    const s = keySettings(config), data = config.data || {}, stopping = config.early_stopping || {};
    const rows = [["data", data.train], ["task", config.task], ["label column", data.label_column ?? "the last"],
                  ["hidden sizes", s.hidden], ["activation", s.activation], ["optimizer", s.optimizer],
                  ["learning rate", fmtNumber(s.lr)], ["batch size", s.batch], ["epochs", s.epochs],
                  ["validation", data.val || data.val_fraction], ["test fraction", data.test_fraction],
                  ["early stopping", stopping.patience ? `patience ${stopping.patience} on ${stopping.metric || "val_loss"}` : "off"],
                  ["seed", config.seed]];
    return h("div", {class: "table-wrap"}, h("table", {class: "settings"}, h("tbody", {}, rows.map(([name, value]) =>
      h("tr", {}, h("th", {}, name), h("td", {}, fmtValue(value)))))));
  }

  // ---------------------------------------------------------------- predict
  function predictForm(jobId) {
    const text = h("textarea", {id: "predict-csv", rows: 5, spellcheck: "false",
      placeholder: "rows of a CSV file: with a header row, columns are taken by name (a table's text and empty cells too); without, rows of numbers in the features' order"});
    const file = h("input", {id: "predict-file", type: "file", accept: ".csv,.tsv,.txt,text/csv"});
    const proba = h("input", {id: "predict-proba", type: "checkbox", checked: true});
    const results = h("div", {id: "predict-results"});
    const button = h("button", {id: "predict", type: "button"}, "Predict");
    file.addEventListener("change", async () => { if (file.files[0]) text.value = await file.files[0].text(); });
    button.addEventListener("click", async () => {
      results.replaceChildren();
      let request;
      try { request = predictRequest(text.value, proba.checked); }
      catch (err) { results.replaceChildren(h("p", {class: "reason"}, err.message)); return; }
      button.disabled = true;
      try {
        const answer = await postJson(`/v1/jobs/${encodeURIComponent(jobId)}/predict`, request.body);
        results.replaceChildren(resultsTable(request, answer));
      } catch (err) {
        if (err instanceof ApiError) results.replaceChildren(h("p", {class: "reason"}, err.message));
        else report(err);
      } finally { button.disabled = false; }
    });
    return h("div", {class: "predict"}, text,
      h("div", {class: "toolbar"}, h("label", {}, "or a file ", file), h("label", {}, proba, " class probabilities"), button),
      results);
  }

  // The request for a CSV text: {rows} by column name when its first row is a header, else {X}
  function predictRequest(csv, proba) {
    const table = parseCsv(csv).filter((cells) => cells.some((cell) => cell.trim() !== ""));
    if (!table.length) throw new Error("paste rows of a CSV file, or choose one");
    const isNumber = (cell) => cell.trim() !== "" && Number.isFinite(Number(cell));
    const header = table[0].some((cell) => cell.trim() !== "" && !isNumber(cell)) ? table[0].map((c) => c.trim()) : null;
    let data = header ? table.slice(1) : table;
    const cut = data.length > PREDICT_ROWS;
    data = data.slice(0, PREDICT_ROWS);
    if (!data.length) throw new Error("the CSV has a header but no rows");
    if (header) {
      const cell = (text) => (text.trim() === "" ? null : isNumber(text) ? Number(text) : text);
      const rows = data.map((cells) => Object.fromEntries(header.map((name, j) => [name, cell(cells[j] ?? "")])));
      return {header, data, cut, body: {rows, proba}};
    }
    const X = data.map((cells, i) => cells.map((text, j) => {
      if (!isNumber(text)) throw new Error(`row ${i + 1}, column ${j + 1} holds ${JSON.stringify(text)}: without a header row, every cell must be a number`);
      return Number(text);
    }));
    return {header: null, data, cut, body: {X, proba}};
  }

  function resultsTable(request, answer) {
    const shown = request.data.slice(0, 1000);  // (a long answer: its first rows)
    const inputs = Math.min(4, shown[0].length);
    const classes = answer.proba ? answer.proba[0].length : 0;
    const names = request.header ? request.header.slice(0, inputs) : Array.from({length: inputs}, (_, j) => `x${j}`);
    const head = ["row", ...names, ...(shown[0].length > inputs ? ["…"] : []),
                  answer.values ? "prediction" : "label", ...Array.from({length: classes}, (_, k) => `p(class ${k})`)];
    const note = request.data.length > shown.length || request.cut
      ? h("p", {}, `The first ${shown.length} of ${request.cut ? "more than " + PREDICT_ROWS : request.data.length} rows.`) : null;
    return h("div", {}, note, h("div", {class: "table-wrap"}, h("table", {class: "predictions"},
      h("thead", {}, h("tr", {}, head.map((name) => h("th", {}, name)))),
      h("tbody", {}, shown.map((cells, i) => h("tr", {},
        h("td", {class: "num"}, i + 1), cells.slice(0, inputs).map((cell) => h("td", {}, cell)),
        shown[0].length > inputs ? h("td", {}, "") : null,
        h("td", {class: "prediction"}, fmtValue(answer.values ? answer.values[i] : answer.labels[i])),
        (answer.proba ? answer.proba[i] : []).map((p) => h("td", {class: "num"}, fmtNumber(p)))))))));
  }

  // CSV text → rows of cells: quoted cells ("a, b" and "" inside), \r\n or \n line ends; the
  // delimiter the first line uses most of: comma, tab or semicolon
  function parseCsv(text) {
    const first = text.split("\n", 1)[0];
    const delimiter = [",", "\t", ";"].reduce((best, d) => (first.split(d).length > first.split(best).length ? d : best), ",");
    const rows = [];
    let row = [], cell = "", quoted = false;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; }
        else if (c === '"') quoted = false;
        else cell += c;
      } else if (c === '"' && cell === "") quoted = true;
      else if (c === delimiter) { row.push(cell); cell = ""; }
      else if (c === "\n" || c === "\r") {
        if (c === "\r" && text[i + 1] === "\n") i++;
        row.push(cell); rows.push(row); row = []; cell = "";
      } else cell += c;
    }
    if (cell !== "" || row.length) { row.push(cell); rows.push(row); }
    return rows;
  }

  return {show, parseCsv};
})();
