// Polled fragments (a run's status block) are swapped whole by htmx every second or two. Without
// this, a <details> the reader opened (the run's Steps table) would snap shut at the next poll.
// Open <details> with an id are remembered before a swap and opened again after it settles.
(function () {
  "use strict";
  let reopen = [];
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
  });
})();
