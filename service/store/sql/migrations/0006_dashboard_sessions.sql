-- Dashboard logins, kept server-side so that logging out ends a session for every replica
-- (the cookie carries only the signed session id). The id itself is never stored, only its
-- SHA-256: a copy of this table logs nobody in. token_fingerprint (an HMAC of the API token
-- under a key derived from PIXHOOK_SECRET_KEY) ends every session when the token changes.
CREATE TABLE dashboard_sessions (
    id_sha256         TEXT PRIMARY KEY,
    token_fingerprint TEXT NOT NULL,
    created_at        {real} NOT NULL,
    expires_at        {real} NOT NULL,
    revoked_at        {real}
) {strict_without_rowid};
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at);
