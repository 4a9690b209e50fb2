// Swagger UI on this server's own OpenAPI document; no external validator
// badge (validatorUrl: null), so nothing leaves this origin.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  tryItOutEnabled: false,
  persistAuthorization: false,
});
