// Polled fragments (a run's status block) are swapped whole by htmx every second or two.
// - A <details> the reader opened (the run's Steps table) would snap shut at the next poll:
//   the reader's open/close of a <details> with an id is remembered (its toggle event) and
//   applied again after every swap settles. (Not read before each swap: two polled fragments,
//   the status block and the step log, swap independently, and one's swap would forget what the
//   other's had read.)
// - A live region that is replaced rather than changed is not read out by screen readers, so the
//   status line of a swapped block is copied into one lasting region, and only when it changes.
// - A step's log (.log-scroll) shows its newest lines: it starts scrolled to the bottom and stays
//   there across polls, unless the reader scrolled up to read; when the run's status line
//   changes (a step started or ended) the log panel is refreshed at once.
(function () {
  "use strict";
  const opened = new Set();
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
    const log = logScroller();
    if (log) logAtBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
  });

  document.addEventListener("htmx:afterSettle", function () {
    opened.forEach(function (id) {
      const details = document.getElementById(id);
      if (details && !details.open) details.open = true;
    });
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

  // toggle does not bubble: listen in the capture phase.
  document.addEventListener("toggle", function (event) {
    const details = event.target;
    if (!(details instanceof HTMLDetailsElement) || !details.id) return;
    if (details.open) opened.add(details.id);
    else if (details.isConnected) opened.delete(details.id);
  }, true);

  document.addEventListener("DOMContentLoaded", function () {
    scrollLogDown();
    const status = document.querySelector("[data-announce]");
    if (status) announced = status.textContent.replace(/\s+/g, " ").trim();
  });
})();
