/* The gallery's first page: new images of the project appear at the top as they are made. */
(function () {
  "use strict";

  const page = document.getElementById("gallery-page");
  if (!page || page.dataset.firstPage !== "true") return;
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
    img.src = asset.image_url;
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
    facts.append(
      el("span", "badge status-" + status, status.charAt(0).toUpperCase() + status.slice(1).replace(/_/g, " ")),
      el("span", "asset-model", asset.model_name || ""),
      el("span", "asset-seed", "seed " + asset.seed)
    );
    const byline = el("p", "asset-byline");
    const time = el("time", "", "just now");
    time.dateTime = asset.created_at || "";
    byline.append(el("span", "asset-author", asset.created_by || ""), " · ", time);
    meta.append(prompt, facts, byline);
    root.append(link, meta);
    return root;
  }

  Studio.openSocket("/ws/projects/" + encodeURIComponent(page.dataset.projectSlug) + "/", function (message) {
    if (message.type !== "asset.created" || !message.asset) return;
    const asset = message.asset;
    if (grid.querySelector('[data-asset-id="' + CSS.escape(asset.id) + '"]')) return;
    grid.prepend(card(asset));
    empty.hidden = true;
  });
})();
