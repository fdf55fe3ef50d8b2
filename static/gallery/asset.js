/* The asset page: its status badges and decision history follow review decisions live, and it says so
   when someone deletes the image. */
(function () {
  "use strict";

  const panel = document.getElementById("review");
  if (!panel) return;
  const assetId = panel.dataset.assetId;
  const LABELS = {
    draft: "Draft", submitted: "Submitted", approved: "Approved", rejected: "Rejected",
    changes_requested: "Changes requested",
  };
  const DECISIONS = { approve: "approved", reject: "rejected", changes_requested: "changes_requested" };

  function setStatus(status) {
    document.querySelectorAll("[data-status-badge]").forEach(function (badge) {
      badge.className = "badge status-" + status;
      badge.textContent = LABELS[status] || status;
    });
    panel.dataset.status = status;
  }

  function addReview(review) {
    const list = document.getElementById("review-history");
    const none = document.getElementById("no-reviews");
    if (none) none.remove();
    const item = document.createElement("li");
    const status = DECISIONS[review.decision] || review.decision;
    const badge = document.createElement("span");
    badge.className = "badge status-" + status;
    badge.textContent = LABELS[status] || status;
    const by = document.createElement("span");
    by.className = "review-by";
    by.textContent = review.by;
    const time = document.createElement("time");
    time.dateTime = review.at;
    time.textContent = "just now";
    item.append(badge, " by ", by, " ", time);
    if (review.comment) {
      const text = document.createElement("p");
      text.className = "review-comment";
      text.textContent = review.comment;
      item.append(text);
    }
    list.append(item);
  }

  // Someone deleted this image: say so, and take away what no longer works (the server would answer 404).
  function showDeleted() {
    if (document.getElementById("asset-deleted")) return;
    const notice = document.createElement("p");
    notice.className = "notice";
    notice.id = "asset-deleted";
    notice.setAttribute("role", "alert");
    const back = document.createElement("a");
    back.href = panel.dataset.galleryUrl;
    back.textContent = "Back to the gallery";
    notice.append("This image was deleted. ", back);
    const main = document.querySelector("main");
    main.prepend(notice);
    main.querySelectorAll("form, figcaption a, #delete-asset").forEach(function (node) { node.hidden = true; });
  }

  Studio.openSocket("/ws/projects/" + encodeURIComponent(panel.dataset.projectSlug) + "/", function (message) {
    if (message.type === "snapshot") panel.dataset.live = "true";  // connected: updates flow from here
    if (!message.asset || message.asset.id !== assetId) return;
    if (message.type === "asset.deleted") {
      showDeleted();
      return;
    }
    if (message.type !== "asset.reviewed" && message.type !== "asset.submitted") return;
    setStatus(message.asset.status);
    if (message.type === "asset.reviewed" && message.review) {
      addReview(message.review);
      // Someone decided: the buttons no longer apply (the server would answer 409).
      const form = document.getElementById("decision-form");
      if (form) form.hidden = true;
    }
    if (message.type === "asset.submitted") {
      const submit = document.getElementById("submit-form");
      if (submit) submit.hidden = true;
    }
  });
})();
