"use strict";
// #/submit: upload a data set (dropped on the page or chosen; the columns the server read are
// shown back), a form for a job's common settings (or its whole config as JSON), and a sweep
// over some of them: a grid, drawn at random, or searched.

const SubmitPage = (() => {
  // The choices the forms offer; tests/test_dashboard.py holds them to numbamlp's own lists
  // (the activation table, the optimizers, the built-in sets, the metrics).
  const CHOICES = {
    activations: ["relu", "leaky_relu", "elu", "sigmoid", "gelu", "silu", "tanh"],
    optimizers: ["sgd", "momentum", "nesterov", "adam", "adamw"],
    builtin: ["digits", "iris", "wine", "breast_cancer", "spiral", "diabetes"],
    regression: ["diabetes"],
    metrics: ["val_accuracy", "val_r2", "val_loss", "val_mse", "val_roc_auc", "val_average_precision", "val_f1",
              "val_macro_f1", "val_balanced_accuracy"],
    searches: ["tpe", "cmaes", "random", "grid"],
    pruners: ["median", "asha", "hyperband"],
  };
  const GRID_KEYS = ["optimizer.lr", "optimizer.name", "optimizer.weight_decay", "optimizer.momentum", "model.hidden",
                     "model.activation", "batch_size", "epochs", "seed", "data.val_fraction", "schedule.name"];
  const RANGE = /^(uniform|loguniform|int):/;
  const state = {json: false};  // (kept between visits: the raw JSON stays the chosen way)

  function uploads() {
    try { return JSON.parse(localStorage.getItem(UPLOADS_KEY)) || []; } catch (err) { return []; }
  }

  function show(view) {
    const field = (label, input, hint) => h("label", {class: "field"}, h("span", {}, label), input,
                                          hint ? h("small", {}, hint) : null);
    const number = (id, value, attrs = {}) => h("input", Object.assign({id, type: "number", value, step: "any"}, attrs));
    const select = (id, options, value) => {
      const node = h("select", {id}, options.map(([v, text]) => h("option", {value: v}, text)));
      node.value = value;
      return node;
    };

    // ---- the data set
    const uploadFile = h("input", {id: "upload-file", type: "file", accept: ".csv,.tsv,.parquet,.npz,.gz,.bz2,.zst"});
    const uploadLabel = h("input", {id: "upload-label", size: 16, placeholder: "the last column"});
    const uploadResult = h("div", {id: "upload-result"});
    const drop = h("div", {id: "drop", class: "drop"},
      h("p", {}, "Drop a .csv, .parquet or .npz file here, or choose one: "), uploadFile);
    drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      if (event.dataTransfer.files.length) upload(event.dataTransfer.files[0]);
    });
    uploadFile.addEventListener("change", () => { if (uploadFile.files[0]) upload(uploadFile.files[0]); });

    // ---- the settings
    const data = h("select", {id: "data"});
    const task = select("task", [["classification", "classification"], ["regression", "regression"]], "classification");
    const labelColumn = h("input", {id: "label-column", size: 12, placeholder: "the last"});
    const hidden = h("input", {id: "hidden", value: "64", size: 10, pattern: "\\s*\\d+(\\s*,\\s*\\d+)*\\s*"});
    const activation = select("activation", CHOICES.activations.map((a) => [a, a]), "relu");
    const optimizer = select("optimizer", CHOICES.optimizers.map((o) => [o, o]), "momentum");
    const lr = number("lr", "0.05", {min: "0"});
    const epochs = number("epochs", "30", {min: "1", step: "1"});
    const batch = number("batch-size", "32", {min: "1", step: "1"});
    const valFraction = number("val-fraction", "0.1", {min: "0", max: "0.9"});
    const patience = number("patience", "", {min: "1", step: "1", placeholder: "off"});
    const metric = select("metric", [["", "the task's default"], ...CHOICES.metrics.map((m) => [m, m])], "");
    const seed = number("seed", "0", {min: "0", step: "1"});
    fillData(data);
    data.addEventListener("change", () => {  // (a built-in set's task; an upload's label column)
      const [kind, name] = data.value.split(":");
      if (kind === "builtin") { task.value = CHOICES.regression.includes(name) ? "regression" : "classification"; labelColumn.value = ""; }
      const kept = uploads().find((u) => "dataset:" + u.id === data.value);
      if (kept) labelColumn.value = kept.label_column || "";
    });
    const form = h("div", {id: "settings-form", class: "grid-form"},
      field("data", data), field("task", task), field("label column", labelColumn, "an upload's; by name or 0-based index"),
      field("hidden sizes", hidden, "e.g. 128, 64"), field("activation", activation), field("optimizer", optimizer),
      field("learning rate", lr), field("epochs", epochs), field("batch size", batch),
      field("validation fraction", valFraction, "rows held out for the validation curves"),
      field("early stopping: patience", patience, "epochs without improvement; empty: off"),
      field("metric", metric, "picks the best epoch (and ranks a sweep)"), field("seed", seed));

    function formConfig() {
      const sizes = hidden.value.split(",").map((s) => s.trim()).filter(Boolean);
      if (!sizes.every((s) => /^\d+$/.test(s))) throw new Error("hidden sizes: whole numbers separated by commas, e.g. 128, 64");
      const config = {task: task.value, seed: Number(seed.value), epochs: Number(epochs.value), batch_size: Number(batch.value),
                      model: {hidden: sizes.map(Number), activation: activation.value},
                      optimizer: {name: optimizer.value, lr: Number(lr.value)},
                      data: {train: data.value, val_fraction: Number(valFraction.value)}};
      if (labelColumn.value.trim()) config.data.label_column = labelColumn.value.trim();
      if (patience.value || metric.value) {
        config.early_stopping = {};
        if (patience.value) config.early_stopping.patience = Number(patience.value);
        if (metric.value) config.early_stopping.metric = metric.value;
      }
      return config;
    }

    // ---- the raw JSON, instead of the form
    const jsonMode = h("input", {id: "json-mode", type: "checkbox", checked: state.json});
    const configText = h("textarea", {id: "config", rows: 12, spellcheck: "false"});
    const jsonBox = h("div", {id: "json-box", hidden: !state.json},
      h("label", {for: "config"}, "The job's config (JSON, the TrainConfig schema; settings left out take their defaults)"),
      configText);
    form.hidden = state.json;
    if (state.json) configText.value = safeJson(formConfig);
    jsonMode.addEventListener("change", () => {
      state.json = jsonMode.checked;
      if (state.json) configText.value = safeJson(formConfig);  // (the form's settings as a start)
      form.hidden = state.json;
      jsonBox.hidden = !state.json;
    });

    function config() {  // the job's config, from the form or the JSON (Error saying what is wrong)
      if (!state.json) return formConfig();
      try { return JSON.parse(configText.value); } catch (err) { throw new Error("the config is not JSON: " + err.message); }
    }

    const submitted = h("p", {id: "submitted", role: "status"});
    const submitButton = h("button", {id: "submit", type: "submit"}, "Submit job");
    // (novalidate: the server checks the config and names the field; the browser's own check
    // would stop at a field the JSON mode hides, without a word)
    const jobForm = h("form", {id: "submit-form", novalidate: true}, form,
      h("label", {class: "check"}, jsonMode, " edit the config as JSON (advanced)"), jsonBox,
      h("div", {class: "toolbar"}, submitButton), submitted);
    jobForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      let body;
      try { body = {config: config()}; } catch (err) { showError(err.message); return; }
      submitButton.disabled = true;  // (a double click submitted twice; the key makes a retry the same job too)
      try {
        const job = await postJson("/v1/jobs", body, {"Idempotency-Key": randomKey()});
        showError("");
        submitted.replaceChildren("Submitted job ", jobLink(job.id), ` (${job.status}).`);
      } catch (err) { report(err); }
      finally { submitButton.disabled = false; }
    });

    // ---- a sweep over the same settings
    const gridRows = h("div", {id: "grid"});
    const addGrid = (key = "", values = "") => gridRows.append(h("div", {class: "grid-row"},
      h("input", {class: "grid-key", list: "grid-keys", value: key, placeholder: "setting, e.g. optimizer.lr", "aria-label": "setting"}),
      h("input", {class: "grid-values", value: values, placeholder: "values: 0.01, 0.1 or loguniform:1e-3:0.3", "aria-label": "values"}),
      h("button", {type: "button", class: "remove", title: "remove this setting", onclick: (event) => event.target.parentNode.remove()}, "×")));
    addGrid("optimizer.lr", "0.01, 0.1");
    const random = number("random", "", {min: "1", step: "1", placeholder: "every combination"});
    const search = select("search", [["", "none (the grid)"], ...CHOICES.searches.map((s) => [s, s])], "");
    const trials = number("trials", "", {min: "1", step: "1"});
    const prune = select("prune", [["", "no pruning"], ...CHOICES.pruners.map((p) => [p, p])], "");
    const minEpochs = number("min-epochs", "", {min: "1", step: "1", placeholder: "1"});
    const sweepButton = h("button", {id: "submit-sweep", type: "submit"}, "Submit sweep");
    const sweepForm = h("form", {id: "sweep-form", novalidate: true},
      h("p", {class: "hint"}, "The sweep's members are the settings above with these varied. Values are separated by commas " +
        "(a list in brackets: [128, 64]); a range (uniform:A:B, loguniform:A:B, int:A:B) needs random members or a search."),
      h("datalist", {id: "grid-keys"}, GRID_KEYS.map((key) => h("option", {value: key}))),
      gridRows, h("button", {type: "button", id: "add-grid", onclick: () => addGrid()}, "+ a setting"),
      h("div", {class: "grid-form"}, field("random members", random, "draw this many instead of every combination"),
        field("search", search, "needs the server's search extra"), field("trials", trials),
        field("pruning", prune), field("min epochs", minEpochs, "before pruning")),
      h("div", {class: "toolbar"}, sweepButton));
    sweepForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      let body;
      try {
        body = {config: config(), grid: gridOf(gridRows)};
        // the search settings only when given (a server without searches knows none of them)
        if (random.value) body.random = Number(random.value);
        if (search.value) body.search = search.value;
        if (trials.value) body.trials = Number(trials.value);
        if (prune.value) body.prune = prune.value;
        if (minEpochs.value) body.min_epochs = Number(minEpochs.value);
      } catch (err) { showError(err.message); return; }
      sweepButton.disabled = true;
      try {
        const answer = await postJson("/v1/sweeps", body);
        showError("");
        location.hash = `#/sweeps/${answer.id}`;
      } catch (err) { report(err); }
      finally { sweepButton.disabled = false; }
    });

    view.replaceChildren(h("h1", {}, "Submit"),
      h("section", {id: "upload"}, h("h2", {}, "Upload a data set"),
        field("label column", uploadLabel, "by name or 0-based index, as the jobs will name it"), drop, uploadResult),
      h("section", {}, h("h2", {}, "A job"), jobForm),
      h("section", {}, h("h2", {}, "A sweep"), sweepForm));

    async function upload(file) {
      uploadResult.replaceChildren(`Uploading ${file.name} (${fmtNumber(file.size)} bytes)…`);
      const label = uploadLabel.value.trim();
      try {
        const answer = await apiJson("/v1/datasets" + (label ? "?label_column=" + encodeURIComponent(label) : ""),
                                     {method: "POST", body: file, headers: {"Content-Type": "application/octet-stream"}});
        const kept = uploads().filter((u) => u.id !== answer.id);
        kept.unshift({id: answer.id, name: file.name, rows: answer.rows, features: answer.features, label_column: label || null});
        localStorage.setItem(UPLOADS_KEY, JSON.stringify(kept.slice(0, 50)));
        fillData(data);
        data.value = "dataset:" + answer.id;
        labelColumn.value = label;
        uploadResult.replaceChildren(uploaded(file.name, answer));
      } catch (err) {
        uploadResult.replaceChildren(h("p", {class: "reason"}, err instanceof ApiError ? err.message : `cannot upload: ${err.message}`));
        if (!(err instanceof ApiError)) report(err);
      }
    }
  }

  // What the server read of an upload: its size, and each column with its type and role
  function uploaded(name, answer) {
    const columns = answer.columns || [];
    return h("div", {},
      h("p", {}, `${name}: `, h("span", {class: "mono", id: "uploaded-id"}, "dataset:" + answer.id),
        ` — ${answer.rows} rows, ${answer.features} features (${answer.format}); chosen as the data below.`),
      columns.length ? h("div", {class: "table-wrap"}, h("table", {id: "upload-columns"},
        h("thead", {}, h("tr", {}, h("th", {}, "column"), h("th", {}, "type"), h("th", {}, "role"))),
        h("tbody", {}, columns.map((c) => h("tr", {"data-role": c.role}, h("td", {}, c.name), h("td", {}, c.type ?? "not read"),
                                            h("td", {}, c.role)))))) : null);
  }

  function fillData(select) {
    const chosen = select.value;
    const kept = uploads();
    select.replaceChildren(
      h("optgroup", {label: "built-in"}, CHOICES.builtin.map((name) => h("option", {value: "builtin:" + name}, name))),
      kept.length ? h("optgroup", {label: "uploaded from this browser"}, kept.map((u) =>
        h("option", {value: "dataset:" + u.id}, `${u.name} (${u.rows} rows, ${u.id.slice(0, 8)})`))) : null);
    select.value = chosen || "builtin:digits";
  }

  // The grid the rows give: {setting: [value texts]} (the server reads each text as the
  // command line's --grid does), or a range text alone
  function gridOf(rows) {
    const grid = {};
    for (const row of rows.querySelectorAll(".grid-row")) {
      const key = row.querySelector(".grid-key").value.trim(), text = row.querySelector(".grid-values").value.trim();
      if (!key && !text) continue;
      if (!key || !text) throw new Error(`the sweep's setting ${key || "(unnamed)"} needs a name and values`);
      const values = splitTopLevel(text);
      grid[key] = values.length === 1 && RANGE.test(values[0]) ? values[0] : values;
    }
    if (!Object.keys(grid).length) throw new Error("a sweep needs at least one setting to vary");
    return grid;
  }

  function splitTopLevel(text) {  // "[128, 64], [64]" → ["[128, 64]", "[64]"]
    const parts = [];
    let depth = 0, start = 0;
    for (let i = 0; i <= text.length; i++) {
      const c = text[i];
      if (c === "[") depth++;
      else if (c === "]") depth--;
      else if ((c === "," && depth === 0) || i === text.length) { parts.push(text.slice(start, i).trim()); start = i + 1; }
    }
    return parts.filter(Boolean);
  }

  function safeJson(make) {
    try { return JSON.stringify(make(), null, 2); } catch (err) { return "{}"; }
  }

  return {show, CHOICES};
})();
