/* The generate page's generation modes: the mode selector, the start image (uploaded, picked from the
   project, or brought from an asset page's link), strength, variation, scale, the inpainting mask editor and
   the outpainting extent (pixels per side or an aspect ratio, with the size it makes).
   generate.js calls StudioModes.extendBody(data) when it builds the job body. */
(function () {
  "use strict";

  const page = document.getElementById("generate-page");
  const form = document.getElementById("generate-form");
  if (!page || !form) return; // viewers get no form

  const slug = page.dataset.projectSlug;
  const models = Studio.readJSON("models-data", []);
  const initial = Studio.readJSON("initial-data", {});
  const choices = Studio.readJSON("start-images-data", []);
  const labels = Studio.readJSON("mode-labels-data", {});
  const $ = function (id) { return document.getElementById(id); };
  const field = function (name) { return form.elements.namedItem(name); };

  const modeSelect = $("f-mode");
  const modelSelect = field("model");
  const initInput = $("f-init-asset");
  const strength = $("f-strength");
  const strengthValue = $("strength-value");
  const uploadInput = $("f-upload");
  const uploadStatus = $("upload-status");
  const grid = $("start-image-grid");
  const canvas = $("mask-canvas");
  const maskBase = $("mask-base");
  const brush = $("f-brush");
  const eraserBtn = $("mask-eraser");

  // Modes that start from an image, and which of the optional fields each shows.
  const SHOWS = {
    txt2img: [],
    img2img: ["start-image-field", "strength-field"],
    inpaint: ["start-image-field", "strength-field", "mask-field"],
    outpaint: ["start-image-field", "outpaint-field"],
    variation: ["start-image-field", "variation-field"],
    upscale: ["start-image-field", "scale-field"],
  };
  const OPTIONAL = ["start-image-field", "strength-field", "variation-field", "scale-field", "mask-field",
    "outpaint-field"];
  // Modes whose size follows from the start image (an upscale's scale, an outpainting's extent).
  const SIZED_BY_START = ["upscale", "outpaint"];
  const SIDES = ["left", "right", "top", "bottom"];
  const aspectSelect = $("f-aspect");
  const DEFAULT_STRENGTH = { img2img: 0.6, inpaint: 0.85 };
  const PAINT = "rgb(0, 200, 255)"; // shown over the image; sent as white

  let start = null; // the chosen start image: {id, width, height, image_url, prompt, ...}
  let strengthTouched = false;
  let erasing = false;

  function model() {
    return models.find(function (m) { return m.id === modelSelect.value; }) || null;
  }

  function mode() {
    return modeSelect.value || "txt2img";
  }

  // --- the mode selector follows the model's modes --

  function setModes(wanted) {
    const m = model();
    const modes = m && m.modes && m.modes.length ? m.modes : ["txt2img"];
    modeSelect.replaceChildren.apply(modeSelect, modes.map(function (key) {
      return new Option(labels[key] || key, key);
    }));
    modeSelect.value = modes.includes(wanted) ? wanted : "txt2img";
  }

  function showFields() {
    const current = mode();
    const shown = SHOWS[current] || [];
    OPTIONAL.forEach(function (id) { $(id).hidden = !shown.includes(id); });
    // An upscale's size is its start image's times the scale, an outpainting's its start image's plus the
    // extent: the size fields do not apply.
    ["width", "height"].forEach(function (name) {
      field(name).disabled = SIZED_BY_START.includes(current);
    });
    if (!strengthTouched && DEFAULT_STRENGTH[current] !== undefined) {
      strength.value = DEFAULT_STRENGTH[current];
    }
    strengthValue.textContent = Number(strength.value).toFixed(2);
    if (current !== "txt2img" && start) fitSize();
    if (current === "inpaint") layoutMask();
    if (current === "outpaint") showOutpaintSize();
  }

  // --- the start image --

  function round8(value) {
    return Math.max(8, Math.round(value / 8) * 8);
  }

  // The start image's size within the model's limits (the server's default, made visible in the form).
  function fitSize() {
    const m = model();
    if (!m || !start || SIZED_BY_START.includes(mode())) return;
    const largest = m.max_size / Math.max(start.width, start.height);
    let scale = Math.min(1, largest);
    if (Math.min(start.width, start.height) * scale < m.min_size) {
      scale = Math.min(largest, m.min_size / Math.min(start.width, start.height));
    }
    field("width").value = Math.min(m.max_size, Math.max(m.min_size, round8(start.width * scale)));
    field("height").value = Math.min(m.max_size, Math.max(m.min_size, round8(start.height * scale)));
  }

  function choose(image) {
    start = image;
    initInput.value = image.id;
    $("start-image-preview").src = image.thumbnail_url || image.image_url;
    $("start-image-caption").textContent = image.width + " × " + image.height +
      (image.prompt ? " · " + (image.prompt.length > 60 ? image.prompt.slice(0, 59) + "…" : image.prompt)
        : " · uploaded image");
    $("start-image-chosen").hidden = false;
    grid.querySelectorAll("button").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.dataset.assetId === image.id));
    });
    const prompt = field("prompt");
    if (!prompt.value.trim() && image.prompt && (mode() === "variation" || mode() === "upscale")) {
      prompt.value = image.prompt;
    }
    fitSize();
    loadMaskBase();
    showOutpaintSize();
  }

  // One of the project's images as a button of a chooser's grid (the start image's, a reference's, a
  // ControlNet unit's), put first or last; ``onChoose`` gets the image.
  function choiceButton(grid, image, first, onChoose) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "start-image-choice";
    button.dataset.assetId = image.id;
    button.setAttribute("role", "listitem");
    button.title = image.prompt || "Uploaded image";
    const img = document.createElement("img");
    img.src = image.thumbnail_url;
    img.alt = image.prompt || "Uploaded image";
    img.loading = "lazy";
    button.appendChild(img);
    button.addEventListener("click", function () { onChoose(image); });
    if (first) grid.prepend(button); else grid.appendChild(button);
    return button;
  }

  function addChoice(image, first) {
    choiceButton(grid, image, first, choose);
    $("start-image-empty").hidden = true;
  }

  // Upload an image to the project (an asset of kind "upload"), telling how it goes in ``status``; resolves
  // to the image as the choosers list them, or null. The ControlNet units (controlnet.js) upload with it too.
  async function uploadImage(file, status) {
    const body = new FormData();
    body.append("image", file);
    status.hidden = false;
    status.textContent = "Uploading " + file.name + "…";
    let response, data = {};
    try {
      response = await fetch("/api/v1/projects/" + encodeURIComponent(slug) + "/uploads", {
        method: "POST",
        headers: { "X-CSRFToken": Studio.csrfToken() },
        credentials: "same-origin",
        body: body,
      });
      data = await response.json();
    } catch (err) {
      status.textContent = "The upload failed: could not reach the studio.";
      return null;
    }
    if (!response.ok) {
      status.textContent = data.error || "The upload failed.";
      return null;
    }
    status.textContent = "Uploaded.";
    return {
      id: data.id, kind: data.kind, width: data.width, height: data.height, prompt: "",
      negative_prompt: "", image_url: data.image_url, thumbnail_url: data.thumbnail_url, page_url: data.page_url,
    };
  }

  async function upload(file) {
    const image = await uploadImage(file, uploadStatus);
    if (!image) return;
    addChoice(image, true);
    choose(image);
  }

  // --- the mask editor: paint (white = repaint) over the start image at its own pixel size --

  function loadMaskBase() {
    if (!start) return;
    const size = maskSize();
    if (canvas.width !== size[0] || canvas.height !== size[1] || canvas.dataset.for !== start.id) {
      canvas.width = size[0];
      canvas.height = size[1];
      canvas.dataset.for = start.id;
    }
    maskBase.src = start.image_url;
    layoutMask();
  }

  function maskSize() {
    return start ? [start.width, start.height] : [64, 64];
  }

  // Shown at least 320 px wide (tiny demo images are 64 px) and at most the column's width.
  function layoutMask() {
    if (!start) return;
    const editor = $("mask-editor");
    const room = editor.parentElement.clientWidth || 384;
    const width = Math.min(room, Math.max(320, start.width));
    editor.style.width = width + "px";
    editor.style.height = Math.round(width * start.height / start.width) + "px";
  }

  // A brush on a canvas (the mask editor's, and each region's in regions.js): strokes of ``options.colour()``,
  // ``options.size()`` screen pixels wide, erasing while ``options.erasing()``; ``options.enabled()``, where
  // given, says whether the canvas takes strokes now.
  function painter(target, options) {
    let last = null;
    function pointAt(event) {
      const box = target.getBoundingClientRect();
      return {
        x: (event.clientX - box.left) * target.width / box.width,
        y: (event.clientY - box.top) * target.height / box.height,
        scale: target.width / box.width,
      };
    }
    function stroke(from, to) {
      const ctx = target.getContext("2d");
      ctx.globalCompositeOperation = options.erasing() ? "destination-out" : "source-over";
      ctx.strokeStyle = options.colour();
      ctx.fillStyle = options.colour();
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.lineWidth = options.size() * to.scale;
      ctx.beginPath();
      ctx.moveTo(from.x, from.y);
      ctx.lineTo(to.x, to.y);
      ctx.stroke();
      ctx.beginPath();
      ctx.arc(to.x, to.y, ctx.lineWidth / 2, 0, Math.PI * 2);
      ctx.fill();
    }
    target.addEventListener("pointerdown", function (event) {
      if (options.enabled && !options.enabled()) return;
      event.preventDefault();
      last = pointAt(event);
      stroke(last, last);
      try {
        target.setPointerCapture(event.pointerId); // keep painting when the stroke leaves the canvas
      } catch (err) {
        // a pointer the page cannot capture still paints while it stays over the canvas
      }
    });
    target.addEventListener("pointermove", function (event) {
      if (!last) return;
      const point = pointAt(event);
      stroke(last, point);
      last = point;
    });
    ["pointerup", "pointercancel"].forEach(function (type) {
      target.addEventListener(type, function () { last = null; });
    });
  }

  painter(canvas, {
    colour: function () { return PAINT; },
    size: function () { return Number(brush.value); },
    erasing: function () { return erasing; },
  });

  brush.addEventListener("input", function () { $("brush-value").textContent = brush.value; });
  eraserBtn.addEventListener("click", function () {
    erasing = !erasing;
    eraserBtn.setAttribute("aria-pressed", String(erasing));
    eraserBtn.textContent = erasing ? "Eraser (on)" : "Eraser";
  });
  $("mask-clear").addEventListener("click", function () {
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  });
  $("mask-invert").addEventListener("click", function () {
    const ctx = canvas.getContext("2d");
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const px = data.data;
    for (let i = 0; i < px.length; i += 4) {
      px[i] = 0; px[i + 1] = 200; px[i + 2] = 255;
      px[i + 3] = 255 - px[i + 3];
    }
    ctx.putImageData(data, 0, 0);
  });

  // A painted canvas as the API takes a mask: a PNG (``width`` × ``height``, by default the canvas's own
  // size), black where nothing is painted, white where it is. Empty when nothing is painted (the server
  // then asks for a painted area).
  function canvasMask(target, width, height) {
    if (!target.width || !target.height) return "";
    const out = document.createElement("canvas");
    out.width = width || target.width;
    out.height = height || target.height;
    const ctx = out.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(target, 0, 0, out.width, out.height);
    const image = ctx.getImageData(0, 0, out.width, out.height);
    let painted = false;
    for (let i = 0; i < image.data.length; i += 4) {
      const value = image.data[i + 3] >= 128 ? 255 : 0;
      if (value) painted = true;
      image.data[i] = image.data[i + 1] = image.data[i + 2] = value;
      image.data[i + 3] = 255;
    }
    if (!painted) return "";
    ctx.putImageData(image, 0, 0);
    return out.toDataURL("image/png");
  }

  // The inpainting mask: black where the image is kept, white where it is repainted.
  function maskDataURL() {
    return canvasMask(canvas);
  }

  // --- the outpainting extent: pixels per side, or the sides an aspect ratio grows --

  function sideInput(side) {
    return $("f-extend-" + side);
  }

  function roundTo(value, multiple) {
    return Math.max(multiple, Math.round(value / multiple) * multiple);
  }

  // The server's aspect_extent (generation/services.py): the new size rounded to multiples of 8 and never
  // smaller than the image, the image centred.
  function aspectExtent(width, height, aspect) {
    const parts = aspect.split(":").map(Number);
    let targetW = width, targetH = height;
    if (width * parts[1] < height * parts[0]) targetW = Math.max(width, roundTo(height * parts[0] / parts[1], 8));
    else targetH = Math.max(height, roundTo(width * parts[1] / parts[0], 8));
    const left = Math.floor((targetW - width) / 2 / 8) * 8;
    const top = Math.floor((targetH - height) / 2 / 8) * 8;
    return { left: left, right: targetW - width - left, top: top, bottom: targetH - height - top };
  }

  function extent() {
    if (aspectSelect.value && start) return aspectExtent(start.width, start.height, aspectSelect.value);
    const sides = {};
    SIDES.forEach(function (side) { sides[side] = Number(sideInput(side).value) || 0; });
    return sides;
  }

  function showOutpaintSize() {
    const out = $("outpaint-size");
    const byAspect = Boolean(aspectSelect.value);
    SIDES.forEach(function (side) { sideInput(side).disabled = byAspect; });
    if (!start) {
      out.textContent = "choose a start image";
      return;
    }
    const sides = extent();
    if (byAspect) SIDES.forEach(function (side) { sideInput(side).value = sides[side]; });
    const width = start.width + sides.left + sides.right;
    const height = start.height + sides.top + sides.bottom;
    out.textContent = start.width + " × " + start.height + " → " + width + " × " + height;
  }

  // --- the job body --

  function extendBody(data) {
    const current = mode();
    data.mode = current;
    if (current === "txt2img") return data;
    data.init_asset = initInput.value;
    if (current === "img2img" || current === "inpaint") data.strength = Number(strength.value);
    if (current === "variation") data.variation = field("variation").value;
    if (current === "upscale") data.scale = Number(field("scale").value);
    if (SIZED_BY_START.includes(current)) {
      delete data.width;
      delete data.height;
    }
    if (current === "outpaint") {
      if (aspectSelect.value) {
        data.aspect = aspectSelect.value;
      } else {
        data.extend = {};
        SIDES.forEach(function (side) { data.extend[side] = Number(sideInput(side).value) || 0; });
      }
    }
    if (current === "inpaint") data.mask = maskDataURL();
    return data;
  }

  // --- wiring --

  modeSelect.addEventListener("change", function () {
    showFields();
    document.dispatchEvent(new CustomEvent("studio:mode-changed"));
  });
  modelSelect.addEventListener("change", function () {
    setModes(mode());
    showFields();
    document.dispatchEvent(new CustomEvent("studio:mode-changed"));
  });
  strength.addEventListener("input", function () {
    strengthTouched = true;
    strengthValue.textContent = Number(strength.value).toFixed(2);
  });
  uploadInput.addEventListener("change", function () {
    if (uploadInput.files && uploadInput.files[0]) upload(uploadInput.files[0]);
    uploadInput.value = "";
  });
  window.addEventListener("resize", layoutMask);
  SIDES.forEach(function (side) { sideInput(side).addEventListener("input", showOutpaintSize); });
  aspectSelect.addEventListener("change", showOutpaintSize);

  choices.forEach(function (image) { addChoice(image, false); });
  if (!choices.length) $("start-image-empty").hidden = false;
  setModes(initial.mode || "txt2img");
  if (initial.strength !== undefined && initial.strength !== null) {
    strength.value = initial.strength;
    strengthTouched = true;
  }
  if (initial.variation) field("variation").value = initial.variation;
  if (initial.scale) field("scale").value = String(initial.scale);
  if (initial.extend) {
    SIDES.forEach(function (side) { sideInput(side).value = initial.extend[side] || 0; });
  }
  if (initial.aspect) aspectSelect.value = initial.aspect;
  if (initial.init_asset) choose(initial.init_asset);
  showFields();

  window.StudioModes = {
    extendBody: extendBody, maskDataURL: maskDataURL, painter: painter, canvasMask: canvasMask, mode: mode,
    uploadImage: uploadImage, choiceButton: choiceButton, startImage: function () { return start; },
  };
})();
