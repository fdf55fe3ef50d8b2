/* The generate page: model-aware form, job submission, and the live panel (via jobwatch.js). */
(function () {
  "use strict";

  const page = document.getElementById("generate-page");
  const form = document.getElementById("generate-form");
  if (!page || !form) return; // viewers get no form

  const slug = page.dataset.projectSlug;
  const models = Studio.readJSON("models-data", []);
  const initial = Studio.readJSON("initial-data", {});
  const field = function (name) {
    return form.elements.namedItem(name);
  };
  const modelSelect = field("model");
  const schedulerSelect = field("scheduler");
  const submitBtn = document.getElementById("generate-btn");
  const formError = document.getElementById("form-error");
  const jobLink = document.getElementById("job-link");
  const els = StudioJobWatch.elementsIn(document);
  const NUMBERS = ["width", "height", "steps", "guidance_scale", "seed", "num_images"];
  const DEFAULTS = { width: "default_width", height: "default_height", steps: "default_steps",
    guidance_scale: "default_guidance" };
  let watcher = null;

  function modelById(id) {
    return models.find(function (m) { return m.id === id; });
  }

  function setSchedulers(model, wanted) {
    const names = model ? model.schedulers : [];
    schedulerSelect.replaceChildren.apply(schedulerSelect, names.map(function (name) {
      return new Option(name, name);
    }));
    schedulerSelect.value = names.includes(wanted) ? wanted : (model ? model.default_scheduler : "");
  }

  function setLimits(model) {
    ["width", "height"].forEach(function (name) {
      field(name).min = model.min_size;
      field(name).max = model.max_size;
    });
  }

  // A value still equal to the previous model's default was not chosen by anyone: follow the new model.
  function applyModel(model, previous) {
    if (!model) return;
    setLimits(model);
    Object.keys(DEFAULTS).forEach(function (name) {
      const input = field(name);
      const untouched = input.value === "" || (previous && input.value === String(previous[DEFAULTS[name]]));
      if (untouched) input.value = model[DEFAULTS[name]];
    });
    setSchedulers(model, schedulerSelect.value);
  }

  function prefill() {
    modelSelect.replaceChildren.apply(modelSelect, models.map(function (m) {
      return new Option(m.name, m.id);
    }));
    if (!models.length) {
      showFormError("No model is installed on this studio yet.");
      submitBtn.disabled = true;
      return;
    }
    if (initial.model && !modelById(initial.model)) {
      showFormError("The model of the image being reproduced is not installed any more; using another one.");
    }
    const model = modelById(initial.model) || modelById(page.dataset.defaultModel) || models[0];
    modelSelect.value = model.id;
    applyModel(model, null);
    ["prompt", "negative_prompt", "width", "height", "steps", "guidance_scale", "seed", "num_images"]
      .forEach(function (name) {
        if (initial[name] !== undefined && initial[name] !== null) field(name).value = initial[name];
      });
    // A reproduced guidance need not sit on the 0.5 grid; don't let the browser call it invalid.
    if (initial.guidance_scale !== undefined && (initial.guidance_scale * 2) % 1 !== 0) {
      field("guidance_scale").step = "any";
    }
    setSchedulers(model, initial.scheduler);
    if (["negative_prompt", "steps", "guidance_scale", "seed", "scheduler"].some(function (k) {
      return initial[k] !== undefined && initial[k] !== "";
    })) {
      document.getElementById("advanced").open = true;
    }
  }

  let currentModel = modelSelect.value;
  modelSelect.addEventListener("change", function () {
    applyModel(modelById(modelSelect.value), modelById(currentModel));
    currentModel = modelSelect.value;
  });

  function clearErrors() {
    form.querySelectorAll(".field-error").forEach(function (p) { p.remove(); });
    form.querySelectorAll("[aria-invalid]").forEach(function (el) { el.removeAttribute("aria-invalid"); });
    formError.textContent = "";
    formError.hidden = true;
  }

  function showFieldError(name, messages) {
    const input = field(name);
    const p = document.createElement("p");
    p.className = "field-error";
    p.dataset.field = name;
    p.textContent = messages.join(" ");
    if (input && input.closest) {
      input.setAttribute("aria-invalid", "true");
      input.closest(".field").appendChild(p);
      const details = input.closest("details");
      if (details) details.open = true;
    } else {
      formError.before(p); // a field the form does not show
    }
  }

  function showFormError(text) {
    formError.textContent = text;
    formError.hidden = !text;
  }

  function body() {
    const data = { prompt: field("prompt").value, negative_prompt: field("negative_prompt").value,
      model: modelSelect.value, scheduler: schedulerSelect.value };
    NUMBERS.forEach(function (name) {
      const raw = field(name).value.trim();
      if (raw !== "") data[name] = Number(raw); // empty seed = random; other empties take the model default
    });
    if (window.StudioModes) window.StudioModes.extendBody(data); // mode, start image, strength, mask
    if (window.StudioRegions) window.StudioRegions.extendBody(data); // regional prompts and their masks
    if (window.StudioLoras) window.StudioLoras.extendBody(data); // LoRAs and their weights
    if (window.StudioReferences) window.StudioReferences.extendBody(data); // reference images
    if (window.StudioControlNets) window.StudioControlNets.extendBody(data); // ControlNet units
    if (window.StudioStyles) window.StudioStyles.extendBody(data); // the style; locked fields left out
    return data;
  }

  // Put the new job at the top of "Recent jobs"; returns its status badge so the watcher can update it.
  function addRecentJob(job, href) {
    const list = document.getElementById("job-list");
    const item = document.createElement("li");
    item.className = "job-item";
    const link = document.createElement("a");
    link.className = "recent-job";
    link.href = href;
    link.title = job.params.prompt;
    link.textContent = job.params.prompt.length > 100 ? job.params.prompt.slice(0, 99) + "…" : job.params.prompt;
    const badge = document.createElement("span");
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = job.created_by + " · just now";
    item.append(link, badge, meta);
    list.prepend(item);
    document.getElementById("jobs-empty").hidden = true;
    return badge;
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    clearErrors();
    const unreadable = NUMBERS.filter(function (name) { return field(name).validity.badInput; });
    if (unreadable.length) {
      unreadable.forEach(function (name) { showFieldError(name, ["Enter a number."]); });
      showFormError("Some fields are invalid: " + unreadable.join(", ") + ".");
      return;
    }
    submitBtn.disabled = true;
    const result = await Studio.postJSON("/api/v1/projects/" + encodeURIComponent(slug) + "/jobs", body());
    submitBtn.disabled = false;
    if (!result.ok) {
      if (result.status === 400 && result.data.errors) {
        Object.keys(result.data.errors).forEach(function (name) {
          showFieldError(name, result.data.errors[name]);
        });
      }
      showFormError(result.data.error);
      return;
    }
    const job = result.data;
    if (watcher) watcher.stop();
    StudioJobWatch.reset(els);
    const link = document.createElement("a");
    link.href = "/jobs/" + encodeURIComponent(job.id) + "/";
    link.textContent = "Open this job’s page";
    jobLink.replaceChildren(link);
    jobLink.hidden = false;
    const badge = addRecentJob(job, link.href);
    watcher = StudioJobWatch.watch(job.id, els, {
      canCancel: true,
      initial: job,
      onStatus: function (status) {
        badge.className = "badge status-" + status;
        badge.textContent = status.charAt(0).toUpperCase() + status.slice(1);
      },
    });
  });

  prefill();
  currentModel = modelSelect.value;
})();
