// Polled fragments (a run's status block) are swapped whole by htmx every second or two.
// - A <details> the reader opened (the run's Steps table) would snap shut at the next poll:
//   open <details> with an id are remembered before a swap and opened again after it settles.
// - A live region that is replaced rather than changed is not read out by screen readers, so the
//   status line of a swapped block is copied into one lasting region, and only when it changes.
(function () {
  "use strict";
  let reopen = [];
  let announced = null;

  function announcer() {
    let region = document.getElementById("live-announcer");
    if (!region) {
      region = document.createElement("p");
      region.id = "live-announcer";
      region.className = "sr-only";
      region.setAttribute("aria-live", "polite");
      document.body.appendChild(region);
    }
    return region;
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    const target = event.detail.target;
    reopen = target ? Array.from(target.querySelectorAll("details[id][open]"), (d) => d.id) : [];
  });

  document.addEventListener("htmx:afterSettle", function () {
    reopen.forEach(function (id) {
      const details = document.getElementById(id);
      if (details) details.open = true;
    });
    reopen = [];
    const status = document.querySelector("[data-announce]");
    if (!status) return;
    const text = status.textContent.replace(/\s+/g, " ").trim();
    if (announced !== null && text !== announced) announcer().textContent = text;
    announced = text;
  });

  document.addEventListener("DOMContentLoaded", function () {
    const status = document.querySelector("[data-announce]");
    if (status) announced = status.textContent.replace(/\s+/g, " ").trim();
  });
})();
