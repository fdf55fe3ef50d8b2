/* Favourite stars (gallery cards, boards, the asset page): toggled through the API without a reload. The
   forms work without this script too. Delegated, so cards the infinite scroll adds later work as well. */
(function () {
  "use strict";

  document.addEventListener("submit", async function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("fav-form")) return;
    event.preventDefault();
    const field = form.querySelector('input[name="favourite"]');
    const button = form.querySelector("button");
    const starring = field.value === "1";
    button.disabled = true;
    try {
      const response = await fetch(form.dataset.api, {
        method: starring ? "POST" : "DELETE",
        credentials: "same-origin",
        headers: { "X-CSRFToken": Studio.csrfToken() },
      });
      if (!response.ok) throw new Error(String(response.status));
      field.value = starring ? "0" : "1";
      button.classList.toggle("on", starring);
      button.setAttribute("aria-pressed", String(starring));
      button.textContent = starring ? "★" : "☆";
      button.title = starring ? "Remove from your favourites" : "Add to your favourites";
    } catch (err) {
      form.submit();  // let the page answer (and show any error)
    } finally {
      button.disabled = false;
    }
  });
})();
