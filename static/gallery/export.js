/* "Export approved": download the streamed zip with a progress bar.
   A stream has no Content-Length, so the bar reads bytes against the server's estimate
   (X-Studio-Export-Bytes: the files' sizes plus sidecars) and stays below 100% until the stream ends.
   Without JavaScript the link downloads the zip directly. */
(function () {
  "use strict";

  const link = document.getElementById("export-approved");
  if (!link || !window.fetch || !window.ReadableStream) return;
  const bar = document.getElementById("export-progress");
  const status = document.getElementById("export-status");

  function filename(response) {
    const match = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
    return match ? match[1] : "export.zip";
  }

  function megabytes(n) {
    return (n / 1048576).toFixed(1) + " MB";
  }

  link.addEventListener("click", async function (event) {
    event.preventDefault();
    if (link.getAttribute("aria-busy") === "true") return;
    link.setAttribute("aria-busy", "true");
    bar.hidden = false;
    bar.value = 0;
    status.textContent = "Preparing…";
    try {
      const response = await fetch(link.href, { credentials: "same-origin" });
      if (!response.ok) {
        let message = "Export failed (" + response.status + ").";
        try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
        throw new Error(message);
      }
      const files = parseInt(response.headers.get("X-Studio-Export-Files") || "0", 10);
      const estimate = parseInt(response.headers.get("X-Studio-Export-Bytes") || "0", 10);
      const reader = response.body.getReader();
      const parts = [];
      let received = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parts.push(value);
        received += value.length;
        bar.value = estimate ? Math.min(99, (100 * received) / estimate) : 0;
        status.textContent = files + " images · " + megabytes(received) +
          (estimate ? " of about " + megabytes(estimate) : "");
      }
      bar.value = 100;
      const url = URL.createObjectURL(new Blob(parts, { type: "application/zip" }));
      const a = document.createElement("a");
      a.href = url;
      a.download = filename(response);
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
      status.textContent = files + " images exported (" + megabytes(received) + ").";
    } catch (error) {
      status.textContent = error.message;
    } finally {
      link.removeAttribute("aria-busy");
      setTimeout(function () { bar.hidden = true; }, 1500);
    }
  });
})();
