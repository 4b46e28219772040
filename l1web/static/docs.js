/* /docs: start Swagger UI on this server's OpenAPI document (a static file, so no inline script).
   With a cookie session, "Try it out" sends the session's CSRF token on POST and DELETE, and it
   asks for JSON so that errors come back as {"error", "message"} rather than HTML pages. */
(function () {
  "use strict";
  var csrf = "";
  var UNSAFE = { POST: true, PUT: true, PATCH: true, DELETE: true };

  function start() {
    var node = document.getElementById("swagger-ui");
    if (!node || !window.SwaggerUIBundle) { return; }
    fetch("/auth/whoami", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (answer) { return answer.ok ? answer.json() : {}; })
      .then(function (who) { csrf = who.csrf_token || ""; })
      .catch(function () { csrf = ""; });
    window.SwaggerUIBundle({
      url: node.getAttribute("data-spec-url"),
      domNode: node,
      deepLinking: true,
      presets: [window.SwaggerUIBundle.presets.apis, window.SwaggerUIStandalonePreset],
      layout: "BaseLayout",
      validatorUrl: null,  // never send the document to the public online validator
      requestInterceptor: function (req) {
        var accept = req.headers.Accept || req.headers.accept;
        if (!accept || accept === "*/*") { delete req.headers.accept; req.headers.Accept = "application/json"; }
        if (csrf && UNSAFE[String(req.method).toUpperCase()]) { req.headers["X-CSRF-Token"] = csrf; }
        return req;
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
