// Polled fragments (a run's status block) are swapped whole by htmx every second or two.
// - A <details> the reader opened (the run's Steps table) would snap shut at the next poll:
//   open <details> with an id are remembered before a swap and opened again after it settles.
// - A live region that is replaced rather than changed is not read out by screen readers, so the
//   status line of a swapped block is copied into one lasting region, and only when it changes.
// - A step's log (.log-scroll) shows its newest lines: it starts scrolled to the bottom and stays
//   there across polls, unless the reader scrolled up to read; when the run's status line
//   changes (a step started or ended) the log panel is refreshed at once.
(function () {
  "use strict";
  let reopen = [];
  let announced = null;
  let logAtBottom = true;

  function logScroller() {
    return document.querySelector(".log-scroll");
  }

  function scrollLogDown() {
    const log = logScroller();
    if (log && logAtBottom) log.scrollTop = log.scrollHeight;
  }

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
    const log = logScroller();
    if (log) logAtBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
  });

  document.addEventListener("htmx:afterSettle", function () {
    reopen.forEach(function (id) {
      const details = document.getElementById(id);
      if (details) details.open = true;
    });
    reopen = [];
    scrollLogDown();
    const status = document.querySelector("[data-announce]");
    if (!status) return;
    const text = status.textContent.replace(/\s+/g, " ").trim();
    if (announced !== null && text !== announced) {
      announcer().textContent = text;
      // A step started or ended: the log panel follows at once rather than at its next poll.
      const log = document.getElementById("step-log");
      if (log && window.htmx && log.getAttribute("hx-get")) window.htmx.trigger(log, "refresh");
    }
    announced = text;
  });

  document.addEventListener("DOMContentLoaded", function () {
    scrollLogDown();
    const status = document.querySelector("[data-announce]");
    if (status) announced = status.textContent.replace(/\s+/g, " ").trim();
  });
})();
