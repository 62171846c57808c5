"""API documentation pages (Swagger UI and ReDoc) and their locally served assets."""
