// Resumable uploads from the /media form with tus-js-client (npm, served from static/vendor).
// Without JavaScript (or without tus support) the form posts multipart to /media as before.
// The file goes in 8 MiB PATCH requests to /cache/uploads; a progress bar shows bytes, rate and
// time left; after a reload, choosing the same file again resumes where the upload stopped
// (tus-js-client remembers the upload URL in localStorage under the file's fingerprint).
(function () {
  "use strict";
  var CHUNK = 8 * 1024 * 1024;

  function mib(bytes) { return (bytes / 1048576).toFixed(1) + " MiB"; }

  function setup(form) {
    if (!window.tus || !window.tus.isSupported) return;
    var input = form.querySelector("input[type=file]");
    var bar = form.querySelector("progress");
    var text = form.querySelector(".upload-progress-text");
    var status = document.getElementById("media-status");
    var csrf = (form.querySelector("input[name=csrf_token]") || {}).value || "";

    function say(message) { if (status) status.textContent = message; }

    // Capture phase: runs before htmx's own submit handler, which it then never sees.
    form.addEventListener("submit", function (event) {
      var file = input.files && input.files[0];
      if (!file) return;
      event.preventDefault();
      event.stopImmediatePropagation();
      var button = form.querySelector("button");
      button.disabled = true;
      bar.hidden = false;
      bar.max = file.size;
      bar.value = 0;
      var started = Date.now(), startedAt = 0;
      var upload = new window.tus.Upload(file, {
        endpoint: form.dataset.tusEndpoint,
        chunkSize: CHUNK,
        retryDelays: [0, 1000, 3000, 5000],
        metadata: { filename: file.name, filetype: file.type },
        headers: { "X-CSRF-Token": csrf },
        removeFingerprintOnSuccess: true,
        onProgress: function (sent, total) {
          var seconds = (Date.now() - started) / 1000;
          var rate = seconds > 0 ? (sent - startedAt) / seconds : 0;
          var eta = rate > 0 ? Math.round((total - sent) / rate) : 0;
          bar.value = sent;
          text.textContent = mib(sent) + " of " + mib(total) + " · " + mib(rate) + "/s · " + eta + " s left";
        },
        onError: function (error) {
          button.disabled = false;
          var body = error.originalResponse ? error.originalResponse.getBody() : "";
          var message = String(error);
          try { message = JSON.parse(body).message || message; } catch (ignored) { /* not JSON */ }
          say("Upload failed: " + message + " Choose the file again to resume.");
        },
        onSuccess: function (payload) {
          var digest = payload && payload.lastResponse ? payload.lastResponse.getHeader("L1-Digest") : null;
          // As the htmx form does: say so with a link, reset the form, refresh the grid in place.
          var link = document.createElement("a");
          link.href = "/media/" + (digest || "");
          link.textContent = file.name;
          if (status) status.replaceChildren("Uploaded ", link, ".");
          form.reset();
          button.disabled = false;
          bar.hidden = true;
          text.textContent = "";
          if (window.htmx) {
            window.htmx.ajax("GET", window.location.pathname, { target: "#media-grid", select: "#media-grid", swap: "outerHTML" });
          }
        },
      });
      upload.findPreviousUploads().then(function (previous) {
        if (previous.length) {
          upload.resumeFromPreviousUpload(previous[0]);
          say("Resuming the upload of " + file.name + "…");
        } else {
          say("Uploading " + file.name + "…");
        }
        upload.start();
      });
    }, true);
    form.dataset.resumable = "on";
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-tus-endpoint]").forEach(setup);
  });
})();
