/* Settings pages: confirm destructive forms, copy a new API token. Everything works without it. */
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    const form = event.target;
    const question = form instanceof HTMLFormElement ? form.dataset.confirm : null;
    if (question && !window.confirm(question)) event.preventDefault();
  });

  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    const field = document.querySelector(button.dataset.copy);
    if (!field || !navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", async function () {
      try {
        await navigator.clipboard.writeText(field.value);
        button.textContent = "Copied";
      } catch (err) {
        field.select(); // the clipboard is refused (e.g. plain http): leave it selected for Ctrl-C
      }
    });
    field.addEventListener("focus", function () { field.select(); });
  });
})();
