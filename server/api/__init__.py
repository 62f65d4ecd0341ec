"""HTTP only: controllers, request/response schemas, authentication, problem details."""
