"""The CRM core: models, business rules, repositories and field declarations. No HTTP, Casbin, keys or audit."""
