/* Manage → Workers: follows /ws/workers/ and keeps one row per worker up to date.

   The socket sends the live workers on connect ({"type": "workers", "workers": [...], "now"}) and then each
   state a worker publishes ({"type": "worker.state", "worker": {...}}). Nothing is sent when a worker stops:
   its row is marked gone once its last heartbeat is older than three beats (the page's data-beat), the
   lifetime of the state it published. Ages are told by the server's clock (data-now, the snapshot's "now"),
   so a browser whose clock is off does not mark live workers gone. Rows are clones of the page's
   <template> elements, the same markup the server renders. Needs studio/studio.js. */
(function () {
  "use strict";

  const page = document.getElementById("workers-page");
  if (!page) return;
  const body = document.getElementById("workers-body");
  const empty = document.getElementById("workers-empty");
  const connection = document.getElementById("workers-connection");
  const rowTemplate = document.getElementById("worker-row-template");
  const jobTemplate = document.getElementById("worker-job-template");
  const beat = parseFloat(page.dataset.beat) || 5;
  // The server's clock minus this browser's, in seconds.
  let offset = clockOffset(parseFloat(page.dataset.now));

  function clockOffset(serverNow) {
    return isNaN(serverNow) ? 0 : serverNow - Date.now() / 1000;
  }

  function serverNow() {
    return Date.now() / 1000 + offset;
  }

  // Sizes as the server writes them (Django's filesizeformat): 1024-based, one decimal, "bytes" below 1 KB.
  function fileSize(bytes) {
    const units = ["KB", "MB", "GB", "TB", "PB"];
    let value = Math.abs(Number(bytes) || 0);
    const sign = bytes < 0 ? "-" : "";
    if (value < 1024) return sign + value + "\u00a0byte" + (value === 1 ? "" : "s");
    let unit = -1;
    while (unit < units.length - 1 && value >= 1024) {
      value /= 1024;
      unit += 1;
    }
    return sign + (Math.round(value * 10) / 10).toFixed(1) + "\u00a0" + units[unit];
  }

  // "3 s ago", "4 min ago", "2 h ago": as the server words it (generation/views.py heartbeat).
  function ago(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 120) return s + " s ago";
    if (s < 7200) return Math.floor(s / 60) + " min ago";
    return Math.floor(s / 3600) + " h ago";
  }

  function field(root, name) {
    return root.querySelector('[data-field="' + name + '"]');
  }

  function setText(root, name, text) {
    const el = field(root, name);
    if (el) el.textContent = text;
  }

  function rowOf(name) {
    for (const row of body.querySelectorAll("tr[data-worker]")) {
      if (row.dataset.worker === name) return row;
    }
    return null;
  }

  function jobItem(job) {
    const item = jobTemplate.content.firstElementChild.cloneNode(true);
    item.dataset.job = job.job;
    const user = field(item, "user");
    user.textContent = job.user;
    user.href = "/jobs/" + encodeURIComponent(job.job) + "/";
    setText(item, "project", job.project);
    setText(item, "model", job.model);
    setText(item, "images", job.images + (job.images === 1 ? " image" : " images"));
    return item;
  }

  function fill(row, worker) {
    row.dataset.worker = worker.name;
    row.dataset.heartbeat = worker.last_heartbeat == null ? "" : String(worker.last_heartbeat);
    setText(row, "name", worker.name);
    setText(row, "pool", worker.pool);
    setText(row, "host", worker.host);
    setText(row, "device", worker.device);
    setText(
      row,
      "memory",
      worker.memory_total == null
        ? "—"
        : fileSize(worker.memory_free) + " free of " + fileSize(worker.memory_total)
    );
    setText(row, "rss", worker.rss_bytes == null ? "" : "process " + fileSize(worker.rss_bytes));
    setText(row, "loaded", (worker.loaded || []).join(", ") || "—");
    setText(row, "installed", (worker.installed || []).join(", ") || "—");
    const current = worker.current || [];
    field(row, "current").replaceChildren(...current.map(jobItem));
    field(row, "idle").hidden = current.length > 0;
    setText(row, "jobs_per_hour", String(worker.jobs_per_hour || 0));
    setText(row, "images_per_hour", String(worker.images_per_hour || 0));
  }

  // Paint a worker's state: its row, or a new one in name order. A state older than the one shown (a
  // publish that crossed the snapshot) is left out.
  function paint(worker) {
    let row = rowOf(worker.name);
    if (row) {
      const shown = parseFloat(row.dataset.heartbeat);
      if (!isNaN(shown) && worker.last_heartbeat != null && worker.last_heartbeat < shown) return;
    } else {
      row = rowTemplate.content.firstElementChild.cloneNode(true);
      const after = Array.from(body.querySelectorAll("tr[data-worker]")).find(function (other) {
        return other.dataset.worker > worker.name;
      });
      body.insertBefore(row, after || null);
    }
    fill(row, worker);
    refresh(row);
    empty.hidden = true;
  }

  // Each row's age, and whether the worker is gone (silent for three beats).
  function refresh(row) {
    const at = parseFloat(row.dataset.heartbeat);
    const time = field(row, "last_heartbeat");
    let gone = true;
    if (isNaN(at)) {
      time.textContent = "never";
      time.removeAttribute("datetime");
    } else {
      const age = serverNow() - at;
      gone = age > 3 * beat;
      time.textContent = ago(age);
      time.dateTime = new Date(at * 1000).toISOString();
    }
    row.dataset.gone = gone ? "true" : "false";
    row.classList.toggle("is-gone", gone);
    field(row, "gone").hidden = !gone;
  }

  function refreshAll() {
    body.querySelectorAll("tr[data-worker]").forEach(refresh);
  }

  refreshAll();
  setInterval(refreshAll, 1000);

  Studio.openSocket(
    "/ws/workers/",
    function (message) {
      if (message.type === "workers") {
        // The snapshot of a (re)connect: the live workers now. Rows of workers missing from it stay and
        // show how long they have been silent.
        if (typeof message.now === "number") offset = clockOffset(message.now);
        (message.workers || []).forEach(paint);
        refreshAll();
        page.dataset.live = "true";
      } else if (message.type === "worker.state" && message.worker) {
        paint(message.worker);
      }
    },
    function (open) {
      connection.hidden = open;
    }
  );
})();
