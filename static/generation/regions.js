/* The generate page's regional prompts: add a region, paint it over the picture's area with the brush of
   the mask editor (StudioModes.painter), give it a prompt and a weight, remove it. Each region has its own
   canvas and colour, stacked over the picture; only the chosen one takes strokes. The regions go into the
   job body as PNG masks of the image's size (StudioModes.canvasMask), through the same JobRequest as the API.
   generate.js calls StudioRegions.extendBody(data) when it builds the job body. */
(function () {
  "use strict";

  const form = document.getElementById("generate-form");
  const fieldset = document.getElementById("regions-field");
  if (!form || !fieldset || !window.StudioModes) return; // viewers get no form

  const models = Studio.readJSON("models-data", []);
  const $ = function (id) { return document.getElementById(id); };
  const field = function (name) { return form.elements.namedItem(name); };
  const editor = $("regions-editor");
  const base = $("regions-base");
  const list = $("region-list");
  const template = $("region-row-template");
  const addButton = $("region-add");
  const brush = $("f-region-brush");
  const eraserBtn = $("region-eraser");

  const MAX_REGIONS = 8;
  const MODES = ["txt2img", "img2img", "inpaint"]; // the modes that take regions
  // Distinct colours, one per region (told apart on screen only: every mask is sent in black and white).
  const COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"];

  const regions = []; // {row, canvas, colour}
  let active = null;
  let erasing = false;

  function model() {
    return models.find(function (m) { return m.id === field("model").value; }) || null;
  }

  function offered() {
    const m = model();
    return Boolean(m && (m.features || []).includes("regions")) && MODES.includes(window.StudioModes.mode());
  }

  // The output size the masks are painted at: the size fields, else the model's default.
  function size() {
    const m = model();
    const width = Number(field("width").value) || (m ? m.default_width : 512);
    const height = Number(field("height").value) || (m ? m.default_height : 512);
    return [Math.max(8, width), Math.max(8, height)];
  }

  // Shown at least 320 px wide (tiny demo images are 64 px) and at most the column's width.
  function layout() {
    const shown = offered();
    fieldset.hidden = !shown;
    editor.hidden = !shown || !regions.length;
    if (editor.hidden) return;
    const wanted = size();
    const room = fieldset.clientWidth || 384;
    const width = Math.min(room, Math.max(320, wanted[0]));
    editor.style.width = width + "px";
    editor.style.height = Math.round(width * wanted[1] / wanted[0]) + "px";
    const preview = $("start-image-preview");
    const startShown = window.StudioModes.mode() !== "txt2img" && preview && preview.getAttribute("src");
    base.hidden = !startShown;
    if (startShown) base.src = preview.src;
    regions.forEach(resize);
  }

  // A region's canvas follows the size fields, keeping what is painted (stretched to the new size).
  function resize(region) {
    const wanted = size();
    const canvas = region.canvas;
    if (canvas.width === wanted[0] && canvas.height === wanted[1]) return;
    const kept = document.createElement("canvas");
    kept.width = canvas.width;
    kept.height = canvas.height;
    kept.getContext("2d").drawImage(canvas, 0, 0);
    canvas.width = wanted[0];
    canvas.height = wanted[1];
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    if (kept.width && kept.height) ctx.drawImage(kept, 0, 0, canvas.width, canvas.height);
  }

  function choose(region) {
    active = region;
    regions.forEach(function (other) {
      other.canvas.classList.toggle("active", other === region);
      other.row.querySelector(".region-select").setAttribute("aria-pressed", String(other === region));
    });
  }

  function renumber() {
    regions.forEach(function (region, index) {
      region.row.querySelector(".region-name").textContent = "Region " + (index + 1);
      region.row.querySelector(".region-prompt").setAttribute("aria-label", "Region " + (index + 1) + " prompt");
      region.row.querySelector(".region-weight").setAttribute("aria-label", "Region " + (index + 1) + " weight");
    });
    addButton.disabled = regions.length >= MAX_REGIONS;
  }

  function unusedColour() {
    const taken = regions.map(function (region) { return region.colour; });
    return COLOURS.find(function (colour) { return !taken.includes(colour); }) || COLOURS[0];
  }

  function add(values) {
    if (regions.length >= MAX_REGIONS) return null;
    const row = template.content.firstElementChild.cloneNode(true);
    const canvas = document.createElement("canvas");
    canvas.className = "region-canvas";
    const region = { row: row, canvas: canvas, colour: unusedColour() };
    canvas.dataset.colour = region.colour;
    row.querySelector(".region-swatch").style.background = region.colour;
    if (values && values.prompt) row.querySelector(".region-prompt").value = values.prompt;
    if (values && values.weight !== undefined) row.querySelector(".region-weight").value = values.weight;
    editor.appendChild(canvas);
    list.appendChild(row);
    regions.push(region);
    window.StudioModes.painter(canvas, {
      colour: function () { return region.colour; },
      size: function () { return Number(brush.value); },
      erasing: function () { return erasing; },
      enabled: function () { return active === region; },
    });
    row.querySelector(".region-select").addEventListener("click", function () { choose(region); });
    row.querySelector(".region-clear").addEventListener("click", function () {
      canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
    });
    row.querySelector(".region-remove").addEventListener("click", function () { remove(region); });
    renumber();
    layout();
    choose(region);
    return region;
  }

  function remove(region) {
    const index = regions.indexOf(region);
    if (index < 0) return;
    regions.splice(index, 1);
    region.canvas.remove();
    region.row.remove();
    renumber();
    if (active === region) {
      active = null;
      if (regions.length) choose(regions[Math.min(index, regions.length - 1)]);
    }
    layout();
  }

  // --- the job body --

  function extendBody(data) {
    if (!offered() || !regions.length) return data;
    const wanted = size();
    data.regions = regions.map(function (region) {
      const weight = Number(region.row.querySelector(".region-weight").value);
      return {
        mask: window.StudioModes.canvasMask(region.canvas, wanted[0], wanted[1]),
        prompt: region.row.querySelector(".region-prompt").value,
        weight: Number.isFinite(weight) ? weight : 1,
      };
    });
    return data;
  }

  // --- wiring --

  addButton.addEventListener("click", function () { add(null); });
  brush.addEventListener("input", function () { $("region-brush-value").textContent = brush.value; });
  eraserBtn.addEventListener("click", function () {
    erasing = !erasing;
    eraserBtn.setAttribute("aria-pressed", String(erasing));
    eraserBtn.textContent = erasing ? "Eraser (on)" : "Eraser";
  });
  ["model", "mode", "width", "height"].forEach(function (name) {
    const input = field(name);
    if (input) {
      input.addEventListener("change", layout);
      input.addEventListener("input", layout);
    }
  });
  // The start image (img2img, inpainting) is shown under the regions once one is chosen.
  const preview = $("start-image-preview");
  if (preview) preview.addEventListener("load", layout);
  window.addEventListener("resize", layout);
  layout();

  window.StudioRegions = { extendBody: extendBody, add: add };
})();
