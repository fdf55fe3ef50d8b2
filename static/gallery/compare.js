/* The gallery's "Compare" button: opens the compare view for the 2 to 4 checked images. */
(function () {
  "use strict";

  const button = document.getElementById("compare-selected");
  if (!button) return;
  const status = document.getElementById("compare-status");
  const min = Number(button.dataset.min), max = Number(button.dataset.max);

  button.addEventListener("click", function (event) {
    event.preventDefault();
    const ids = Array.from(document.querySelectorAll('input[name="assets"]:checked')).map(function (box) {
      return box.value;
    });
    if (ids.length < min || ids.length > max) {
      status.textContent = "Select " + min + " to " + max + " images to compare (" + ids.length + " selected).";
      return;
    }
    status.textContent = "";
    window.location.href = button.getAttribute("href") + "?ids=" + ids.map(encodeURIComponent).join(",");
  });
})();
