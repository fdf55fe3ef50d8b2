/* The generate page's LoRA picker: the chosen model's LoRAs (GET /api/v1/models lists them per model), each
   with a checkbox and a weight; shown only when the model's family has LoRAs. generate.js calls
   StudioLoras.extendBody(data) when it builds the job body. */
(function () {
  "use strict";

  const form = document.getElementById("generate-form");
  const picker = document.getElementById("lora-picker");
  if (!form || !picker) return;

  const list = document.getElementById("lora-list");
  const models = Studio.readJSON("models-data", []);
  const initial = Studio.readJSON("initial-data", {});
  const modelSelect = form.elements.namedItem("model");
  const MAX = 5;

  function modelById(id) {
    return models.find(function (m) { return m.id === id; });
  }

  // At most five at once: the other boxes are disabled while five are ticked.
  function limit() {
    const boxes = Array.from(list.querySelectorAll("input[type=checkbox]"));
    const count = boxes.filter(function (b) { return b.checked; }).length;
    boxes.forEach(function (b) { b.disabled = !b.checked && count >= MAX; });
  }

  function render(model, chosen) {
    const loras = model ? model.loras || [] : [];
    list.replaceChildren();
    loras.forEach(function (lora) {
      const pick = chosen.find(function (c) { return c.id === lora.id; });
      const row = document.createElement("div");
      row.className = "lora-row";
      row.dataset.lora = lora.id;
      const box = document.createElement("input");
      box.type = "checkbox";
      box.id = "lora-" + lora.id;
      box.checked = Boolean(pick);
      const label = document.createElement("label");
      label.htmlFor = box.id;
      label.textContent = lora.name;
      const weight = document.createElement("input");
      weight.type = "number";
      weight.min = "-2";
      weight.max = "2";
      weight.step = "0.05";
      weight.value = pick ? pick.weight : 1;
      weight.disabled = !box.checked;
      weight.setAttribute("aria-label", "Weight of " + lora.name);
      box.addEventListener("change", function () {
        weight.disabled = !box.checked;
        limit();
      });
      row.append(box, label, weight);
      list.appendChild(row);
    });
    picker.hidden = loras.length === 0;
    limit();
  }

  function extendBody(data) {
    const chosen = [];
    list.querySelectorAll(".lora-row").forEach(function (row) {
      const box = row.querySelector("input[type=checkbox]");
      const weight = row.querySelector("input[type=number]").value.trim();
      if (box.checked) chosen.push({ id: row.dataset.lora, weight: weight === "" ? 1 : Number(weight) });
    });
    if (chosen.length) data.loras = chosen;
  }

  // A reproduced image brings its LoRAs; another model's LoRAs never carry over.
  render(modelById(modelSelect.value), Array.isArray(initial.loras) ? initial.loras : []);
  modelSelect.addEventListener("change", function () { render(modelById(modelSelect.value), []); });

  // A style's LoRAs (styles.js): tick them; a locked set cannot be changed.
  function choose(chosen, locked) {
    render(modelById(modelSelect.value), chosen);
    if (locked) list.querySelectorAll("input").forEach(function (input) { input.disabled = true; });
  }

  window.StudioLoras = { extendBody: extendBody, choose: choose };
})();
