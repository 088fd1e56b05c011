// Swagger UI over this server's own OpenAPI document (the URL is relative to /api/docs).
window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  tryItOutEnabled: false,
  persistAuthorization: false,
});
