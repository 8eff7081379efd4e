"""API keys, Supabase JWT verification, and encryption/redaction of credential secrets."""
