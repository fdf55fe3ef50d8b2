/* The generate page's reference images: up to four images of the project (uploaded, or picked from the same
   list the start image is chosen from), each with its kind (reference attention, or an installed IP-Adapter
   where one fits the model), its weight and, for kind reference, its style fidelity. Rows are clones of the
   page's <template id="reference-template">. Shown for the modes and models that take references.
   generate.js calls StudioReferences.extendBody(data) when it builds the job body. */
(function () {
  "use strict";

  const page = document.getElementById("generate-page");
  const form = document.getElementById("generate-form");
  const box = document.getElementById("references-field");
  if (!page || !form || !box) return;

  const models = Studio.readJSON("models-data", []);
  const initial = Studio.readJSON("initial-data", {});
  const choices = Studio.readJSON("start-images-data", []);
  const list = document.getElementById("reference-list");
  const template = document.getElementById("reference-template");
  const addButton = document.getElementById("reference-add");
  const modelSelect = form.elements.namedItem("model");
  const modeSelect = document.getElementById("f-mode");
  const MAX = 4;
  const MODES = ["txt2img", "img2img", "inpaint"];
  const styleNote = document.getElementById("references-style-note");
  let lockedByStyle = false;

  function features() {
    const model = models.find(function (m) { return m.id === modelSelect.value; });
    return model ? model.features || [] : [];
  }

  function rows() { return Array.from(list.querySelectorAll(".reference-row")); }

  function show() {
    const mode = modeSelect ? modeSelect.value || "txt2img" : "txt2img";
    box.hidden = !features().includes("reference") || !MODES.includes(mode);
    const adapters = features().includes("ip_adapter");
    rows().forEach(function (row) {
      const kind = row.querySelector(".reference-kind");
      const option = kind.querySelector("option[value=ip_adapter]");
      option.hidden = option.disabled = !adapters;
      if (!adapters && kind.value === "ip_adapter") kind.value = "reference";
      row.querySelector(".reference-fidelity-field").hidden = kind.value !== "reference";
    });
    addButton.disabled = lockedByStyle || rows().length >= MAX;
  }

  // A style's reference images (styles.js): used when the job chooses none; a locked set cannot be changed.
  function useStyle(images, locked) {
    lockedByStyle = Boolean(locked);
    if (lockedByStyle) rows().forEach(function (row) { row.remove(); });
    const count = (images || []).length;
    styleNote.hidden = !count && !lockedByStyle;
    styleNote.textContent = lockedByStyle
      ? "Locked by the style" + (count ? ": its " + count + " reference image(s) are used." : ": no reference images.")
      : "The style's " + count + " reference image(s) are used unless you add your own.";
    show();
  }

  function choose(row, image) {
    row.dataset.image = image.id;
    row.querySelector(".reference-preview").src = image.thumbnail_url || image.image_url;
    row.querySelector(".reference-caption").textContent = image.width + " × " + image.height +
      (image.prompt ? " · " + image.prompt.slice(0, 60) : " · uploaded image");
    row.querySelector(".reference-chosen").hidden = false;
    row.querySelectorAll(".start-image-choice").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.dataset.assetId === image.id));
    });
    const picker = row.querySelector(".reference-picker");
    if (picker) picker.open = false;
  }

  function addChoice(row, image, first) {
    window.StudioModes.choiceButton(row.querySelector(".reference-grid"), image, first, function (chosen) {
      choose(row, chosen);
    });
  }

  async function upload(row, file) {
    const image = await window.StudioModes.uploadImage(file, row.querySelector(".reference-status"));
    if (!image) return;
    choices.unshift(image);
    rows().forEach(function (other) { addChoice(other, image, true); });
    choose(row, image);
  }

  let counter = 0;
  function addRow(values) {
    if (rows().length >= MAX) return null;
    const row = template.content.firstElementChild.cloneNode(true);
    counter += 1;
    // Each row's inputs get ids of their own, so their labels stay tied to them.
    row.querySelectorAll("[data-for]").forEach(function (label) {
      const target = row.querySelector("." + label.dataset.for);
      target.id = label.dataset.for + "-" + counter;
      label.htmlFor = target.id;
    });
    choices.forEach(function (image) { addChoice(row, image, false); });
    const kind = row.querySelector(".reference-kind");
    const weight = row.querySelector(".reference-weight");
    const fidelity = row.querySelector(".reference-fidelity");
    if (values) {
      kind.value = values.kind || "reference";
      weight.value = values.weight === undefined ? 1 : values.weight;
      fidelity.value = values.fidelity === undefined || values.fidelity === null ? 0.5 : values.fidelity;
      const image = choices.find(function (c) { return c.id === values.image; });
      if (image) choose(row, image); else row.dataset.image = values.image;
    }
    kind.addEventListener("change", show);
    row.querySelector(".reference-upload").addEventListener("change", function (event) {
      const input = event.target;
      if (input.files && input.files[0]) upload(row, input.files[0]);
      input.value = "";
    });
    row.querySelector(".reference-remove").addEventListener("click", function () {
      row.remove();
      show();
    });
    list.appendChild(row);
    show();
    return row;
  }

  function extendBody(data) {
    if (box.hidden || lockedByStyle) return;
    const chosen = [];
    rows().forEach(function (row) {
      if (!row.dataset.image) return; // a row with no image chosen yet sends nothing
      const kind = row.querySelector(".reference-kind").value;
      const item = { image: row.dataset.image, kind: kind,
        weight: Number(row.querySelector(".reference-weight").value || 1) };
      if (kind === "reference") item.fidelity = Number(row.querySelector(".reference-fidelity").value || 0.5);
      chosen.push(item);
    });
    if (chosen.length) data.references = chosen;
  }

  addButton.addEventListener("click", function () { addRow(null); });
  modelSelect.addEventListener("change", show);
  if (modeSelect) modeSelect.addEventListener("change", show);
  // A reproduced image brings its references.
  (Array.isArray(initial.references) ? initial.references : []).forEach(function (r) { addRow(r); });
  show();

  window.StudioReferences = { extendBody: extendBody, useStyle: useStyle };
})();
