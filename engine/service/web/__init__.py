"""The engine's browser pages: the admin dashboard (/admin) and the gallery (/gallery)."""
