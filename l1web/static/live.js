// Polled fragments (a run's status block) are swapped whole by htmx every second or two.
// - A <details> the reader opened (the run's Steps table) would snap shut at the next poll:
//   the reader's open/close of a <details> with an id is remembered (its toggle event) and
//   applied again after every swap settles. (Not read before each swap: two polled fragments,
//   the status block and the step log, swap independently, and one's swap would forget what the
//   other's had read.)
// - A live region that is replaced rather than changed is not read out by screen readers, so the
//   status line of a swapped block is copied into one lasting region, and only when it changes.
// - Ticked checkboxes of a polled list (the runs list's bulk actions) would be unticked by the next
//   poll: the reader's ticks (change events, by id) are applied again after every swap, and
//   forgotten after the bulk action's own answer (a POST). A "tick all" box (data-pick-all=NAME)
//   ticks every checkbox named NAME.
// - A step's log (.log-scroll) shows its newest lines: it starts scrolled to the bottom and stays
//   there across polls, unless the reader scrolled up to read; when the run's status line
//   changes (a step started or ended) the log panel is refreshed at once.
(function () {
  "use strict";
  const opened = new Set();
  let announced = null;
  let logAtBottom = true;
  const ticked = new Set();

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
    // A bulk action's own answer (a POST) starts afresh: nothing stays ticked.
    if (event.detail.requestConfig && event.detail.requestConfig.verb !== "get") ticked.clear();
    const log = logScroller();
    if (log) logAtBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
  });

  document.addEventListener("htmx:afterSettle", function () {
    opened.forEach(function (id) {
      const details = document.getElementById(id);
      if (details && !details.open) details.open = true;
    });
    ticked.forEach(function (id) {
      const box = document.getElementById(id);
      if (box && !box.checked) box.checked = true;
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

  // The reader's ticks (by id), kept across polls; "tick all" ticks every box of its name.
  document.addEventListener("change", function (event) {
    const box = event.target;
    if (!(box instanceof HTMLInputElement) || box.type !== "checkbox") return;
    const boxes = box.dataset.pickAll
      ? document.querySelectorAll('input[type=checkbox][name="' + box.dataset.pickAll + '"]')
      : [box];
    boxes.forEach(function (b) {
      b.checked = box.checked;
      if (!b.id) return;
      if (b.checked) ticked.add(b.id);
      else ticked.delete(b.id);
    });
  });

  document.addEventListener("DOMContentLoaded", function () {
    scrollLogDown();
    const status = document.querySelector("[data-announce]");
    if (status) announced = status.textContent.replace(/\s+/g, " ").trim();
  });
})();
