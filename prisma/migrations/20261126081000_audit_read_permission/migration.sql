-- audit.read (change history, security events): held by Administrator (through "*"), Operator
-- and Reader. Marked as keyward's own write, so the keys holding these roles keep their versions.
SELECT set_config('keyward.versioned', 'on', true);
UPDATE "roles" SET "permissions" = array_append("permissions", 'audit.read')
 WHERE "id" IN (2, 3) AND NOT ('audit.read' = ANY ("permissions"));
