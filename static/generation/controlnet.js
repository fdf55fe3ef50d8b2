/* The generate page's ControlNet units: each an installed ControlNet of the chosen model (GET /api/v1/models
   lists those that fit it), a control image (uploaded, or picked from the project's images as the start image
   is), a preprocessor, a weight, and the share of the steps it steers (start, end). Shown only when a
   ControlNet fits the model and the mode takes them. Each unit is a copy of the page's
   <template id="controlnet-unit-template">. generate.js calls StudioControlNets.extendBody(data) when it builds
   the job body. */
(function () {
  "use strict";

  const form = document.getElementById("generate-form");
  const fieldset = document.getElementById("controlnet-field");
  if (!form || !fieldset) return;

  const models = Studio.readJSON("models-data", []);
  const initial = Studio.readJSON("initial-data", {});
  const choices = Studio.readJSON("start-images-data", []);
  const list = document.getElementById("controlnet-units");
  const template = document.getElementById("controlnet-unit-template");
  const addButton = document.getElementById("controlnet-add");
  const modelSelect = form.elements.namedItem("model");
  const MAX = 4;
  const MODES = ["txt2img", "img2img", "inpaint"];
  let counter = 0;
  let locked = false;

  function model() {
    return models.find(function (m) { return m.id === modelSelect.value; }) || null;
  }

  function controlnets() {
    const m = model();
    return m && (m.features || []).includes("controlnet") ? m.controlnets || [] : [];
  }

  function mode() {
    return window.StudioModes ? window.StudioModes.mode() : "txt2img";
  }

  function units() {
    return Array.from(list.querySelectorAll(".controlnet-unit"));
  }

  function input(unit, name) {
    return unit.querySelector('[data-name="' + name + '"]');
  }

  function renumber() {
    units().forEach(function (unit, index) {
      unit.dataset.unit = String(index);
      unit.querySelector(".controlnet-unit-title").textContent = "Unit " + (index + 1);
    });
    addButton.disabled = locked || units().length >= MAX;
  }

  function chooseImage(unit, image) {
    unit.dataset.image = image.id;
    const chosen = unit.querySelector(".controlnet-image-chosen");
    chosen.querySelector("img").src = image.thumbnail_url || image.image_url;
    chosen.querySelector("span").textContent = image.width + " × " + image.height +
      (image.prompt ? " · " + (image.prompt.length > 50 ? image.prompt.slice(0, 49) + "…" : image.prompt)
        : " · uploaded image");
    chosen.hidden = false;
    unit.querySelectorAll(".start-image-grid button").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.dataset.assetId === image.id));
    });
  }

  function addChoice(unit, image, first) {
    window.StudioModes.choiceButton(unit.querySelector(".start-image-grid"), image, first, function (chosen) {
      chooseImage(unit, chosen);
    });
  }

  // A copy of the template: its labels tied to its own inputs, its choosers filled.
  function addUnit(values) {
    const unit = template.content.firstElementChild.cloneNode(true);
    const id = "cn" + (counter += 1);
    unit.querySelectorAll("[data-name]").forEach(function (el) {
      el.id = id + "-" + el.dataset.name;
      el.name = "";
    });
    unit.querySelectorAll("[data-for]").forEach(function (label) { label.htmlFor = id + "-" + label.dataset.for; });
    const uploadInput = input(unit, "upload");
    unit.querySelector(".controlnet-upload-label").htmlFor = uploadInput.id;
    const select = input(unit, "controlnet");
    controlnets().forEach(function (c) { select.appendChild(new Option(c.name, c.id)); });
    choices.forEach(function (image) { addChoice(unit, image, false); });
    if (values) {
      if (values.id) select.value = values.id;
      ["preprocessor", "weight", "start", "end"].forEach(function (name) {
        if (values[name] !== undefined && values[name] !== null) input(unit, name).value = values[name];
      });
      if (values.image && typeof values.image === "object") chooseImage(unit, values.image);
    }
    uploadInput.addEventListener("change", async function () {
      const file = uploadInput.files && uploadInput.files[0];
      uploadInput.value = "";
      if (!file || !window.StudioModes) return;
      const image = await window.StudioModes.uploadImage(file, unit.querySelector(".controlnet-upload-status"));
      if (!image) return;
      choices.unshift(image);
      units().forEach(function (other) { addChoice(other, image, true); });
      chooseImage(unit, image);
    });
    unit.querySelector(".controlnet-remove").addEventListener("click", function () {
      unit.remove();
      renumber();
    });
    list.appendChild(unit);
    renumber();
    return unit;
  }

  // Shown when a ControlNet fits the model and the mode takes ControlNets; another model's units go.
  function refresh(keep) {
    const available = controlnets();
    fieldset.hidden = !available.length || !MODES.includes(mode());
    if (!keep) list.replaceChildren();
    units().forEach(function (unit) {
      const select = input(unit, "controlnet");
      if (!available.some(function (c) { return c.id === select.value; })) unit.remove();
    });
    renumber();
  }

  function extendBody(data) {
    if (fieldset.hidden || locked) return;
    const chosen = units().map(function (unit) {
      const number = function (name, fallback) {
        const raw = input(unit, name).value.trim();
        return raw === "" ? fallback : Number(raw);
      };
      const values = {
        id: input(unit, "controlnet").value,
        preprocessor: input(unit, "preprocessor").value,
        weight: number("weight", 1),
        start: number("start", 0),
        end: number("end", 1),
      };
      // A unit without an image of its own steers from the start image, where the mode has one.
      const start = window.StudioModes && mode() !== "txt2img" ? window.StudioModes.startImage() : null;
      const image = unit.dataset.image || (start ? start.id : "");
      if (image) values.image = image;
      return values;
    });
    if (chosen.length) data.controlnets = chosen;
  }

  // A style's ControlNet units (styles.js): filled in; locked ones cannot be changed (and are left out of the
  // job: the server applies the style's).
  function choose(style, isLocked) {
    locked = false;
    list.replaceChildren();
    (style || []).filter(function (u) { return u.id; }).forEach(function (u) {
      const image = u.image ? choices.find(function (c) { return c.id === u.image; }) || null : null;
      addUnit({ id: u.id, preprocessor: u.control, weight: u.weight, start: u.guidance_start,
        end: u.guidance_end, image: image });
    });
    locked = Boolean(isLocked);
    fieldset.querySelectorAll("input, select, button").forEach(function (el) { el.disabled = locked; });
    renumber();
  }

  addButton.addEventListener("click", function () { addUnit(null); });
  modelSelect.addEventListener("change", function () { refresh(true); });
  document.addEventListener("studio:mode-changed", function () { refresh(true); });

  refresh(false);
  // A reproduced image brings its units (with their control images, where they still exist).
  (Array.isArray(initial.controlnets) ? initial.controlnets : []).forEach(function (u) {
    if (controlnets().some(function (c) { return c.id === u.id; })) addUnit(u);
  });

  window.StudioControlNets = { extendBody: extendBody, choose: choose };
})();
