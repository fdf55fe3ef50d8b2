/* The job page: paint the job as the server rendered it, then follow it live. */
(function () {
  "use strict";

  const page = document.getElementById("job-page");
  if (!page) return;
  const job = Studio.readJSON("job-data", null);
  StudioJobWatch.watch(page.dataset.jobId, StudioJobWatch.elementsIn(document), {
    canCancel: page.dataset.canCancel === "true",
    initial: job,
  });
})();
