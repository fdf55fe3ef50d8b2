/* Watches one job over /ws/jobs/<id>/ and paints the live panel (status, progress, previews, results).
   Shared by the generate page and the job page. Needs studio/studio.js. */
(function () {
  "use strict";

  const TERMINAL = ["succeeded", "failed", "canceled"];
  const LABELS = { queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed", canceled: "Canceled" };

  // The live panel's elements, looked up by id inside `root` (default: the document).
  function elementsIn(root) {
    const scope = root || document;
    const byId = function (id) {
      return scope.querySelector("#" + id);
    };
    return {
      live: byId("live"),
      statusLabel: byId("status-label"),
      queuePosition: byId("queue-position"),
      progress: byId("progress"),
      progressText: byId("progress-text"),
      preview: byId("preview"),
      results: byId("results"),
      cancel: byId("cancel-btn"),
      error: byId("live-error"),
      notice: byId("live-notice"),
      connection: byId("live-connection"),
    };
  }

  // Empty the panel before a new job is watched in it.
  function reset(els) {
    els.live.hidden = false;
    els.live.dataset.status = "";
    els.statusLabel.textContent = "";
    els.queuePosition.textContent = "";
    els.progress.value = 0;
    els.progressText.textContent = "";
    els.preview.hidden = true;
    els.preview.removeAttribute("src");
    els.preview.dataset.frames = "0";
    els.results.replaceChildren();
    els.cancel.hidden = true;
    els.cancel.disabled = false;
    els.cancel.textContent = "Cancel";
    showError(els, "");
    showNotice(els, "");
    if (els.connection) els.connection.hidden = true;
  }

  // What happened to the job while it waited (its worker was lost, the queue restarted), from the server.
  function showNotice(els, text) {
    if (!els.notice) return;
    els.notice.textContent = text || "";
    els.notice.hidden = !text;
  }

  function showError(els, text) {
    if (!els.error) return;
    els.error.textContent = text;
    els.error.hidden = !text;
  }

  function resultCard(asset) {
    const link = document.createElement("a");
    link.href = asset.page_url;
    const img = document.createElement("img");
    img.className = "result-image";
    if (asset.width < 256) img.classList.add("tiny");
    img.src = asset.image_url;
    img.alt = asset.prompt || "Generated image";
    img.width = asset.width;
    img.height = asset.height;
    link.appendChild(img);
    return link;
  }

  /* watch(jobId, els, options) → {stop()}
     options.canCancel: show the cancel button while the job is queued or running.
     options.initial:   a job dict (API shape) to paint before the socket answers.
     options.onStatus(status): called whenever the status is painted.
     options.onFinish(status): called once with the terminal status. */
  function watch(jobId, els, options) {
    const opts = options || {};
    let status = "";
    let error = "";
    let finished = false;
    let canceling = false;
    let currentImage = null;
    let socket = null;

    if (!els.preview.dataset.frames) els.preview.dataset.frames = "0";

    function paintStatus(next, queuePosition) {
      status = next;
      els.live.dataset.status = status;
      let label = LABELS[status] || status;
      let position = "";
      if (status === "queued" && queuePosition !== null && queuePosition !== undefined) {
        label += " — position ";
        position = String(queuePosition);
      } else if (status === "failed" && error) {
        label += ": " + error;
      } else if (status === "running" && canceling) {
        label += " — canceling…";
      }
      els.statusLabel.textContent = label;
      els.queuePosition.textContent = position;
      if (opts.onStatus) opts.onStatus(status);
      const active = status === "queued" || status === "running";
      els.cancel.hidden = !(opts.canCancel && active);
    }

    function paintProgress(step, total) {
      if (total > 0) {
        els.progress.value = Math.min(step / total, 1);
        els.progressText.textContent = "step " + step + " / " + total;
      } else {
        els.progress.value = 0;
        els.progressText.textContent = "";
      }
    }

    function paintPreview(image) {
      if (!image || image === currentImage) return;
      currentImage = image;
      els.preview.src = image;
      els.preview.hidden = false;
      els.preview.dataset.frames = String(Number(els.preview.dataset.frames || 0) + 1);
    }

    function finish(next) {
      finished = true;
      canceling = false;
      if (socket) socket.stop();
      paintStatus(next, null);
      if (opts.onFinish) opts.onFinish(next);
    }

    function handle(message) {
      if (finished) return; // late previews after the outcome are stale
      switch (message.type) {
        case "status":
          paintStatus(message.status, message.queue_position);
          if (message.progress) paintProgress(message.progress.step, message.progress.total);
          if (message.notice !== undefined) showNotice(els, message.notice);
          break;
        case "progress":
          if (status !== "running") paintStatus("running", null);
          paintProgress(message.step, message.total);
          break;
        case "preview":
          if (status !== "running") paintStatus("running", null);
          paintProgress(message.step, message.total);
          paintPreview(message.image);
          break;
        case "succeeded":
          els.progress.value = 1;
          els.results.replaceChildren.apply(els.results, (message.assets || []).map(resultCard));
          els.preview.hidden = true;
          finish("succeeded");
          break;
        case "failed":
          error = message.error || "";
          finish("failed");
          break;
        case "canceled":
          finish("canceled");
          break;
        default:
          break;
      }
    }

    async function cancel() {
      els.cancel.disabled = true;
      showError(els, "");
      const result = await Studio.postJSON("/api/v1/jobs/" + encodeURIComponent(jobId) + "/cancel");
      if (!result.ok) {
        els.cancel.disabled = false;
        showError(els, result.data.error);
        return;
      }
      if (result.data.status === "canceled") {
        handle({ type: "canceled" });
      } else {
        // A running job stops at its next step; the socket brings the outcome.
        canceling = true;
        els.cancel.textContent = "Canceling…";
        paintStatus(status, null);
      }
    }
    els.cancel.onclick = cancel;

    const job = opts.initial;
    if (job) {
      handle({
        type: "status",
        status: job.status,
        progress: job.progress,
        queue_position: job.queue_position,
        notice: job.notice,
      });
      if (job.status === "succeeded") handle({ type: "succeeded", assets: job.assets });
      else if (job.status === "failed") handle({ type: "failed", error: job.error });
      else if (job.status === "canceled") handle({ type: "canceled" });
    }
    if (!finished) {
      socket = Studio.openSocket("/ws/jobs/" + encodeURIComponent(jobId) + "/", handle, function (open) {
        // While the socket is down the page says so; the snapshot on reconnecting brings it up to date.
        if (els.connection) els.connection.hidden = open || finished;
      });
    }

    return {
      stop: function () {
        finished = true;
        if (socket) socket.stop();
      },
    };
  }

  window.StudioJobWatch = { watch: watch, elementsIn: elementsIn, reset: reset };
})();
