-- SQLite chains each audit record as it writes it (docs/audit.md, "The chain"): a
-- record inserted at its place moves its chain's head, in the same statement. The
-- head moves only from the place right before the record (or is created with the
-- chain's first record), so a record inserted anywhere else (by hand) leaves it be.
-- A record past place 1 of a chain that has no head (its tenant was deleted since
-- the writer last saw the head) is refused: the writer reads the heads again and
-- starts that chain afresh.
CREATE TRIGGER audit_log_moves_head AFTER INSERT ON audit_log WHEN NEW.seq IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'audit chain head missing')
    WHERE NEW.seq > 1 AND NOT EXISTS (SELECT 1 FROM audit_heads WHERE tenant_id = NEW.tenant_id);
    INSERT INTO audit_heads (tenant_id, seq, hash) VALUES (NEW.tenant_id, NEW.seq, NEW.hash)
    ON CONFLICT (tenant_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash
    WHERE audit_heads.seq = excluded.seq - 1;
END;
