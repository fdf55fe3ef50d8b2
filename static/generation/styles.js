/* The generate page's style picker: the project's styles (GET /api/v1/projects/{slug}/styles has the same
   shape). Picking one fills the form with the style's values; a field the style locks is disabled with the
   note "Locked by the style", and left out of the job (the server applies the style's value). generate.js
   calls StudioStyles.extendBody(data) when it builds the job body. */
(function () {
  "use strict";

  const form = document.getElementById("generate-form");
  const select = document.getElementById("f-style");
  if (!form || !select) return;

  const styles = Studio.readJSON("styles-data", []);
  const panel = document.getElementById("style-panel");
  const negativeNote = document.getElementById("style-negative-note");
  const field = function (name) { return form.elements.namedItem(name); };
  const LOCKABLE = { prompt_prefix: "prompt_prefix", prompt_suffix: "prompt_suffix",
    negative_prompt: "negative_prompt", model: "model" };

  styles.forEach(function (style) {
    select.appendChild(new Option(style.name + " (v" + style.version + ")", String(style.id)));
  });

  function current() {
    return styles.find(function (s) { return String(s.id) === select.value; }) || null;
  }

  function setLocked(input, locked) {
    input.disabled = locked;
    const box = input.closest(".field") || input.parentElement;
    const note = box.querySelector(".locked-note");
    if (locked && !note) {
      const p = document.createElement("p");
      p.className = "locked-note muted";
      p.dataset.field = input.name;
      p.textContent = "Locked by the style";
      box.appendChild(p);
    } else if (!locked && note) {
      note.remove();
    }
  }

  function locked(style, name) {
    return Boolean(style && style.locks.indexOf(name) !== -1);
  }

  function apply() {
    const style = current();
    panel.hidden = !style;
    field("prompt_prefix").value = style ? style.prompt_prefix : "";
    field("prompt_suffix").value = style ? style.prompt_suffix : "";
    if (style && style.model) {
      const model = field("model");
      if (Array.from(model.options).some(function (o) { return o.value === style.model; })) {
        model.value = style.model;
        model.dispatchEvent(new Event("change"));
      }
    }
    if (style && style.negative_prompt) {
      negativeNote.textContent = locked(style, "negative_prompt")
        ? "The style’s negative prompt: " + style.negative_prompt
        : "The style adds to the negative prompt: " + style.negative_prompt;
      negativeNote.hidden = false;
    } else {
      negativeNote.hidden = true;
    }
    if (style && locked(style, "negative_prompt")) field("negative_prompt").value = "";
    Object.keys(LOCKABLE).forEach(function (name) { setLocked(field(LOCKABLE[name]), locked(style, name)); });
    if (window.StudioReferences) {
      window.StudioReferences.useStyle(style ? style.references : [], locked(style, "references"));
    }
    const picker = document.getElementById("lora-picker");
    if (window.StudioLoras) window.StudioLoras.choose(style ? style.loras : [], locked(style, "loras"));
    if (window.StudioControlNets) {
      window.StudioControlNets.choose(style ? style.controlnet_defaults : [], locked(style, "controlnets"));
      const controlField = document.getElementById("controlnet-field");
      const controlNote = controlField.querySelector(":scope > .locked-note");
      if (style && locked(style, "controlnets") && !controlNote) {
        const p = document.createElement("p");
        p.className = "locked-note muted";
        p.dataset.field = "controlnets";
        p.textContent = "Locked by the style";
        controlField.appendChild(p);
      } else if (!(style && locked(style, "controlnets")) && controlNote) {
        controlNote.remove();
      }
    }
    const loraNote = picker.querySelector(".locked-note");
    if (style && locked(style, "loras") && !loraNote) {
      const p = document.createElement("p");
      p.className = "locked-note muted";
      p.dataset.field = "loras";
      p.textContent = "Locked by the style";
      picker.appendChild(p);
    } else if (!(style && locked(style, "loras")) && loraNote) {
      loraNote.remove();
    }
  }

  function extendBody(data) {
    const style = current();
    if (!style) return;
    data.style = style.id;
    ["prompt_prefix", "prompt_suffix"].forEach(function (name) {
      if (!locked(style, name)) data[name] = field(name).value;
    });
    ["negative_prompt", "model", "loras", "references", "controlnets"].forEach(function (name) {
      if (locked(style, name)) delete data[name];
    });
  }

  select.addEventListener("change", apply);
  window.StudioStyles = { extendBody: extendBody };
})();
