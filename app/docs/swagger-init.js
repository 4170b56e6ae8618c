// Starts Swagger UI on the docs page (kept out of the page so that its CSP needs no inline script).
"use strict";
const container = document.getElementById("swagger-ui-container");
window.ui = SwaggerUIBundle({
  ...JSON.parse(container.dataset.config),
  url: container.dataset.specUrl,
  dom_id: "#swagger-ui-container",
});
