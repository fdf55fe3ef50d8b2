/* The gallery: new images of the project appear at the top of the first page as they are made, review
   decisions repaint badges and deleted images leave, live; more cards load as the reader scrolls. */
(function () {
  "use strict";

  const page = document.getElementById("gallery-page");
  if (!page) return;
  // New images appear on the first page only; status changes repaint cards on any page.
  const firstPage = page.dataset.firstPage === "true";
  const canSubmit = page.dataset.canSubmit === "true";
  const grid = document.getElementById("asset-grid");
  const empty = document.getElementById("gallery-empty");

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function truncate(text, n) {
    return text.length > n ? text.slice(0, n - 1) + "…" : text;
  }

  function card(asset) {
    const root = el("div", "asset-card");
    root.dataset.assetId = asset.id;
    const link = el("a", "asset-thumb");
    link.href = asset.page_url;
    const img = el("img", asset.width < 256 ? "tiny" : "");
    img.src = asset.thumbnail_url || asset.image_url;
    img.loading = "lazy";
    img.alt = truncate(asset.prompt || "", 120);
    img.width = asset.width;
    img.height = asset.height;
    link.appendChild(img);

    const meta = el("div", "asset-meta");
    const prompt = el("p", "asset-prompt", truncate(asset.prompt || "", 90));
    prompt.title = asset.prompt || "";
    const facts = el("p", "asset-facts");
    const status = asset.status || "draft";
    facts.append(el("span", "badge status-" + status, statusLabel(status)));
    if (asset.kind === "upload") {
      const filename = asset.params && asset.params.filename;
      facts.append(el("span", "asset-kind", "Uploaded" + (filename ? " · " + truncate(filename, 40) : "")));
    } else {
      facts.append(el("span", "asset-model", asset.model_name || ""), el("span", "asset-seed", "seed " + asset.seed));
    }
    const byline = el("p", "asset-byline");
    const time = el("time", "", "just now");
    time.dateTime = asset.created_at || "";
    byline.append(el("span", "asset-author", asset.created_by || ""), " · ", time);
    meta.append(prompt, facts, byline);
    if (canSubmit) meta.append(selectBox(asset.id));
    root.append(link, meta);
    return root;
  }

  function statusLabel(status) {
    return status.charAt(0).toUpperCase() + status.slice(1).replace(/_/g, " ");
  }

  // The checkbox the "Submit for review" form collects (the form lives in the page head).
  function selectBox(id) {
    const label = el("label", "asset-select");
    const box = el("input");
    box.type = "checkbox";
    box.name = "assets";
    box.value = id;
    box.setAttribute("form", "submit-selection");
    label.append(box, " Select");
    return label;
  }

  // A review decision or a submit elsewhere: repaint that card's badge.
  function repaintStatus(asset) {
    const found = grid.querySelector('[data-asset-id="' + CSS.escape(asset.id) + '"] .badge');
    if (!found) return;
    found.className = "badge status-" + asset.status;
    found.textContent = statusLabel(asset.status);
  }

  Studio.openSocket("/ws/projects/" + encodeURIComponent(page.dataset.projectSlug) + "/", function (message) {
    if (message.type === "snapshot") page.dataset.live = "true";  // connected: updates flow from here
    if (!message.asset) return;
    if (message.type === "asset.reviewed" || message.type === "asset.submitted") {
      repaintStatus(message.asset);
      return;
    }
    if (message.type === "asset.deleted") {
      const gone = grid.querySelector('[data-asset-id="' + CSS.escape(message.asset.id) + '"]');
      if (gone) gone.remove();
      if (!grid.querySelector(".asset-card")) empty.hidden = false;
      return;
    }
    if (message.type !== "asset.created" || !firstPage) return;
    const asset = message.asset;
    if (grid.querySelector('[data-asset-id="' + CSS.escape(asset.id) + '"]')) return;
    grid.prepend(card(asset));
    empty.hidden = true;
  });

  // Infinite scroll: when the sentinel under the grid comes into view, fetch the next page's cards (the
  // server renders them for ?partial=1, filters kept in the "Older images" link) and append them. The link
  // stays the fallback without JavaScript or IntersectionObserver.
  const sentinel = document.getElementById("scroll-sentinel");
  const nextLink = document.getElementById("next-page");
  if (!sentinel || !nextLink || !("IntersectionObserver" in window)) return;
  let loading = false;

  async function loadMore(observer) {
    if (loading || !nextLink.isConnected) return;
    loading = true;
    const url = new URL(nextLink.href, window.location.href);
    url.searchParams.set("partial", "1");
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const html = await response.text();
      const template = document.createElement("template");
      template.innerHTML = html;
      template.content.querySelectorAll(".asset-card").forEach(function (node) {
        if (!grid.querySelector('[data-asset-id="' + CSS.escape(node.dataset.assetId) + '"]')) grid.append(node);
      });
      const next = response.headers.get("X-Next-Page");
      if (next) {
        nextLink.href = next;
        // The observer only reports changes: a short page, or a reader already back at the bottom by the
        // next frame, leaves the sentinel in view with nothing reported. Observing afresh always reports
        // the sentinel's state once, so the next page comes whenever it is still in reach.
        observer.unobserve(sentinel);
        observer.observe(sentinel);
      } else {
        observer.disconnect();
        nextLink.remove();
      }
    } catch (error) {
      observer.disconnect();  // leave the link for the reader to follow by hand
    } finally {
      loading = false;
    }
  }

  const observer = new IntersectionObserver(function (entries) {
    if (entries.some(function (entry) { return entry.isIntersecting; })) loadMore(observer);
  }, { rootMargin: "600px 0px" });
  observer.observe(sentinel);
})();
